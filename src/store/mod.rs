//! The store: jobs, modules, nodes and leadership behind one `Store` trait, with an embedded
//! SQLite implementation (the default) and a PostgreSQL one for many nodes.
//!
//! Methods are named entity first, with one params struct each. Every state change moves
//! along `JobState::can_move_to`, and every outcome is fenced by the node's lease.

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::breakers::{BreakerPolicy, BreakerStatus};
use crate::limits::{Autoscale, QueueLimits};
use crate::model::{
    AttemptRecord, Job, JobFunction, JobId, JobState, LogLine, ModuleInfo, NewJob, Role,
};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;
/// The sqlx Sluice is built with, so an application's transactions are of the same kind.
pub use sqlx;
pub use sqlx::{PgConnection, SqliteConnection};

/// Enqueueing in an application's own transaction (`sluice::client` checks the calls).
pub mod transactional {
    pub use super::postgres::{
        enqueue_in as enqueue_postgres, module_in as module_postgres, schema_in as schema_postgres,
    };
    pub use super::sqlite::{
        enqueue_in as enqueue_sqlite, module_in as module_sqlite, schema_in as schema_sqlite,
    };
}

/// The database used when none is given: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sluice.db";

/// A notification meaning "every queue should look": sent when notifications may have been
/// missed (the listener reconnected).
pub const WAKE_ALL: &str = "*";
/// The notification that a running job has a cancel request: the nodes look at theirs.
pub const WAKE_CANCEL: &str = "!cancel";

/// Largest args accepted by default, in bytes; bigger payloads belong in blob storage.
pub const DEFAULT_MAX_ARGS_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no job with id {0}")]
    JobNotFound(JobId),
    #[error("no batch with id {0}")]
    BatchNotFound(i64),
    #[error("no module named `{0}`; upload it first with `sluice upload`")]
    ModuleNotFound(String),
    #[error("module `{name}` has no version {version}")]
    ModuleVersionNotFound { name: String, version: i32 },
    #[error("job {id} is {state}; it cannot become {wanted}")]
    InvalidTransition {
        id: JobId,
        state: JobState,
        wanted: JobState,
    },
    /// A job cannot enter a state in which it would hold a unique key another job holds.
    #[error(
        "another job holds this job's unique key; retry it once that job has finished (or delete that job)"
    )]
    UniqueKeyHeld,
    #[error("the args are {size} bytes; the limit is {limit} bytes")]
    ArgsTooLarge { size: usize, limit: usize },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("unsupported database URL `{0}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The database could not be reached or dropped the connection: worth retrying.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("migrating the database failed: {0}")]
    Migration(String),
    /// The database lacks migrations this program needs (only a client meets it: nodes and
    /// commands migrate on opening).
    #[error(
        "the database's schema is {}, older than the migration {needed} this program needs; run `sluice migrate` (or start a node of this version) against it first",
        found.map_or_else(|| "not there".to_string(), |version| format!("at migration {version}"))
    )]
    SchemaBehind { found: Option<i64>, needed: i64 },
}

/// The completions of a flush that composed something and were applied (`applied`: the
/// ids the fenced update wrote), with what each composed: written with them, in one enqueue.
pub(crate) fn composed_completions<'a>(
    params: &'a JobFinishMany,
    applied: &[JobId],
) -> Vec<(JobId, &'a crate::compose::Composed)> {
    let applied: std::collections::HashSet<JobId> = applied.iter().copied().collect();
    params
        .outcomes
        .iter()
        .filter(|outcome| {
            !outcome.composed.is_empty()
                && matches!(outcome.resolution, Resolution::Complete { .. })
                && applied.contains(&outcome.id)
        })
        .map(|outcome| (outcome.id, &outcome.composed))
        .collect()
}

/// Whether a job holds the unique key it has (both dialects): an idempotency key in every
/// state (until released at its expiry), a unique job's key while its state's bit
/// (`JobState::bit`) is among its `unique_states`, as in migration 0017's index.
pub(crate) const HOLDS_UNIQUE_KEY: &str = "(unique_states IS NULL OR unique_states & (CASE state \
     WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'running' THEN 4 \
     WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32 \
     WHEN 'cancelled' THEN 64 WHEN 'held' THEN 128 END) <> 0)";

/// The newest migration a database has applied (both dialects).
const NEWEST_APPLIED_MIGRATION: &str = "SELECT max(version) FROM _sqlx_migrations WHERE success";

/// Whether a database whose newest applied migration is `found` (its query's answer) has
/// every migration of `migrator`.
fn schema_verdict(
    found: Result<Option<i64>, sqlx::Error>,
    migrator: &sqlx::migrate::Migrator,
) -> StoreResult<()> {
    let needed = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let found = match found {
        Ok(found) => found,
        // No migrations table: a database Sluice never set up.
        Err(sqlx::Error::Database(_)) => None,
        Err(other) => return Err(other.into()),
    };
    match found {
        Some(found) if found >= needed => Ok(()),
        found => Err(StoreError::SchemaBehind { found, needed }),
    }
}

impl StoreError {
    /// Whether the same call may succeed later (the database went away and may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        use sqlx::Error as E;
        match &error {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(error.to_string())
            }
            E::Database(db) if is_transient_code(db.code().as_deref()) => {
                StoreError::Unavailable(error.to_string())
            }
            // PostgreSQL names the index, SQLite the column.
            E::Database(db)
                if db.is_unique_violation()
                    && (db.message().contains("sluice_jobs_unique")
                        || db.message().contains("sluice_jobs.unique_key")) =>
            {
                StoreError::UniqueKeyHeld
            }
            // PostgreSQL refuses a NUL in text (22021): the caller's input, whichever
            // lookup or write it reached, is refused as such, never a server error.
            E::Database(db) if db.code().as_deref() == Some("22021") => StoreError::Invalid(
                "text with a NUL character (\\0) cannot be stored or looked up".into(),
            ),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// Postgres: admin shutdown, crash shutdown, cannot connect now, connection failures, too
/// many connections, a database not accepting connections (55000), lock not available,
/// serialization failure, deadlock; SQLite: busy and locked.
fn is_transient_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "57P01"
                | "57P02"
                | "57P03"
                | "08000"
                | "08003"
                | "08006"
                | "08001"
                | "08004"
                | "53300"
                | "55000"
                | "55P03"
                | "40001"
                | "40P01"
                | "5"
                | "6"
                | "517"
                | "261"
                | "262"
        )
    )
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a store can and cannot do; callers adapt instead of discovering it by failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// New jobs inserted by any process wake this process's subscribers (Postgres LISTEN/NOTIFY).
    /// When false, only inserts made through this process wake them: others are found by polling.
    pub cross_process_notify: bool,
    /// Several nodes on several machines may share this store.
    pub multi_node: bool,
}

