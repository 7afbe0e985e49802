//! The engine: a node pulls jobs by demand, runs each attempt through a `Runner`, and writes
//! outcomes back in batches, under leases it keeps alive with heartbeats.
//!
//! Per queue, a producer claims only as many jobs as its consumers have free slots (in
//! batches of at least `min_demand`, like GenStage), wakes on notifications with a poll as
//! fallback, and claims again as soon as slots free up. Each attempt runs in its own task, so
//! a panic there fails that attempt only. One completer writes all outcomes.

mod autoscale;
mod breakers;
mod completer;
mod crash_point;
mod lanes;
mod metrics;
mod producer;
mod retry;
mod slots;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::metrics::Metrics;
pub use self::retry::RetryPolicy;
use self::slots::Slots;
use crate::config::{EngineConfig, QueueConfig};
use crate::model::{AttemptReport, Job, JobId, JobState};
use crate::store::{JobCount, NodeHeartbeat, Store};

/// Runs one attempt of a claimed job. Every problem of the job's own (bad module, trap, fuel,
/// memory, deadline) is a classified report; `NotStarted` is for the node's problems only.
/// Just before the instance starts, the runner says so through `started`, with the
/// attempt's deadline: until then the job's lease is renewed however long it waits (for a
/// compile, a slot), and from then on only until that deadline has passed.
#[async_trait::async_trait]
pub trait Runner: Send + Sync + 'static {
    async fn run(&self, job: &Job, started: AttemptStart) -> Result<RunResult, NotStarted>;

    /// Gets ready before the node claims its first jobs (loads modules, say); bounded by
    /// `WARM_UP_LIMIT`.
    async fn warm_up(&self) {}
}

/// How long a node waits for its runner to warm up before it claims work anyway.
const WARM_UP_LIMIT: Duration = Duration::from_secs(5);

/// Tells the engine that an attempt's instance is starting, and its deadline.
pub struct AttemptStart(Option<tokio::sync::oneshot::Sender<Duration>>);

impl AttemptStart {
    /// A signal nobody listens to, for running a job outside a node.
    pub fn unobserved() -> AttemptStart {
        AttemptStart(None)
    }

    /// The attempt starts now and must end within `timeout`.
    pub fn now(mut self, timeout: Duration) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(timeout);
        }
    }
}

/// The attempt never began, for a reason that is not the job's: the store could not be asked
/// which module to run, or the node had no room for the instance. The job goes back to its
/// queue and the attempt does not count, so a database blip or a node's own limits never
/// spend a job's attempts or write a failure into its history.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct NotStarted {
    pub reason: String,
    /// Zero hands the job back at once (the store is away); otherwise the node's own
    /// shortage, and the job waits this long on its node, still claimed, and tries again.
    pub retry_after: Duration,
}

impl NotStarted {
    /// Handed back to be claimed again at once.
    pub fn now(reason: String) -> NotStarted {
        NotStarted {
            reason,
            retry_after: Duration::ZERO,
        }
    }
}

/// What the runner reports: the module version that ran (if one was resolved) and the report.
pub struct RunResult {
    pub module_version: Option<i32>,
    pub report: AttemptReport,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine settings: {0}")]
    Config(String),
}

/// A job this node holds.
#[derive(Default)]
pub(crate) struct InFlight {
    /// When its attempt is overdue: its deadline plus the slack to stop it. `None` until
    /// the attempt starts.
    pub overdue_at: Option<Instant>,
    /// Cancelled when a user asked to cancel the job: its attempt is interrupted.
    pub cancel: CancellationToken,
}

/// What every task of a node shares.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub runner: Arc<dyn Runner>,
    pub config: EngineConfig,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    /// Jobs claimed whose outcome is not yet written: the heartbeat renews the leases of
    /// those not overdue, the canceller looks for cancel requests among them, and
    /// `--exit-when-idle` waits for none to be left.
    pub in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// Cancelled when running attempts must be handed back (the grace period is over).
    pub hand_back: CancellationToken,
    /// Tracks every attempt task, so shutdown can wait for them.
    pub attempts: TaskTracker,
    /// Foreground and background lanes for attempts.
    pub lanes: lanes::Lanes,
    /// The circuit breakers as last read, and the calls counted for them.
    pub breakers: breakers::Breakers,
}

