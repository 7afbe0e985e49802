//! The vocabulary shared by every part of Sluice: jobs, attempts and their outcomes. No I/O.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a job's args bytes are encoded. Output is always JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Json,
    Postcard,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Postcard => "postcard",
        }
    }

    pub fn parse(text: &str) -> Option<Codec> {
        match text {
            "json" => Some(Codec::Json),
            "postcard" => Some(Codec::Postcard),
            _ => None,
        }
    }
}

/// One job function a module exports, as its author described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFunction {
    pub name: String,
    pub description: String,
}

/// Per-job overrides of the node's default attempt limits; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub timeout: Option<Duration>,
}

impl LimitOverrides {
    /// The longest deadline a job may ask for.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
    /// The smallest memory cap: one wasm page.
    pub const MIN_MEMORY_BYTES: u64 = 64 << 10;

    /// Refuses limits no attempt could run under, with the flag's name in the message.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == Some(0) {
            return Err("--fuel must be at least 1".into());
        }
        if let Some(memory) = self.memory_bytes
            && memory < Self::MIN_MEMORY_BYTES
        {
            return Err(format!(
                "--memory must be at least {} bytes (one wasm page)",
                Self::MIN_MEMORY_BYTES
            ));
        }
        if let Some(timeout) = self.timeout
            && (timeout.is_zero() || timeout > Self::MAX_TIMEOUT)
        {
            return Err(format!(
                "--timeout must be longer than 0s and at most {}h",
                Self::MAX_TIMEOUT.as_secs() / 3600
            ));
        }
        Ok(())
    }
}

/// Why an attempt failed. A guest failure is data to record, never an engine error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The job function returned `Err`.
    GuestError,
    /// The args could not be decoded into the function's parameter type.
    BadArgs,
    /// The module exports no function of that name.
    UnknownFunction,
    /// The guest panicked; the message is the panic message.
    Panic,
    /// The guest trapped (unreachable, stack overflow, out-of-bounds access, ...).
    Trap,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock deadline passed.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit,
    /// The guest returned more output than the cap allows.
    OutputTooLarge,
    /// The guest exited the component (`std::process::exit`, WASI `exit`) instead of
    /// returning from its function: a failure even with a success status, since no output
    /// came back.
    Exit,
    /// The guest hit a host-side limit: its WASI handle table is full, or it asked a host
    /// import for more than the host grants (random bytes, for one).
    ResourceLimit,
    /// The module could not be loaded or instantiated (missing, corrupt, incompatible).
    ModuleError,
}

impl FailureKind {
    pub const ALL: [FailureKind; 12] = [
        FailureKind::GuestError,
        FailureKind::BadArgs,
        FailureKind::UnknownFunction,
        FailureKind::Panic,
        FailureKind::Trap,
        FailureKind::OutOfFuel,
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::OutputTooLarge,
        FailureKind::Exit,
        FailureKind::ResourceLimit,
        FailureKind::ModuleError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::GuestError => "guest_error",
            FailureKind::BadArgs => "bad_args",
            FailureKind::UnknownFunction => "unknown_function",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::Exit => "exit",
            FailureKind::ResourceLimit => "resource_limit",
            FailureKind::ModuleError => "module_error",
        }
    }

    /// One line for people: what happened, and what to change.
    pub fn explanation(self) -> &'static str {
        match self {
            FailureKind::GuestError => {
                "the job function returned an error; see its message, fix the cause or the job"
            }
            FailureKind::BadArgs => {
                "the args do not decode into the function's parameter type; enqueue args of that shape"
            }
            FailureKind::UnknownFunction => {
                "the module exports no function of that name; check `sluice modules` or the pinned version"
            }
            FailureKind::Panic => "the guest panicked; the message says where",
            FailureKind::Trap => {
                "the guest trapped (a wasm fault such as unreachable or an out-of-bounds access); see the trap code and backtrace"
            }
            FailureKind::OutOfFuel => {
                "the attempt used its whole fuel budget; raise --fuel or make the job do less per attempt"
            }
            FailureKind::Timeout => {
                "the attempt ran past its deadline; raise --timeout or make the job do less per attempt"
            }
            FailureKind::MemoryLimit => {
                "the guest tried to grow its memory past its cap; raise --memory or use less"
            }
            FailureKind::OutputTooLarge => {
                "the job returned more output than the cap; return less, or store it elsewhere and return a reference"
            }
            FailureKind::Exit => {
                "the guest exited the component instead of returning from its function; return Ok or Err rather than calling exit"
            }
            FailureKind::ResourceLimit => {
                "the guest hit a host-side limit (too many open handles, too large a request to a host import); release handles, ask for less"
            }
            FailureKind::ModuleError => {
                "the module could not be loaded on this node; upload a valid build of it"
            }
        }
    }

    pub fn parse(text: &str) -> Option<FailureKind> {
        FailureKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// Whether running the same call again could give a different result. Args that do not
    /// decode and functions that do not exist will fail the same way every time.
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureKind::BadArgs | FailureKind::UnknownFunction)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    /// The function returned; its JSON output.
    Completed { output: Vec<u8> },
    /// The attempt failed; what went wrong.
    Failed(Failure),
}

