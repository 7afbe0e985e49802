//! Composition: what one attempt starts (child jobs, batches, topic events), held until the
//! attempt completes and written with its completion; and what a job waits for.
//!
//! The sandbox fills a `Composed` as the guest calls `sluice:job/compose@0.2.0`, checking
//! each request and its bounds there so the guest can handle a refusal. The store writes it
//! in the transaction that records the attempt as completed, and only then: a failed,
//! timed-out or lost attempt leaves nothing behind.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::model::{Codec, JobId, LimitOverrides, NewJob};

/// The most child jobs (and topic events) one attempt may leave behind: room for a fan-out
/// of 10,000 with its fan-in and callbacks, twice over.
pub const MAX_CHILDREN: usize = 20_000;
/// The most batches one attempt may open.
pub const MAX_BATCHES: usize = 100;
/// The most bytes of args (children, events and callbacks together) one attempt may hold.
pub const MAX_COMPOSED_BYTES: usize = 64 << 20;
/// The most dependencies one attempt's children may name in all: a fan-in of every child.
pub const MAX_DEPENDENCIES: usize = 2 * MAX_CHILDREN;
/// The most bytes of dependency outputs a job receives inline; beyond, it reads each one.
pub const INLINE_OUTPUTS_BYTES: usize = 4 << 20;
/// The longest topic name.
pub const MAX_TOPIC_BYTES: usize = 255;

/// A job a dependency names: one stored already, or a sibling created by the same attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobRef {
    Stored(JobId),
    /// The index of an earlier child of the same attempt: a child can only wait for one
    /// enqueued before it, so what one attempt composes is acyclic by construction.
    Child(u32),
}

/// One job waited for, and what to do if it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub on: JobRef,
    pub if_failed: IfFailed,
}

/// What a dependent does when a job it waits for is discarded or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfFailed {
    /// Cancel the dependent, and in turn whatever waits on it.
    #[default]
    Cancel,
    /// Run it anyway.
    Run,
}

impl IfFailed {
    pub fn as_str(self) -> &'static str {
        match self {
            IfFailed::Cancel => "cancel",
            IfFailed::Run => "run",
        }
    }

    pub fn parse(text: &str) -> Option<IfFailed> {
        match text {
            "cancel" => Some(IfFailed::Cancel),
            "run" => Some(IfFailed::Run),
            _ => None,
        }
    }
}

/// A call of `module.function(args)`: a child's, or a batch callback's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSpec {
    pub module: String,
    pub function: String,
    pub args: Vec<u8>,
    pub codec: Codec,
}

/// A child job as the guest asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildJob {
    pub call: CallSpec,
    pub queue: Option<String>,
    pub priority: Option<i16>,
    pub max_attempts: Option<i32>,
    /// Runs no earlier than this long after the parent's completion.
    pub delay_ms: Option<u64>,
    pub partition_key: Option<String>,
    pub depends_on: Vec<Dependency>,
    /// The index of a batch the same attempt opened.
    pub batch: Option<u32>,
}

/// What a batch runs when its jobs end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCallbacks {
    pub on_finished: Option<CallSpec>,
    pub on_success: Option<CallSpec>,
    pub on_discard: Option<CallSpec>,
    pub queue: Option<String>,
}

impl BatchCallbacks {
    pub fn calls(&self) -> impl Iterator<Item = &CallSpec> {
        [&self.on_finished, &self.on_success, &self.on_discard]
            .into_iter()
            .flatten()
    }
}

/// An event published to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub topic: String,
    pub args: Vec<u8>,
    pub codec: Codec,
    pub partition_key: Option<String>,
}

/// Everything one attempt composed, in the order the guest asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composed {
    pub children: Vec<ChildJob>,
    pub batches: Vec<BatchCallbacks>,
    pub published: Vec<Published>,
}

impl Composed {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && self.batches.is_empty() && self.published.is_empty()
    }
}

/// Checks a topic's name: what `subscribe` and `publish` both accept.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty()
        || topic.len() > MAX_TOPIC_BYTES
        || topic.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "`{}` is not a topic name: use 1 to {MAX_TOPIC_BYTES} bytes without spaces or control characters",
            topic.escape_debug()
        ));
    }
    Ok(())
}

pub use crate::model::check_partition_key;

