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
/// for a passing outage. (Were it dropped, the lease would expire and the job rerun.) A batch
/// the store refuses outright is written one outcome at a time, so an outcome the store
/// cannot take never costs the others theirs.
async fn write(shared: &Shared, outcomes: Vec<JobOutcome>) {
    let node = shared.config.node_id.clone();
    crash_point::pass(CrashPoint::Flushing);
    let batch = JobFinishMany {
        node: node.clone(),
        outcomes,
    };
    if outcomes_written(shared, &batch).await {
        return;
    }
    if batch.outcomes.len() > 1 {
        tracing::warn!(
            count = batch.outcomes.len(),
            "the store refused a batch of outcomes; writing them one at a time"
        );
        for outcome in batch.outcomes {
            let one = JobFinishMany {
                node: node.clone(),
                outcomes: vec![outcome],
            };
            if !outcomes_written(shared, &one).await {
                write_stripped(shared, one).await;
            }
        }
    } else {
        write_stripped(shared, batch).await;
    }
}

/// Writes an outcome the store refused without the guest's text (logs, long message), which
/// is the part a guest controls; the attempt's class and the job's resolution stay.
async fn write_stripped(shared: &Shared, mut one: JobFinishMany) {
    for outcome in &mut one.outcomes {
        let record = &mut outcome.record;
        tracing::warn!(
            job = outcome.id,
            "the store refused an outcome; storing it without its logs and message"
        );
        record.logs.clear();
        record.message = Some(format!(
            "the store refused this attempt's report ({} attempt); its logs and message were dropped",
            record.outcome
        ));
        record.trap_code = None;
    }
    retry_until_written(shared, &one).await;
}

/// Writes, retrying while the store is only unavailable; false if the store refused the
/// batch as it is (a permanent error).
async fn outcomes_written(shared: &Shared, params: &JobFinishMany) -> bool {
    write_retrying(shared, params, Duration::ZERO).await
}

/// Retries whatever the error: one misjudged as permanent must not cost a rerun; after a
/// lease's length the jobs would be rescued anyway, so stop there.
async fn retry_until_written(shared: &Shared, params: &JobFinishMany) {
    if !write_retrying(shared, params, shared.config.lease).await {
        tracing::error!(
            dropped = params.outcomes.len(),
            "the store keeps refusing outcomes; their jobs will be rescued once their leases run out"
        );
    }
}

/// Writes `params`, retrying while the store is unavailable, and retrying a refusal (an
/// error that looks permanent) for `patience`; false once a refusal outlasts it.
async fn write_retrying(shared: &Shared, params: &JobFinishMany, patience: Duration) -> bool {
    let count = params.outcomes.len();
    let mut backoff = Duration::from_millis(50);
    let refused_since = Instant::now();
    loop {
        match shared.store.job_finish_many(params).await {
            Ok(applied) => {
                written(shared, count, applied.len());
                return true;
            }
            Err(error) if error.is_retryable() || refused_since.elapsed() < patience => {
                shared.metrics.exported.store_error("job_finish");
                tracing::warn!(%error, pending = count, "cannot write outcomes yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                shared.metrics.exported.store_error("job_finish");
                tracing::warn!(%error, pending = count, "the store refused outcomes");
                return false;
            }
        }
    }
}

fn written(shared: &Shared, count: usize, applied: usize) {
    crash_point::pass(CrashPoint::Flushed);
    shared.metrics.written();
    let fenced = count - applied;
    if fenced > 0 {
        shared.metrics.add_fenced_out(fenced as u64);
        tracing::warn!(
            fenced,
            "outcomes refused: their leases had expired and moved on"
        );
    }
}
