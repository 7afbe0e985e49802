//! The audited actions on jobs and queues: each acts through the store and then records who
//! did it, so the CLI and the API cannot differ in what they log.

use crate::model::{Job, JobId};
use crate::store::{QueueConcurrency, QueuePause, Store};

use super::OpResult;
use super::tokens::record_action;

/// Runs the job again now (a finished job gets one more attempt).
pub async fn retry_job(store: &dyn Store, id: JobId, actor: &str) -> OpResult<Job> {
    let job = store.job_retry(id).await?;
    record_action(store, actor, "job.retry", &id.to_string()).await;
    Ok(job)
}

/// Stops the job; a running attempt is interrupted by its node.
pub async fn cancel_job(store: &dyn Store, id: JobId, actor: &str) -> OpResult<Job> {
    let job = store.job_cancel(id).await?;
    record_action(store, actor, "job.cancel", &id.to_string()).await;
    Ok(job)
}

/// Deletes the job and its history.
pub async fn delete_job(store: &dyn Store, id: JobId, actor: &str) -> OpResult<()> {
    store.job_delete(id).await?;
    record_action(store, actor, "job.delete", &id.to_string()).await;
    Ok(())
}

/// Pauses (no more claims) or resumes a queue.
pub async fn set_queue_paused(
    store: &dyn Store,
    name: &str,
    paused: bool,
    actor: &str,
) -> OpResult<()> {
    super::queue_name(name)?;
    store
        .queue_pause(QueuePause {
            name: name.to_string(),
            paused,
        })
        .await?;
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    record_action(store, actor, action, name).await;
    Ok(())
}

/// The highest per-node concurrency a queue may be given (a node clamps it further, to the
/// slots its instance pool was sized for).
pub const MAX_QUEUE_CONCURRENCY: u32 = 10_000;

/// Sets how many of a queue's jobs each node runs at once, or with `None` gives each node
/// back its own setting. Running nodes follow within a few seconds.
pub async fn set_queue_concurrency(
    store: &dyn Store,
    name: &str,
    concurrency: Option<u32>,
    actor: &str,
) -> OpResult<()> {
    super::queue_name(name)?;
    if let Some(n) = concurrency
        && !(1..=MAX_QUEUE_CONCURRENCY).contains(&n)
    {
        return Err(super::OpError::Invalid(format!(
            "a queue's concurrency must be 1 to {MAX_QUEUE_CONCURRENCY}, not {n}"
        )));
    }
    store
        .queue_set_concurrency(QueueConcurrency {
            name: name.to_string(),
            concurrency,
        })
        .await?;
    let target = match concurrency {
        Some(n) => format!("{name}={n}"),
        None => format!("{name}=node default"),
    };
    record_action(store, actor, "queue.concurrency", &target).await;
    Ok(())
}