/// A classified attempt failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The wasm trap code, for traps (and for the traps behind panics and limits).
    pub trap_code: Option<String>,
    /// A few innermost wasm frames, when the guest trapped.
    pub backtrace: Option<String>,
    /// The guest's word that the call should be tried again after this long, the attempt not
    /// counted: a downstream said "too many requests". The host side of "retry after D"; a
    /// guest says it through the `sluice:job` contract's next version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<std::time::Duration>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            trap_code: None,
            backtrace: None,
            retry_after: None,
        }
    }

    /// A failure that asks to be tried again after `delay` without spending an attempt.
    pub fn retry_after(message: impl Into<String>, delay: std::time::Duration) -> Failure {
        Failure {
            retry_after: Some(delay),
            ..Failure::new(FailureKind::GuestError, message)
        }
    }
}

/// Severity of a guest log line, or the stream it was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

/// One captured line of guest output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// Everything one attempt produced, ready for the store to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub outcome: AttemptOutcome,
    pub fuel_consumed: u64,
    pub wall_time: Duration,
    /// The largest linear memory the guest reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Log lines, stdout and stderr, in the order written, up to the log cap.
    pub logs: Vec<LogLine>,
    /// Bytes of guest output dropped once the log cap was reached.
    pub logs_dropped_bytes: u64,
    /// What a completed attempt composed (children, batches, events); empty otherwise.
    #[serde(default, skip_serializing_if = "crate::compose::Composed::is_empty")]
    pub composed: crate::compose::Composed,
}

impl AttemptReport {
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            AttemptOutcome::Failed(failure) => Some(failure),
            AttemptOutcome::Completed { .. } => None,
        }
    }

    pub fn output(&self) -> Option<&[u8]> {
        match &self.outcome {
            AttemptOutcome::Completed { output } => Some(output),
            AttemptOutcome::Failed(_) => None,
        }
    }
}

/// A job's identity: its row id.
pub type JobId = i64;

/// Where a job is in its life. The allowed moves are written once, in `can_move_to`, and
/// every store operation that changes a state only moves along them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ready to run now.
    Available,
    /// Waiting for its scheduled time.
    Scheduled,
    /// Claimed by a node, under a lease.
    Running,
    /// Failed an attempt; waiting for its backoff to pass.
    Retryable,
    /// Finished with output.
    Completed,
    /// Failed its last attempt (or failed in a way retrying cannot fix): the dead letters.
    Discarded,
    /// Stopped by a user, or because a job it waited for failed.
    Cancelled,
    /// Waiting for the jobs it depends on to end.
    Held,
}

impl JobState {
    /// In the order of their `bit`s: a new state goes last, so stored bits keep meaning.
    pub const ALL: [JobState; 8] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
        JobState::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
            JobState::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// The state's bit in a unique job's set of states (`UniqueKey::states`); the same
    /// numbers are in the unique index of migration 0013.
    pub fn bit(self) -> u8 {
        1 << JobState::ALL
            .iter()
            .position(|state| *state == self)
            .expect("every state is in ALL")
    }