/// Args a child or an event may carry: within the enqueue cap, and JSON that parses when
/// they say they are JSON (a child refused now is better than one failing later).
pub fn check_args(args: &[u8], codec: Codec) -> Result<(), String> {
    let cap = crate::store::DEFAULT_MAX_ARGS_BYTES;
    if args.len() > cap {
        return Err(format!(
            "the args are {} bytes, more than the {cap} a job may have",
            args.len()
        ));
    }
    if codec == Codec::Json
        && let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(args)
    {
        return Err(format!("the args are not valid JSON: {error}"));
    }
    Ok(())
}

impl ChildJob {
    /// The job to insert when the parent completes at `now`, with `sluice enqueue`'s
    /// defaults for what the guest left unset.
    pub fn new_job(&self, now: DateTime<Utc>) -> NewJob {
        let call = &self.call;
        NewJob {
            queue: self
                .queue
                .clone()
                .unwrap_or_else(|| NewJob::DEFAULT_QUEUE.to_string()),
            module: call.module.clone(),
            module_version: None,
            function: call.function.clone(),
            args: call.args.clone(),
            codec: call.codec,
            priority: self.priority.unwrap_or(0),
            max_attempts: self.max_attempts.unwrap_or(NewJob::DEFAULT_MAX_ATTEMPTS),
            scheduled_at: self.delay_ms.map(|ms| {
                let ms = i64::try_from(ms.min(MAX_DELAY_MS)).unwrap_or(0);
                now + chrono::Duration::milliseconds(ms)
            }),
            limits: LimitOverrides::default(),
            unique: None,
            partition_key: self.partition_key.clone(),
            // Siblings are named by handle here; the store turns handles into ids.
            depends_on: self.depends_on.clone(),
            parent_id: None,
            batch_id: None,
        }
    }
}

/// What the completions of one outcome batch composed, written as one enqueue: a store
/// opens `batches` (in order), reads the subscriptions of `topics`, and inserts `jobs`
/// once, so a flush of a thousand parents costs a few statements, not a few per parent.
pub struct CompletionsComposed<'a> {
    completions: &'a [(JobId, &'a Composed)],
}

impl<'a> CompletionsComposed<'a> {
    pub fn new(completions: &'a [(JobId, &'a Composed)]) -> CompletionsComposed<'a> {
        CompletionsComposed { completions }
    }

    /// The batches opened, in order: the parent that opened each, its callbacks, and how
    /// many of the parent's children join it.
    pub fn batches(&self) -> Vec<(JobId, &'a BatchCallbacks, usize)> {
        let mut batches = Vec::new();
        for (parent, composed) in self.completions {
            for (handle, callbacks) in composed.batches.iter().enumerate() {
                let total = composed
                    .children
                    .iter()
                    .filter(|child| child.batch == Some(handle as u32))
                    .count();
                batches.push((*parent, callbacks, total));
            }
        }
        batches
    }

    /// The topics published to, each once.
    pub fn topics(&self) -> Vec<&'a str> {
        let mut topics: Vec<&str> = self
            .completions
            .iter()
            .flat_map(|(_, composed)| composed.published.iter().map(|e| e.topic.as_str()))
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// Every completion's children (parent and batch set, their handles on siblings shifted
    /// to indexes of this one enqueue), each followed by its events' deliveries.
    /// `batch_ids` are the ids of `batches()`, in its order.
    pub fn jobs(
        &self,
        batch_ids: &[JobId],
        subscriptions: &[crate::store::Subscription],
        now: DateTime<Utc>,
    ) -> Vec<NewJob> {
        let mut jobs = Vec::new();
        let mut first_batch = 0;
        for (parent, composed) in self.completions {
            let first_child = jobs.len() as u32;
            for child in &composed.children {
                let mut job = child.new_job(now);
                job.parent_id = Some(*parent);
                job.batch_id = child
                    .batch
                    .and_then(|handle| batch_ids.get(first_batch + handle as usize).copied());
                for dependency in &mut job.depends_on {
                    if let JobRef::Child(sibling) = &mut dependency.on {
                        *sibling += first_child;
                    }
                }
                jobs.push(job);
            }
            jobs.extend(deliveries(
                &composed.published,
                subscriptions,
                Some(*parent),
            ));
            first_batch += composed.batches.len();
        }
        jobs
    }
}

/// The longest a child may be delayed: a year.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;

