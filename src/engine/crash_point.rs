//! Deliberate crash points for the fault tests: with `SLUICE_CRASH_AT=POINT:N` the process
//! kills itself with SIGKILL the N-th time it passes POINT, exactly as an outside `kill -9`
//! would, but at a moment an outside signal cannot aim for (between a claim and the start of
//! its attempts, between an outcome batch and its write).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The places a node can be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// A fetch has claimed jobs; none of their attempts has started.
    Claimed,
    /// A batch of outcomes is about to be written.
    Flushing,
    /// A batch of outcomes has just been written.
    Flushed,
}

impl CrashPoint {
    fn parse(name: &str) -> Option<CrashPoint> {
        match name {
            "claimed" => Some(CrashPoint::Claimed),
            "flushing" => Some(CrashPoint::Flushing),
            "flushed" => Some(CrashPoint::Flushed),
            _ => None,
        }
    }
}

struct Armed {
    point: CrashPoint,
    at: u64,
    passed: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("SLUICE_CRASH_AT").ok()?;
            let parsed = spec.split_once(':').and_then(|(point, n)| {
                Some((CrashPoint::parse(point)?, n.parse::<u64>().ok()?))
            });
            match parsed {
                Some((point, at)) => Some(Armed {
                    point,
                    at: at.max(1),
                    passed: AtomicU64::new(0),
                }),
                None => {
                    tracing::error!(%spec, "SLUICE_CRASH_AT is not POINT:N (claimed, flushing or flushed); ignored");
                    None
                }
            }
        })
        .as_ref()
}

/// Dies here if this is the armed point's N-th passage; otherwise costs one load.
pub(crate) fn pass(point: CrashPoint) {
    let Some(armed) = armed() else { return };
    if armed.point == point && armed.passed.fetch_add(1, Ordering::Relaxed) + 1 == armed.at {
        tracing::warn!(?point, "SLUICE_CRASH_AT reached: killing this process");
        crate::os::kill_self();
    }
}
