//! The attempt's deadline at every crossing between guest and host.
//!
//! Fuel counts guest instructions only, so a guest that spends its time inside host calls (a
//! log flood of large messages, huge stream writes, a loop over clocks or random) burns
//! little of it and reaches few fuel yields: neither the yields nor the deadline timer, which
//! fires at a yield or while the guest awaits the host, would stop it. A call hook runs at
//! every host call and return instead: past the deadline it traps, whatever the guest does,
//! and after each `HOST_SLICE` of time spent in host calls it yields to tokio as a fuel yield
//! would, so such a guest is paced and demoted like one that computes.
//!
//! The check is a clock read per crossing (measured in BENCHMARKS.md); epoch interruption
//! would instead add a check on every loop back-edge of every guest.

use std::time::{Duration, Instant};

use wasmtime::{CallHook, CallHookHandler, StoreContextMut};

use super::bindings::AttemptState;

/// Time in host calls after which the guest yields to tokio: about a fuel yield's worth.
const HOST_SLICE: Duration = Duration::from_millis(1);

/// The wall-clock state of one attempt, as the call hook sees it.
pub(crate) struct AttemptClock {
    /// When the attempt must end.
    deadline: Instant,
    /// When the guest entered the host call now running, if one is.
    entered_host: Option<Instant>,
    /// Time spent in host calls since the last yield this clock asked for.
    host_since_yield: Duration,
    /// Set when the hook stopped the guest for its deadline.
    pub passed: bool,
}

/// The error the hook traps with once the deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the attempt ran past its deadline")]
pub(crate) struct DeadlinePassed;

impl AttemptClock {
    pub fn new(deadline: Instant) -> AttemptClock {
        AttemptClock {
            deadline,
            entered_host: None,
            host_since_yield: Duration::ZERO,
            passed: false,
        }
    }

    /// Accounts one crossing at `now`; says whether the guest should yield first.
    fn cross(&mut self, hook: CallHook, now: Instant) -> Result<bool, DeadlinePassed> {
        match hook {
            CallHook::CallingHost => {
                self.check(now)?;
                self.entered_host = Some(now);
                Ok(false)
            }
            CallHook::ReturningFromHost => {
                if let Some(entered) = self.entered_host.take() {
                    self.host_since_yield += now.saturating_duration_since(entered);
                }
                self.check(now)?;
                if self.host_since_yield >= HOST_SLICE {
                    self.host_since_yield = Duration::ZERO;
                    return Ok(true);
                }
                Ok(false)
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm => Ok(false),
        }
    }

    fn check(&mut self, now: Instant) -> Result<(), DeadlinePassed> {
        if now >= self.deadline {
            self.passed = true;
            return Err(DeadlinePassed);
        }
        Ok(())
    }
}

/// The call hook every attempt's store runs; its state is the store's `AttemptClock`.
pub(crate) struct DeadlineHook;

#[async_trait::async_trait]
impl CallHookHandler<AttemptState> for DeadlineHook {
    async fn handle_call_event(
        &self,
        mut store: StoreContextMut<'_, AttemptState>,
        hook: CallHook,
    ) -> wasmtime::Result<()> {
        let should_yield = store.data_mut().clock.cross(hook, Instant::now())?;
        if should_yield {
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_time_is_summed_into_slices_and_the_deadline_stops_any_crossing() {
        let start = Instant::now();
        let mut clock = AttemptClock::new(start + Duration::from_millis(10));
        let at = |ms: f64| start + Duration::from_secs_f64(ms / 1e3);
        // Two host calls of 0.6 ms: the second completes a slice.
        assert!(!clock.cross(CallHook::CallingHost, at(0.0)).unwrap());
        assert!(!clock.cross(CallHook::ReturningFromHost, at(0.6)).unwrap());
        assert!(!clock.cross(CallHook::CallingHost, at(1.0)).unwrap());
        assert!(clock.cross(CallHook::ReturningFromHost, at(1.6)).unwrap());
        assert!(!clock.passed);
        // A host call that returns past the deadline traps on its way back.
        clock.cross(CallHook::CallingHost, at(2.0)).unwrap();
        assert!(clock.cross(CallHook::ReturningFromHost, at(10.0)).is_err());
        assert!(clock.passed);
        // And no new host call starts.
        assert!(clock.cross(CallHook::CallingHost, at(11.0)).is_err());
    }
}