/// The jobs an event becomes: one per subscription of its topic, in the subscriptions'
/// order, with `parent` set when a job's attempt published it.
pub fn deliveries(
    events: &[Published],
    subscriptions: &[crate::store::Subscription],
    parent: Option<JobId>,
) -> Vec<NewJob> {
    let mut jobs = Vec::new();
    for event in events {
        for subscription in subscriptions.iter().filter(|s| s.topic == event.topic) {
            let mut job = NewJob::json(
                &subscription.module,
                &subscription.function,
                &serde_json::Value::Null,
            )
            .with_args(event.args.clone(), event.codec);
            job.queue = subscription.queue.clone();
            job.max_attempts = subscription.max_attempts;
            job.partition_key = event.partition_key.clone();
            job.parent_id = parent;
            jobs.push(job);
        }
    }
    jobs
}

/// A job as its dependent sees it once it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyResult {
    pub job_id: JobId,
    pub module: String,
    pub function: String,
    /// `completed`, `discarded`, `cancelled`, or `deleted`.
    pub state: String,
    /// The output, when it completed and fits inline.
    pub output: Option<Vec<u8>>,
    pub output_bytes: u64,
}

/// The job an attempt runs, as the guest may ask about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    pub id: JobId,
    pub attempt: i32,
    pub parent: Option<JobId>,
    pub batch: Option<i64>,
    /// The jobs it waited for, in the order it named them.
    pub dependencies: Vec<DependencyResult>,
}

/// Keeps the first outputs inline while they fit in `INLINE_OUTPUTS_BYTES` together; the
/// rest keep only their size, for the guest to read one by one.
pub fn inline_outputs(results: &mut [DependencyResult]) {
    let mut room = INLINE_OUTPUTS_BYTES;
    for result in results {
        match &result.output {
            Some(output) if output.len() <= room => room -= output.len(),
            Some(_) => {
                result.output = None;
                room = 0;
            }
            None => {}
        }
    }
}

/// The dependencies of a batch of new jobs, if any has one: what the store inserts after
/// the jobs themselves.
pub fn dependencies_of(jobs: &[NewJob]) -> Option<Vec<Vec<Dependency>>> {
    jobs.iter()
        .any(|job| !job.depends_on.is_empty())
        .then(|| jobs.iter().map(|job| job.depends_on.clone()).collect())
}

/// One stored dependency: job `job_id` waits for `depends_on`, the `position`-th it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub job_id: JobId,
    pub position: i32,
    pub depends_on: JobId,
    pub if_failed: IfFailed,
}

/// The edges to store for jobs just enqueued together, in order: `JobRef::Child(i)` names
/// the `i`-th job of the same enqueue, which must come before the job naming it. A job that
/// was not inserted (its unique key was held) adds no edges: the existing job keeps its own.
pub fn edges_of(
    enqueued: &[crate::store::Enqueued],
    dependencies: &[Vec<Dependency>],
) -> Result<Vec<Edge>, String> {
    let mut edges = Vec::new();
    for (index, (job, waits)) in enqueued.iter().zip(dependencies).enumerate() {
        if job.existing {
            continue;
        }
        for (position, dependency) in waits.iter().enumerate() {
            let depends_on = match dependency.on {
                JobRef::Stored(id) => id,
                JobRef::Child(earlier) if (earlier as usize) < index => {
                    enqueued[earlier as usize].id
                }
                JobRef::Child(other) => {
                    return Err(format!(
                        "job {index} of the enqueue waits for job {other}, which is not before it"
                    ));
                }
            };
            edges.push(Edge {
                job_id: job.id,
                position: position as i32,
                depends_on,
                if_failed: dependency.if_failed,
            });
        }
    }
    Ok(edges)
}

/// Whether a state is the end of a job, as its dependents and batches see it.
pub fn is_end(state: &str) -> bool {
    matches!(state, "completed" | "discarded" | "cancelled" | "deleted")
}

/// A dependent's share of a settling: how many of its dependencies just ended, and
/// whether one of them failed under a `cancel` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resolved {
    pub ended: i32,
    pub cancel: bool,
}

/// Groups resolved edges `(dependent, if_failed, state the dependency ended in)` by
/// dependent, in id order (the order the dependents' rows are then locked in).
pub fn resolve(edges: &[(JobId, IfFailed, String)]) -> Vec<(JobId, Resolved)> {
    let mut by_job = std::collections::BTreeMap::<JobId, Resolved>::new();
    for (job, if_failed, state) in edges {
        let entry = by_job.entry(*job).or_default();
        entry.ended += 1;
        entry.cancel |= *if_failed == IfFailed::Cancel && state != "completed";
    }
    by_job.into_iter().collect()
}

