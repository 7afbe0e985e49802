//! A Rust client for applications that enqueue jobs: over a node's HTTP API (`HttpClient`),
//! or inside the application's own sqlx transaction (`enqueue_in_postgres`,
//! `enqueue_in_sqlite`), where the jobs exist if and only if that transaction commits.
//! With `default-features = false, features = ["client"]` it pulls neither wasmtime nor clap.

mod http;
mod transaction;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::compose::IfFailed;
use crate::compose::{Dependency, JobRef};
use crate::model::{Codec, JobId, LimitOverrides, NewJob, UniqueKey, UnknownFunction};
use crate::store::StoreError;
pub use crate::unique::UniqueOptions;

pub use self::http::{HttpClient, RequestBody};
pub use self::transaction::{enqueue_in_postgres, enqueue_in_sqlite};
pub use crate::store::Enqueued;

/// How long a job holds its idempotency key, as a node's default.
pub use crate::model::DEFAULT_IDEMPOTENCY_PERIOD as IDEMPOTENCY_PERIOD;

/// One call to enqueue: a module's function, its args and every option `sluice enqueue` has.
#[derive(Debug, Clone)]
pub struct Call {
    module: String,
    function: String,
    args: Vec<u8>,
    codec: Codec,
    queue: String,
    priority: i16,
    max_attempts: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    version: Option<i32>,
    limits: LimitOverrides,
    idempotency_key: Option<String>,
    unique: Option<UniqueOptions>,
    partition_key: Option<String>,
    depends_on: Vec<Dependency>,
}

impl Call {
    /// A call of `function` of `module` with `null` args, on the `default` queue.
    pub fn new(module: impl Into<String>, function: impl Into<String>) -> Call {
        Call {
            module: module.into(),
            function: function.into(),
            args: b"null".to_vec(),
            codec: Codec::Json,
            queue: NewJob::DEFAULT_QUEUE.to_string(),
            priority: 0,
            max_attempts: None,
            run_at: None,
            version: None,
            limits: LimitOverrides::default(),
            idempotency_key: None,
            unique: None,
            partition_key: None,
            depends_on: Vec::new(),
        }
    }

    /// The args as JSON.
    pub fn json(mut self, args: &impl Serialize) -> Result<Call, ClientError> {
        self.args = serde_json::to_vec(args).map_err(|e| ClientError::BadArgs(e.to_string()))?;
        self.codec = Codec::Json;
        Ok(self)
    }

    /// The args in postcard, for a job function that takes typed binary args.
    pub fn postcard(mut self, args: &impl Serialize) -> Result<Call, ClientError> {
        self.args = postcard::to_allocvec(args).map_err(|e| ClientError::BadArgs(e.to_string()))?;
        self.codec = Codec::Postcard;
        Ok(self)
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Call {
        self.queue = queue.into();
        self
    }

    /// Lower runs first; 0 is the default.
    pub fn priority(mut self, priority: i16) -> Call {
        self.priority = priority;
        self
    }

    /// Attempts before the job is discarded (20 by default).
    pub fn max_attempts(mut self, attempts: i32) -> Call {
        self.max_attempts = Some(attempts);
        self
    }

    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Call {
        self.run_at = Some(at);
        self
    }

    /// Runs no earlier than `delay` from now.
    pub fn run_in(mut self, delay: Duration) -> Call {
        self.run_at = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| Utc::now().checked_add_signed(delay));
        self
    }

    /// Runs this version of the module; by default each attempt runs the latest.
    pub fn version(mut self, version: i32) -> Call {
        self.version = Some(version);
        self
    }

    pub fn fuel(mut self, fuel: u64) -> Call {
        self.limits.fuel = Some(fuel);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.limits.timeout = Some(timeout);
        self
    }

    /// Memory cap of each attempt, in bytes.
    pub fn memory(mut self, bytes: u64) -> Call {
        self.limits.memory_bytes = Some(bytes);
        self
    }

    /// While a job holds this key (24 hours), enqueueing with it again returns that job.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Call {
        self.idempotency_key = Some(key.into());
        self
    }

    /// A unique job: while a job of the same call (as `options` define it) is unfinished, or
    /// in a finished state `options` name, enqueueing it again returns that job.
    pub fn unique(mut self, options: UniqueOptions) -> Call {
        self.unique = Some(options);
        self
    }

    /// The partition the job counts in on a queue with partitions, in place of the one the
    /// queue's partitioning would derive.
    pub fn partition_key(mut self, key: impl Into<String>) -> Call {
        self.partition_key = Some(key.into());
        self
    }

    /// Waits for job `id`: the job is held until that one has ended, and cancelled if it was
    /// discarded or cancelled (`IfFailed::Cancel`) or run anyway (`IfFailed::Run`).
    pub fn depends_on(mut self, id: JobId, if_failed: IfFailed) -> Call {
        self.depends_on.push(Dependency {
            on: JobRef::Stored(id),
            if_failed,
        });
        self
    }

    /// The job this call stores, its options checked as `sluice enqueue` checks them.
    fn new_job(&self) -> Result<NewJob, ClientError> {
        if self.idempotency_key.is_some() && self.unique.is_some() {
            return Err(ClientError::Invalid(
                "give an idempotency key or unique options, not both".into(),
            ));
        }
        let mut job = NewJob {
            queue: self.queue.clone(),
            module: self.module.clone(),
            module_version: self.version,
            function: self.function.clone(),
            args: self.args.clone(),
            codec: self.codec,
            priority: self.priority,
            max_attempts: self.max_attempts.unwrap_or(NewJob::DEFAULT_MAX_ATTEMPTS),
            scheduled_at: self.run_at,
            limits: self.limits,
            unique: self
                .idempotency_key
                .as_deref()
                .map(|key| UniqueKey::idempotency(key, IDEMPOTENCY_PERIOD))
                .transpose()
                .map_err(ClientError::Invalid)?,
            partition_key: self.partition_key.clone(),
            depends_on: self.depends_on.clone(),
            parent_id: None,
            batch_id: None,
        };
        if let Some(options) = &self.unique {
            job.unique = Some(
                options
                    .key_for(&job, Utc::now())
                    .map_err(ClientError::Invalid)?,
            );
        }
        crate::model::check_options(&job).map_err(ClientError::Invalid)?;
        Ok(job)
    }
}

/// Why an enqueue was refused or failed; the wording is the CLI's.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the args cannot be encoded: {0}")]
    BadArgs(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    UnknownFunction(#[from] UnknownFunction),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API refused the request: its problem document's status, code and detail.
    #[error("{detail} ({status} {code})")]
    Problem {
        status: u16,
        code: String,
        detail: String,
    },
    /// The API could not be reached, or answered what is not a Sluice API.
    #[error("cannot reach the Sluice API: {0}")]
    Http(String),
}