// ---- params, one struct per operation ----

#[derive(Debug, Clone)]
pub struct ModuleUpload {
    pub name: String,
    pub digest: String,
    pub wasm: Vec<u8>,
    pub functions: Vec<JobFunction>,
}

/// The result of an upload: the version, and whether these bytes were already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub module: ModuleInfo,
    pub already_present: bool,
}

#[derive(Debug, Clone)]
pub struct ModuleGet {
    pub name: String,
    /// `None` for the latest version.
    pub version: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct JobFetch {
    pub queue: String,
    pub limit: u32,
    pub node: String,
    pub lease: Duration,
}

/// What a claim took, and when to ask again if a limit held jobs back.
#[derive(Debug, Clone, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// Set when the queue's limits (not a lack of jobs) kept the claim from taking all it
    /// asked for: the earliest time asking again can take more. A concurrency limit frees
    /// when another node's job finishes, which no one announces, so it says "shortly".
    pub held_back_until: Option<DateTime<Utc>>,
}

/// How long a claim held back by a concurrency limit waits before asking again: the jobs
/// it waits for may finish on another node, which does not announce it.
pub const HELD_BACK_POLL: Duration = Duration::from_millis(50);

/// Sets (or, with `None`, clears) a queue's limits. Waiting jobs without a partition key
/// get one when the queue gains partitions.
#[derive(Debug, Clone)]
pub struct QueueLimitsSet {
    pub name: String,
    pub limits: Option<QueueLimits>,
}

/// A breaker's row: its policy (on a policy row: `function` `*`, or one function's own) and
/// its state, with the version a change must name.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerRow {
    pub module: String,
    pub function: String,
    pub policy: Option<BreakerPolicy>,
    pub status: BreakerStatus,
    pub version: i64,
}

/// Changes a breaker's state if its row is still at `version` (`None`: no row yet).
#[derive(Debug, Clone)]
pub struct BreakerPut {
    pub module: String,
    pub function: String,
    pub version: Option<i64>,
    pub status: BreakerStatus,
}

/// Calls and failures of one function, as a node counted them since its last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerCalls {
    pub module: String,
    pub function: String,
    pub calls: u64,
    pub failures: u64,
}

/// What to do with a job whose attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Complete {
        output: Vec<u8>,
    },
    /// Try again no earlier than `at`.
    Retry {
        at: DateTime<Utc>,
    },
    /// No more attempts: the dead-letter state.
    Discard,
    /// Put back without counting the attempt, to run no earlier than `at`.
    Snooze {
        at: DateTime<Utc>,
    },
    /// Hand back unfinished (the node is shutting down): available again at once, and the
    /// attempt does not count.
    Release,
    /// Stopped because a user cancelled the job while it ran: the attempt is recorded
    /// (`cancelled`) and the job is `cancelled`.
    Cancel,
}

impl Resolution {
    /// Whether the attempt counts towards `max_attempts` and enters the history.
    pub fn counts(&self) -> bool {
        !matches!(self, Resolution::Snooze { .. } | Resolution::Release)
    }
}

/// One job's attempt outcome, as a node reports it.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub id: JobId,
    /// The attempt number the node ran: with the lease, it fences stale reports.
    pub attempt: i32,
    pub resolution: Resolution,
    pub record: AttemptRecord,
    /// What the attempt composed: written with a `Complete` that the store applies (in
    /// the same transaction), and with nothing else.
    pub composed: crate::compose::Composed,
}

/// A topic's subscription: each event published to the topic becomes a job calling
/// `module.function` on `queue`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subscription {
    pub topic: String,
    pub queue: String,
    pub module: String,
    pub function: String,
    pub max_attempts: i32,
}

/// A batch as `sluice batch ID` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchInfo {
    pub id: i64,
    /// The job whose attempt opened it, if a job did.
    pub parent_id: Option<JobId>,
    pub created_at: DateTime<Utc>,
    pub counts: crate::compose::BatchCounts,
    /// Its jobs running now.
    pub running: u64,
    /// Its jobs waiting to run (available, scheduled, retryable or held).
    pub waiting: u64,
    pub callbacks: crate::compose::BatchCallbacks,
    /// The callbacks' jobs, once enqueued.
    pub finished_job: Option<JobId>,
    pub success_job: Option<JobId>,
    pub discard_job: Option<JobId>,
}

/// One end of a dependency, as a job's tree shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DependencyLink {
    pub job_id: JobId,
    /// `module.function` of that job (empty once it is deleted).
    pub function: String,
    pub state: String,
    pub if_failed: crate::compose::IfFailed,
}

/// A job's place in a composition: `sluice job ID --tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTree {
    pub job: Job,
    pub parent: Option<Job>,
    /// The first children, by id; `children_total` counts them all.
    pub children: Vec<Job>,
    pub children_total: u64,
    /// The jobs it waits (or waited) for, in the order it named them.
    pub waits_for: Vec<DependencyLink>,
    /// The jobs that wait (or waited) for it.
    pub waited_on_by: Vec<DependencyLink>,
    pub batch: Option<BatchInfo>,
}

#[derive(Debug, Clone)]
pub struct JobFinishMany {
    pub node: String,
    pub outcomes: Vec<JobOutcome>,
}

#[derive(Debug, Clone)]
pub struct LeaseExtend {
    pub node: String,
    /// The jobs the node is still working on. A job it gave up on is left out, so its lease
    /// runs out and the leader rescues it.
    pub jobs: Vec<JobId>,
    pub lease: Duration,
}