/// A batch's counts, as its row holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchCounts {
    pub total: i32,
    pub completed: i32,
    pub discarded: i32,
    pub cancelled: i32,
}

impl BatchCounts {
    pub fn ended(&self) -> i32 {
        self.completed + self.discarded + self.cancelled
    }
}

/// One of a batch's callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    Finished,
    Success,
    Discard,
}

impl CallbackKind {
    /// The batch row's column that records the callback's job.
    pub fn column(self) -> &'static str {
        match self {
            CallbackKind::Finished => "finished_job",
            CallbackKind::Success => "success_job",
            CallbackKind::Discard => "discard_job",
        }
    }

    pub fn call(self, callbacks: &BatchCallbacks) -> Option<&CallSpec> {
        match self {
            CallbackKind::Finished => callbacks.on_finished.as_ref(),
            CallbackKind::Success => callbacks.on_success.as_ref(),
            CallbackKind::Discard => callbacks.on_discard.as_ref(),
        }
    }
}

/// The callbacks a batch's counts call for that have not run (`fired`: which have).
/// `on_success` is due only when every job completed; when one did not, it never is.
pub fn due_callbacks(
    counts: BatchCounts,
    callbacks: &BatchCallbacks,
    fired: [bool; 3],
) -> Vec<CallbackKind> {
    let all_ended = counts.ended() >= counts.total;
    let wanted = [
        (CallbackKind::Finished, all_ended),
        (
            CallbackKind::Success,
            all_ended && counts.completed >= counts.total,
        ),
        (CallbackKind::Discard, counts.discarded > 0),
    ];
    wanted
        .into_iter()
        .zip(fired)
        .filter(|((kind, due), fired)| *due && !fired && kind.call(callbacks).is_some())
        .map(|((kind, _), _)| kind)
        .collect()
}

