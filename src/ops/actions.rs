//! The audited actions on jobs and queues: each acts through the store and then records who
//! did it, so the CLI and the API cannot differ in what they log.

use crate::model::{Job, JobId};
use crate::store::{QueuePause, Store};

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