/// How the leader treats jobs whose lease expired.
#[derive(Debug, Clone, Copy)]
pub struct JobRescue {
    /// Lost attempts in a row after which a job is dead-lettered (`poisoned`).
    pub poison_limit: i32,
    /// The wait before the first rerun; it doubles with each loss in a row. Zero makes a
    /// rescued job available at once.
    pub backoff: Duration,
}

impl JobRescue {
    /// The wait before a job lost `lost_in_a_row` times (the new count) runs again, in
    /// microseconds: `backoff * 2^(n-1)`, at most an hour.
    pub(crate) fn wait_micros(&self, lost_in_a_row: i32) -> i64 {
        let exponent = (lost_in_a_row - 1).clamp(0, 20) as u32;
        let wait = self.backoff.saturating_mul(1 << exponent);
        wait.min(Duration::from_secs(3600)).as_micros() as i64
    }
}

/// Which of a node's running jobs a user asked to cancel.
#[derive(Debug, Clone)]
pub struct CancelRequests {
    pub node: String,
    pub jobs: Vec<JobId>,
}

/// Runs a finished or waiting job again now; `json_args`, when given, replace its args (as
/// JSON: the SDK reads either codec, so a postcard job can be retried with edited JSON).
#[derive(Debug, Clone)]
pub struct JobRetry {
    pub id: JobId,
    pub json_args: Option<Vec<u8>>,
}

impl From<JobId> for JobRetry {
    fn from(id: JobId) -> JobRetry {
        JobRetry {
            id,
            json_args: None,
        }
    }
}

/// Deletes finished jobs of one state (with their history), oldest first.
#[derive(Debug, Clone)]
pub struct JobPrune {
    /// `completed`, `discarded` or `cancelled`; any other state deletes nothing.
    pub state: JobState,
    pub finished_before: DateTime<Utc>,
    /// The most jobs one call deletes: each call is one short write, so claims and outcomes
    /// wait for a batch, never for a whole prune.
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct JobList {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub module: Option<String>,
    pub function: Option<String>,
    /// Jobs whose JSON args contain this text, searched among the newest
    /// `ARGS_SEARCH_WINDOW` jobs that match the other filters (a bounded scan).
    pub args_contains: Option<String>,
    pub limit: u32,
    /// Lists jobs with ids below this one (newest first), for paging.
    pub before_id: Option<JobId>,
    /// Lists jobs with ids above this one only.
    pub after_id: Option<JobId>,
}

/// How many jobs (the newest matching the other filters) a text search in args looks at.
pub const ARGS_SEARCH_WINDOW: i64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct JobCount {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub module: Option<String>,
}

/// A job with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDetail {
    pub job: Job,
    pub attempts: Vec<AttemptRecord>,
}

/// One job of an enqueue: inserted, or found holding the unique key it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    /// The job already existed: it held the unique key this one named.
    pub existing: bool,
}

/// Matches an insert's results to the jobs asked for. `keys` are the jobs' unique keys in
/// order; `inserted` the (id, key) of the rows inserted, whose ids rise in the jobs' order
/// (a job whose key was taken inserted no row); `holders` the ids of the jobs that already
/// held keys.
pub(crate) fn match_enqueued(
    keys: &[Option<&str>],
    mut inserted: Vec<(JobId, Option<String>)>,
    holders: &std::collections::HashMap<String, JobId>,
) -> StoreResult<Vec<Enqueued>> {
    inserted.sort_unstable_by_key(|(id, _)| *id);
    let mut inserted = inserted.into_iter().peekable();
    let mut in_batch = std::collections::HashMap::<&str, JobId>::new();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let next_is_this = inserted
            .peek()
            .is_some_and(|(_, got)| got.as_deref() == *key);
        let enqueued = match key {
            _ if next_is_this && key.is_none_or(|key| !in_batch.contains_key(key)) => {
                let (id, _) = inserted.next().expect("peeked");
                if let Some(key) = key {
                    in_batch.insert(key, id);
                }
                Enqueued {
                    id,
                    existing: false,
                }
            }
            Some(key) => {
                let id = in_batch
                    .get(key)
                    .or_else(|| holders.get(*key))
                    .copied()
                    .ok_or_else(|| {
                        StoreError::Database(format!("no job holds the unique key {key}"))
                    })?;
                Enqueued { id, existing: true }
            }
            None => {
                return Err(StoreError::Database(
                    "an insert returned fewer rows than it was given".into(),
                ));
            }
        };
        out.push(enqueued);
    }
    Ok(out)
}

/// Upper bounds, in milliseconds, of the queue-wait histogram's buckets in the per-minute
/// stats; one more bucket holds every longer wait.
pub const STATS_WAIT_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];
/// Buckets of the queue-wait histogram.
pub const STATS_WAIT_BUCKETS: usize = STATS_WAIT_BOUNDS_MS.len() + 1;

/// What one queue did in one minute, as charts show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteStats {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    pub queue: String,
    /// Attempts that completed, and that failed (any class), finishing in the minute.
    pub completed: u64,
    pub failed: u64,
    /// Their queue waits, counted per bucket of [`STATS_WAIT_BOUNDS_MS`].
    pub wait: [u64; STATS_WAIT_BUCKETS],
}

impl MinuteStats {
    pub fn new(minute: DateTime<Utc>, queue: String) -> MinuteStats {
        MinuteStats {
            minute,
            queue,
            completed: 0,
            failed: 0,
            wait: [0; STATS_WAIT_BUCKETS],
        }
    }

    /// The start of the minute `at` falls in.
    pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
        let seconds = at.timestamp().div_euclid(60) * 60;
        DateTime::from_timestamp(seconds, 0).unwrap_or(at)
    }

    /// Counts one attempt.
    pub fn count(&mut self, completed: bool, wait: Duration) {
        if completed {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let bucket = STATS_WAIT_BOUNDS_MS.partition_point(|bound| *bound <= ms);
        self.wait[bucket] += 1;
    }

    /// Adds `other`'s counts (of the same queue, any minute) to these.
    pub fn add(&mut self, other: &MinuteStats) {
        self.completed += other.completed;
        self.failed += other.failed;
        for (mine, theirs) in self.wait.iter_mut().zip(other.wait) {
            *mine += theirs;
        }
    }

    /// The `q` quantile of the waits (0 < q ≤ 1), as the upper bound of its bucket in
    /// milliseconds (`None`: no attempts, or above the last bound).
    pub fn wait_quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.wait.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.wait.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return STATS_WAIT_BOUNDS_MS.get(bucket).copied();
            }
        }
        None
    }
}

