//! Circuit breakers per module and function, shared by every node through the store: a
//! breaker opens when the failure rate of its calls over a window passes a threshold; while
//! open its jobs wait without spending an attempt; after a cooldown (doubling with each trip
//! in a row) a few probe attempts decide between closing and opening again. This module is
//! the policy and the state machine; the stores keep the state and the counts.

use serde::{Deserialize, Serialize};

use crate::model::{AttemptClass, FailureKind};

/// When a breaker opens and how it recovers. Set per module, for all its functions
/// (`function` `*`) or for one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    /// The share of failed calls (0 to 1) over the window that opens the breaker.
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    /// The window the rate is measured over, in seconds.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// Fewer calls than this in the window never open the breaker.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// How long the breaker stays open after its first trip, in seconds; each trip in a row
    /// doubles it, up to `max_cooldown_secs`.
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    #[serde(default = "default_max_cooldown_secs")]
    pub max_cooldown_secs: u64,
    /// Probe attempts after the cooldown: all succeed and the breaker closes; one fails
    /// and it opens again.
    #[serde(default = "default_probes")]
    pub probes: u32,
    /// Failure classes that do not count (the caller's mistakes, not the callee's health).
    #[serde(default = "default_ignored")]
    pub ignore: Vec<String>,
}

fn default_failure_rate() -> f64 {
    0.5
}
fn default_window_secs() -> u64 {
    60
}
fn default_min_calls() -> u32 {
    20
}
fn default_cooldown_secs() -> u64 {
    30
}
fn default_max_cooldown_secs() -> u64 {
    600
}
fn default_probes() -> u32 {
    3
}
fn default_ignored() -> Vec<String> {
    vec!["bad_args".into(), "unknown_function".into()]
}

impl Default for BreakerPolicy {
    fn default() -> BreakerPolicy {
        BreakerPolicy {
            failure_rate: default_failure_rate(),
            window_secs: default_window_secs(),
            min_calls: default_min_calls(),
            cooldown_secs: default_cooldown_secs(),
            max_cooldown_secs: default_max_cooldown_secs(),
            probes: default_probes(),
            ignore: default_ignored(),
        }
    }
}

/// The function name that makes a policy cover all of a module's functions.
pub const ALL_FUNCTIONS: &str = "*";

impl BreakerPolicy {
    pub fn check(&self) -> Result<(), String> {
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err(format!(
                "a breaker's failure rate must be above 0 and at most 1, not {}",
                self.failure_rate
            ));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err("a breaker's window must be 1 s to 1 day".into());
        }
        if self.min_calls == 0 {
            return Err("a breaker needs at least 1 call in its window to open".into());
        }
        if !(1..=86_400).contains(&self.cooldown_secs)
            || self.max_cooldown_secs < self.cooldown_secs
            || self.max_cooldown_secs > 86_400
        {
            return Err(
                "a breaker's cooldown must be 1 s to 1 day, and its max cooldown no shorter".into(),
            );
        }
        if !(1..=1000).contains(&self.probes) {
            return Err("a breaker needs 1 to 1000 probes".into());
        }
        for class in &self.ignore {
            if !FailureKind::ALL.iter().any(|kind| kind.as_str() == class) {
                return Err(format!("`{class}` is not a failure class"));
            }
        }
        Ok(())
    }

    /// Whether an attempt of this class counts as a call, and as a failure.
    pub fn counts(&self, class: AttemptClass) -> Option<bool> {
        match class {
            AttemptClass::Completed => Some(false),
            AttemptClass::Failed(kind) => {
                (!self.ignore.iter().any(|c| c == kind.as_str())).then_some(true)
            }
            // Not the callee's doing: the node stopped, lost it, or a user cancelled.
            _ => None,
        }
    }

    /// How long the breaker stays open after `trips` trips in a row (1 for the first).
    pub fn cooldown_micros(&self, trips: u32) -> i64 {
        let doubled = self
            .cooldown_secs
            .saturating_mul(1 << trips.saturating_sub(1).min(20));
        doubled.min(self.max_cooldown_secs) as i64 * 1_000_000
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "node", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls run.
    Closed,
    /// Calls wait until the cooldown ends.
    Open,
    /// The cooldown ended: a few probe calls run, the rest wait.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub fn parse(text: &str) -> Option<BreakerState> {
        [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A breaker's state as stored (times in microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStatus {
    pub state: BreakerState,
    /// Trips in a row: each doubles the cooldown; a close resets it.
    pub trips: u32,
    /// When an open breaker lets its probes run.
    pub reopen_at: Option<i64>,
    /// Probes not yet handed out (half open).
    pub probes_left: u32,
    /// Probes that succeeded so far (half open).
    pub probes_passed: u32,
    /// Only calls after this count towards opening: the window starts afresh at a close.
    pub counted_from: i64,
}

impl BreakerStatus {
    pub fn closed(now: i64) -> BreakerStatus {
        BreakerStatus {
            state: BreakerState::Closed,
            trips: 0,
            reopen_at: None,
            probes_left: 0,
            probes_passed: 0,
            counted_from: now,
        }
    }

    /// After a report of calls: `window` are the calls and failures counted over the
    /// policy's window (since `counted_from`), `reported` those of this report alone.
    pub fn after_report(
        &self,
        policy: &BreakerPolicy,
        window: (u64, u64),
        reported: (u64, u64),
        now: i64,
    ) -> BreakerStatus {
        let mut next = self.clone();
        match self.state {
            BreakerState::Closed => {
                let (calls, failures) = window;
                if calls >= u64::from(policy.min_calls)
                    && failures as f64 >= policy.failure_rate * calls as f64
                {
                    next.trip(policy, now);
                }
            }
            // Calls that were running when it opened: they say nothing new.
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                let (calls, failures) = reported;
                if failures > 0 {
                    next.trip(policy, now);
                } else {
                    next.probes_passed = next.probes_passed.saturating_add(calls as u32);
                    if next.probes_passed >= policy.probes {
                        next = BreakerStatus::closed(now);
                    }
                }
            }
        }
        next
    }

    fn trip(&mut self, policy: &BreakerPolicy, now: i64) {
        self.trips = self.trips.saturating_add(1);
        self.state = BreakerState::Open;
        self.reopen_at = Some(now + policy.cooldown_micros(self.trips));
        self.probes_left = 0;
        self.probes_passed = 0;
    }

    /// Asks to run one call: `Ok(self after)` when it may (closed, or a probe handed out,
    /// turning an open breaker whose cooldown ended half open), `Err(until)` when it must
    /// wait until then.
    pub fn admit(&self, policy: &BreakerPolicy, now: i64) -> Result<BreakerStatus, i64> {
        let mut next = self.clone();
        match self.state {
            BreakerState::Closed => Ok(next),
            BreakerState::Open => {
                let reopen_at = self.reopen_at.unwrap_or(now);
                if now < reopen_at {
                    return Err(reopen_at);
                }
                next.state = BreakerState::HalfOpen;
                next.probes_left = policy.probes - 1;
                next.probes_passed = 0;
                Ok(next)
            }
            BreakerState::HalfOpen if self.probes_left > 0 => {
                next.probes_left -= 1;
                Ok(next)
            }
            // Every probe is out: wait a while for their verdict.
            BreakerState::HalfOpen => Err(now + PROBE_WAIT_MICROS),
        }
    }
}