/// The most instances a node keeps at once: each pool slot reserves address space for its
/// memories (see `sandbox::engine`), so the pool cannot grow without bound.
pub const MAX_ATTEMPTS_AT_ONCE: u32 = 4096;

/// The most attempts a node with `config` can run at once: every queue's slots, plus the
/// background seats of demoted attempts (which give their queue slot back), plus one spare
/// for the occasional instance made outside a queue. Refuses a configuration beyond
/// `MAX_ATTEMPTS_AT_ONCE`, naming the numbers.
pub fn attempts_at_once(config: &EngineConfig) -> Result<u32, EngineError> {
    let slots: u64 = config.queues.iter().map(|q| u64::from(q.concurrency)).sum();
    let needed = slots + lanes::BACKGROUND_SEATS as u64 + 1;
    if needed > u64::from(MAX_ATTEMPTS_AT_ONCE) {
        return Err(EngineError::Config(format!(
            "the queues' concurrency adds up to {slots}; with {} background seats a node would run {needed} attempts at once, more than the {MAX_ATTEMPTS_AT_ONCE} it can hold; lower --queue concurrency or run more nodes",
            lanes::BACKGROUND_SEATS
        )));
    }
    Ok(needed as u32)
}

/// CPU time an attempt may take in the foreground before it moves to the background lane:
/// a hundred times the cost of a typical short job, well below a busy loop's budget.
const DEMOTE_AFTER: Duration = Duration::from_millis(5);