/// A queue and how many of its jobs are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    pub name: String,
    pub paused: bool,
    /// The per-node concurrency set for the queue at run time, if any.
    pub concurrency: Option<u32>,
    /// The limits every node obeys for it, if any.
    pub limits: Option<QueueLimits>,
    /// The bounds each node scales its concurrency between, if it autoscales.
    pub autoscale: Option<Autoscale>,
    /// When its rate limit lets the next job start, while that is in the future.
    pub next_start_at: Option<DateTime<Utc>>,
    pub counts: Vec<(JobState, u64)>,
    /// States whose count reached the cap the list was asked with: their counts are lower
    /// bounds.
    pub capped: Vec<JobState>,
}

/// What is set for a queue at run time, the same for every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub name: String,
    pub paused: bool,
    /// How many of its jobs each node runs at once, replacing the node's own setting (up
    /// to the node's ceiling); `None`: each node's own.
    pub concurrency: Option<u32>,
    pub limits: Option<QueueLimits>,
    /// The rate limit's theoretical arrival time (GCRA), in microseconds since the epoch.
    pub rate_tat: Option<i64>,
    /// Each node scales the queue's concurrency between these bounds, in place of
    /// `concurrency`.
    pub autoscale: Option<Autoscale>,
}

/// Sets (or, with `None`, stops) a queue's autoscaling.
#[derive(Debug, Clone)]
pub struct QueueAutoscale {
    pub name: String,
    pub autoscale: Option<Autoscale>,
}

/// Sets (or, with `None`, clears) a queue's per-node concurrency.
#[derive(Debug, Clone)]
pub struct QueueConcurrency {
    pub name: String,
    pub concurrency: Option<u32>,
}

impl QueueSummary {
    pub fn count(&self, state: JobState) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Clone)]
pub struct QueuePause {
    pub name: String,
    pub paused: bool,
}

#[derive(Debug, Clone)]
pub struct NodeHeartbeat {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub running: u32,
    /// The Sluice version the node runs.
    pub version: String,
    /// The node's lease: it beats three times per lease.
    pub lease: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub queues: Vec<String>,
    pub running: u32,
    pub version: String,
    pub lease: Duration,
    /// It holds the leader's term now.
    pub leader: bool,
}

/// How a node looks from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Beat within the last two beat intervals.
    Up,
    /// Missed a beat, but its lease has not run out: its jobs are still its own.
    Late,
    /// No beat for a whole lease: its jobs are being rescued. The leader forgets it after
    /// [`DEAD_NODES_KEPT`].
    Dead,
}

impl NodeHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Up => "up",
            NodeHealth::Late => "late",
            NodeHealth::Dead => "dead",
        }
    }
}

/// How long a dead node stays in the registry, for the record.
pub const DEAD_NODES_KEPT: Duration = Duration::from_secs(3600);

impl NodeInfo {
    /// Its health at `now`, from the age of its last heartbeat against its lease.
    pub fn health(&self, now: DateTime<Utc>) -> NodeHealth {
        let age = (now - self.heartbeat_at).to_std().unwrap_or_default();
        if age > self.lease {
            NodeHealth::Dead
        } else if age > self.lease * 2 / 3 {
            NodeHealth::Late
        } else {
            NodeHealth::Up
        }
    }
}

/// What a cron entry does with slots that passed while no leader could insert them (the
/// nodes were down): slots within the grace a leader change takes are always inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Missed slots are dropped; the entry goes on from the next one.
    Skip,
    /// One job stands in for all the missed slots, at the newest of them.
    RunOnce,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
        }
    }

    /// By name; `run-once` is accepted for `run_once`, as a flag would spell it.
    pub fn parse(text: &str) -> Option<Misfire> {
        match text {
            "skip" => Some(Misfire::Skip),
            "run_once" | "run-once" => Some(Misfire::RunOnce),
            _ => None,
        }
    }
}

/// A periodic job: the call it enqueues, and on which schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEntry {
    pub name: String,
    /// A cron expression: five fields, or six with seconds first.
    pub schedule: String,
    /// The IANA time zone the schedule is read in (`UTC`, `Europe/Paris`).
    pub timezone: String,
    pub misfire: Misfire,
    pub queue: String,
    pub module: String,
    pub function: String,
    /// The call's args, compact JSON.
    pub args: String,
    pub priority: i16,
    pub max_attempts: i32,
    /// The newest slot handled (inserted or skipped): the next job is for a slot after it.
    pub last_slot: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns of `sluice_cron`, in the order both stores read and write them.
pub(crate) const CRON_COLUMNS: &str = "name, schedule, timezone, misfire, queue, module, \
     function, args, priority, max_attempts, last_slot, updated_at";

/// Stores a cron entry. A new entry, or one whose schedule or time zone changed, starts
/// from `now`: slots before it are not inserted.
#[derive(Debug, Clone)]
pub struct CronPut {
    pub entry: CronEntry,
    /// Replace an entry of that name; otherwise an existing one is kept as it is (seeding
    /// from the config file).
    pub replace: bool,
}

/// Inserts a cron entry's jobs for its slots up to `last_slot`, if the entry still stands
/// at `expected_last_slot`: the compare-and-set that, with the jobs' unique keys per slot,
/// makes each slot's job exist once even when two nodes believe they lead.
#[derive(Debug, Clone)]
pub struct CronFire {
    pub name: String,
    pub expected_last_slot: DateTime<Utc>,
    pub last_slot: DateTime<Utc>,
    pub jobs: Vec<NewJob>,
}

/// An API token as stored: its name and role (its text is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct TokenCreate {
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the token's text, in hex.
    pub hash: String,
}

/// A dashboard session: the SHA-256 of its text (the cookie) and of the token it was
/// exchanged for.
#[derive(Debug, Clone)]
pub struct SessionCreate {
    pub hash: String,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// Discarded jobs alike in module, function and the class of their last attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterGroup {
    pub module: String,
    pub function: String,
    /// The class of the attempt that discarded them (`trap`, `lease_expired`, ...).
    pub class: String,
    pub jobs: u64,
    /// The newest of them, its discard time and its last attempt's message.
    pub last_job: JobId,
    pub last_at: DateTime<Utc>,
    pub last_message: Option<String>,
}

