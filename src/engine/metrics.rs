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
    /// Per-minute counts by queue not yet added to the store's stats.
    minutes: Mutex<HashMap<String, BTreeMap<DateTime<Utc>, MinuteStats>>>,
    /// Waits to start by queue since the autoscaler last looked: their sum and count.
    waits: Mutex<HashMap<String, (Duration, u32)>>,
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
        let (sum, count) = self.waits.lock().unwrap().remove(queue)?;
        Some(sum / count.max(1))
    }

    /// Counts a finished attempt of `job`.
    pub fn record(&self, job: &Job, record: &AttemptRecord) {
        let outcome = record.outcome;
        let queue_wait = (record.started_at - job.scheduled_at)
            .to_std()
            .unwrap_or_default();
        if let AttemptClass::Completed | AttemptClass::Failed(_) = outcome {
            let minute = MinuteStats::minute_of(record.finished_at);
            let mut minutes = self.minutes.lock().unwrap();
            // Looked up by `&str`: no allocation per attempt once the queue is known.
            if !minutes.contains_key(&job.queue) {
                minutes.insert(job.queue.clone(), BTreeMap::new());
            }
            let queue = minutes.get_mut(&job.queue).expect("inserted");
            queue
                .entry(minute)
                .or_insert_with(|| MinuteStats::new(minute, job.queue.clone()))
                .count(outcome == AttemptClass::Completed, queue_wait);
            drop(minutes);
            let mut waits = self.waits.lock().unwrap();
            if let Some((sum, count)) = waits.get_mut(&job.queue) {
                *sum += queue_wait;
                *count += 1;
            } else {
                waits.insert(job.queue.clone(), (queue_wait, 1));
            }
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
        let taken = std::mem::take(&mut *self.minutes.lock().unwrap());
        taken
            .into_values()
            .flat_map(BTreeMap::into_values)
            .collect()
    }

    /// Puts back counts the store could not take, to be added with the next ones.
    pub(crate) fn restore_minutes(&self, rows: Vec<MinuteStats>) {
        let mut minutes = self.minutes.lock().unwrap();
        for row in rows {
            let queue = minutes.entry(row.queue.clone()).or_default();
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