/// The cores this process may use: the background lane's threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs a node until `shutdown` resolves (or, with `exit_when_idle`, until there is no work),
/// then stops fetching, lets running attempts finish within the grace period, hands back the
/// rest and writes every outcome before returning.
pub async fn run_node(
    store: Arc<dyn Store>,
    runner: Arc<dyn Runner>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EngineError> {
    config.validate().map_err(EngineError::Config)?;
    let policy = RetryPolicy {
        base: config.backoff_base,
        max: config.backoff_max,
    };
    let shared = Arc::new(Shared {
        store: store.clone(),
        runner,
        config,
        metrics,
        policy,
        in_flight: Mutex::default(),
        hand_back: CancellationToken::new(),
        attempts: TaskTracker::new(),
        lanes: lanes::Lanes::new(DEMOTE_AFTER, cores()),
        breakers: breakers::Breakers::default(),
    });
    let config = &shared.config;
    tracing::info!(node = %config.node_id, queues = ?config.queues, "node starting");
    let sampled = Arc::downgrade(&shared);
    shared.metrics.exported.add_sampler(move |sample| {
        if let Some(shared) = sampled.upgrade() {
            sample.attempts_in_flight += shared.in_flight.lock().unwrap().len() as u64;
        }
    });

    // Stops the producers; `finished` stops heartbeats and maintenance once attempts are done.
    let stop_fetching = CancellationToken::new();
    let finished = CancellationToken::new();
    let (completions, completion_queue) =
        tokio::sync::mpsc::channel(config.max_completion_batch * 4);

    let completer = tokio::spawn(completer::run(shared.clone(), completion_queue));
    let heartbeat = tokio::spawn(heartbeat(shared.clone(), finished.clone()));
    let canceller = tokio::spawn(cancel_on_request(shared.clone(), finished.clone()));
    let maintenance = tokio::spawn(crate::maintenance::run(
        store.clone(),
        crate::maintenance::MaintenanceConfig::from_engine(config),
        shared.metrics.exported.clone(),
        finished.clone(),
    ));
    if tokio::time::timeout(WARM_UP_LIMIT, shared.runner.warm_up())
        .await
        .is_err()
    {
        tracing::info!(limit = ?WARM_UP_LIMIT, "still warming up: claiming work meanwhile");
    }
    // A queue may be raised at run time up to every slot the pool was sized for.
    let ceiling = config.queues.iter().map(|q| q.concurrency).sum::<u32>();
    let queue_slots: Vec<(QueueConfig, Arc<Slots>)> = config
        .queues
        .iter()
        .map(|queue| (queue.clone(), Slots::new(queue.concurrency, ceiling)))
        .collect();
    let stats = tokio::spawn(flush_stats(shared.clone(), finished.clone()));
    breakers::load(&shared).await;
    let breaker_follower = tokio::spawn(breakers::follow(shared.clone(), finished.clone()));
    let follower = tokio::spawn(follow_queue_settings(
        shared.clone(),
        queue_slots.clone(),
        finished.clone(),
    ));
    let producers: Vec<_> = queue_slots
        .into_iter()
        .map(|(queue, slots)| {
            tokio::spawn(producer::supervise(
                shared.clone(),
                queue,
                slots,
                completions.clone(),
                stop_fetching.clone(),
            ))
        })
        .collect();
    drop(completions);
    if config.exit_when_idle {
        tokio::spawn(stop_when_idle(shared.clone(), stop_fetching.clone()));
    }

    tokio::select! {
        () = shutdown => tracing::info!("shutdown requested: finishing running attempts"),
        () = stop_fetching.cancelled() => tracing::info!("no work left: stopping"),
    }
    stop_fetching.cancel();
    for producer in producers {
        let _ = producer.await;
    }
    shared.attempts.close();
    if tokio::time::timeout(config.grace_period, shared.attempts.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.grace_period, "grace period over: handing back unfinished attempts");
        shared.hand_back.cancel();
        shared.attempts.wait().await;
    }
    // Every attempt task has sent its outcome; the completer drains and ends.
    let _ = completer.await;
    finished.cancel();
    let _ = heartbeat.await;
    let _ = canceller.await;
    let _ = follower.await;
    let _ = stats.await;
    let _ = breaker_follower.await;
    let _ = maintenance.await;
    if let Err(error) = store.node_remove(&config.node_id).await {
        tracing::warn!(%error, "could not deregister the node");
    }
    tracing::info!(attempts = ?shared.metrics.snapshot(), "node stopped");
    Ok(())
}

/// Renews this node's leases and its row in the nodes table until the node finishes.
async fn heartbeat(shared: Arc<Shared>, finished: CancellationToken) {
    let config = &shared.config;
    let mut ticks = tokio::time::interval(config.heartbeat_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = finished.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        let (jobs, running) = {
            let in_flight = shared.in_flight.lock().unwrap();
            // An attempt past its deadline (and the slack to stop it) is not renewed: were
            // its node stuck, the job comes back once the lease runs out.
            let renewed = in_flight
                .iter()
                .filter(|(_, job)| job.overdue_at.is_none_or(|at| now < at))
                .map(|(id, _)| *id)
                .collect::<Vec<JobId>>();
            (renewed, in_flight.len() as u32)
        };
        let lease = crate::store::LeaseExtend {
            node: config.node_id.clone(),
            jobs,
            lease: config.lease,
        };
        match shared.store.job_lease_extend(lease).await {
            Ok(renewed) => shared.metrics.exported.leases_renewed(renewed),
            Err(error) => {
                shared.metrics.exported.store_error("lease_extend");
                tracing::warn!(%error, "could not extend leases; retrying at the next beat");
            }
        }
        let beat = NodeHeartbeat {
            id: config.node_id.clone(),
            host: crate::config::hostname(),
            pid: std::process::id(),
            queues: config.queues.iter().map(|q| q.name.clone()).collect(),
            running,
            version: env!("CARGO_PKG_VERSION").to_string(),
            lease: config.lease,
        };
        if let Err(error) = shared.store.node_heartbeat(beat).await {
            shared.metrics.exported.store_error("node_heartbeat");
            tracing::warn!(%error, "could not record the node heartbeat");
        }
    }
}