    /// A finished job never runs again unless a user retries it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Discarded | JobState::Cancelled
        )
    }

    /// The state machine. Insertion makes a job `available`, `scheduled` or `held`.
    pub fn can_move_to(self, next: JobState) -> bool {
        use JobState::*;
        match (self, next) {
            // its dependencies ended (and it runs, now or when scheduled); one failed, or a
            // user cancelled it
            (Held, Available | Scheduled | Cancelled) => true,
            // fetch; cancel
            (Available, Running | Cancelled) => true,
            // staging when due, or a user's retry; cancel
            (Scheduled | Retryable, Available | Cancelled) => true,
            // outcomes; snooze; rescue after the lease expired; cancel
            (Running, Completed | Retryable | Discarded | Scheduled | Available | Cancelled) => {
                true
            }
            // a user's retry of a finished job
            (Completed | Discarded | Cancelled, Available) => true,
            _ => false,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller enqueues: a call of `module.function(args)` and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub module: String,
    /// Runs this version of the module; `None` runs the latest at each attempt.
    pub module_version: Option<i32>,
    pub function: String,
    pub args: Vec<u8>,
    pub codec: Codec,
    /// Lower runs first; 0 is the default and the most urgent.
    pub priority: i16,
    pub max_attempts: i32,
    /// Runs no earlier than this; `None` means now.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub limits: LimitOverrides,
    /// A key no other job may hold while this one does: enqueueing again with it returns
    /// the job that holds it (an idempotency key, or a unique job's key).
    pub unique: Option<UniqueKey>,
    /// The partition the job counts in on a queue with partitions, chosen by the client;
    /// `None` lets the queue's partitioning derive it.
    pub partition_key: Option<String>,
    /// The jobs it waits for (stored ones: `JobRef::Stored`); it is `held` until each ended.
    pub depends_on: Vec<crate::compose::Dependency>,
    /// The job whose completed attempt enqueued it; set by the store.
    pub parent_id: Option<JobId>,
    /// The batch it belongs to; set by the store.
    pub batch_id: Option<i64>,
}

/// A job's unique key, and when the job holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    pub key: String,
    /// An idempotency key: held in every state until then.
    pub expires_at: Option<DateTime<Utc>>,
    /// A unique job's key: held while the job is in one of these states (`JobState::bit`s),
    /// never expiring.
    pub states: Option<u8>,
}

/// What an idempotency key is stored as: this, then the client's text.
pub const IDEMPOTENCY_PREFIX: &str = "idempotency:";

/// How long a job holds its idempotency key unless told otherwise.
pub const DEFAULT_IDEMPOTENCY_PERIOD: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

impl UniqueKey {
    /// An idempotency key a client chose, held for `period` from now.
    pub fn idempotency(key: &str, period: std::time::Duration) -> Result<UniqueKey, String> {
        if key.is_empty() || key.chars().count() > 255 || key.chars().any(char::is_control) {
            return Err(format!(
                "`{}` is not an idempotency key: use 1 to 255 printable characters",
                key.escape_debug()
            ));
        }
        let expires_at = chrono::Duration::from_std(period)
            .ok()
            .and_then(|period| Utc::now().checked_add_signed(period))
            .ok_or_else(|| "the idempotency period is too long".to_string())?;
        Ok(UniqueKey {
            // A namespace of its own, so that unique keys built from a job's call
            // (`crate::unique`) never collide with one a client chose.
            key: format!("{IDEMPOTENCY_PREFIX}{key}"),
            expires_at: Some(expires_at),
            states: None,
        })
    }
}

impl NewJob {
    pub const DEFAULT_QUEUE: &'static str = "default";
    pub const DEFAULT_MAX_ATTEMPTS: i32 = 20;

    /// The same job with other args.
    pub fn with_args(mut self, args: Vec<u8>, codec: Codec) -> NewJob {
        self.args = args;
        self.codec = codec;
        self
    }

    /// A JSON-args job on the default queue with default settings.
    pub fn json(module: &str, function: &str, args: &serde_json::Value) -> NewJob {
        NewJob {
            queue: NewJob::DEFAULT_QUEUE.to_string(),
            module: module.to_string(),
            module_version: None,
            function: function.to_string(),
            args: serde_json::to_vec(args).expect("a JSON value always serializes"),
            codec: Codec::Json,
            priority: 0,
            max_attempts: NewJob::DEFAULT_MAX_ATTEMPTS,
            scheduled_at: None,
            limits: LimitOverrides::default(),
            unique: None,
            partition_key: None,
            depends_on: Vec::new(),
            parent_id: None,
            batch_id: None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub module: String,
    pub module_version: Option<i32>,
    pub function: String,
    #[serde(skip)]
    pub args: Vec<u8>,
    pub codec: Codec,
    pub state: JobState,
    pub priority: i16,
    /// Attempts started so far, the running one included.
    pub attempt: i32,
    pub max_attempts: i32,
    pub inserted_at: DateTime<Utc>,
    pub scheduled_at: DateTime<Utc>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub lease_node: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub limits: LimitOverrides,
    #[serde(skip)]
    pub output: Option<Vec<u8>>,
    /// Attempts lost with their node (rescued after the lease expired). They are in
    /// `attempt` but do not count against `max_attempts`.
    pub lost_attempts: i32,
    /// The partition the job counts in, on a queue that had partitions when it was enqueued.
    pub partition_key: Option<String>,
    /// The job whose completed attempt enqueued this one.
    pub parent_id: Option<JobId>,
    /// The batch the job belongs to.
    pub batch_id: Option<i64>,
    /// How many jobs it waited for (it was `held` until they all ended).
    pub waits_for: i32,
}

impl Job {
    /// Attempts that count against `max_attempts`: those that ended, not those lost.
    pub fn counted_attempts(&self) -> i32 {
        self.attempt - self.lost_attempts
    }
}

/// How an attempt ended, as the history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttemptClass {
    Completed,
    Failed(FailureKind),
    /// The node running it stopped heartbeating; the job was rescued.
    LeaseExpired,
    /// The attempt was handed back unfinished at shutdown.
    Abandoned,
    /// Lost with its node once more than the poison limit allows: the job was dead-lettered.
    Poisoned,
    /// A user cancelled the job while this attempt ran; the node interrupted it.
    Cancelled,
}

impl AttemptClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptClass::Completed => "completed",
            AttemptClass::Failed(kind) => kind.as_str(),
            AttemptClass::LeaseExpired => "lease_expired",
            AttemptClass::Abandoned => "abandoned",
            AttemptClass::Poisoned => "poisoned",
            AttemptClass::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptClass> {
        match text {
            "completed" => Some(AttemptClass::Completed),
            "lease_expired" => Some(AttemptClass::LeaseExpired),
            "abandoned" => Some(AttemptClass::Abandoned),
            "poisoned" => Some(AttemptClass::Poisoned),
            "cancelled" => Some(AttemptClass::Cancelled),
            other => FailureKind::parse(other).map(AttemptClass::Failed),
        }
    }
}

