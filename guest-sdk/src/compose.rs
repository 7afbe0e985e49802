//! Composition from inside a job: child jobs, batches, topics, and the outputs of the jobs
//! this one waited for.
//!
//! What an attempt enqueues, opens or publishes takes effect only when the attempt
//! completes, in the same transaction: a failed, timed-out or lost attempt leaves nothing
//! behind, so a retried job never creates duplicates.
//!
//! ```ignore
//! use sluice_guest_sdk::compose::{self, Job};
//!
//! fn split(args: Text) -> Result<usize, JobFailure> {
//!     let mut parts = Vec::new();
//!     for line in args.text.lines() {
//!         parts.push(Job::new("words", "count").args(&Line { line })?.enqueue()?);
//!     }
//!     // Fan-in: runs once every part has ended, and reads their outputs.
//!     Job::new("words", "total").depends_on_all(&parts).enqueue()?;
//!     Ok(parts.len())
//! }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::JobFailure;
use crate::bindings::sluice::job::compose::{
    self as host, BatchCallbacks, Dependency as WitDependency, IfFailed, JobCall, JobOptions,
    JobRef,
};
use crate::bindings::sluice::job::types::Codec;

/// A job this attempt enqueued; it exists once the attempt completes. Later children may
/// depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child(u32);

impl Child {
    /// A handle as the host numbers children (0 for the first): for tests of the host's
    /// checks. `enqueue` returns the real ones.
    #[doc(hidden)]
    pub fn from_handle(handle: u32) -> Child {
        Child(handle)
    }
}

/// A batch this attempt opened; children join it with [`Job::in_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch(u32);

/// A job to wait for: one of this attempt's children, or a stored job by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Child(Child),
    Job(i64),
}

impl From<Child> for Waited {
    fn from(child: Child) -> Waited {
        Waited::Child(child)
    }
}

impl From<&Child> for Waited {
    fn from(child: &Child) -> Waited {
        Waited::Child(*child)
    }
}

impl From<i64> for Waited {
    fn from(id: i64) -> Waited {
        Waited::Job(id)
    }
}

impl Waited {
    fn to_wit(self) -> JobRef {
        match self {
            Waited::Child(Child(handle)) => JobRef::Child(handle),
            Waited::Job(id) => JobRef::Job(id),
        }
    }
}

/// A call of `module.function(args)`, for a child job or a batch callback.
#[derive(Debug, Clone)]
pub struct Call {
    module: String,
    function: String,
    args: Result<Vec<u8>, String>,
    codec: Codec,
}

impl Call {
    /// A call with JSON `null` args (what a function of no argument ignores).
    pub fn new(module: impl Into<String>, function: impl Into<String>) -> Call {
        Call {
            module: module.into(),
            function: function.into(),
            args: Ok(b"null".to_vec()),
            codec: Codec::Json,
        }
    }

    /// Args as JSON.
    pub fn args<A: Serialize + ?Sized>(mut self, args: &A) -> Call {
        self.args = serde_json::to_vec(args).map_err(|e| format!("cannot serialize args: {e}"));
        self.codec = Codec::Json;
        self
    }

    /// Args as postcard, the compact binary codec.
    pub fn postcard_args<A: Serialize + ?Sized>(mut self, args: &A) -> Call {
        self.args = postcard::to_stdvec(args).map_err(|e| format!("cannot serialize args: {e}"));
        self.codec = Codec::Postcard;
        self
    }

    fn to_wit(&self) -> Result<JobCall, JobFailure> {
        let args = self.args.clone().map_err(JobFailure::failed)?;
        Ok(JobCall {
            module: self.module.clone(),
            function: self.function.clone(),
            args,
            codec: self.codec,
        })
    }
}

/// A child job to enqueue: a call and how it runs.
#[derive(Debug, Clone)]
pub struct Job {
    call: Call,
    options: JobOptions,
}

impl Job {
    pub fn new(module: impl Into<String>, function: impl Into<String>) -> Job {
        Job::from_call(Call::new(module, function))
    }

