//! The JSON the API speaks (and `--json` prints): typed views of the model, with their
//! OpenAPI schemas, and the requests the API accepts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::model::{AttemptClass, AttemptRecord, Codec, Job, JobFunction, JobState, ModuleInfo};
use crate::store::{NodeInfo, QueueSummary};

fn state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(JobState::ALL.iter().map(|state| state.as_str())))
        .build()
}

fn codec_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["json", "postcard"]))
        .build()
}

/// A job as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub queue: String,
    pub module: String,
    /// The pinned module version; null runs the latest at each attempt.
    pub module_version: Option<i32>,
    pub function: String,
    /// JSON args as JSON; postcard args as a hex string.
    pub args: serde_json::Value,
    #[schema(schema_with = codec_schema)]
    pub codec: Codec,
    #[schema(schema_with = state_schema)]
    pub state: JobState,
    pub priority: i16,
    /// Attempts started so far, the running one included.
    pub attempt: i32,
    pub max_attempts: i32,
    pub inserted_at: DateTime<Utc>,
    pub scheduled_at: DateTime<Utc>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub lease_node: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The completed attempt's output (JSON), or null.
    pub output: serde_json::Value,
    /// The partition it counts in, on a queue that had partitions when it was enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// The job whose completed attempt enqueued this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<i64>,
    /// The batch it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<i64>,
    /// How many jobs it waits (or waited) for; it is `held` until they have all ended.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits_for: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> JobView {
        let args = match job.codec {
            Codec::Json => serde_json::from_slice(&job.args).unwrap_or(serde_json::Value::Null),
            Codec::Postcard => serde_json::Value::String(hex::encode(&job.args)),
        };
        JobView {
            id: job.id,
            queue: job.queue.clone(),
            module: job.module.clone(),
            module_version: job.module_version,
            function: job.function.clone(),
            args,
            codec: job.codec,
            state: job.state,
            priority: job.priority,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            inserted_at: job.inserted_at,
            scheduled_at: job.scheduled_at,
            attempted_at: job.attempted_at,
            finalized_at: job.finalized_at,
            lease_node: job.lease_node.clone(),
            lease_expires_at: job.lease_expires_at,
            output: output_value(job.output.as_deref()),
            partition_key: job.partition_key.clone(),
            parent_id: job.parent_id,
            batch_id: job.batch_id,
            waits_for: job.waits_for,
        }
    }
}

/// A job's output as JSON (it is stored as JSON bytes), or null.
pub fn output_value(output: Option<&[u8]>) -> serde_json::Value {
    output
        .map(|bytes| {
            serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            })
        })
        .unwrap_or(serde_json::Value::Null)
}

/// One line a guest wrote during an attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogLineView {
    /// `stdout`, `stderr` or `log`.
    pub stream: String,
    pub text: String,
}

/// One finished attempt of a job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    /// How it ended: `completed`, a failure class (`trap`, `out_of_fuel`, ...), or
    /// `lease_expired`, `abandoned`, `poisoned`, `cancelled`.
    pub outcome: String,
    /// What the failure class means, for failures.
    pub explanation: Option<String>,
    /// The error, with the guest's backtrace where there is one.
    pub message: Option<String>,
    pub trap_code: Option<String>,
    pub node: String,
    pub module_version: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub fuel_consumed: u64,
    pub duration_ms: f64,
    pub peak_memory_bytes: u64,
    pub logs: Vec<LogLineView>,
    /// The node's and queue's state when this attempt discarded its job; null otherwise.
    pub context: Option<DiscardContextView>,
}

/// What a node saw as an attempt sent its job to the dead letters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiscardContextView {
    /// The Sluice version the node ran.
    pub node_version: String,
    /// Jobs the node held then (claimed, running or finishing), across its queues.
    pub node_in_flight: u32,
    /// The queue's attempts running on the node, this one included.
    pub queue_running: u32,
    /// The queue's concurrency on the node then.
    pub queue_concurrency: u32,
}

