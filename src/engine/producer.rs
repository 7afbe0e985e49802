//! One queue's producer and its consumers: claim by demand, run each attempt in its own task.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::crash_point::{self, CrashPoint};
use super::slots::{Slot, Slots};
use super::{InFlight, RunResult, Shared};
use crate::config::QueueConfig;
use crate::model::{
    AttemptClass, AttemptOutcome, AttemptRecord, DiscardContext, Failure, FailureKind, Job,
};
use crate::store::{Claimed, JobFetch, JobOutcome, Resolution, StoreResult, WAKE_ALL};

/// Longest pause between fetch retries while the store is unreachable.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(2);
/// How long past its deadline an attempt may take to stop (the sandbox stops it at its next
/// fuel yield or host crossing, well within this) before its lease is no longer renewed.
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// Runs the producer, restarting it if it ever panics: its consumers are separate tasks and
/// keep running meanwhile.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    queue: QueueConfig,
    slots: Arc<Slots>,
    completions: mpsc::Sender<JobOutcome>,
    stop: CancellationToken,
) {
    let slot_freed = Arc::new(Notify::new());
    loop {
        let producer = Producer {
            shared: shared.clone(),
            queue: queue.clone(),
            completions: completions.clone(),
            slots: slots.clone(),
            slot_freed: slot_freed.clone(),
        };
        match tokio::spawn(producer.run(stop.clone())).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(queue = %queue.name, %error, "producer crashed; restarting")
            }
        }
    }
}

struct Producer {
    shared: Arc<Shared>,
    queue: QueueConfig,
    completions: mpsc::Sender<JobOutcome>,
    /// One per job this queue may run at once.
    slots: Arc<Slots>,
    /// Signalled by each consumer as it gives its slot back.
    slot_freed: Arc<Notify>,
}

/// A claim in progress: how many jobs it asked for, and its result.
type Claim = Pin<Box<dyn Future<Output = (u32, StoreResult<Claimed>)> + Send>>;

impl Producer {
    async fn run(self, stop: CancellationToken) {
        let config = &self.shared.config;
        // Claimed jobs wait here for a slot and the next claim runs while attempts do: a
        // slot that frees up starts its next job at once instead of idling for a claim
        // round-trip.
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut pace = StartPace::new();
        let mut wakeups = self.shared.store.subscribe();
        // Whether to claim without waiting for a notification: the last claim was full, a
        // notification or the poll timer said so, or the store failed and is being retried.
        let mut eager = true;
        let mut backoff = Duration::from_millis(50);
        let mut pause: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut claim: Option<Claim> = None;
        // Raised while claims come back full to a node whose slots ran dry waiting for them
        // (the jobs are shorter than a claim's round trip): each such claim doubles the next.
        let mut ran_dry_floor = 0;
        let mut started_any = false;
        loop {
            let started = self.start_waiting_jobs(&mut waiting);
            started_any |= started > 0;
            pace.started(started);
            if claim.is_none() && pause.is_none() && eager {
                // Hold what the slots will start within about one window: a round of slots
                // for slow jobs, hundreds of short jobs when they stream through.
                let paced = pace.per_window().max(ran_dry_floor);
                let (capacity, min_demand) =
                    claim_ahead(paced, self.slots.limit(), config.max_fetch);
                let held = self.slots.in_use() + waiting.len() as u32;
                let room = capacity.saturating_sub(held).min(config.max_fetch);
                if room > 0 && (room >= min_demand || held == 0) {
                    claim = Some(self.claim(room));
                }
            }
            let idle = claim.is_none() && pause.is_none() && !eager;
            tokio::select! {
                () = stop.cancelled() => break,
                (asked, result) = async { claim.as_mut().expect("guarded").await }, if claim.is_some() => {
                    claim = None;
                    match result {
                        Ok(Claimed { jobs, held_back_until }) => {
                            let full = jobs.len() as u32 == asked;
                            let dry = started_any && self.slots.in_use() == 0 && waiting.is_empty();
                            ran_dry_floor = next_floor(ran_dry_floor, asked, full, dry, config.max_fetch);
                            backoff = Duration::from_millis(50);
                            eager = jobs.len() as u32 == asked;
                            if let Some(until) = held_back_until {
                                self.shared.metrics.exported.claim_held_back(&self.queue.name);
                                // The queue's limits held jobs back: ask again when they
                                // free, not at the next notification or poll.
                                let wait = (until - Utc::now()).to_std().unwrap_or_default();
                                pause = Some(Box::pin(tokio::time::sleep(wait)));
                                eager = true;
                            }
                            self.hold(jobs, &mut waiting);
                        }
                        Err(error) => {
                            self.shared.metrics.exported.store_error("job_claim");
                            tracing::warn!(queue = %self.queue.name, %error, "fetch failed; retrying");
                            pause = Some(Box::pin(tokio::time::sleep(backoff)));
                            backoff = (backoff * 2).min(MAX_FETCH_BACKOFF);
                            eager = true;
                        }
                    }
                }
                () = async { pause.as_mut().expect("guarded").await }, if pause.is_some() => {
                    pause = None;
                }
                () = self.slot_freed.notified() => {}
                () = wait_for_wakeup(&mut wakeups, &self.queue.name), if idle => eager = true,
                () = tokio::time::sleep(config.poll_interval), if idle => eager = true,
            }
        }
        // A claim already sent may have taken jobs: wait for it, then hand back everything
        // that has not started.
        if let Some(claim) = claim
            && let (_, Ok(claimed)) = claim.await
        {
            self.hold(claimed.jobs, &mut waiting);
        }
        for job in waiting {
            let _ = self
                .completions
                .send(hand_back(
                    &job,
                    Utc::now(),
                    &config.node_id,
                    AT_SHUTDOWN.into(),
                ))
                .await;
        }
    }

