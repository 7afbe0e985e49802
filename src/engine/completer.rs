//! The completer: writes attempt outcomes back in batches, one store call per flush.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Shared;
use super::crash_point::{self, CrashPoint};
use crate::store::{JobFinishMany, JobOutcome};

/// Longest pause between retries while the store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Flushes whatever has queued up since the last flush, so batches grow exactly as fast as
/// the store falls behind. Ends when every sender is gone and the queue is drained.
pub(crate) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<JobOutcome>) {
    let batch_limit = shared.config.max_completion_batch;
    let mut batch = Vec::with_capacity(batch_limit);
    while queue.recv_many(&mut batch, batch_limit).await > 0 {
        let ids: Vec<_> = batch.iter().map(|outcome| outcome.id).collect();
        write(&shared, std::mem::take(&mut batch)).await;
        // Written, fenced out or given up: either way no longer this node's to keep alive.
        let mut in_flight = shared.in_flight.lock().unwrap();
        for id in ids {
            in_flight.remove(&id);
        }
    }
}

/// Writes one batch, retrying while the store is unavailable: an outcome is never dropped
/// for a passing outage. (Were it dropped, the lease would expire and the job rerun.)
async fn write(shared: &Shared, outcomes: Vec<JobOutcome>) {
    let count = outcomes.len();
    let params = JobFinishMany {
        node: shared.config.node_id.clone(),
        outcomes,
    };
    let mut backoff = Duration::from_millis(50);
    let mut refused_since: Option<Instant> = None;
    crash_point::pass(CrashPoint::Flushing);
    loop {
        match shared.store.job_finish_many(&params).await {
            Ok(applied) => {
                crash_point::pass(CrashPoint::Flushed);
                shared.metrics.written();
                let fenced = count - applied.len();
                if fenced > 0 {
                    shared.metrics.add_fenced_out(fenced as u64);
                    tracing::warn!(
                        fenced,
                        "outcomes refused: their leases had expired and moved on"
                    );
                }
                return;
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, pending = count, "cannot write outcomes yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // Not known to pass, but an error misjudged as permanent must not cost a rerun;
            // after a lease's length the jobs would be rescued anyway, so stop there.
            Err(error)
                if refused_since.get_or_insert_with(Instant::now).elapsed()
                    < shared.config.lease =>
            {
                tracing::warn!(%error, pending = count, "the store refused outcomes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                tracing::error!(%error, dropped = count, "the store keeps refusing outcomes; their jobs will be rescued once their leases run out");
                return;
            }
        }
    }
}