/// The newest failed attempts of one job function, among the jobs that are retrying or
/// discarded.
#[derive(Debug, Clone)]
pub struct RecentFailures {
    pub module: String,
    pub function: String,
    pub limit: u32,
}

/// How many of the newest discarded (or retrying) jobs the dead-letter reads look through:
/// they read a bounded window of an index, never the whole table.
pub const DEAD_LETTER_WINDOW: u32 = 10_000;

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The token's name, or `cli` for a command run against the database.
    pub actor: String,
    /// Like `job.retry`, `queue.pause`, `module.upload`, `token.create`.
    pub action: String,
    /// What it acted on: a job id, a queue or module name.
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub actor: String,
    pub action: String,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct LeaderElect {
    pub node: String,
    /// How long the term lasts unless renewed.
    pub term: Duration,
}

/// The persistence every Sluice part talks to.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;

    /// Applies pending migrations; safe to run from several nodes at once.
    async fn migrate(&self) -> StoreResult<()>;

    /// Queue names that just got available jobs. Lagging receivers should simply fetch.
    fn subscribe(&self) -> broadcast::Receiver<String>;

    // modules
    async fn module_upload(&self, params: ModuleUpload) -> StoreResult<Uploaded>;
    async fn module_get(&self, params: ModuleGet) -> StoreResult<ModuleInfo>;
    /// The wasm bytes of one module version.
    async fn module_wasm(&self, name: &str, version: i32) -> StoreResult<Vec<u8>>;
    /// The latest version of every module.
    async fn module_list(&self) -> StoreResult<Vec<ModuleInfo>>;
    /// Every version of one module, newest first (none if it was never uploaded).
    async fn module_versions(&self, name: &str) -> StoreResult<Vec<ModuleInfo>>;

    // jobs
    async fn job_insert(&self, job: NewJob) -> StoreResult<Job>;
    /// Inserts all jobs in one transaction, or none; returns for each, in order, its id, or
    /// the id of the job already holding its unique key.
    async fn job_enqueue(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>>;
    /// [`Store::job_enqueue`], the ids only.
    async fn job_insert_many(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<JobId>> {
        let enqueued = self.job_enqueue(jobs).await?;
        Ok(enqueued.into_iter().map(|job| job.id).collect())
    }
    /// Claims up to `limit` available jobs of a queue for a node, in run order; a paused
    /// queue yields none. (`job_claim`, without saying when to ask again.)
    async fn job_fetch(&self, params: JobFetch) -> StoreResult<Vec<Job>> {
        Ok(self.job_claim(params).await?.jobs)
    }
    /// Claims up to `limit` available jobs of a queue within its limits, leasing them to
    /// `node`; says when to ask again if the limits held some back.
    async fn job_claim(&self, params: JobFetch) -> StoreResult<Claimed>;
    /// Records attempt outcomes in one statement, each only while the job still runs under
    /// this node's lease and attempt; returns the ids that were applied.
    async fn job_finish_many(&self, params: &JobFinishMany) -> StoreResult<Vec<JobId>>;
    /// Extends the leases of the listed jobs while this node still holds them; returns how many.
    async fn job_lease_extend(&self, params: LeaseExtend) -> StoreResult<u64>;
    /// Puts running jobs whose lease expired back to run after a backoff, recording the lost
    /// attempt (which does not count against max attempts); a job lost `poison_limit` times
    /// in a row is dead-lettered, one with a cancel request is cancelled. Returns their ids.
    async fn job_rescue(&self, params: JobRescue) -> StoreResult<Vec<JobId>>;
    /// Makes scheduled and retryable jobs whose time has come available; returns how many.
    async fn job_stage(&self) -> StoreResult<u64>;
    /// Cancels a job that is waiting (it becomes `cancelled`), or asks the node running it
    /// to stop it (it stays `running` until that node writes the `cancelled` outcome, or
    /// its lease expires).
    async fn job_cancel(&self, id: JobId) -> StoreResult<Job>;
    /// Of `jobs`, running under `node`'s lease, those with a cancel request.
    async fn job_cancel_requests(&self, params: CancelRequests) -> StoreResult<Vec<JobId>>;
    /// Makes a job available to run again now (a finished one gets one more attempt).
    async fn job_retry(&self, params: JobRetry) -> StoreResult<Job>;
    async fn job_delete(&self, id: JobId) -> StoreResult<()>;
    /// Deletes finished jobs that finished before the given time; returns how many.
    async fn job_prune(&self, params: JobPrune) -> StoreResult<u64>;
    /// Makes the space of deleted and replaced rows reusable where the database will not do
    /// it in time: on PostgreSQL with autovacuum off or behind, a `VACUUM` of the jobs and
    /// history tables. Returns whether it ran.
    async fn reclaim_space(&self) -> StoreResult<bool>;
    /// The size on disk of each of the store's tables and indexes, by name, largest first.
    async fn storage_sizes(&self) -> StoreResult<Vec<(String, u64)>>;
    async fn job_get(&self, id: JobId) -> StoreResult<JobDetail>;
    async fn job_list(&self, params: JobList) -> StoreResult<Vec<Job>>;
    async fn job_count(&self, params: JobCount) -> StoreResult<u64>;
    /// Whether any job of these queues is available, running or waiting to retry, seen in
    /// one snapshot (a job staged from retryable to available between two separate checks
    /// was missed by both). Index probes, where counting read every match: behind a backlog
    /// of a million, a count was a 200 ms scan.
    async fn job_work_left(&self, queues: &[String]) -> StoreResult<bool>;

    // queues
    /// Every queue with its settings and jobs by state; with `count_cap`, at most that many
    /// jobs of each state are counted (see `queue_count_statement`).
    async fn queue_list(&self, count_cap: Option<u32>) -> StoreResult<Vec<QueueSummary>>;
    async fn queue_pause(&self, params: QueuePause) -> StoreResult<()>;
    /// What is set for each queue that has settings (a small table, read by every node
    /// every few seconds).
    async fn queue_settings(&self) -> StoreResult<Vec<QueueSettings>>;
    async fn queue_set_concurrency(&self, params: QueueConcurrency) -> StoreResult<()>;
    async fn queue_set_limits(&self, params: QueueLimitsSet) -> StoreResult<()>;
    async fn queue_set_autoscale(&self, params: QueueAutoscale) -> StoreResult<()>;
    /// Forgets partitions' rate states that no longer hold anything back.
    async fn partition_rates_prune(&self) -> StoreResult<u64>;

    /// A setting every node obeys, as JSON text, by name.
    async fn setting_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores a setting (JSON text); with `replace` false only where it is absent. Returns
    /// whether it was stored.
    async fn setting_put(&self, key: &str, value: &str, replace: bool) -> StoreResult<bool>;

    /// Every breaker row: policies and states.
    async fn breaker_list(&self) -> StoreResult<Vec<BreakerRow>>;
    async fn breaker_get(&self, module: &str, function: &str) -> StoreResult<Option<BreakerRow>>;
    /// Sets (or, with `None`, removes) the policy of a module (`function` `*`) or function.
    async fn breaker_policy_set(
        &self,
        module: &str,
        function: &str,
        policy: Option<BreakerPolicy>,
    ) -> StoreResult<()>;
    /// Compare-and-set of a breaker's state: false if another node changed it first.
    async fn breaker_put(&self, params: BreakerPut) -> StoreResult<bool>;
    /// Adds calls to the current second's counts (`now`, microseconds).
    async fn breaker_calls_add(&self, calls: &[BreakerCalls], now: i64) -> StoreResult<()>;
    /// Calls and failures of a function counted since `since` (microseconds).
    async fn breaker_calls_since(
        &self,
        module: &str,
        function: &str,
        since: i64,
    ) -> StoreResult<(u64, u64)>;
    /// Forgets counts older than `before` (microseconds).
    async fn breaker_calls_prune(&self, before: i64) -> StoreResult<u64>;

    // stats
    /// Adds per-minute counts to what the store holds (summed with other nodes').
    async fn stats_add(&self, rows: Vec<MinuteStats>) -> StoreResult<()>;
    /// The per-minute counts from `since` on, of one queue or all, in minute order.
    async fn stats_since(
        &self,
        since: DateTime<Utc>,
        queue: Option<String>,
    ) -> StoreResult<Vec<MinuteStats>>;
    /// Forgets the counts of minutes before `before`; returns how many rows.
    async fn stats_prune(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    // nodes and leadership
    async fn node_heartbeat(&self, params: NodeHeartbeat) -> StoreResult<()>;
    async fn node_list(&self) -> StoreResult<Vec<NodeInfo>>;
    async fn node_remove(&self, id: &str) -> StoreResult<()>;
    /// Forgets nodes whose last heartbeat is older than `heartbeat_before`; returns how many.
    async fn node_prune(&self, heartbeat_before: DateTime<Utc>) -> StoreResult<u64>;
    /// Becomes or stays leader if no other node holds an unexpired term; returns whether
    /// this node is the leader now.
    async fn leader_elect(&self, params: LeaderElect) -> StoreResult<bool>;

    /// Stores a token; refused if one of that name exists.
    async fn token_create(&self, params: TokenCreate) -> StoreResult<TokenInfo>;
    /// The token whose text has this hash.
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenInfo>>;
    async fn token_list(&self) -> StoreResult<Vec<TokenInfo>>;
    /// Deletes a token; false if there was none of that name.
    async fn token_revoke(&self, name: &str) -> StoreResult<bool>;
    /// Whether any token exists (then the API asks every caller for one).
    async fn token_exists(&self) -> StoreResult<bool>;
    async fn audit_record(&self, params: AuditRecord) -> StoreResult<()>;
    /// Recorded actions, newest first, with ids below `before_id` when given.
    async fn audit_list(&self, limit: u32, before_id: Option<i64>) -> StoreResult<Vec<AuditEntry>>;
    async fn leader_resign(&self, node: &str) -> StoreResult<()>;

    // Dashboard sessions (see tokens.rs of each store).
    async fn session_create(&self, params: SessionCreate) -> StoreResult<()>;
    /// The token behind a session that has not expired, if its token still exists.
    async fn session_token(&self, hash: &str) -> StoreResult<Option<TokenInfo>>;
    async fn session_end(&self, hash: &str) -> StoreResult<()>;
    /// Forgets expired sessions; returns how many.
    async fn session_prune(&self) -> StoreResult<u64>;

    // Cron (see cron.rs of each store).
    /// Stores an entry (see `CronPut`); returns it as stored.
    async fn cron_put(&self, params: CronPut) -> StoreResult<CronEntry>;
    /// Every entry, by name.
    async fn cron_list(&self) -> StoreResult<Vec<CronEntry>>;
    /// Removes an entry; whether it existed. Jobs it inserted stay.
    async fn cron_remove(&self, name: &str) -> StoreResult<bool>;
    /// Inserts the jobs and moves the entry to `last_slot` in one transaction; `None` (and
    /// nothing inserted) if the entry was removed or moved since it was read.
    async fn cron_fire(&self, params: CronFire) -> StoreResult<Option<Vec<Enqueued>>>;

    // Dead letters (see dead_letters.rs of each store).
    /// The newest `DEAD_LETTER_WINDOW` discarded jobs, grouped; the newest group first.
    async fn dead_letter_groups(&self) -> StoreResult<Vec<DeadLetterGroup>>;

    // Composition (`store/*/compose.rs`).
    /// The jobs `job` waited for, in the order it named them, with their outputs.
    async fn dependency_results(
        &self,
        job: JobId,
    ) -> StoreResult<Vec<crate::compose::DependencyResult>>;
    /// A job's output, if it has one.
    async fn job_output(&self, job: JobId) -> StoreResult<Option<Vec<u8>>>;
    /// A job's parent, children, dependencies both ways, and batch.
    async fn job_tree(&self, job: JobId) -> StoreResult<JobTree>;
    /// Creates a batch of `jobs` with `callbacks`; returns its id and the jobs'.
    async fn batch_create(
        &self,
        callbacks: crate::compose::BatchCallbacks,
        jobs: Vec<NewJob>,
    ) -> StoreResult<(i64, Vec<Enqueued>)>;
    async fn batch_get(&self, id: i64) -> StoreResult<BatchInfo>;
    /// Adds a subscription; false if it existed.
    async fn topic_subscribe(&self, subscription: Subscription) -> StoreResult<bool>;
    /// Removes a subscription; false if there was none.
    async fn topic_unsubscribe(&self, subscription: &Subscription) -> StoreResult<bool>;
    /// The subscriptions of one topic, or of all.
    async fn topic_subscriptions(&self, topic: Option<&str>) -> StoreResult<Vec<Subscription>>;
    /// Publishes an event: one job per subscription of its topic, in one transaction.
    async fn topic_publish(&self, event: crate::compose::Published) -> StoreResult<Vec<Enqueued>>;
    /// Failed attempts of a function's retrying and discarded jobs, newest first.
    async fn failures_recent(
        &self,
        params: RecentFailures,
    ) -> StoreResult<Vec<(JobId, AttemptRecord)>>;
}

/// Opens the store a URL names, creating a SQLite file if missing, and migrates it.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with(url, &StoreOptions::default()).await
}

/// How a store connects, beyond its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections to PostgreSQL; on SQLite, twice the reader connections (beside its one
    /// writer).
    pub pool_size: u32,
    /// SQLite only: `synchronous = FULL` (survives power loss) instead of `NORMAL`
    /// (survives a crash of the process; the last commits may be lost on power loss).
    pub sqlite_full_sync: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            pool_size: DEFAULT_POOL_SIZE,
            sqlite_full_sync: false,
        }
    }
}

