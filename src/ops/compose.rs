//! Composition from outside a job: topics and their subscriptions, events published by a
//! client, batches of jobs with callbacks, and a job's tree.

use crate::compose::{BatchCallbacks, CallSpec, Published, check_partition_key, check_topic};
use crate::model::{Codec, JobId, NewJob};
use crate::store::{BatchInfo, Enqueued, ModuleGet, Store, Subscription};

use super::tokens::record_action;
use super::{OpError, OpResult};

/// Subscribes `module.function` on `queue` to `topic`: each event published to the topic
/// becomes a job of it. Returns false if it was subscribed already (its `max_attempts` is
/// updated).
pub async fn subscribe(
    store: &dyn Store,
    subscription: Subscription,
    actor: &str,
) -> OpResult<bool> {
    check_subscription(&subscription)?;
    if subscription.max_attempts < 1 {
        return Err(OpError::Invalid("--max-attempts must be at least 1".into()));
    }
    let module = store
        .module_get(ModuleGet {
            name: subscription.module.clone(),
            version: None,
        })
        .await?;
    module.check_exports(&subscription.function)?;
    let target = describe(&subscription);
    let added = store.topic_subscribe(subscription).await?;
    if added {
        record_action(store, actor, "topic.subscribe", &target).await;
    }
    Ok(added)
}

/// Removes a subscription; `SubscriptionNotFound` if there was none.
pub async fn unsubscribe(
    store: &dyn Store,
    subscription: &Subscription,
    actor: &str,
) -> OpResult<()> {
    check_subscription(subscription)?;
    let target = describe(subscription);
    if !store.topic_unsubscribe(subscription).await? {
        return Err(OpError::SubscriptionNotFound(target));
    }
    record_action(store, actor, "topic.unsubscribe", &target).await;
    Ok(())
}

/// A subscription in words: `TOPIC to MODULE.FUNCTION on QUEUE`.
fn describe(subscription: &Subscription) -> String {
    format!(
        "{} to {}.{} on {}",
        subscription.topic, subscription.module, subscription.function, subscription.queue
    )
}

/// The subscriptions of `topic`, or of every topic.
pub async fn subscriptions(store: &dyn Store, topic: Option<&str>) -> OpResult<Vec<Subscription>> {
    if let Some(topic) = topic {
        check_topic(topic).map_err(OpError::Invalid)?;
    }
    Ok(store.topic_subscriptions(topic).await?)
}

fn check_subscription(subscription: &Subscription) -> OpResult<()> {
    check_topic(&subscription.topic).map_err(OpError::Invalid)?;
    super::queue_name(&subscription.queue)?;
    super::valid_module_name(&subscription.module)?;
    check_function_name(&subscription.function)
}

fn check_function_name(function: &str) -> OpResult<()> {
    if function.is_empty()
        || function.chars().count() > 128
        || function.chars().any(char::is_control)
    {
        return Err(OpError::Invalid(format!(
            "`{}` is not a function name: use 1 to 128 printable characters",
            function.escape_debug()
        )));
    }
    Ok(())
}

/// Publishes a JSON event to `topic`: one job per subscription, in one transaction.
/// Returns their ids (none when the topic has no subscription).
pub async fn publish(
    store: &dyn Store,
    topic: &str,
    json_args: &str,
    partition_key: Option<String>,
) -> OpResult<Vec<Enqueued>> {
    check_topic(topic).map_err(OpError::Invalid)?;
    if let Some(key) = &partition_key {
        check_partition_key(key).map_err(OpError::Invalid)?;
    }
    let args = super::json_args(json_args)?;
    Ok(store
        .topic_publish(Published {
            topic: topic.to_string(),
            args,
            codec: Codec::Json,
            partition_key,
        })
        .await?)
}

/// A callback of a batch, as a client names it: a call with a JSON context.
pub fn callback(module: &str, function: &str, json_context: &str) -> OpResult<CallSpec> {
    super::valid_module_name(module)?;
    check_function_name(function)?;
    Ok(CallSpec {
        module: module.to_string(),
        function: function.to_string(),
        args: super::json_args(json_context)?,
        codec: Codec::Json,
    })
}

/// Enqueues `jobs` as one batch with `callbacks`, each job checked as `enqueue` checks it
/// and each callback's call too. Returns the batch's id and the jobs'.
pub async fn create_batch(
    store: &dyn Store,
    callbacks: BatchCallbacks,
    jobs: Vec<NewJob>,
) -> OpResult<(i64, Vec<Enqueued>)> {
    if jobs.is_empty() {
        return Err(OpError::Invalid("a batch needs at least one job".into()));
    }
    if let Some(queue) = &callbacks.queue {
        super::queue_name(queue)?;
    }
    for call in callbacks.calls() {
        let mut sample = NewJob::json(&call.module, &call.function, &serde_json::Value::Null);
        if let Some(queue) = &callbacks.queue {
            sample.queue = queue.clone();
        }
        super::jobs::check_call(store, &sample).await?;
    }
    let mut checked = std::collections::HashSet::new();
    for job in &jobs {
        super::check_job_options(job)?;
        if job.unique.is_some() {
            return Err(OpError::Invalid(
                "a batch's jobs cannot have unique or idempotency keys".into(),
            ));
        }
        let key = (job.module.clone(), job.module_version, job.function.clone());
        if checked.insert(key) {
            super::jobs::check_call(store, job).await?;
        }
    }
    Ok(store.batch_create(callbacks, jobs).await?)
}

/// A batch's progress.
pub async fn batch(store: &dyn Store, id: i64) -> OpResult<BatchInfo> {
    Ok(store.batch_get(id).await?)
}

/// A job's parent, children, dependencies and batch.
pub async fn tree(store: &dyn Store, id: JobId) -> OpResult<crate::store::JobTree> {
    Ok(store.job_tree(id).await?)
}