    /// Claims up to `limit` jobs for this node.
    fn claim(&self, limit: u32) -> Claim {
        let store = self.shared.store.clone();
        let config = &self.shared.config;
        let fetch = JobFetch {
            queue: self.queue.name.clone(),
            limit,
            node: config.node_id.clone(),
            lease: config.lease,
        };
        Box::pin(async move { (limit, store.job_claim(fetch).await) })
    }

    /// Takes claimed jobs into this node's keeping: their leases are renewed from now on.
    fn hold(&self, jobs: Vec<Job>, waiting: &mut VecDeque<Job>) {
        if jobs.is_empty() {
            return;
        }
        self.shared.metrics.claimed();
        {
            let mut in_flight = self.shared.in_flight.lock().unwrap();
            in_flight.extend(jobs.iter().map(|job| (job.id, InFlight::default())));
        }
        crash_point::pass(CrashPoint::Claimed);
        waiting.extend(jobs);
    }

    /// Starts waiting jobs while slots are free, each attempt in its own task; returns how
    /// many it started.
    fn start_waiting_jobs(&self, waiting: &mut VecDeque<Job>) -> u32 {
        let mut started = 0;
        while !waiting.is_empty() {
            let Some(permit) = self.slots.try_take() else {
                break;
            };
            started += 1;
            let job = waiting.pop_front().expect("not empty");
            let consumer = Consumer {
                shared: self.shared.clone(),
                completions: self.completions.clone(),
                slot_freed: self.slot_freed.clone(),
                slots: self.slots.clone(),
            };
            self.shared.attempts.spawn(consumer.run(job, permit));
        }
        started
    }
}

/// How many jobs a queue holds claimed (running and waiting) given how many it starts per
/// window, and the smallest claim worth sending while it has a backlog.
fn claim_ahead(per_window: u32, concurrency: u32, max_fetch: u32) -> (u32, u32) {
    let capacity = per_window.clamp(concurrency * 2, max_fetch.max(concurrency * 2));
    // A quarter of the capacity: each claim costs the database a statement and a commit
    // whatever its size, so small claims are what limits a stream of short jobs.
    (capacity, (capacity / 4).max(1))
}

/// The claim-ahead floor after a claim of `asked` jobs: doubled (up to `max_fetch`) when it
/// came back full to a node with nothing running or waiting, kept while claims come back
/// full, dropped when one comes back short (the backlog is gone). A node whose slots wait on
/// claims grows its claims by round trips, not by the pace its starved slots could show.
fn next_floor(floor: u32, asked: u32, full: bool, dry: bool, max_fetch: u32) -> u32 {
    match (full, dry) {
        (false, _) => 0,
        (true, true) => floor.max(asked).saturating_mul(2).min(max_fetch),
        (true, false) => floor,
    }
}

