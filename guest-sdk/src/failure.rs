//! How a job function says it did not succeed: a failure (retried with backoff, then
//! discarded) or a request to run again later that spends no attempt.

use std::fmt::Display;
use std::time::Duration;

use crate::bindings::sluice::job::types::{JobError, RetryRequest};

/// A job's `Err`. Any `Display` error converts into a plain failure, so `?` works on the
/// errors a job meets; `JobFailure::retry_after` asks for a later run instead.
///
/// It deliberately does not implement `Display` itself: that is what lets every `Display`
/// error convert into it (as `anyhow::Error` does with `std::error::Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    message: String,
    retry_after: Option<Duration>,
}

impl JobFailure {
    /// The attempt failed with this message; the job's retry policy decides what follows.
    pub fn failed(message: impl Into<String>) -> JobFailure {
        JobFailure {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Not now: run the job again after `delay` (the host caps it at one day), without
    /// counting this attempt against the job's maximum. For a rate limit met downstream or
    /// a resource that is not ready yet.
    pub fn retry_after(delay: Duration, reason: impl Into<String>) -> JobFailure {
        JobFailure {
            message: reason.into(),
            retry_after: Some(delay),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The delay a `retry_after` asked for.
    pub fn delay(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn into_job_error(self) -> JobError {
        match self.retry_after {
            None => JobError::Failed(self.message),
            Some(delay) => JobError::RetryAfter(RetryRequest {
                reason: self.message,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

impl<E: Display> From<E> for JobFailure {
    fn from(error: E) -> JobFailure {
        JobFailure::failed(error.to_string())
    }
}