/// How often a node adds its per-minute counts to the store's stats.
const STATS_FLUSH: Duration = Duration::from_secs(5);

/// Adds the node's per-minute counts to the store every `STATS_FLUSH`, and once more when
/// the node finishes (after its last outcome). Counts the store cannot take now wait for
/// the next flush; those of a node that dies are lost (charts, not records).
async fn flush_stats(shared: Arc<Shared>, finished: CancellationToken) {
    let mut ticks = tokio::time::interval(STATS_FLUSH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            () = finished.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let rows = shared.metrics.take_minutes();
        if !rows.is_empty()
            && let Err(error) = shared.store.stats_add(rows.clone()).await
        {
            shared.metrics.exported.store_error("stats_add");
            tracing::debug!(%error, "cannot add to the stats now");
            shared.metrics.restore_minutes(rows);
        }
        if last {
            return;
        }
    }
}

/// How often a node reads the queues' run-time settings (their concurrency, autoscaling).
const QUEUE_SETTINGS_POLL: Duration = Duration::from_secs(2);

/// The most available jobs counted for an autoscaling decision: past it, a backlog is a
/// backlog.
const BACKLOG_COUNT_CAP: u32 = 10_000;

/// Applies each queue's concurrency as set in the store (or the node's own when cleared),
/// or scales it when the queue autoscales, clamped to the node's ceiling, until the node
/// finishes.
async fn follow_queue_settings(
    shared: Arc<Shared>,
    queues: Vec<(QueueConfig, Arc<Slots>)>,
    finished: CancellationToken,
) {
    let exported = &shared.metrics.exported;
    for (queue, slots) in &queues {
        exported.set_queue_concurrency(&queue.name, slots.limit());
    }
    let mut scalers: HashMap<String, autoscale::Autoscaler> = HashMap::new();
    let mut cpu = CpuShare::new();
    let mut ticks = tokio::time::interval(QUEUE_SETTINGS_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = finished.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let settings = match shared.store.queue_settings().await {
            Ok(settings) => settings,
            Err(error) => {
                shared.metrics.exported.store_error("queue_settings");
                tracing::debug!(%error, "cannot read the queues' settings now");
                continue;
            }
        };
        let cpu_busy = cpu.since_last();
        for (queue, slots) in &queues {
            let setting = settings.iter().find(|set| set.name == queue.name);
            if let Some(policy) = setting.and_then(|set| set.autoscale.as_ref()) {
                let scaler = scalers.entry(queue.name.clone()).or_default();
                autoscale_queue(&shared, queue, slots, policy, scaler, cpu_busy).await;
                continue;
            }
            scalers.remove(&queue.name);
            let wanted = setting
                .and_then(|set| set.concurrency)
                .unwrap_or(queue.concurrency);
            let before = slots.limit();
            if wanted != before {
                let now = slots.set_limit(wanted);
                if now != before {
                    exported.set_queue_concurrency(&queue.name, now);
                    tracing::info!(queue = %queue.name, concurrency = now, wanted, "queue concurrency changed");
                }
            }
        }
    }
}