/// Connections in a store's pool unless told otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Connects with `options` and applies pending migrations.
pub async fn connect_with(url: &str, options: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(SqliteStore::open_with(path, options).await?)
    } else if url.starts_with("sqlite:") {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect_with(url, options).await?)
    } else {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    };
    store.migrate().await?;
    Ok(store)
}

/// Checks what every store refuses before touching the database.
pub(crate) fn check_new_job(job: &NewJob, max_args_bytes: usize) -> StoreResult<()> {
    if job.args.len() > max_args_bytes {
        return Err(StoreError::ArgsTooLarge {
            size: job.args.len(),
            limit: max_args_bytes,
        });
    }
    if job.queue.is_empty() || job.module.is_empty() || job.function.is_empty() {
        return Err(StoreError::Invalid(
            "queue, module and function must not be empty".into(),
        ));
    }
    if job.max_attempts < 1 {
        return Err(StoreError::Invalid(
            "max_attempts must be at least 1".into(),
        ));
    }
    Ok(())
}

/// The state a new job starts in.
pub(crate) fn initial_state(job: &NewJob, now: DateTime<Utc>) -> JobState {
    match job.scheduled_at {
        _ if !job.depends_on.is_empty() => JobState::Held,
        Some(at) if at > now => JobState::Scheduled,
        _ => JobState::Available,
    }
}

