//! Counters of a node's attempts by outcome, for its logs, its exit report and `sluice
//! bench`; each attempt also goes to the exported metrics (`crate::metrics`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::{AttemptSample, NodeMetrics};
use chrono::{DateTime, Utc};

use crate::model::{AttemptClass, AttemptRecord, Job};
use crate::store::MinuteStats;

#[derive(Default)]
pub struct Metrics {
    /// What `/metrics` shows: shared with the API that serves it.
    pub exported: Arc<NodeMetrics>,
    by_outcome: Mutex<BTreeMap<&'static str, u64>>,
    /// Attempts whose outcome the store refused because the lease had moved on.
    pub fenced_out: AtomicU64,
    /// Attempts handed back unfinished: at shutdown, or because the store could not say which
    /// module to run.
    pub handed_back: AtomicU64,
    /// Times an attempt waited on this node for its own shortage (memory held by other
    /// attempts, no instance slot) before trying again.
    pub node_waits: AtomicU64,
    /// When this node first claimed a job, and when it last wrote outcomes: the span of a
    /// drain, as `sluice bench` measures it.
    first_claim: OnceLock<Instant>,
    last_write: Mutex<Option<Instant>>,
    /// What each queue's attempts added up to, under one lock taken once per attempt.
    queues: Mutex<HashMap<String, QueueTally>>,
}

/// One queue's counts not yet taken by their readers.
#[derive(Default)]
struct QueueTally {
    /// Per-minute counts not yet added to the store's stats.
    minutes: BTreeMap<DateTime<Utc>, MinuteStats>,
    /// Waits to start since the autoscaler last looked: their sum and count.
    wait_sum: Duration,
    waits: u64,
}

impl Metrics {
    /// Counters that also feed `exported`.
    pub fn exporting(exported: Arc<NodeMetrics>) -> Metrics {
        Metrics {
            exported,
            ..Metrics::default()
        }
    }

    /// The average wait to start of `queue`'s attempts since the last call, if any started.
    pub(crate) fn take_average_wait(&self, queue: &str) -> Option<Duration> {
        let mut queues = self.queues.lock().unwrap();
        let tally = queues.get_mut(queue)?;
        let waits = std::mem::take(&mut tally.waits);
        let sum = std::mem::take(&mut tally.wait_sum);
        (waits > 0).then(|| sum.div_f64(waits as f64))
    }

    /// Counts a finished attempt of `job`.
    pub fn record(&self, job: &Job, record: &AttemptRecord) {
        let outcome = record.outcome;
        let queue_wait = (record.started_at - job.scheduled_at)
            .to_std()
            .unwrap_or_default();
        if let AttemptClass::Completed | AttemptClass::Failed(_) = outcome {
            let minute = MinuteStats::minute_of(record.finished_at);
            let mut queues = self.queues.lock().unwrap();
            // Looked up by `&str`: no allocation per attempt once the queue is known.
            if !queues.contains_key(&job.queue) {
                queues.insert(job.queue.clone(), QueueTally::default());
            }
            let tally = queues.get_mut(&job.queue).expect("inserted");
            tally
                .minutes
                .entry(minute)
                .or_insert_with(|| MinuteStats::new(minute, job.queue.clone()))
                .count(outcome == AttemptClass::Completed, queue_wait);
            tally.wait_sum = tally.wait_sum.saturating_add(queue_wait);
            tally.waits += 1;
        }
        self.exported.attempt(&AttemptSample {
            queue: &job.queue,
            module: &job.module,
            function: &job.function,
            class: outcome.as_str(),
            duration: record.duration,
            queue_wait,
            fuel: record.fuel_consumed,
            peak_memory_bytes: record.peak_memory_bytes,
        });
        *self
            .by_outcome
            .lock()
            .unwrap()
            .entry(outcome.as_str())
            .or_default() += 1;
    }

    pub fn count(&self, outcome: AttemptClass) -> u64 {
        self.by_outcome
            .lock()
            .unwrap()
            .get(outcome.as_str())
            .copied()
            .unwrap_or(0)
    }

    /// Attempts by outcome name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.by_outcome.lock().unwrap().clone()
    }

    pub fn total(&self) -> u64 {
        self.by_outcome.lock().unwrap().values().sum()
    }

    /// The per-minute counts gathered since the last call, for the store's stats.
    pub(crate) fn take_minutes(&self) -> Vec<MinuteStats> {
        let mut queues = self.queues.lock().unwrap();
        queues
            .values_mut()
            .flat_map(|tally| std::mem::take(&mut tally.minutes).into_values())
            .collect()
    }

    /// Puts back counts the store could not take, to be added with the next ones.
    pub(crate) fn restore_minutes(&self, rows: Vec<MinuteStats>) {
        let mut queues = self.queues.lock().unwrap();
        for row in rows {
            let queue = &mut queues.entry(row.queue.clone()).or_default().minutes;
            match queue.get_mut(&row.minute) {
                Some(kept) => kept.add(&row),
                None => {
                    queue.insert(row.minute, row);
                }
            }
        }
    }

    pub(crate) fn claimed(&self) {
        self.first_claim.get_or_init(Instant::now);
    }

    pub(crate) fn written(&self) {
        *self.last_write.lock().unwrap() = Some(Instant::now());
    }

    /// From the first claim to the last outcome written, once both happened.
    pub fn busy_span(&self) -> Option<Duration> {
        let first = *self.first_claim.get()?;
        let last = (*self.last_write.lock().unwrap())?;
        Some(last.saturating_duration_since(first))
    }

    pub(crate) fn add_fenced_out(&self, n: u64) {
        self.fenced_out.fetch_add(n, Ordering::Relaxed);
    }
}
