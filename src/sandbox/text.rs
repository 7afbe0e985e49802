//! Guest-controlled text made fit to keep: capped with a note saying how much there was, and
//! free of NUL characters, which PostgreSQL's `text` and `jsonb` refuse (one such message
//! would fail the whole batch of outcomes it rides in).

/// The longest error, bad-args or panic message kept from a guest.
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 << 10;
/// The longest function description kept from a module's catalogue.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 2 << 10;
/// The longest function name shown in a backtrace frame.
pub(crate) const MAX_FRAME_NAME_BYTES: usize = 256;

/// `text` cut to at most `max` bytes (on a character boundary) plus a note of its full
/// length, with every NUL replaced.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let cut = if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    } else {
        text
    };
    let mut kept = without_nul(cut);
    if cut.len() < text.len() {
        kept += &format!(" [truncated: {} bytes in all]", text.len());
    }
    kept
}

/// `text` with each NUL replaced by U+FFFD.
pub(crate) fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_note_and_nul_is_replaced() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("a\0b", 10), "a\u{FFFD}b");
        assert_eq!(bounded("abcdef", 3), "abc [truncated: 6 bytes in all]");
        // 'é' is two bytes: a cut inside it backs off to the boundary.
        assert_eq!(bounded("aé", 2), "a [truncated: 3 bytes in all]");
    }
}