/// How many jobs a producer started in its last full window: the claim-ahead target.
struct StartPace {
    window_began: Instant,
    in_window: u32,
    last_window: u32,
}

impl StartPace {
    /// About two claim round-trips on a loaded machine, so a claim's jobs arrive before the
    /// ones held have all started.
    const WINDOW: Duration = Duration::from_millis(50);

    fn new() -> StartPace {
        StartPace {
            window_began: Instant::now(),
            in_window: 0,
            last_window: 0,
        }
    }

    fn started(&mut self, jobs: u32) {
        self.started_by(jobs, Instant::now());
    }

    fn started_by(&mut self, jobs: u32, now: Instant) {
        self.in_window += jobs;
        let elapsed = now.saturating_duration_since(self.window_began);
        if elapsed >= Self::WINDOW {
            // Scaled to one window's length: the producer may have waited longer than one.
            let scaled = u64::from(self.in_window) * Self::WINDOW.as_micros() as u64
                / elapsed.as_micros().max(1) as u64;
            self.last_window = scaled.min(u64::from(u32::MAX)) as u32;
            self.in_window = 0;
            self.window_began = now;
        }
    }

    fn per_window(&self) -> u32 {
        self.last_window.max(self.in_window)
    }
}

/// Resolves when a notification names this queue (or all queues).
pub(crate) async fn wait_for_wakeup(wakeups: &mut broadcast::Receiver<String>, queue: &str) {
    loop {
        match wakeups.recv().await {
            Ok(name) if name == queue || name == WAKE_ALL => return,
            Ok(_) => {}
            // Missed some: one of them may have been ours.
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // No sender any more: fall back to polling alone.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

struct Consumer {
    shared: Arc<Shared>,
    completions: mpsc::Sender<JobOutcome>,
    slot_freed: Arc<Notify>,
    /// The queue's slots, read for a dead letter's forensics.
    slots: Arc<Slots>,
}

impl Consumer {
    async fn run(self, job: Job, permit: Slot) {
        let config = &self.shared.config;
        let span = tracing::info_span!(
            "attempt",
            job = job.id,
            queue = %job.queue,
            module = %job.module,
            function = %job.function,
            attempt = job.attempt,
            node = %config.node_id,
        );
        let mut permit = Some(permit);
        // Its function's circuit breaker is open: the job waits, spending no attempt.
        if let Err(until) = self.shared.breakers.admit(&self.shared, &job).await {
            span.in_scope(|| tracing::debug!(%until, "circuit breaker open; the job waits"));
            let outcome = stopped(
                &job,
                Utc::now(),
                &config.node_id,
                Resolution::Snooze { at: until },
                AttemptClass::Abandoned,
                format!(
                    "the circuit breaker of {}.{} is open",
                    job.module, job.function
                ),
            );
            let _ = self.completions.send(outcome).await;
            if permit.take().is_some() {
                self.slot_freed.notify_one();
            }
            return;
        }
        let cancel = self.cancel_token(job.id);
        let (result, started_at) = loop {
            let (result, started_at) = self.run_once(&job, &span, &cancel, &mut permit).await;
            // The node's own shortage (memory held by other attempts, no instance slot): the
            // job waits here, still claimed and leased, and tries again; it does not fail,
            // and does not go back to be claimed straight into the same shortage.
            let wait = match &result {
                Some(Ok(Ok(Err(not_started)))) if !not_started.retry_after.is_zero() => {
                    span.in_scope(|| {
                        tracing::debug!(reason = %not_started, "attempt not started; waiting to try again")
                    });
                    not_started.retry_after.mul_f64(0.9 + fastrand::f64() * 0.2)
                }
                _ => break (result, started_at),
            };
            self.shared
                .metrics
                .node_waits
                .fetch_add(1, Ordering::Relaxed);
            if let Some(entry) = self.shared.in_flight.lock().unwrap().get_mut(&job.id) {
                entry.overdue_at = None;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => break (Some(Err(Interrupted::Cancelled)), started_at),
                () = self.shared.hand_back.cancelled() => break (None, started_at),
            }
        };
        // A job handed back never started an attempt: its record is not counted.
        let handed_back = matches!(result, None | Some(Ok(Ok(Err(_)))));
        let outcome = match result {
            Some(Err(Interrupted::Cancelled)) => {
                span.in_scope(|| tracing::info!("attempt interrupted: the job was cancelled"));
                cancelled(&job, started_at, &config.node_id)
            }
            Some(Err(Interrupted::Overdue(timeout))) => {
                span.in_scope(|| {
                    tracing::warn!(?timeout, "attempt stopped by the node past its deadline")
                });
                let failure = Failure::new(
                    FailureKind::Timeout,
                    format!(
                        "the attempt ran past its deadline of {timeout:?}; the node stopped it"
                    ),
                );
                self.resolve(&job, bare_run(failure, started_at), started_at)
            }
            Some(Ok(Ok(Ok(run)))) => self.resolve(&job, run, started_at),
            Some(Ok(Ok(Err(not_started)))) => {
                span.in_scope(|| {
                    tracing::warn!(reason = %not_started, "attempt not started; the job goes back");
                });
                self.shared
                    .metrics
                    .handed_back
                    .fetch_add(1, Ordering::Relaxed);
                hand_back(&job, started_at, &config.node_id, not_started.reason)
            }
            Some(Ok(Err(error))) => {
                // A host bug this attempt ran into; the attempt counts, as a trap would.
                let failure = Failure::new(
                    FailureKind::Trap,
                    format!("the host failed while running this attempt: {error}"),
                );
                self.resolve(&job, bare_run(failure, started_at), started_at)
            }
            None => {
                self.shared
                    .metrics
                    .handed_back
                    .fetch_add(1, Ordering::Relaxed);
                hand_back(&job, started_at, &config.node_id, AT_SHUTDOWN.into())
            }
        };
        span.in_scope(|| {
            tracing::debug!(outcome = %outcome.record.outcome, "attempt finished");
        });
        // Waits when the completer is behind: backpressure on the whole queue.
        if !handed_back {
            self.shared.metrics.record(&job, &outcome.record);
            self.shared.breakers.record(&job, outcome.record.outcome);
        }
        let _ = self.completions.send(outcome).await;
        if permit.take().is_some() {
            self.slot_freed.notify_one();
        }
    }

    /// The token the canceller trips for this job (a fresh one if the job is not held,
    /// which cannot happen while its attempt runs).
    fn cancel_token(&self, id: crate::model::JobId) -> CancellationToken {
        let in_flight = self.shared.in_flight.lock().unwrap();
        in_flight
            .get(&id)
            .map(|job| job.cancel.clone())
            .unwrap_or_default()
    }

    /// Runs one try of the attempt in a task of its own (if anything in it panics, this job's
    /// attempt fails and nothing else notices), until it ends, is cancelled, overruns its
    /// deadline or must be handed back (`None`). Returns that and when the instance started.
    async fn run_once(
        &self,
        job: &Job,
        span: &tracing::Span,
        cancel: &CancellationToken,
        permit: &mut Option<Slot>,
    ) -> (Ended, chrono::DateTime<Utc>) {
        let mut started_at = Utc::now();
        let runner = self.shared.runner.clone();
        let claimed = job.clone();
        let (start_signal, mut started) = tokio::sync::oneshot::channel();
        let start_signal = super::AttemptStart(Some(start_signal));
        let attempt =
            async move { runner.run(&claimed, start_signal).await }.instrument(span.clone());
        let (attempt, mut demoted) = self.shared.lanes.run(attempt);
        let mut attempt = tokio::spawn(attempt);
        let mut awaiting_start = true;
        let mut demotion_answered = false;
        // Armed when the instance starts: past its deadline and `HARD_STOP_AFTER`, the attempt
        // is stopped from here whether or not its own task gets the CPU to stop itself (a
        // demoted attempt on a starved low-priority thread may not, for seconds).
        let mut hard_stop: Option<(Pin<Box<tokio::time::Sleep>>, Duration)> = None;
        let ended = loop {
            tokio::select! {
                // A completed attempt that raced the request stays completed.
                biased;
                result = &mut attempt => break Some(Ok(result)),
                () = cancel.cancelled() => {
                    attempt.abort();
                    break Some(Err(Interrupted::Cancelled));
                }
                () = async { hard_stop.as_mut().expect("guarded").0.as_mut().await }, if hard_stop.is_some() => {
                    attempt.abort();
                    let timeout = hard_stop.as_ref().expect("guarded").1;
                    break Some(Err(Interrupted::Overdue(timeout)));
                }
                signal = &mut started, if awaiting_start => {
                    awaiting_start = false;
                    if let Ok(timeout) = signal {
                        started_at = Utc::now();
                        // A deadline too far to add is no deadline at all.
                        let now = Instant::now();
                        let overdue_at = now.checked_add(timeout.saturating_add(DEADLINE_SLACK));
                        if let Some(entry) = self.shared.in_flight.lock().unwrap().get_mut(&job.id) {
                            entry.overdue_at = overdue_at;
                        }
                        if let Some(at) = now.checked_add(timeout.saturating_add(HARD_STOP_AFTER)) {
                            hard_stop = Some((Box::pin(tokio::time::sleep_until(at.into())), timeout));
                        }
                    }
                }
                () = self.shared.hand_back.cancelled() => {
                    attempt.abort();
                    break None;
                }
                // Moved to a background seat: its queue slot is free for a short job. (The
                // sender is dropped, unsent, when the attempt ends in the foreground: a
                // receiver that has answered must not be polled again.)
                seated = &mut demoted, if permit.is_some() && !demotion_answered => {
                    demotion_answered = true;
                    if seated.is_ok() {
                        *permit = None;
                        self.slot_freed.notify_one();
                    }
                }
            }
        };
        (ended, started_at)
    }

    /// What this node and queue look like now, recorded with an attempt that discards its
    /// job (a rare event, so the lock on the in-flight table costs nothing that matters).
    fn discard_context(&self) -> DiscardContext {
        DiscardContext {
            node_version: env!("CARGO_PKG_VERSION").to_string(),
            node_in_flight: self.shared.in_flight.lock().unwrap().len() as u32,
            queue_running: self.slots.in_use(),
            queue_concurrency: self.slots.limit(),
        }
    }

    fn resolve(&self, job: &Job, run: RunResult, started_at: chrono::DateTime<Utc>) -> JobOutcome {
        let mut report = run.report;
        let composed = std::mem::take(&mut report.composed);
        let now = Utc::now();
        let resolution = self.shared.policy.resolve(job, &report.outcome, now);
        let (outcome, message, trap_code) = match &report.outcome {
            AttemptOutcome::Completed { .. } => (AttemptClass::Completed, None, None),
            AttemptOutcome::Failed(failure) => (
                AttemptClass::Failed(failure.kind),
                Some(match &failure.backtrace {
                    Some(trace) => format!("{} [wasm: {trace}]", failure.message),
                    None => failure.message.clone(),
                }),
                failure.trap_code.clone(),
            ),
        };
        let record = AttemptRecord {
            attempt: job.attempt,
            node: self.shared.config.node_id.clone(),
            module_version: run.module_version,
            started_at,
            finished_at: now,
            outcome,
            message,
            trap_code,
            fuel_consumed: report.fuel_consumed,
            duration: report.wall_time,
            peak_memory_bytes: report.peak_memory_bytes,
            logs: report.logs,
            context: matches!(resolution, Resolution::Discard).then(|| self.discard_context()),
        };
        JobOutcome {
            id: job.id,
            attempt: job.attempt,
            // Only a completion writes what the attempt composed.
            composed: match resolution {
                Resolution::Complete { .. } => composed,
                _ => Default::default(),
            },
            resolution,
            record,
        }
    }
}

const AT_SHUTDOWN: &str = "handed back at shutdown";

/// How long past its deadline an attempt is stopped from the node's side (see `Consumer`).
const HARD_STOP_AFTER: Duration = Duration::from_millis(500);

/// How one try of an attempt ended: `None` when it must be handed back (shutdown); else the
/// node's interruption, or the attempt task's result (a panic in it, or the runner's).
type Ended = Option<
    Result<Result<Result<RunResult, super::NotStarted>, tokio::task::JoinError>, Interrupted>,
>;

/// Why the node stopped an attempt itself.
enum Interrupted {
    /// A user cancelled the job.
    Cancelled,
    /// It ran past its deadline (of this length) and did not stop by itself.
    Overdue(Duration),
}

/// A run that produced nothing but `failure`.
fn bare_run(failure: Failure, started_at: chrono::DateTime<Utc>) -> RunResult {
    RunResult {
        module_version: None,
        report: crate::model::AttemptReport {
            outcome: AttemptOutcome::Failed(failure),
            fuel_consumed: 0,
            wall_time: (Utc::now() - started_at).to_std().unwrap_or_default(),
            peak_memory_bytes: 0,
            logs: Vec::new(),
            logs_dropped_bytes: 0,
            composed: Default::default(),
        },
    }
}

/// The outcome of an attempt stopped by a cancel request: recorded, and the job cancelled.
fn cancelled(job: &Job, started_at: chrono::DateTime<Utc>, node: &str) -> JobOutcome {
    let message = "cancelled by request while running; the attempt was interrupted";
    stopped(
        job,
        started_at,
        node,
        Resolution::Cancel,
        AttemptClass::Cancelled,
        message.into(),
    )
}

/// An attempt stopped at shutdown, or one that never started, goes back to the queue at once,
/// not counted as an attempt.
fn hand_back(
    job: &Job,
    started_at: chrono::DateTime<Utc>,
    node: &str,
    reason: String,
) -> JobOutcome {
    stopped(
        job,
        started_at,
        node,
        Resolution::Release,
        AttemptClass::Abandoned,
        reason,
    )
}

/// The outcome of an attempt the node stopped (or never started), with nothing from the guest.
fn stopped(
    job: &Job,
    started_at: chrono::DateTime<Utc>,
    node: &str,
    resolution: Resolution,
    outcome: AttemptClass,
    message: String,
) -> JobOutcome {
    let now = Utc::now();
    JobOutcome {
        id: job.id,
        attempt: job.attempt,
        resolution,
        composed: Default::default(),
        record: AttemptRecord {
            attempt: job.attempt,
            node: node.to_string(),
            module_version: None,
            started_at,
            finished_at: now,
            outcome,
            message: Some(message),
            trap_code: None,
            fuel_consumed: 0,
            duration: (now - started_at).to_std().unwrap_or_default(),
            peak_memory_bytes: 0,
            logs: Vec::new(),
            context: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_jobs_hold_two_rounds_and_fast_ones_up_to_max_fetch() {
        // One job a window: two rounds of 32 slots, claimed 16 at a time.
        assert_eq!(claim_ahead(1, 32, 1000), (64, 16));
        // A stream: what starts in a window, capped by max_fetch.
        assert_eq!(claim_ahead(400, 32, 1000), (400, 100));
        assert_eq!(claim_ahead(50_000, 32, 1000), (1000, 250));
        // max_fetch below two rounds never shrinks the rounds.
        assert_eq!(claim_ahead(50_000, 32, 10), (64, 16));
    }

    #[test]
    fn claims_double_while_they_come_back_full_to_idle_slots() {
        // The slots ran dry waiting for a full claim: the next one is twice as large.
        assert_eq!(next_floor(0, 64, true, true, 1000), 128);
        assert_eq!(next_floor(128, 100, true, true, 1000), 256);
        assert_eq!(next_floor(600, 600, true, true, 1000), 1000);
        // Full, but the slots still had work: the floor holds.
        assert_eq!(next_floor(256, 64, true, false, 1000), 256);
        // A short claim: the backlog is gone, and so is the floor.
        assert_eq!(next_floor(256, 300, false, true, 1000), 0);
    }

    #[test]
    fn the_pace_is_counted_per_window_and_scaled_to_one() {
        let began = Instant::now();
        let mut pace = StartPace {
            window_began: began,
            in_window: 0,
            last_window: 0,
        };
        pace.started_by(30, began + Duration::from_millis(10));
        // Within the first window, what has started so far.
        assert_eq!(pace.per_window(), 30);
        pace.started_by(70, began + StartPace::WINDOW);
        assert_eq!(pace.per_window(), 100);
        // A window twice as long counts half per window.
        pace.started_by(100, began + StartPace::WINDOW * 3);
        assert_eq!(pace.per_window(), 50);
        // An idle spell brings the target down to the floor.
        pace.started_by(0, began + StartPace::WINDOW * 10);
        assert_eq!(pace.per_window(), 0);
    }
}