    pub fn from_call(call: Call) -> Job {
        Job {
            call,
            options: JobOptions {
                queue: None,
                priority: None,
                max_attempts: None,
                delay_ms: None,
                partition_key: None,
                depends_on: Vec::new(),
                batch: None,
            },
        }
    }

    /// Args as JSON.
    pub fn args<A: Serialize + ?Sized>(mut self, args: &A) -> Job {
        self.call = self.call.args(args);
        self
    }

    /// Args as postcard.
    pub fn postcard_args<A: Serialize + ?Sized>(mut self, args: &A) -> Job {
        self.call = self.call.postcard_args(args);
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Job {
        self.options.queue = Some(queue.into());
        self
    }

    /// Lower runs first; 0 is the default and the most urgent.
    pub fn priority(mut self, priority: i16) -> Job {
        self.options.priority = Some(priority);
        self
    }

    pub fn max_attempts(mut self, max_attempts: i32) -> Job {
        self.options.max_attempts = Some(max_attempts);
        self
    }

    /// Runs no earlier than `delay` after this attempt completes.
    pub fn delay(mut self, delay: Duration) -> Job {
        self.options.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The partition the job counts in, on a queue with partitions: jobs of one key run in
    /// order when the queue allows one at a time per key.
    pub fn partition_key(mut self, key: impl Into<String>) -> Job {
        self.options.partition_key = Some(key.into());
        self
    }

    /// Waits for `job`; if it is discarded or cancelled, this job is cancelled too.
    pub fn depends_on(self, job: impl Into<Waited>) -> Job {
        self.waiting(job.into(), IfFailed::Cancel)
    }

    /// Waits for `job` and runs whatever its end: `dependencies()` tells how it ended.
    pub fn depends_on_anyway(self, job: impl Into<Waited>) -> Job {
        self.waiting(job.into(), IfFailed::Run)
    }

    /// Waits for every one of `jobs` (a fan-in); cancelled if any is discarded or cancelled.
    pub fn depends_on_all<'a>(mut self, jobs: impl IntoIterator<Item = &'a Child>) -> Job {
        for child in jobs {
            self = self.depends_on(child);
        }
        self
    }

    /// Waits for every one of `jobs` and runs whatever their ends.
    pub fn depends_on_all_anyway<'a>(mut self, jobs: impl IntoIterator<Item = &'a Child>) -> Job {
        for child in jobs {
            self = self.depends_on_anyway(child);
        }
        self
    }

    fn waiting(mut self, job: Waited, if_failed: IfFailed) -> Job {
        self.options.depends_on.push(WitDependency {
            on: job.to_wit(),
            if_failed,
        });
        self
    }

    /// Joins a batch this attempt opened.
    pub fn in_batch(mut self, batch: Batch) -> Job {
        self.options.batch = Some(batch.0);
        self
    }

    /// Enqueues the job, to be created when this attempt completes. A refusal (no such
    /// module or function, bad options, too many children) is an error the job may handle;
    /// `?` fails the attempt with it.
    pub fn enqueue(self) -> Result<Child, JobFailure> {
        let call = self.call.to_wit()?;
        host::enqueue(&call, &self.options)
            .map(Child)
            .map_err(JobFailure::failed)
    }
}

/// What a batch runs when its jobs end. Each callback runs once, with JSON args
/// `{"batch": ID, "counts": {"completed": N, "discarded": N, "cancelled": N}, "context": C}`
/// where `C` is the callback's own args.
#[derive(Debug, Clone, Default)]
pub struct Callbacks {
    on_finished: Option<Call>,
    on_success: Option<Call>,
    on_discard: Option<Call>,
    queue: Option<String>,
}

impl Callbacks {
    pub fn new() -> Callbacks {
        Callbacks::default()
    }

    /// When every job of the batch is completed, discarded or cancelled.
    pub fn on_finished(mut self, call: Call) -> Callbacks {
        self.on_finished = Some(call);
        self
    }

    /// When every job of the batch completed.
    pub fn on_success(mut self, call: Call) -> Callbacks {
        self.on_success = Some(call);
        self
    }

