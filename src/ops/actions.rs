//! The audited actions on jobs and queues: each acts through the store and then records who
//! did it, so the CLI and the API cannot differ in what they log.

use crate::limits::{Autoscale, QueueLimits};
use crate::model::{Job, JobId};
use crate::store::{JobRetry, QueueAutoscale, QueueConcurrency, QueueLimitsSet, QueuePause, Store};

use super::OpResult;
use super::tokens::record_action;

/// Runs the job again now (a finished job gets one more attempt), with `args` in place of
/// its own when given (the dashboard's "retry with edited args").
pub async fn retry_job(
    store: &dyn Store,
    id: JobId,
    args: Option<&serde_json::Value>,
    actor: &str,
) -> OpResult<Job> {
    let json_args =
        args.map(|value| serde_json::to_vec(value).expect("a JSON value always serializes"));
    let edited = json_args.is_some();
    let job = store.job_retry(JobRetry { id, json_args }).await?;
    let target = if edited {
        format!("{id} (args edited)")
    } else {
        id.to_string()
    };
    record_action(store, actor, "job.retry", &target).await;
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

/// What a bulk action does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Retry,
    Cancel,
    Delete,
}

/// The most jobs one bulk action takes.
pub const MAX_BULK_ACTION: usize = 1000;

/// Does `action` to each job in turn, as the single actions do (each audited); returns each
/// job's result. A job the action does not fit (a running job to delete, a finished one to
/// cancel) is refused alone; the others go ahead.
pub async fn act_on_jobs(
    store: &dyn Store,
    action: JobAction,
    ids: &[JobId],
    actor: &str,
) -> OpResult<Vec<(JobId, OpResult<()>)>> {
    if ids.len() > MAX_BULK_ACTION {
        return Err(super::OpError::Invalid(format!(
            "a bulk action takes at most {MAX_BULK_ACTION} jobs; this one has {}",
            ids.len()
        )));
    }
    let mut results = Vec::with_capacity(ids.len());
    for &id in ids {
        let result = match action {
            JobAction::Retry => retry_job(store, id, None, actor).await.map(drop),
            JobAction::Cancel => cancel_job(store, id, actor).await.map(drop),
            JobAction::Delete => delete_job(store, id, actor).await,
        };
        // The store gone is the whole request's failure, not one job's.
        if let Err(super::OpError::Store(crate::store::StoreError::Unavailable(_))) = &result {
            return Err(result.expect_err("matched an error"));
        }
        results.push((id, result));
    }
    Ok(results)
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

/// Sets the limits every node obeys for a queue (`None` lifts them). Waiting jobs without a
/// partition key get one when the queue gains partitions.
pub async fn set_queue_limits(
    store: &dyn Store,
    name: &str,
    limits: Option<QueueLimits>,
    actor: &str,
) -> OpResult<()> {
    super::queue_name(name)?;
    // Limits that limit nothing are none.
    let limits = limits.filter(QueueLimits::limits_anything);
    if let Some(limits) = &limits {
        limits.check().map_err(super::OpError::Invalid)?;
    }
    let target = match &limits {
        Some(limits) => format!(
            "{name} {}",
            serde_json::to_string(limits).expect("limits serialize")
        ),
        None => format!("{name} none"),
    };
    store
        .queue_set_limits(QueueLimitsSet {
            name: name.to_string(),
            limits,
        })
        .await?;
    record_action(store, actor, "queue.limits", &target).await;
    Ok(())
}

/// Stores a config file's limits for a queue that has none in the store yet; limits already
/// there (set at run time, or by an earlier start) win. Returns whether they were stored.
pub async fn seed_queue_limits(
    store: &dyn Store,
    name: &str,
    limits: &QueueLimits,
) -> OpResult<bool> {
    super::queue_name(name)?;
    limits.check().map_err(super::OpError::Invalid)?;
    let settings = store.queue_settings().await?;
    if settings
        .iter()
        .any(|queue| queue.name == name && queue.limits.is_some())
    {
        return Ok(false);
    }
    store
        .queue_set_limits(QueueLimitsSet {
            name: name.to_string(),
            limits: Some(limits.clone()),
        })
        .await?;
    Ok(true)
}

/// Sets (or with `None` stops) the autoscaling of a queue's concurrency on every node.
pub async fn set_queue_autoscale(
    store: &dyn Store,
    name: &str,
    autoscale: Option<Autoscale>,
    actor: &str,
) -> OpResult<()> {
    super::queue_name(name)?;
    if let Some(autoscale) = &autoscale {
        autoscale.check().map_err(super::OpError::Invalid)?;
    }
    let target = match &autoscale {
        Some(autoscale) => format!("{name} {}..{}", autoscale.min, autoscale.max),
        None => format!("{name} off"),
    };
    store
        .queue_set_autoscale(QueueAutoscale {
            name: name.to_string(),
            autoscale,
        })
        .await?;
    record_action(store, actor, "queue.autoscale", &target).await;
    Ok(())
}
