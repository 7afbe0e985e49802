//! Autoscaling a queue's concurrency on this node between the bounds its setting names: grow
//! while the queue has a backlog its slots cannot keep up with, or its jobs wait too long to
//! start, as long as the node's memory budget and CPU have room; shrink once the backlog is
//! gone and half the slots have stayed idle for a while. A change waits out a cooldown after
//! the last, and growing and shrinking need opposite conditions (all slots busy, half idle),
//! so the concurrency does not swing back and forth.

use std::time::{Duration, Instant};

use crate::limits::Autoscale;

/// What the node sees of a queue and of itself at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Signals {
    /// Available jobs of the queue in the store (capped).
    pub backlog: u64,
    /// Slots of the queue in use, and its concurrency now.
    pub in_use: u32,
    pub limit: u32,
    /// The average wait to start of the queue's jobs since the last look, if any started.
    pub wait: Option<Duration>,
    /// Shares (0 to 1) of the node's memory budget in use and of its CPU busy.
    pub memory_used: f64,
    pub cpu_busy: f64,
}

/// Past this share of the memory budget or of the CPU, the node does not grow a queue:
/// more slots would wait for memory, or slow every attempt down.
const PRESSURE: f64 = 0.9;

/// Why the concurrency changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Start,
    Bounds,
    Backlog,
    Latency,
    Idle,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Bounds => "bounds",
            Reason::Backlog => "backlog",
            Reason::Latency => "latency",
            Reason::Idle => "idle",
        }
    }
}

/// One queue's autoscaler: when it last changed, and since when the queue has been idle.
#[derive(Debug, Default)]
pub(crate) struct Autoscaler {
    started: bool,
    last_change: Option<Instant>,
    idle_since: Option<Instant>,
}

impl Autoscaler {
    /// The concurrency to set now, and why, or `None` to keep it.
    pub(crate) fn decide(
        &mut self,
        policy: &Autoscale,
        signals: Signals,
        now: Instant,
    ) -> Option<(u32, Reason)> {
        let current = signals.limit;
        // A queue starts autoscaling from its min: what it needs more, it grows to.
        if !std::mem::replace(&mut self.started, true) && current != policy.min {
            return self.change(policy.min, Reason::Start, now);
        }
        if current < policy.min || current > policy.max {
            return self.change(current.clamp(policy.min, policy.max), Reason::Bounds, now);
        }
        let quiet = signals.backlog == 0 && signals.in_use * 2 <= current;
        if quiet {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        let cooling = self
            .last_change
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(policy.cooldown_secs));
        if cooling {
            return None;
        }
        let saturated = signals.in_use >= current && signals.backlog > 0;
        let slow = signals
            .wait
            .is_some_and(|wait| wait > Duration::from_millis(policy.target_wait_ms));
        let room = signals.memory_used < PRESSURE && signals.cpu_busy < PRESSURE;
        if (saturated || slow) && room && current < policy.max {
            // Half again (at least one more): a backlog is met in a few steps, not dozens.
            let grown = (current + (current / 2).max(1)).min(policy.max);
            let reason = if saturated {
                Reason::Backlog
            } else {
                Reason::Latency
            };
            return self.change(grown, reason, now);
        }
        let idle_long = self.idle_since.is_some_and(|since| {
            now.duration_since(since) >= Duration::from_secs(policy.shrink_after_secs)
        });
        if idle_long && current > policy.min {
            let shrunk = (current / 2).max(signals.in_use).max(policy.min);
            if shrunk < current {
                self.idle_since = None;
                return self.change(shrunk, Reason::Idle, now);
            }
        }
        None
    }

    fn change(&mut self, to: u32, reason: Reason, now: Instant) -> Option<(u32, Reason)> {
        self.last_change = Some(now);
        Some((to, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Autoscale {
        Autoscale {
            min: 2,
            max: 12,
            cooldown_secs: 5,
            shrink_after_secs: 20,
            target_wait_ms: 500,
        }
    }

    /// A scaler past its start.
    fn started() -> Autoscaler {
        Autoscaler {
            started: true,
            ..Autoscaler::default()
        }
    }

    fn signals(backlog: u64, in_use: u32, limit: u32) -> Signals {
        Signals {
            backlog,
            in_use,
            limit,
            wait: None,
            memory_used: 0.1,
            cpu_busy: 0.5,
        }
    }

    #[test]
    fn a_backlog_grows_it_to_its_max_one_cooldown_at_a_time() {
        let mut scaler = started();
        let t0 = Instant::now();
        let p = policy();
        assert_eq!(
            scaler.decide(&p, signals(100, 2, 2), t0),
            Some((3, Reason::Backlog))
        );
        assert_eq!(
            scaler.decide(&p, signals(100, 3, 3), t0 + Duration::from_secs(1)),
            None,
            "cooling down"
        );
        let mut limit = 3;
        let mut at = t0;
        while let Some((next, _)) = {
            at += Duration::from_secs(5);
            scaler.decide(&p, signals(100, limit, limit), at)
        } {
            limit = next;
        }
        assert_eq!(limit, 12, "the max, never beyond");
    }

    #[test]
    fn it_does_not_grow_under_memory_or_cpu_pressure() {
        let mut scaler = started();
        let mut pressed = signals(100, 4, 4);
        pressed.memory_used = 0.95;
        assert_eq!(scaler.decide(&policy(), pressed, Instant::now()), None);
        pressed.memory_used = 0.1;
        pressed.cpu_busy = 0.97;
        assert_eq!(scaler.decide(&policy(), pressed, Instant::now()), None);
    }

    #[test]
    fn slow_starts_grow_it_and_a_long_quiet_shrinks_it() {
        let mut scaler = started();
        let t0 = Instant::now();
        let mut slow = signals(0, 1, 4);
        slow.wait = Some(Duration::from_secs(2));
        assert_eq!(
            scaler.decide(&policy(), slow, t0),
            Some((6, Reason::Latency))
        );
        // Quiet, but not for long enough; then long enough: halved, never below in use.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(scaler.decide(&policy(), signals(0, 1, 6), t1), None);
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(
            scaler.decide(&policy(), signals(0, 1, 6), t2),
            Some((3, Reason::Idle))
        );
        // Busy slots keep it: at least half in use is not idle.
        let t3 = t2 + Duration::from_secs(60);
        assert_eq!(scaler.decide(&policy(), signals(0, 2, 3), t3), None);
    }

    #[test]
    fn it_starts_at_its_min_and_brings_a_concurrency_outside_the_bounds_in() {
        let mut scaler = Autoscaler::default();
        let t0 = Instant::now();
        assert_eq!(
            scaler.decide(&policy(), signals(0, 0, 16), t0),
            Some((2, Reason::Start))
        );
        assert_eq!(
            scaler.decide(&policy(), signals(0, 0, 16), t0),
            Some((12, Reason::Bounds)),
            "set from elsewhere past its max: brought in at once"
        );
    }
}
