//! The retry policy: what to do with a job after an attempt, and when to try again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{AttemptOutcome, Job};
use crate::store::Resolution;

/// The longest a guest may defer its job by "retry after": a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Completed jobs complete; failures retry with backoff while attempts remain and the
    /// failure is one a retry could fix; otherwise the job is discarded (dead letter).
    pub fn resolve(&self, job: &Job, outcome: &AttemptOutcome, now: DateTime<Utc>) -> Resolution {
        match outcome {
            AttemptOutcome::Completed { output } => Resolution::Complete {
                output: output.clone(),
            },
            // Deferred by the guest (a downstream said 429): back after the delay asked,
            // the attempt not spent, however many are left.
            AttemptOutcome::Failed(failure) if let Some(delay) = failure.retry_after => {
                Resolution::Snooze {
                    at: now
                        + chrono::Duration::from_std(delay.min(MAX_RETRY_AFTER))
                            .unwrap_or_default(),
                }
            }
            AttemptOutcome::Failed(failure) => {
                if !failure.kind.is_retryable() || job.counted_attempts() >= job.max_attempts {
                    Resolution::Discard
                } else {
                    let delay = self.backoff(job.attempt);
                    Resolution::Retry {
                        at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                    }
                }
            }
        }
    }

    /// `base * 2^(attempt-1)`, capped at `max`, then spread by ±10% so jobs that failed
    /// together do not all come back in the same instant.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let delay = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let jitter = 0.9 + fastrand::f64() * 0.2;
        delay.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempt: i32, max_attempts: i32) -> Job {
        Job {
            id: 1,
            queue: "default".into(),
            module: "m".into(),
            module_version: None,
            function: "f".into(),
            args: Vec::new(),
            codec: crate::model::Codec::Json,
            state: crate::model::JobState::Running,
            priority: 0,
            attempt,
            max_attempts,
            inserted_at: Utc::now(),
            scheduled_at: Utc::now(),
            attempted_at: None,
            lease_node: None,
            lease_expires_at: None,
            finalized_at: None,
            limits: Default::default(),
            output: None,
            lost_attempts: 0,
            partition_key: None,
            parent_id: None,
            batch_id: None,
            waits_for: 0,
        }
    }

    #[test]
    fn a_retry_after_snoozes_without_spending_the_attempt() {
        use crate::model::{Failure, FailureKind};
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let now = Utc::now();
        let deferred = AttemptOutcome::Failed(Failure::retry_after(
            "the mail API said 429",
            Duration::from_secs(90),
        ));
        // On its last attempt: deferred, not discarded; the snooze does not count.
        let resolution = policy.resolve(&job(3, 3), &deferred, now);
        assert_eq!(
            resolution,
            Resolution::Snooze {
                at: now + chrono::Duration::seconds(90)
            }
        );
        assert!(!resolution.counts());
        let failed = AttemptOutcome::Failed(Failure::new(FailureKind::GuestError, "boom"));
        assert_eq!(
            policy.resolve(&job(3, 3), &failed, now),
            Resolution::Discard
        );
        // A delay past a day is cut to a day.
        let far =
            AttemptOutcome::Failed(Failure::retry_after("later", Duration::from_secs(1 << 30)));
        assert_eq!(
            policy.resolve(&job(1, 3), &far, now),
            Resolution::Snooze {
                at: now + chrono::Duration::days(1)
            }
        );
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for (attempt, nominal) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            let delay = policy.backoff(attempt).as_secs_f64();
            assert!(
                delay >= nominal * 0.9 && delay <= nominal * 1.1,
                "attempt {attempt}: {delay}s"
            );
        }
    }
}
