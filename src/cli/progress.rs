//! Progress on a terminal for long CLI work (indicatif): drawn on stderr, and hidden when
//! stderr is not a terminal, so scripts and logs never see it.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `length` things.
pub fn bar(length: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// A spinner for work of unknown length, saying what is being done.
pub fn spinner(label: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("the template is valid"),
    );
    spinner.set_message(label.to_string());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