impl From<&crate::model::DiscardContext> for DiscardContextView {
    fn from(c: &crate::model::DiscardContext) -> DiscardContextView {
        DiscardContextView {
            node_version: c.node_version.clone(),
            node_in_flight: c.node_in_flight,
            queue_running: c.queue_running,
            queue_concurrency: c.queue_concurrency,
        }
    }
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> AttemptView {
        AttemptView {
            attempt: a.attempt,
            outcome: a.outcome.as_str().to_string(),
            explanation: match a.outcome {
                AttemptClass::Failed(kind) => Some(kind.explanation().to_string()),
                _ => None,
            },
            message: a.message.clone(),
            trap_code: a.trap_code.clone(),
            node: a.node.clone(),
            module_version: a.module_version,
            started_at: a.started_at,
            finished_at: a.finished_at,
            fuel_consumed: a.fuel_consumed,
            duration_ms: a.duration.as_secs_f64() * 1000.0,
            peak_memory_bytes: a.peak_memory_bytes,
            logs: a
                .logs
                .iter()
                .map(|line| LogLineView {
                    stream: serde_json::to_value(line.stream)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_lowercase))
                        .unwrap_or_default(),
                    text: line.text.clone(),
                })
                .collect(),
            context: a.context.as_ref().map(DiscardContextView::from),
        }
    }
}

/// A job with every attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobDetailView {
    #[serde(flatten)]
    pub job: JobView,
    pub attempts: Vec<AttemptView>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
    /// Set when a filter on module, function or args text read only a window of ids: this
    /// page looked at jobs down to this id (and no further, however few it found);
    /// `next_before` goes on below it.
    #[serde(default)]
    pub searched_to: Option<i64>,
}

/// A job function a module exports.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionView {
    pub name: String,
    pub description: String,
}

impl From<&JobFunction> for FunctionView {
    fn from(f: &JobFunction) -> FunctionView {
        FunctionView {
            name: f.name.clone(),
            description: f.description.clone(),
        }
    }
}

/// One uploaded version of a module.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModuleView {
    pub name: String,
    pub version: i32,
    /// SHA-256 of the component's bytes.
    pub digest: String,
    pub size_bytes: i64,
    pub uploaded_at: DateTime<Utc>,
    pub functions: Vec<FunctionView>,
}

impl From<&ModuleInfo> for ModuleView {
    fn from(m: &ModuleInfo) -> ModuleView {
        ModuleView {
            name: m.name.clone(),
            version: m.version,
            digest: m.digest.clone(),
            size_bytes: m.size_bytes,
            uploaded_at: m.uploaded_at,
            functions: m.functions.iter().map(FunctionView::from).collect(),
        }
    }
}

/// The result of an upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadView {
    #[serde(flatten)]
    pub module: ModuleView,
    /// These bytes were uploaded before: no new version was made.
    pub already_present: bool,
}

/// A queue with its job counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub paused: bool,
    /// The per-node concurrency set at run time; null: each node's own setting.
    pub concurrency: Option<u32>,
    /// The limits every node obeys for it; null: none.
    pub limits: Option<crate::limits::QueueLimits>,
    /// The bounds each node scales its concurrency between; null: it does not autoscale.
    pub autoscale: Option<crate::limits::Autoscale>,
    /// While its rate limit holds starts back: when the next may start.
    pub next_start_at: Option<DateTime<Utc>>,
    /// Jobs by state (every state present, zero included).
    pub counts: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    /// States whose count stopped at the cap (10,000 jobs of a state across all queues, so
    /// the list never waits on a scan of a large table): those counts are lower bounds.
    pub at_least: Vec<String>,
}

impl From<&QueueSummary> for QueueView {
    fn from(q: &QueueSummary) -> QueueView {
        QueueView {
            name: q.name.clone(),
            paused: q.paused,
            concurrency: q.concurrency,
            limits: q.limits.clone(),
            autoscale: q.autoscale.clone(),
            next_start_at: q.next_start_at,
            counts: JobState::ALL
                .iter()
                .map(|state| (state.as_str().to_string(), q.count(*state)))
                .collect(),
            at_least: q.capped.iter().map(|s| s.as_str().to_string()).collect(),
        }
    }
}