/// A callback's job: its call with args `{"batch", "counts", "context"}`.
pub fn callback_job(
    batch: i64,
    kind: CallbackKind,
    callbacks: &BatchCallbacks,
    counts: BatchCounts,
) -> Option<NewJob> {
    let call = kind.call(callbacks)?;
    let context: serde_json::Value =
        serde_json::from_slice(&call.args).unwrap_or(serde_json::Value::Null);
    let args = serde_json::json!({
        "batch": batch,
        "counts": {
            "total": counts.total,
            "completed": counts.completed,
            "discarded": counts.discarded,
            "cancelled": counts.cancelled,
        },
        "context": context,
    });
    let mut job = NewJob::json(&call.module, &call.function, &args);
    if let Some(queue) = &callbacks.queue {
        job.queue = queue.clone();
    }
    Some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(id: JobId, bytes: usize) -> DependencyResult {
        DependencyResult {
            job_id: id,
            module: "m".into(),
            function: "f".into(),
            state: "completed".into(),
            output: Some(vec![b'1'; bytes]),
            output_bytes: bytes as u64,
        }
    }

    #[test]
    fn outputs_stay_inline_until_the_cap_and_not_after() {
        let half = INLINE_OUTPUTS_BYTES / 2;
        let mut results = vec![
            completed(1, half),
            completed(2, half),
            completed(3, 1),
            completed(4, 1),
        ];
        inline_outputs(&mut results);
        let inline: Vec<bool> = results.iter().map(|r| r.output.is_some()).collect();
        assert_eq!(inline, [true, true, false, false]);
        assert!(results.iter().all(|r| r.output_bytes > 0));
    }

    fn call() -> CallSpec {
        CallSpec {
            module: "m".into(),
            function: "f".into(),
            args: b"{}".to_vec(),
            codec: Codec::Json,
        }
    }

    #[test]
    fn batch_callbacks_fall_due_once_each() {
        let callbacks = BatchCallbacks {
            on_finished: Some(call()),
            on_success: Some(call()),
            on_discard: Some(call()),
            queue: None,
        };
        let counts = |completed, discarded| BatchCounts {
            total: 3,
            completed,
            discarded,
            cancelled: 0,
        };
        assert!(due_callbacks(counts(2, 0), &callbacks, [false; 3]).is_empty());
        assert_eq!(
            due_callbacks(counts(3, 0), &callbacks, [false; 3]),
            [CallbackKind::Finished, CallbackKind::Success]
        );
        assert_eq!(
            due_callbacks(counts(1, 1), &callbacks, [false; 3]),
            [CallbackKind::Discard]
        );
        assert_eq!(
            due_callbacks(counts(2, 1), &callbacks, [false, false, true]),
            [CallbackKind::Finished]
        );
        assert!(due_callbacks(counts(3, 0), &callbacks, [true, true, false]).is_empty());
    }

    #[test]
    fn a_child_may_wait_only_for_an_earlier_sibling() {
        use crate::store::Enqueued;
        let enqueued = [10, 11, 12].map(|id| Enqueued {
            id,
            existing: false,
        });
        let on = |on| Dependency {
            on,
            if_failed: IfFailed::Cancel,
        };
        let waits = vec![
            vec![],
            vec![on(JobRef::Child(0)), on(JobRef::Stored(5))],
            vec![on(JobRef::Child(1))],
        ];
        let edges = edges_of(&enqueued, &waits).unwrap();
        let pairs: Vec<_> = edges.iter().map(|e| (e.job_id, e.depends_on)).collect();
        assert_eq!(pairs, [(11, 10), (11, 5), (12, 11)]);
        assert!(edges_of(&enqueued, &[vec![on(JobRef::Child(0))], vec![], vec![]]).is_err());
    }

    #[test]
    fn completions_written_together_keep_their_own_siblings_batches_and_events() {
        let child = |depends_on: Vec<JobRef>, batch: Option<u32>| ChildJob {
            call: call(),
            queue: None,
            priority: None,
            max_attempts: None,
            delay_ms: None,
            partition_key: None,
            depends_on: depends_on
                .into_iter()
                .map(|on| Dependency {
                    on,
                    if_failed: IfFailed::Cancel,
                })
                .collect(),
            batch,
        };
        let event = Published {
            topic: "t".into(),
            args: b"1".to_vec(),
            codec: Codec::Json,
            partition_key: None,
        };
        let first = Composed {
            children: vec![child(vec![], None), child(vec![JobRef::Child(0)], None)],
            batches: vec![],
            published: vec![event.clone()],
        };
        let second = Composed {
            children: vec![
                child(vec![], Some(1)),
                child(vec![JobRef::Child(0), JobRef::Stored(99)], Some(0)),
            ],
            batches: vec![BatchCallbacks::default(), BatchCallbacks::default()],
            published: vec![],
        };
        let completions = [(1, &first), (2, &second)];
        let composed = CompletionsComposed::new(&completions);
        let batches: Vec<_> = composed
            .batches()
            .iter()
            .map(|(parent, _, total)| (*parent, *total))
            .collect();
        assert_eq!(batches, [(2, 1), (2, 1)]);
        assert_eq!(composed.topics(), ["t"]);
        let subscription = crate::store::Subscription {
            topic: "t".into(),
            queue: "q".into(),
            module: "m".into(),
            function: "g".into(),
            max_attempts: 3,
        };
        let jobs = composed.jobs(&[70, 71], &[subscription], Utc::now());
        // 1's children, 1's delivery, then 2's children: 2's handles shifted past them.
        let summary: Vec<_> = jobs
            .iter()
            .map(|job| {
                let on: Vec<JobRef> = job.depends_on.iter().map(|d| d.on).collect();
                (job.parent_id, job.function.clone(), on, job.batch_id)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Some(1), "f".to_string(), vec![], None),
                (Some(1), "f".to_string(), vec![JobRef::Child(0)], None),
                (Some(1), "g".to_string(), vec![], None),
                (Some(2), "f".to_string(), vec![], Some(71)),
                (
                    Some(2),
                    "f".to_string(),
                    vec![JobRef::Child(3), JobRef::Stored(99)],
                    Some(70)
                ),
            ]
        );
    }

    #[test]
    fn a_failed_dependency_cancels_only_under_its_policy() {
        let edges = vec![
            (1, IfFailed::Cancel, "completed".to_string()),
            (2, IfFailed::Run, "discarded".to_string()),
            (3, IfFailed::Cancel, "cancelled".to_string()),
            (3, IfFailed::Run, "completed".to_string()),
        ];
        let resolved = resolve(&edges);
        let cancels: Vec<_> = resolved
            .iter()
            .map(|(id, r)| (*id, r.ended, r.cancel))
            .collect();
        assert_eq!(cancels, [(1, 1, false), (2, 1, false), (3, 2, true)]);
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(check_topic("posts.created").is_ok());
        for bad in ["", "a b", "a\0b", &"x".repeat(256)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
