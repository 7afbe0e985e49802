//! The operations the CLI and the HTTP API share: each validates its input once, here, with
//! one wording, so the two faces of Sluice cannot drift apart.

mod actions;
mod breakers;
pub mod compose;
mod cron;
mod grouped;
mod jobs;
mod modules;
mod recent_modules;
mod retention;
mod tokens;

pub use self::actions::{
    JobAction, MAX_BULK_ACTION, MAX_QUEUE_CONCURRENCY, act_on_jobs, cancel_job, delete_job,
    retry_job, seed_queue_limits, set_queue_autoscale, set_queue_concurrency, set_queue_limits,
    set_queue_paused,
};
pub use self::breakers::{
    BreakerInfo, admit_call, list_breakers, policy_for, report_calls, reset_breaker,
    set_breaker_policy,
};
pub use self::cron::{CronSpec, check_cron, next_slot, put_cron, remove_cron, seed_cron, slot_job};
pub use self::grouped::GroupedEnqueue;
pub use self::jobs::{
    DEFAULT_IDEMPOTENCY_PERIOD, check_job_options, enqueue, enqueue_many, idempotency_key,
    json_args, parse_state, queue_name,
};
pub use self::modules::{upload, valid_module_name};
pub use self::recent_modules::RecentModules;
pub use self::retention::{RetentionSecs, seed_retention, set_retention, stored_retention};
pub use self::tokens::{
    CLI_ACTOR, SESSION_LIFETIME, SESSION_PREFIX, Session, TOKEN_PREFIX, authenticate, create_token,
    csrf_token, revoke_token, session_token, sign_in, sign_out,
};

use crate::sandbox::ModuleError;
use crate::store::StoreError;

/// Why an operation refused or failed. The message is the user's explanation (the CLI
/// prints it, the API puts it in the problem document's `detail`); `code` is stable.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    UnknownFunction(#[from] crate::model::UnknownFunction),
    #[error("the args are not valid JSON: {0}")]
    BadArgs(String),
    #[error("`{0}` is not a valid module name: use letters, digits, `_` and `-`")]
    BadModuleName(String),
    /// Input refused before it reached the store, with the reason (names the CLI's flag).
    #[error("{0}")]
    Invalid(String),
    #[error("no token named `{0}`")]
    TokenNotFound(String),
    #[error("no cron entry named `{0}`")]
    CronNotFound(String),
    #[error("no circuit breaker for `{0}`")]
    BreakerNotFound(String),
    #[error("no subscription of {0}")]
    SubscriptionNotFound(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What kind of failure an error is, for a caller that maps it (an HTTP status, an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is wrong; the same request will fail again.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request is valid but the thing named is in a state that forbids it.
    Conflict,
    /// The input is larger than allowed.
    TooLarge,
    /// The database is unreachable for now; the same request may succeed later.
    Unavailable,
    /// A fault on our side.
    Internal,
}

impl OpError {
    /// A stable, machine-readable name of the error (the problem document's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            OpError::UnknownFunction(_) => "unknown_function",
            OpError::BadArgs(_) => "bad_args",
            OpError::BadModuleName(_) => "bad_module_name",
            OpError::Invalid(_) => "invalid_input",
            OpError::TokenNotFound(_) => "token_not_found",
            OpError::CronNotFound(_) => "cron_not_found",
            OpError::BreakerNotFound(_) => "breaker_not_found",
            OpError::SubscriptionNotFound(_) => "subscription_not_found",
            OpError::Module(ModuleError::TooLarge { .. }) => "module_too_large",
            OpError::Module(ModuleError::Cache { .. }) => "internal",
            OpError::Module(_) => "invalid_module",
            OpError::Store(error) => match error {
                StoreError::JobNotFound(_) => "job_not_found",
                StoreError::BatchNotFound(_) => "batch_not_found",
                StoreError::ModuleNotFound(_) => "module_not_found",
                StoreError::ModuleVersionNotFound { .. } => "module_version_not_found",
                StoreError::InvalidTransition { .. } => "invalid_transition",
                StoreError::UniqueKeyHeld => "unique_key_held",
                StoreError::ArgsTooLarge { .. } => "args_too_large",
                StoreError::Invalid(_) => "invalid_input",
                StoreError::Unavailable(_) => "database_unavailable",
                StoreError::UnsupportedUrl(_)
                | StoreError::Database(_)
                | StoreError::Migration(_)
                | StoreError::SchemaBehind { .. } => "internal",
            },
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.code() {
            "job_not_found"
            | "batch_not_found"
            | "module_not_found"
            | "module_version_not_found"
            | "token_not_found"
            | "cron_not_found"
            | "breaker_not_found"
            | "subscription_not_found" => ErrorKind::NotFound,
            "invalid_transition" | "unique_key_held" => ErrorKind::Conflict,
            "module_too_large" | "args_too_large" => ErrorKind::TooLarge,
            "database_unavailable" => ErrorKind::Unavailable,
            "internal" => ErrorKind::Internal,
            _ => ErrorKind::Invalid,
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;