    /// When the first job of the batch is discarded.
    pub fn on_discard(mut self, call: Call) -> Callbacks {
        self.on_discard = Some(call);
        self
    }

    /// The queue the callbacks run on.
    pub fn queue(mut self, queue: impl Into<String>) -> Callbacks {
        self.queue = Some(queue.into());
        self
    }
}

impl Batch {
    /// Opens a batch, created when this attempt completes.
    pub fn open(callbacks: Callbacks) -> Result<Batch, JobFailure> {
        let convert = |call: &Option<Call>| call.as_ref().map(Call::to_wit).transpose();
        let callbacks = BatchCallbacks {
            on_finished: convert(&callbacks.on_finished)?,
            on_success: convert(&callbacks.on_success)?,
            on_discard: convert(&callbacks.on_discard)?,
            queue: callbacks.queue,
        };
        host::open_batch(&callbacks)
            .map(Batch)
            .map_err(JobFailure::failed)
    }
}

/// Publishes `event` (as JSON) to `topic`: each subscription gets its own job when this
/// attempt completes.
pub fn publish<E: Serialize + ?Sized>(topic: &str, event: &E) -> Result<(), JobFailure> {
    publish_to(topic, None, event)
}

/// `publish` with a partition key, so the subscriptions' jobs of one key run in order on
/// queues with partitions.
pub fn publish_keyed<E: Serialize + ?Sized>(
    topic: &str,
    key: &str,
    event: &E,
) -> Result<(), JobFailure> {
    publish_to(topic, Some(key), event)
}

fn publish_to<E: Serialize + ?Sized>(
    topic: &str,
    key: Option<&str>,
    event: &E,
) -> Result<(), JobFailure> {
    let args = serde_json::to_vec(event)?;
    host::publish(topic, &args, Codec::Json, key).map_err(JobFailure::failed)
}

/// The job this attempt runs, and where it sits in a composition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub id: i64,
    pub attempt: i32,
    pub parent: Option<i64>,
    pub batch: Option<i64>,
}

pub fn current() -> Context {
    let context = host::current();
    Context {
        id: context.id,
        attempt: context.attempt,
        parent: context.parent,
        batch: context.batch,
    }
}

/// A job this one waited for, as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub job_id: i64,
    pub module: String,
    pub function: String,
    /// `completed`, `discarded`, `cancelled`, or `deleted`.
    pub state: String,
    inline: Option<Vec<u8>>,
    pub output_bytes: u64,
}

impl Dependency {
    pub fn completed(&self) -> bool {
        self.state == "completed"
    }

    /// Whether its output came with the list (false beyond the inline cap, and when it did
    /// not complete).
    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }

    /// Its output, decoded from JSON; fetched from the host when it was too large to come
    /// inline. An error for a dependency that did not complete.
    pub fn output<T: DeserializeOwned>(&self) -> Result<T, JobFailure> {
        if !self.completed() {
            return Err(JobFailure::failed(format!(
                "job {} ({}.{}) ended {}, with no output",
                self.job_id, self.module, self.function, self.state
            )));
        }
        let fetched;
        let bytes = match &self.inline {
            Some(bytes) => bytes,
            None => {
                fetched = host::dependency_output(self.job_id).map_err(JobFailure::failed)?;
                &fetched
            }
        };
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The raw output of a job this one waited for, read from the host. The host refuses any
/// other job's.
pub fn read_output(job_id: i64) -> Result<Vec<u8>, JobFailure> {
    host::dependency_output(job_id).map_err(JobFailure::failed)
}

/// The jobs this job waited for, in the order it named them.
pub fn dependencies() -> Vec<Dependency> {
    host::dependencies()
        .into_iter()
        .map(|found| Dependency {
            job_id: found.job_id,
            module: found.module,
            function: found.function,
            state: found.state,
            inline: found.output,
            output_bytes: found.output_bytes,
        })
        .collect()
}

/// The outputs of every job this one waited for, decoded, in order; an error if any did
/// not complete.
pub fn outputs<T: DeserializeOwned>() -> Result<Vec<T>, JobFailure> {
    dependencies().iter().map(Dependency::output).collect()
}
