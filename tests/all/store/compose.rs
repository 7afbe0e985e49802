//! Composition in the conformance suite: what a completion composed is written with it and
//! with nothing else, held jobs are released or cancelled by their dependencies' ends,
//! outputs outlive retention until their dependents end, batches count and call back once,
//! events become one job per subscription, and a held unique job holds its key.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice::compose::{
    BatchCallbacks, CallSpec, ChildJob, Composed, Dependency, IfFailed, JobRef, Published,
};
use sluice::model::{AttemptClass, Codec, FailureKind, JobState, NewJob, UniqueKey};
use sluice::store::{JobFetch, JobOutcome, JobPrune, JobRescue, Resolution, Store, Subscription};

use super::{LEASE, NODE, finish, job, outcome};

fn call(function: &str) -> CallSpec {
    CallSpec {
        module: "hello".into(),
        function: function.into(),
        args: b"{}".to_vec(),
        codec: Codec::Json,
    }
}

fn child(function: &str, depends_on: Vec<JobRef>, batch: Option<u32>) -> ChildJob {
    ChildJob {
        call: call(function),
        queue: None,
        priority: None,
        max_attempts: None,
        delay_ms: None,
        partition_key: None,
        depends_on: depends_on
            .into_iter()
            .map(|on| Dependency {
                on,
                if_failed: IfFailed::Cancel,
            })
            .collect(),
        batch,
    }
}

fn waiting_on(ids: &[(i64, IfFailed)]) -> NewJob {
    let mut waiting = job("greet");
    waiting.depends_on = ids
        .iter()
        .map(|&(id, if_failed)| Dependency {
            on: JobRef::Stored(id),
            if_failed,
        })
        .collect();
    waiting
}

/// Claims the job `id` (the only available one) for `node`.
async fn claim(store: &Arc<dyn Store>, node: &str, lease: Duration) -> Vec<i64> {
    store
        .job_fetch(JobFetch {
            queue: "default".into(),
            limit: 100,
            node: node.into(),
            lease,
        })
        .await
        .unwrap()
        .iter()
        .map(|job| job.id)
        .collect()
}

fn completed(id: i64, attempt: i32, output: &[u8], composed: Composed) -> JobOutcome {
    JobOutcome {
        composed,
        ..outcome(
            id,
            attempt,
            Resolution::Complete {
                output: output.to_vec(),
            },
            AttemptClass::Completed,
        )
    }
}

async fn state(store: &Arc<dyn Store>, id: i64) -> JobState {
    store.job_get(id).await.unwrap().job.state
}

async fn children(store: &Arc<dyn Store>, parent: i64) -> Vec<sluice::model::Job> {
    store.job_tree(parent).await.unwrap().children
}

pub(super) async fn a_completion_writes_what_it_composed_and_nothing_else_does(
    store: Arc<dyn Store>,
) {
    let composed = || Composed {
        children: vec![
            child("greet", vec![], None),
            child("greet", vec![JobRef::Child(0)], None),
        ],
        batches: vec![],
        published: vec![],
    };
    let parent = store.job_insert(job("greet")).await.unwrap().id;
    // Node A's attempt stalls past its lease and is rescued; B claims the job again.
    assert_eq!(claim(&store, "node-a", Duration::ZERO).await, [parent]);
    let rescue = JobRescue {
        poison_limit: 3,
        backoff: Duration::ZERO,
    };
    assert_eq!(store.job_rescue(rescue).await.unwrap(), [parent]);
    assert_eq!(claim(&store, "node-b", LEASE).await, [parent]);
    // A's completion is fenced out: nothing it composed is written.
    assert!(
        finish(
            &store,
            "node-a",
            vec![completed(parent, 1, b"1", composed())]
        )
        .await
        .is_empty()
    );
    assert!(children(&store, parent).await.is_empty());
    // A failed attempt that composed leaves nothing either.
    let failed = JobOutcome {
        composed: composed(),
        ..outcome(
            parent,
            2,
            Resolution::Retry { at: Utc::now() },
            AttemptClass::Failed(FailureKind::GuestError),
        )
    };
    assert_eq!(finish(&store, "node-b", vec![failed]).await, [parent]);
    assert!(children(&store, parent).await.is_empty());
    assert_eq!(store.job_stage().await.unwrap(), 1);
    // The completion that lands writes its children, the second waiting for the first.
    assert_eq!(claim(&store, "node-b", LEASE).await, [parent]);
    assert_eq!(
        finish(
            &store,
            "node-b",
            vec![completed(parent, 3, b"1", composed())]
        )
        .await,
        [parent]
    );
    let written = children(&store, parent).await;
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|c| c.parent_id == Some(parent)));
    assert_eq!(written[0].state, JobState::Available);
    assert_eq!(
        (written[1].state, written[1].waits_for),
        (JobState::Held, 1)
    );
    let tree = store.job_tree(written[1].id).await.unwrap();
    assert_eq!(tree.waits_for[0].job_id, written[0].id);
    assert_eq!(tree.parent.unwrap().id, parent);
}