/// The job columns, in the order both stores select them.
pub(crate) const JOB_COLUMNS: &str = "id, queue, module, module_version, function, args, codec, \
     state, priority, attempt, max_attempts, inserted_at, scheduled_at, attempted_at, lease_node, \
     lease_expires_at, finalized_at, fuel_limit, timeout_ms, memory_limit, output, lost_attempts, \
     partition_key, parent_id, batch_id, waits_for";

/// Appends the optional state, queue and module filters of a listing or a count.
/// The predicate of the `sluice_jobs_unsettled` index. SQLite uses a partial index only
/// when the query restates its predicate (it does not infer `state IN (...)` from
/// `state = 'discarded'`), so every read of one of these states by that index carries it.
pub(crate) const UNSETTLED_STATES: &str =
    "state IN ('scheduled', 'retryable', 'discarded', 'cancelled', 'held')";

/// `UNSETTLED_STATES AND ` when `state` is one of them, else nothing.
pub(crate) fn unsettled_guard(state: JobState) -> String {
    match state {
        JobState::Scheduled
        | JobState::Retryable
        | JobState::Discarded
        | JobState::Cancelled
        | JobState::Held => {
            format!("{UNSETTLED_STATES} AND ")
        }
        _ => String::new(),
    }
}

pub(crate) fn push_filters<DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<DB>,
    state: Option<JobState>,
    queue: Option<&str>,
    module: Option<&str>,
) where
    for<'q> &'static str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if let Some(state) = state {
        query
            .push(" AND ")
            .push(unsettled_guard(state))
            .push("state = ")
            .push_bind(state.as_str());
    }
    if let Some(queue) = queue {
        query.push(" AND queue = ").push_bind(queue.to_string());
    }
    if let Some(module) = module {
        query.push(" AND module = ").push_bind(module.to_string());
    }
}

/// The filters of a job listing other than the text search, shared by both dialects.
pub(crate) fn push_list_filters<DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<DB>,
    list: &JobList,
) where
    for<'q> &'static str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    push_filters(
        query,
        list.state,
        list.queue.as_deref(),
        list.module.as_deref(),
    );
    if let Some(function) = &list.function {
        query.push(" AND function = ").push_bind(function.clone());
    }
    if let Some(before) = list.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    if let Some(after) = list.after_id {
        query.push(" AND id > ").push_bind(after);
    }
}

/// The history stores logs as JSON; none is stored as NULL.
pub(crate) fn logs_json(logs: &[LogLine]) -> Option<String> {
    (!logs.is_empty()).then(|| serde_json::to_string(logs).expect("log lines always serialize"))
}

pub(crate) fn logs_from_json(text: Option<&str>) -> Vec<LogLine> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

pub(crate) fn context_json(context: Option<&crate::model::DiscardContext>) -> Option<String> {
    context.map(|c| serde_json::to_string(c).expect("a discard context always serializes"))
}

/// A stored context; one that no longer parses (written by a later version) reads as none.
pub(crate) fn context_from_json(text: Option<&str>) -> Option<crate::model::DiscardContext> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// The state a resolution moves a running job to.
pub(crate) fn resolved_state(resolution: &Resolution) -> JobState {
    match resolution {
        Resolution::Complete { .. } => JobState::Completed,
        Resolution::Retry { .. } => JobState::Retryable,
        Resolution::Discard => JobState::Discarded,
        Resolution::Snooze { .. } => JobState::Scheduled,
        Resolution::Release => JobState::Available,
        Resolution::Cancel => JobState::Cancelled,
    }
}