/// A node in the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub queues: Vec<String>,
    /// Attempts running on it at its last heartbeat.
    pub running: u32,
    /// The Sluice version it runs.
    pub version: String,
    /// Its lease, in milliseconds: it beats three times per lease.
    pub lease_ms: u64,
    /// It is the leader (stages due jobs, rescues expired leases, prunes).
    pub leader: bool,
    /// `up`; `late` (missed a beat, its jobs still its own); `dead` (no beat for a lease:
    /// its jobs are rescued; forgotten an hour later).
    pub health: String,
}

impl NodeView {
    /// The node as seen at `now`.
    pub fn at(n: &NodeInfo, now: DateTime<Utc>) -> NodeView {
        NodeView {
            id: n.id.clone(),
            host: n.host.clone(),
            pid: n.pid,
            started_at: n.started_at,
            heartbeat_at: n.heartbeat_at,
            queues: n.queues.clone(),
            running: n.running,
            version: n.version.clone(),
            lease_ms: u64::try_from(n.lease.as_millis()).unwrap_or(u64::MAX),
            leader: n.leader,
            health: n.health(now).as_str().to_string(),
        }
    }
}

/// A call to enqueue: a module's job function with its args and options.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The module's name, as uploaded.
    pub module: String,
    /// The job function to call.
    pub function: String,
    /// The args: any JSON value (`codec` json, the default), or a hex string of postcard
    /// bytes (`codec` postcard).
    #[serde(default)]
    pub args: serde_json::Value,
    #[serde(default)]
    #[schema(schema_with = codec_schema)]
    pub codec: Option<Codec>,
    /// Defaults to `default`.
    pub queue: Option<String>,
    /// Lower runs first; defaults to 0.
    pub priority: Option<i16>,
    /// Defaults to 20.
    pub max_attempts: Option<i32>,
    /// Run no earlier than this time.
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this many milliseconds from now.
    pub run_in_ms: Option<u64>,
    /// Pin a module version; by default each attempt runs the latest.
    pub version: Option<i32>,
    /// Fuel budget of each attempt.
    pub fuel: Option<u64>,
    /// Deadline of each attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap of each attempt, in bytes.
    pub memory: Option<u64>,
    /// An idempotency key: while a job holds it (24 hours by default), enqueueing with it
    /// again returns that job instead of a new one. 1 to 255 printable characters.
    pub idempotency_key: Option<String>,
    /// A unique job: while a job of the same call (module, function, args or the fields
    /// named, and the queue and period if asked) is unfinished, or in a finished state
    /// named, enqueueing it again returns that job. Not with `idempotency_key`.
    pub unique: Option<crate::unique::UniqueOptions>,
    /// The partition the job counts in on a queue with partitions, in place of the one the
    /// queue's partitioning derives. At most 255 printable characters.
    pub partition_key: Option<String>,
    /// Jobs to wait for: the job is `held` until each has completed, been discarded or
    /// been cancelled, and then reads their outputs.
    #[serde(default)]
    pub depends_on: Vec<DependencyRequest>,
}

/// A job to wait for: a stored job by id, or (in a bulk enqueue) an earlier job of the
/// same request by its index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DependencyRequest {
    /// A stored job's id.
    pub job: Option<i64>,
    /// The index of an earlier job of the same bulk request.
    pub index: Option<u32>,
    /// If it is discarded or cancelled: `cancel` this job (the default) or `run` it anyway.
    #[schema(schema_with = if_failed_schema)]
    pub if_failed: Option<crate::compose::IfFailed>,
}

fn if_failed_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["cancel", "run"]))
        .build()
}

/// Many calls to enqueue, stored together or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEnqueueRequest {
    pub jobs: Vec<EnqueueRequest>,
}

