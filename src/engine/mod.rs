//! The engine: a node pulls jobs by demand, runs each attempt through a `Runner`, and writes
//! outcomes back in batches, under leases it keeps alive with heartbeats.
//!
//! Per queue, a producer claims only as many jobs as its consumers have free slots (in
//! batches of at least `min_demand`, like GenStage), wakes on notifications with a poll as
//! fallback, and claims again as soon as slots free up. Each attempt runs in its own task, so
//! a panic there fails that attempt only. One completer writes all outcomes.

mod completer;
mod crash_point;
mod lanes;
mod metrics;
mod producer;
mod retry;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::metrics::Metrics;
pub use self::retry::RetryPolicy;
use crate::config::EngineConfig;
use crate::model::{AttemptReport, Job, JobId, JobState};
use crate::store::{JobCount, NodeHeartbeat, Store};

/// Runs one attempt of a claimed job. Every problem of the job's own (bad module, trap, fuel,
/// memory, deadline) is a classified report; `NotStarted` is for the node's problems only.
#[async_trait::async_trait]
pub trait Runner: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<RunResult, NotStarted>;
}

/// The attempt never began, for a reason that is not the job's: the store could not be asked
/// which module to run. The job goes back to its queue and the attempt does not count, so a
/// database blip never spends a job's attempts or writes a failure into its history.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotStarted(pub String);

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

/// What every task of a node shares.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub runner: Arc<dyn Runner>,
    pub config: EngineConfig,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    /// Jobs claimed whose outcome is not yet written: the heartbeat renews exactly their
    /// leases, and `--exit-when-idle` waits for none to be left.
    pub in_flight: Mutex<HashSet<JobId>>,
    /// Cancelled when running attempts must be handed back (the grace period is over).
    pub hand_back: CancellationToken,
    /// Tracks every attempt task, so shutdown can wait for them.
    pub attempts: TaskTracker,
    /// Foreground and background lanes for attempts.
    pub lanes: lanes::Lanes,
}

/// CPU time an attempt may take in the foreground before it moves to the background lane:
/// a hundred times the cost of a typical short job, well below a busy loop's budget.
const DEMOTE_AFTER: Duration = Duration::from_millis(5);

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
        lanes: lanes::Lanes::new(DEMOTE_AFTER),
    });
    let config = &shared.config;
    tracing::info!(node = %config.node_id, queues = ?config.queues, "node starting");

    // Stops the producers; `finished` stops heartbeats and maintenance once attempts are done.
    let stop_fetching = CancellationToken::new();
    let finished = CancellationToken::new();
    let (completions, completion_queue) =
        tokio::sync::mpsc::channel(config.max_completion_batch * 4);

    let completer = tokio::spawn(completer::run(shared.clone(), completion_queue));
    let heartbeat = tokio::spawn(heartbeat(shared.clone(), finished.clone()));
    let maintenance = tokio::spawn(crate::maintenance::run(
        store.clone(),
        crate::maintenance::MaintenanceConfig::from_engine(config),
        finished.clone(),
    ));
    let producers: Vec<_> = config
        .queues
        .iter()
        .map(|queue| {
            tokio::spawn(producer::supervise(
                shared.clone(),
                queue.clone(),
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
        let jobs: Vec<JobId> = shared.in_flight.lock().unwrap().iter().copied().collect();
        let running = jobs.len() as u32;
        let lease = crate::store::LeaseExtend {
            node: config.node_id.clone(),
            jobs,
            lease: config.lease,
        };
        if let Err(error) = shared.store.job_lease_extend(lease).await {
            tracing::warn!(%error, "could not extend leases; retrying at the next beat");
        }
        let beat = NodeHeartbeat {
            id: config.node_id.clone(),
            host: crate::config::hostname(),
            pid: std::process::id(),
            queues: config.queues.iter().map(|q| q.name.clone()).collect(),
            running,
        };
        if let Err(error) = shared.store.node_heartbeat(beat).await {
            tracing::warn!(%error, "could not record the node heartbeat");
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
    for queue in &shared.config.queues {
        for state in [JobState::Available, JobState::Running, JobState::Retryable] {
            let count = JobCount {
                state: Some(state),
                queue: Some(queue.name.clone()),
                module: None,
            };
            match shared.store.job_count(count).await {
                Ok(0) => {}
                // Busy, or the store is unreachable: either way, not idle.
                Ok(_) | Err(_) => return true,
            }
        }
    }
    false
}