pub(super) async fn held_jobs_are_released_or_cancelled_as_their_dependencies_end(
    store: Arc<dyn Store>,
) {
    let a = store.job_insert(job("greet")).await.unwrap().id;
    let b = store.job_insert(job("greet")).await.unwrap().id;
    let cancelled_with_a = store
        .job_insert(waiting_on(&[(a, IfFailed::Cancel), (b, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    let runs_anyway = store
        .job_insert(waiting_on(&[(a, IfFailed::Run), (b, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    let after_that = store
        .job_insert(waiting_on(&[(cancelled_with_a, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    for id in [cancelled_with_a, runs_anyway, after_that] {
        assert_eq!(state(&store, id).await, JobState::Held);
    }
    // Held jobs are never claimed.
    assert_eq!(claim(&store, NODE, LEASE).await, [a, b]);
    let discarded = outcome(
        a,
        1,
        Resolution::Discard,
        AttemptClass::Failed(FailureKind::GuestError),
    );
    finish(&store, NODE, vec![discarded]).await;
    // A's discard cancels the one that cancels, and in turn what waits on it; the other
    // still waits for B.
    assert_eq!(state(&store, cancelled_with_a).await, JobState::Cancelled);
    assert_eq!(state(&store, after_that).await, JobState::Cancelled);
    assert_eq!(state(&store, runs_anyway).await, JobState::Held);
    finish(
        &store,
        NODE,
        vec![completed(b, 1, b"42", Composed::default())],
    )
    .await;
    assert_eq!(state(&store, runs_anyway).await, JobState::Available);
    let results = store.dependency_results(runs_anyway).await.unwrap();
    let seen: Vec<_> = results
        .iter()
        .map(|r| (r.job_id, r.state.as_str(), r.output.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [(a, "discarded", None), (b, "completed", Some(&b"42"[..]))]
    );

    // Cancelling a job cancels what still waits on it.
    let c = store.job_insert(job("greet")).await.unwrap().id;
    let on_c = store
        .job_insert(waiting_on(&[(c, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    store.job_cancel(c).await.unwrap();
    assert_eq!(state(&store, on_c).await, JobState::Cancelled);
    // A job that no longer exists (pruned, deleted, or never was) ended as `deleted`.
    let orphan = store
        .job_insert(waiting_on(&[(999_999, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    assert_eq!(state(&store, orphan).await, JobState::Cancelled);
    // Waiting on jobs that have all ended already: available at once.
    let late = store
        .job_insert(waiting_on(&[(b, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    assert_eq!(state(&store, late).await, JobState::Available);
}

pub(super) async fn an_output_outlives_retention_until_its_dependents_end(store: Arc<dyn Store>) {
    let a = store.job_insert(job("greet")).await.unwrap().id;
    let dependent = store
        .job_insert(waiting_on(&[(a, IfFailed::Cancel)]))
        .await
        .unwrap()
        .id;
    assert_eq!(claim(&store, NODE, LEASE).await, [a]);
    finish(
        &store,
        NODE,
        vec![completed(a, 1, b"7", Composed::default())],
    )
    .await;
    let prune = || {
        let store = store.clone();
        async move {
            store
                .job_prune(JobPrune {
                    state: JobState::Completed,
                    finished_before: Utc::now() + chrono::Duration::seconds(5),
                    limit: 100,
                })
                .await
                .unwrap()
        }
    };
    // The dependent has not run: A and its output stay, whatever the retention.
    assert_eq!(prune().await, 0);
    assert_eq!(
        store.job_output(a).await.unwrap().as_deref(),
        Some(&b"7"[..])
    );
    assert_eq!(claim(&store, NODE, LEASE).await, [dependent]);
    finish(
        &store,
        NODE,
        vec![completed(dependent, 1, b"8", Composed::default())],
    )
    .await;
    assert_eq!(prune().await, 2, "both go once the dependent has ended");
}

pub(super) async fn a_batch_counts_its_jobs_and_calls_back_once_each(store: Arc<dyn Store>) {
    let callbacks = BatchCallbacks {
        on_finished: Some(call("finished")),
        on_success: Some(call("success")),
        on_discard: Some(call("discard")),
        queue: Some("callbacks".into()),
    };
    let (batch, jobs) = store
        .batch_create(callbacks, vec![job("greet"); 3])
        .await
        .unwrap();
    let ids: Vec<i64> = jobs.iter().map(|job| job.id).collect();
    let info = store.batch_get(batch).await.unwrap();
    assert_eq!((info.counts.total, info.waiting), (3, 3));
    assert_eq!(claim(&store, NODE, LEASE).await, ids);
    finish(
        &store,
        NODE,
        vec![completed(ids[0], 1, b"1", Composed::default())],
    )
    .await;
    let discarded = outcome(
        ids[1],
        1,
        Resolution::Discard,
        AttemptClass::Failed(FailureKind::GuestError),
    );
    finish(&store, NODE, vec![discarded]).await;
    let info = store.batch_get(batch).await.unwrap();
    assert_eq!(
        (info.counts.completed, info.counts.discarded, info.running),
        (1, 1, 1)
    );
    // The first discard called back; nothing else yet.
    let discard_job = info.discard_job.expect("the discard callback");
    assert_eq!((info.finished_job, info.success_job), (None, None));
    let callback = store.job_get(discard_job).await.unwrap().job;
    assert_eq!(
        (callback.function.as_str(), callback.queue.as_str()),
        ("discard", "callbacks")
    );
    let args: serde_json::Value = serde_json::from_slice(&callback.args).unwrap();
    assert_eq!(args["batch"], batch);
    assert_eq!(args["counts"]["discarded"], 1);
    finish(
        &store,
        NODE,
        vec![completed(ids[2], 1, b"1", Composed::default())],
    )
    .await;
    let info = store.batch_get(batch).await.unwrap();
    assert_eq!(info.discard_job, Some(discard_job), "called back once");
    assert_eq!(info.success_job, None, "not every job completed");
    let finished = store
        .job_get(info.finished_job.expect("the finished callback"))
        .await
        .unwrap()
        .job;
    let args: serde_json::Value = serde_json::from_slice(&finished.args).unwrap();
    assert_eq!(
        args["counts"],
        serde_json::json!({"total": 3, "completed": 2, "discarded": 1, "cancelled": 0})
    );
    let callbacks = store
        .job_count(sluice::store::JobCount {
            state: None,
            queue: Some("callbacks".into()),
            module: None,
        })
        .await
        .unwrap();
    assert_eq!(callbacks, 2);
    assert!(matches!(
        store.batch_get(batch + 1000).await,
        Err(sluice::store::StoreError::BatchNotFound(_))
    ));
}

pub(super) async fn an_event_becomes_one_job_per_subscription(store: Arc<dyn Store>) {
    let subscription = |queue: &str, function: &str| Subscription {
        topic: "users.created".into(),
        queue: queue.into(),
        module: "hello".into(),
        function: function.into(),
        max_attempts: 4,
    };
    assert!(
        store
            .topic_subscribe(subscription("mail", "greet"))
            .await
            .unwrap()
    );
    assert!(
        store
            .topic_subscribe(subscription("audit", "noop"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .topic_subscribe(subscription("mail", "greet"))
            .await
            .unwrap(),
        "subscribed already"
    );
    let other = Subscription {
        topic: "users.deleted".into(),
        ..subscription("mail", "greet")
    };
    store.topic_subscribe(other).await.unwrap();
    let event = || Published {
        topic: "users.created".into(),
        args: br#"{"id":7}"#.to_vec(),
        codec: Codec::Json,
        partition_key: Some("7".into()),
    };
    let delivered = store.topic_publish(event()).await.unwrap();
    assert_eq!(delivered.len(), 2);
    let mut jobs = Vec::new();
    for enqueued in &delivered {
        jobs.push(store.job_get(enqueued.id).await.unwrap().job);
    }
    let mut calls: Vec<_> = jobs
        .iter()
        .map(|job| (job.queue.as_str(), job.function.as_str(), job.max_attempts))
        .collect();
    calls.sort_unstable();
    assert_eq!(calls, [("audit", "noop", 4), ("mail", "greet", 4)]);
    assert!(jobs.iter().all(|job| job.args == br#"{"id":7}"#));
    assert!(
        jobs.iter()
            .all(|job| job.partition_key.as_deref() == Some("7"))
    );
    assert!(
        store
            .topic_unsubscribe(&subscription("audit", "noop"))
            .await
            .unwrap()
    );
    assert_eq!(store.topic_publish(event()).await.unwrap().len(), 1);
    let unheard = Published {
        topic: "nobody.listens".into(),
        ..event()
    };
    assert!(store.topic_publish(unheard).await.unwrap().is_empty());
    assert_eq!(
        store
            .topic_subscriptions(Some("users.created"))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub(super) async fn a_held_unique_job_holds_its_key(store: Arc<dyn Store>) {
    let a = store.job_insert(job("greet")).await.unwrap().id;
    let unique = |mut new: NewJob| {
        new.unique = Some(UniqueKey {
            key: "held-unique".into(),
            expires_at: None,
            states: Some(
                sluice::unique::HELD_WHILE_UNFINISHED
                    .iter()
                    .fold(0, |mask, state| mask | state.bit()),
            ),
        });
        new
    };
    let first = store
        .job_insert(unique(waiting_on(&[(a, IfFailed::Cancel)])))
        .await
        .unwrap();
    assert_eq!(state(&store, first.id).await, JobState::Held);
    let second = store.job_enqueue(vec![unique(job("greet"))]).await.unwrap();
    assert_eq!(
        (second[0].id, second[0].existing),
        (first.id, true),
        "the held job holds the key"
    );
}