/// The ids of enqueued jobs, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    pub ids: Vec<i64>,
    /// Those of `ids` that already existed: their call named an idempotency key a job held,
    /// or was a unique job whose key a job held.
    pub existing: Vec<i64>,
}

/// A job that was enqueued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnqueuedOne {
    pub id: i64,
    /// The job already existed: it held the idempotency key named, or the unique job's key
    /// (the answer is then 200, not 201).
    pub existing: bool,
}

/// Filters and paging of a job listing.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// One of the job states.
    pub state: Option<String>,
    pub queue: Option<String>,
    pub module: Option<String>,
    pub function: Option<String>,
    /// Text the JSON args contain, searched among the newest 10,000 jobs the other
    /// filters match.
    pub args: Option<String>,
    /// Only jobs with a smaller id (the cursor: a page's `next_before`).
    pub before: Option<i64>,
    /// Only jobs with a larger id.
    pub after: Option<i64>,
    /// At most this many (1 to 1000; 50 by default).
    pub limit: Option<u32>,
}

/// A retry that replaces the job's args.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// The new args, as JSON (the job's codec becomes `json`); absent (or `{}` as the whole
    /// body): the job keeps its own.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
}

/// The jobs a bulk action is for: listed by id, or every job a filter matches (newest first,
/// up to the filter's `limit`, 1000 at most and by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkActionRequest {
    pub ids: Option<Vec<i64>>,
    pub filter: Option<JobFilter>,
}

/// A job a bulk action could not be done to, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedJob {
    pub id: i64,
    /// The problem code a single action would have answered (`invalid_transition`, ...).
    pub code: String,
    pub detail: String,
}

/// What a bulk action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkActionView {
    /// The jobs it was done to.
    pub done: Vec<i64>,
    /// The jobs it did not fit, each with the reason.
    pub refused: Vec<RefusedJob>,
    /// The filter matched more jobs than its limit: send it again for the rest.
    pub more: bool,
}

/// A job's place in a composition: the job whose attempt enqueued it, the jobs its own
/// attempts enqueued, the jobs it waits for and those waiting for it, and its batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobTreeView {
    pub job: JobView,
    pub parent: Option<JobView>,
    /// The first 1,000 children, by id.
    pub children: Vec<JobView>,
    /// How many children it has in all.
    pub children_total: u64,
    /// The jobs it waits (or waited) for, in the order it named them.
    pub waits_for: Vec<DependencyView>,
    /// The jobs that wait (or waited) for it (the first 1,000).
    pub waited_on_by: Vec<DependencyView>,
    pub batch: Option<super::batches::BatchView>,
}

/// One end of a dependency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DependencyView {
    pub job_id: i64,
    /// `module.function` of that job; empty once it is deleted.
    pub function: String,
    /// Its state (`deleted` once it no longer exists).
    pub state: String,
    /// If the job waited for is discarded or cancelled: `cancel` the waiting one, or `run` it.
    pub if_failed: String,
}

impl From<&crate::store::DependencyLink> for DependencyView {
    fn from(link: &crate::store::DependencyLink) -> DependencyView {
        DependencyView {
            job_id: link.job_id,
            function: link.function.clone(),
            state: link.state.clone(),
            if_failed: link.if_failed.as_str().to_string(),
        }
    }
}

impl From<&crate::store::JobTree> for JobTreeView {
    fn from(tree: &crate::store::JobTree) -> JobTreeView {
        JobTreeView {
            job: JobView::from(&tree.job),
            parent: tree.parent.as_ref().map(JobView::from),
            children: tree.children.iter().map(JobView::from).collect(),
            children_total: tree.children_total,
            waits_for: tree.waits_for.iter().map(DependencyView::from).collect(),
            waited_on_by: tree.waited_on_by.iter().map(DependencyView::from).collect(),
            batch: tree.batch.as_ref().map(super::batches::BatchView::from),
        }
    }
}
