//! Leader-only duties: one node at a time stages due jobs, rescues jobs whose lease expired,
//! inserts cron entries' jobs and prunes old finished jobs. Leadership is a term in the store
//! that the leader renews.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::metrics::NodeMetrics;
use crate::store::{JobPrune, LeaderElect, Store};

mod cron;

#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    pub node_id: String,
    /// How often the duties run, and leadership is renewed.
    pub interval: Duration,
    /// How long leadership lasts without renewal: a dead leader is replaced after it.
    pub term: Duration,
    pub retention: crate::config::Retention,
    pub rescue: crate::store::JobRescue,
}

impl MaintenanceConfig {
    /// How late a cron slot may be inserted and still count as on time: longer than a
    /// leader change can take (the old leader's term runs out, then a round passes).
    pub fn cron_grace(&self) -> Duration {
        self.term * 2 + self.interval * 2
    }

    pub fn from_engine(config: &EngineConfig) -> MaintenanceConfig {
        MaintenanceConfig {
            node_id: config.node_id.clone(),
            interval: config.maintenance_interval,
            term: config.lease,
            retention: config.retention,
            rescue: crate::store::JobRescue {
                poison_limit: config.poison_limit,
                backoff: config.backoff_base,
            },
        }
    }
}

/// Pruning is cheap to delay; it runs once every this many rounds.
const PRUNE_EVERY: u32 = 60;

pub async fn run(
    store: Arc<dyn Store>,
    config: MaintenanceConfig,
    metrics: Arc<NodeMetrics>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leader = false;
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let elect = LeaderElect {
            node: config.node_id.clone(),
            term: config.term,
        };
        let elected = match store.leader_elect(elect).await {
            Ok(elected) => elected,
            Err(error) => {
                metrics.store_error("leader_elect");
                tracing::warn!(%error, "leader election failed");
                false
            }
        };
        if elected != leader {
            tracing::info!(node = %config.node_id, leader = elected, "leadership changed");
            leader = elected;
        }
        if !leader {
            continue;
        }
        match store.job_stage().await {
            Ok(0) => {}
            Ok(staged) => tracing::debug!(staged, "staged due jobs"),
            Err(error) => {
                metrics.store_error("job_stage");
                tracing::warn!(%error, "staging failed");
            }
        }
        match store.job_rescue(config.rescue).await {
            Ok(rescued) if rescued.is_empty() => {}
            Ok(rescued) => {
                tracing::warn!(count = rescued.len(), jobs = ?rescued, "rescued jobs whose lease expired")
            }
            Err(error) => {
                metrics.store_error("job_rescue");
                tracing::warn!(%error, "rescue failed");
            }
        }
        cron::insert_due(store.as_ref(), config.cron_grace(), &metrics).await;
        round = round.wrapping_add(1);
        if round % PRUNE_EVERY == 1 {
            // The store's retention, so every leader prunes alike; the node's own until one
            // is stored.
            let retention = match crate::ops::stored_retention(store.as_ref()).await {
                Ok(stored) => stored.unwrap_or(config.retention),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the stored retention; using this node's");
                    config.retention
                }
            };
            match prune_finished(store.as_ref(), &retention, Utc::now()).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(pruned, "pruned finished jobs");
                    reclaim_space(store.as_ref()).await;
                }
                Err(error) => {
                    metrics.store_error("job_prune");
                    tracing::warn!(%error, "pruning failed");
                }
            }
            // The charts' per-minute counts are kept as long as the completed jobs they count.
            let finished_before =
                Utc::now() - chrono::Duration::from_std(retention.completed).unwrap_or_default();
            forget_dead_nodes(store.as_ref(), &metrics).await;
            if let Err(error) = store.stats_prune(finished_before).await {
                metrics.store_error("stats_prune");
                tracing::warn!(%error, "could not prune the stats");
            }
            if let Err(error) = store.session_prune().await {
                metrics.store_error("session_prune");
                tracing::warn!(%error, "could not prune the dashboard's sessions");
            }
            let day_ago = (Utc::now() - chrono::Duration::days(1)).timestamp_micros();
            if let Err(error) = store.breaker_calls_prune(day_ago).await {
                metrics.store_error("breaker_calls_prune");
                tracing::warn!(%error, "could not prune the breakers' call counts");
            }
            if let Err(error) = store.partition_rates_prune().await {
                metrics.store_error("partition_rates_prune");
                tracing::warn!(%error, "could not prune the partitions' rate states");
            }
        }
    }
    if leader && let Err(error) = store.leader_resign(&config.node_id).await {
        tracing::warn!(%error, "could not resign leadership");
    }
}

/// Jobs one prune statement deletes at most: a short write (measured in BENCHMARKS.md), so
/// on SQLite's one writer a claim or an outcome waits for one batch, not a whole prune.
pub const PRUNE_BATCH: u32 = 2_000;

/// Deletes the finished jobs older than their state's retention at `now`, in batches of
/// `PRUNE_BATCH`, yielding between them; returns how many.
pub async fn prune_finished(
    store: &dyn Store,
    retention: &crate::config::Retention,
    now: chrono::DateTime<Utc>,
) -> crate::store::StoreResult<u64> {
    let mut pruned = 0;
    for (state, kept) in retention.by_state() {
        let Some(finished_before) = chrono::Duration::from_std(kept)
            .ok()
            .and_then(|kept| now.checked_sub_signed(kept))
        else {
            continue;
        };
        loop {
            let batch = store
                .job_prune(JobPrune {
                    state,
                    finished_before,
                    limit: PRUNE_BATCH,
                })
                .await?;
            pruned += batch;
            if batch < u64::from(PRUNE_BATCH) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(pruned)
}

/// Removes nodes dead for longer than `DEAD_NODES_KEPT` from the registry (a node that stops
/// cleanly removes itself; one that was killed stays, shown as dead, until then).
async fn forget_dead_nodes(store: &dyn Store, metrics: &NodeMetrics) {
    let kept = chrono::Duration::from_std(crate::store::DEAD_NODES_KEPT).unwrap_or_default();
    match store.node_prune(Utc::now() - kept).await {
        Ok(0) => {}
        Ok(forgotten) => tracing::info!(forgotten, "forgot nodes dead for over an hour"),
        Err(error) => {
            metrics.store_error("node_prune");
            tracing::warn!(%error, "could not forget dead nodes");
        }
    }
}

/// After a prune, makes the freed space reusable where the database would not in time
/// (PostgreSQL with autovacuum off, as this project's CI runs it, or behind): without it,
/// every drain-and-prune cycle of 100,000 jobs left the tables larger.
async fn reclaim_space(store: &dyn Store) {
    match store.reclaim_space().await {
        Ok(true) => tracing::info!("vacuumed the jobs tables: autovacuum is off or behind"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "could not vacuum the jobs tables"),
    }
}