/// How long a call waits while a half-open breaker's probes run.
const PROBE_WAIT_MICROS: i64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            min_calls: 4,
            probes: 2,
            cooldown_secs: 10,
            max_cooldown_secs: 25,
            ..BreakerPolicy::default()
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn it_opens_past_the_rate_with_enough_calls_only() {
        let closed = BreakerStatus::closed(0);
        let p = policy();
        assert_eq!(
            closed.after_report(&p, (3, 3), (3, 3), S).state,
            BreakerState::Closed,
            "too few calls"
        );
        assert_eq!(
            closed.after_report(&p, (10, 4), (1, 1), S).state,
            BreakerState::Closed,
            "below the rate"
        );
        let open = closed.after_report(&p, (10, 5), (1, 1), S);
        assert_eq!(open.state, BreakerState::Open);
        assert_eq!(open.reopen_at, Some(11 * S));
        assert_eq!(open.admit(&p, 5 * S), Err(11 * S), "its calls wait");
    }

    #[test]
    fn probes_close_it_or_open_it_again_for_longer() {
        let p = policy();
        let open = BreakerStatus::closed(0).after_report(&p, (4, 4), (4, 4), 0);
        let first = open.admit(&p, 10 * S).expect("the cooldown is over");
        assert_eq!(first.state, BreakerState::HalfOpen);
        let second = first.admit(&p, 10 * S).expect("a second probe");
        assert_eq!(second.admit(&p, 10 * S), Err(11 * S), "no third probe");
        let closed = second.after_report(&p, (0, 0), (2, 0), 11 * S);
        assert_eq!(closed.state, BreakerState::Closed);
        assert_eq!(closed.counted_from, 11 * S, "the window starts afresh");

        let again = second.after_report(&p, (0, 0), (1, 1), 11 * S);
        assert_eq!(again.state, BreakerState::Open);
        assert_eq!(again.trips, 2);
        assert_eq!(again.reopen_at, Some(31 * S), "20 s: the cooldown doubled");
        let third = again
            .admit(&p, 31 * S)
            .unwrap()
            .after_report(&p, (0, 0), (1, 1), 31 * S);
        assert_eq!(third.reopen_at, Some(56 * S), "at most the max cooldown");
    }

    #[test]
    fn the_callers_mistakes_do_not_count() {
        let p = BreakerPolicy::default();
        assert_eq!(p.counts(AttemptClass::Failed(FailureKind::BadArgs)), None);
        assert_eq!(
            p.counts(AttemptClass::Failed(FailureKind::Trap)),
            Some(true)
        );
        assert_eq!(p.counts(AttemptClass::Completed), Some(false));
        assert_eq!(p.counts(AttemptClass::Abandoned), None);
        let bad = BreakerPolicy {
            ignore: vec!["sadness".into()],
            ..BreakerPolicy::default()
        };
        assert!(bad.check().is_err());
    }
}
