//! The retry policy: what to do with a job after an attempt, and when to try again.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{AttemptOutcome, Job};
use crate::store::Resolution;

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