impl fmt::Display for AttemptClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished attempt in a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub node: String,
    pub module_version: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: AttemptClass,
    pub message: Option<String>,
    pub trap_code: Option<String>,
    pub fuel_consumed: u64,
    pub duration: Duration,
    pub peak_memory_bytes: u64,
    pub logs: Vec<LogLine>,
    /// What the node saw as this attempt sent its job to the dead letters; `None` for every
    /// other attempt.
    pub context: Option<DiscardContext>,
}

/// The dead letter's forensics: the node's and the queue's state when an attempt discarded
/// its job, so an operator can tell a failing function from a saturated node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardContext {
    /// The Sluice version the node ran.
    pub node_version: String,
    /// Jobs the node held (claimed, running or finishing), across its queues.
    pub node_in_flight: u32,
    /// The queue's attempts running on the node, this one included.
    pub queue_running: u32,
    /// The queue's concurrency on the node then.
    pub queue_concurrency: u32,
}

/// What an API token may do; each role may do all the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// See everything.
    Read,
    /// Enqueue, and act on jobs and queues.
    Operate,
    /// Upload modules and manage tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Operate, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An uploaded module version, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    pub name: String,
    pub version: i32,
    pub digest: String,
    pub functions: Vec<JobFunction>,
    pub size_bytes: i64,
    pub uploaded_at: DateTime<Utc>,
}

impl ModuleInfo {
    pub fn exports(&self, function: &str) -> bool {
        self.functions.iter().any(|f| f.name == function)
    }

    /// Whether a job can call `function` of this module version.
    pub fn check_exports(&self, function: &str) -> Result<(), UnknownFunction> {
        if self.exports(function) {
            return Ok(());
        }
        let names: Vec<&str> = self.functions.iter().map(|f| f.name.as_str()).collect();
        Err(UnknownFunction {
            module: self.name.clone(),
            version: self.version,
            function: function.to_string(),
            exports: names.join(", "),
        })
    }
}

/// A call of a function the module does not export, refused before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module {module} v{version} exports no function `{function}`; it exports: {exports}")]
pub struct UnknownFunction {
    pub module: String,
    pub version: i32,
    pub function: String,
    pub exports: String,
}

/// Whether `name` can name a queue: 1 to 128 characters, none of them control characters.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(format!(
            "`{}` is not a queue name: use 1 to 128 printable characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a job's options: what the store would refuse, and queue names it cannot run.
pub fn check_options(job: &NewJob) -> Result<(), String> {
    if job.max_attempts < 1 {
        return Err("--max-attempts must be at least 1".into());
    }
    check_queue_name(&job.queue)?;
    if let Some(key) = &job.partition_key {
        check_partition_key(key)?;
    }
    job.limits.validate()
}

/// A partition key: what a client, a child job or a topic event may name.
pub fn check_partition_key(key: &str) -> Result<(), String> {
    if key.chars().count() > 255 || key.chars().any(char::is_control) {
        return Err("a partition key is at most 255 printable characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};

    #[test]
    fn running_is_entered_only_by_a_claim_of_an_available_job() {
        for from in JobState::ALL {
            assert_eq!(
                from.can_move_to(Running),
                from == Available,
                "{from} -> running"
            );
        }
    }

    #[test]
    fn finished_jobs_move_only_when_a_user_retries_them() {
        for from in [Completed, Discarded, Cancelled] {
            for to in JobState::ALL {
                assert_eq!(from.can_move_to(to), to == Available, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("done"), None);
    }
}