/// One autoscaling look at `queue`: its backlog in the store, its slots, its jobs' waits,
/// the node's memory budget and CPU; a change is logged with what decided it.
async fn autoscale_queue(
    shared: &Shared,
    queue: &QueueConfig,
    slots: &Slots,
    policy: &crate::limits::Autoscale,
    scaler: &mut autoscale::Autoscaler,
    cpu_busy: f64,
) {
    let backlog = match shared
        .store
        .job_count(JobCount {
            state: Some(JobState::Available),
            queue: Some(queue.name.clone()),
            module: None,
        })
        .await
    {
        Ok(count) => count.min(u64::from(BACKLOG_COUNT_CAP)),
        Err(error) => {
            shared.metrics.exported.store_error("job_count");
            tracing::debug!(%error, "cannot count the backlog now");
            return;
        }
    };
    let sample = shared.metrics.exported.sample();
    let memory_used = if sample.memory_budget_bytes == 0 {
        0.0
    } else {
        sample.memory_budget_used_bytes as f64 / sample.memory_budget_bytes as f64
    };
    let signals = autoscale::Signals {
        backlog,
        in_use: slots.in_use(),
        limit: slots.limit(),
        wait: shared.metrics.take_average_wait(&queue.name),
        memory_used,
        cpu_busy,
    };
    let Some((wanted, reason)) = scaler.decide(policy, signals, Instant::now()) else {
        return;
    };
    let before = slots.limit();
    let now = slots.set_limit(wanted);
    if now != before {
        shared
            .metrics
            .exported
            .set_queue_concurrency(&queue.name, now);
        tracing::info!(
            queue = %queue.name, from = before, to = now, wanted, reason = reason.as_str(),
            backlog, wait_ms = signals.wait.map(|wait| wait.as_millis() as u64),
            memory_used = format!("{:.0}%", memory_used * 100.0),
            cpu_busy = format!("{:.0}%", cpu_busy * 100.0),
            "queue concurrency autoscaled"
        );
    }
}

/// The share of the machine's cores this process kept busy between two looks.
struct CpuShare {
    at: Instant,
    used: Duration,
}

impl CpuShare {
    fn new() -> CpuShare {
        CpuShare {
            at: Instant::now(),
            used: crate::os::process_cpu_time(),
        }
    }

    fn since_last(&mut self) -> f64 {
        let next = CpuShare::new();
        let wall = next.at.duration_since(self.at).as_secs_f64() * cores() as f64;
        let used = next.used.saturating_sub(self.used).as_secs_f64();
        *self = next;
        if wall > 0.0 {
            (used / wall).min(1.0)
        } else {
            0.0
        }
    }
}

/// How often a node asks the store whether a job it holds has a cancel request. A request
/// also wakes it at once where the store notifies across processes (PostgreSQL).
const CANCEL_POLL: Duration = Duration::from_millis(250);

/// Interrupts the attempts of jobs a user cancelled while this node held them.
async fn cancel_on_request(shared: Arc<Shared>, finished: CancellationToken) {
    let mut wakeups = shared.store.subscribe();
    loop {
        tokio::select! {
            () = finished.cancelled() => return,
            () = tokio::time::sleep(CANCEL_POLL) => {}
            () = producer::wait_for_wakeup(&mut wakeups, crate::store::WAKE_CANCEL) => {}
        }
        let jobs: Vec<JobId> = shared.in_flight.lock().unwrap().keys().copied().collect();
        if jobs.is_empty() {
            continue;
        }
        let requests = crate::store::CancelRequests {
            node: shared.config.node_id.clone(),
            jobs,
        };
        match shared.store.job_cancel_requests(requests).await {
            Ok(cancelled) => {
                let in_flight = shared.in_flight.lock().unwrap();
                for id in cancelled {
                    if let Some(job) = in_flight.get(&id) {
                        job.cancel.cancel();
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "cannot look for cancel requests now"),
        }
    }
}

/// How often `--exit-when-idle` checks for remaining work.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Stops the node once nothing of its queues is available, running or waiting to retry, and
/// none of its own outcomes is still unwritten. Jobs scheduled for later do not count.
async fn stop_when_idle(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(IDLE_CHECK) => {}
        }
        if shared.in_flight.lock().unwrap().is_empty() && !has_work(&shared).await {
            stop.cancel();
            return;
        }
    }
}

async fn has_work(shared: &Shared) -> bool {
    let queues: Vec<String> = shared
        .config
        .queues
        .iter()
        .map(|q| q.name.clone())
        .collect();
    // Busy, or the store is unreachable: either way, not idle.
    shared.store.job_work_left(&queues).await.unwrap_or(true)
}