/// The message of the history entry that dead-letters a job lost too often.
pub(crate) fn poisoned_message(lost_in_a_row: i32) -> String {
    format!(
        "lost with its node {lost_in_a_row} times in a row: dead-lettered instead of run again, since the job may be what brings nodes down"
    )
}

/// The history entry of an attempt whose node stopped heartbeating.
pub(crate) fn lease_expired_record(
    attempt: i32,
    node: String,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AttemptRecord {
    AttemptRecord {
        attempt,
        message: Some(format!(
            "the lease of node {node} expired: the node stopped heartbeating"
        )),
        node,
        module_version: None,
        started_at,
        finished_at: now,
        outcome: crate::model::AttemptClass::LeaseExpired,
        trap_code: None,
        fuel_consumed: 0,
        duration: (now - started_at).to_std().unwrap_or_default(),
        peak_memory_bytes: 0,
        logs: Vec::new(),
        context: None,
    }
}

/// Builds queue summaries from pause flags and (queue, state, count) rows.
/// How many jobs of each state the dashboard's and the CLI's queue lists count at most: past
/// it a figure reads "10,000+", and no list waits on a scan of a large table.
pub const QUEUE_COUNT_CAP: u32 = 10_000;

/// The statement counting jobs by queue and state: every job, or (`capped`) at most the
/// number bound to `cap_param` of each state, the newest of it, each a bounded read: the
/// order by id makes the plan walk an index in id order (the state's partial index, or the
/// primary key for completed jobs) whatever the statistics say about how many rows match.
pub(crate) fn queue_count_statement(capped: bool, cap_param: &str) -> String {
    if !capped {
        return "SELECT queue, state, COUNT(*) AS n FROM sluice_jobs GROUP BY queue, state".into();
    }
    let per_state: Vec<String> = JobState::ALL
        .iter()
        .map(|&state| {
            // Running jobs' index is by lease expiry: read it unordered (they are few).
            let order = if state == JobState::Running {
                ""
            } else {
                " ORDER BY id DESC"
            };
            let guard = unsettled_guard(state);
            let state = state.as_str();
            format!(
                "SELECT queue, state FROM (SELECT queue, state FROM sluice_jobs \
                 WHERE {guard}state = '{state}'{order} LIMIT {cap_param}) AS only_{state}"
            )
        })
        .collect();
    format!(
        "SELECT queue, state, COUNT(*) AS n FROM ({}) AS bounded GROUP BY queue, state",
        per_state.join(" UNION ALL ")
    )
}

pub(crate) fn summarize_queues(
    settings: Vec<QueueSettings>,
    counts: Vec<(String, String, u64)>,
    count_cap: Option<u32>,
) -> Vec<QueueSummary> {
    let capped: Vec<JobState> = match count_cap {
        None => Vec::new(),
        Some(cap) => JobState::ALL
            .into_iter()
            .filter(|state| {
                let total: u64 = counts
                    .iter()
                    .filter(|(_, s, _)| s == state.as_str())
                    .map(|(_, _, n)| n)
                    .sum();
                total >= u64::from(cap)
            })
            .collect(),
    };
    let mut queues: std::collections::BTreeMap<String, QueueSummary> = settings
        .into_iter()
        .map(|set| {
            (
                set.name.clone(),
                QueueSummary {
                    next_start_at: next_start_at(&set, Utc::now()),
                    name: set.name,
                    paused: set.paused,
                    concurrency: set.concurrency,
                    limits: set.limits,
                    autoscale: set.autoscale,
                    counts: Vec::new(),
                    capped: capped.clone(),
                },
            )
        })
        .collect();
    for (queue, state, count) in counts {
        let summary = queues.entry(queue.clone()).or_insert_with(|| QueueSummary {
            name: queue,
            paused: false,
            concurrency: None,
            limits: None,
            autoscale: None,
            next_start_at: None,
            counts: Vec::new(),
            capped: capped.clone(),
        });
        if let Some(state) = JobState::parse(&state) {
            summary.counts.push((state, count));
        }
    }
    queues.into_values().collect()
}

/// A queue's limits as stored (JSON text).
pub(crate) fn limits_from_json(text: Option<String>) -> StoreResult<Option<QueueLimits>> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|error| {
            StoreError::Database(format!("a queue's limits are unreadable: {error}"))
        })
    })
    .transpose()
}

/// A waiting job's parts that a partition key is made from, as a backfill reads them.
pub(crate) fn partition_source(
    queue: &str,
    module: String,
    function: String,
    args: Vec<u8>,
    codec: &str,
) -> NewJob {
    NewJob {
        queue: queue.to_string(),
        module,
        module_version: None,
        function,
        args,
        codec: crate::model::Codec::parse(codec).unwrap_or(crate::model::Codec::Json),
        priority: 0,
        max_attempts: 1,
        scheduled_at: None,
        limits: Default::default(),
        unique: None,
        partition_key: None,
        depends_on: Vec::new(),
        parent_id: None,
        batch_id: None,
    }
}

/// A queue's autoscaling as stored (JSON text).
pub(crate) fn autoscale_from_json(text: Option<String>) -> StoreResult<Option<Autoscale>> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|error| {
            StoreError::Database(format!("a queue's autoscaling is unreadable: {error}"))
        })
    })
    .transpose()
}

/// When a queue's rate limit lets its next job start, if that is after `now`.
fn next_start_at(settings: &QueueSettings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let rate = settings.limits.as_ref()?.rate?;
    let take = rate.take(settings.rate_tat, now.timestamp_micros(), 1);
    if take.allowed > 0 {
        return None;
    }
    DateTime::from_timestamp_micros(take.next_at)
}

/// Why a state change matched no row: the job is missing, or in a state that forbids it.
pub(crate) async fn refused(store: &dyn Store, id: JobId, wanted: JobState) -> StoreError {
    match store.job_get(id).await {
        Ok(detail) => StoreError::InvalidTransition {
            id,
            state: detail.job.state,
            wanted,
        },
        Err(error) => error,
    }
}
