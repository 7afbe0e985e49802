//! Queue limits in the conformance suite: a global concurrency, a rate, partitions with
//! their own concurrency and rate, all enforced inside the claim and shared by claimers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice::limits::{Autoscale, Partitioning, QueueLimits, RateLimit};
use sluice::model::{AttemptClass, FailureKind, JobState, NewJob};
use sluice::store::{Claimed, QueueAutoscale, QueueLimitsSet, QueuePause, Resolution, Store};

use super::{LEASE, NODE, fetch, finish, outcome};

const QUEUE: &str = "limited";

fn call(user: &str) -> NewJob {
    let mut job = NewJob::json("hello", "greet", &serde_json::json!({ "user": user }));
    job.queue = QUEUE.into();
    job
}

async fn set(store: &Arc<dyn Store>, limits: Option<QueueLimits>) {
    store
        .queue_set_limits(QueueLimitsSet {
            name: QUEUE.into(),
            limits,
        })
        .await
        .unwrap();
}

async fn claim(store: &Arc<dyn Store>, node: &str, limit: u32) -> Claimed {
    store
        .job_claim(fetch(QUEUE, limit, node, LEASE))
        .await
        .unwrap()
}

async fn complete(store: &Arc<dyn Store>, node: &str, claimed: &Claimed) {
    let outcomes = claimed
        .jobs
        .iter()
        .map(|job| {
            outcome(
                job.id,
                job.attempt,
                Resolution::Complete { output: vec![] },
                AttemptClass::Completed,
            )
        })
        .collect();
    finish(store, node, outcomes).await;
}

fn users(claimed: &Claimed) -> Vec<String> {
    claimed
        .jobs
        .iter()
        .map(|job| {
            let args: serde_json::Value = serde_json::from_slice(&job.args).unwrap();
            args["user"].as_str().unwrap().to_string()
        })
        .collect()
}

pub(super) async fn a_global_concurrency_holds_across_claimers(store: Arc<dyn Store>) {
    set(
        &store,
        Some(QueueLimits {
            global_concurrency: Some(3),
            ..QueueLimits::default()
        }),
    )
    .await;
    let ids = store
        .job_insert_many((0..8).map(|i| call(&format!("u{i}"))).collect())
        .await
        .unwrap();
    let first = claim(&store, "node-a", 10).await;
    assert_eq!(first.jobs.len(), 3, "the global limit, not the node's ask");
    assert!(
        first.held_back_until.is_some(),
        "held back, so the node asks again soon"
    );
    assert_eq!(
        first.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        ids[..3],
        "in run order"
    );
    let other = claim(&store, "node-b", 10).await;
    assert!(other.jobs.is_empty(), "another node sees the same limit");
    assert!(other.held_back_until.is_some());

    // One finishes: one more may start, on whichever node.
    let done = Claimed {
        jobs: first.jobs[..1].to_vec(),
        held_back_until: None,
    };
    complete(&store, "node-a", &done).await;
    let next = claim(&store, "node-b", 10).await;
    assert_eq!(next.jobs.len(), 1);
    assert_eq!(next.jobs[0].id, ids[3]);

    // The held-back jobs are still available and spent no attempt.
    let waiting = store.job_get(ids[7]).await.unwrap().job;
    assert_eq!((waiting.state, waiting.attempt), (JobState::Available, 0));

    // Lifted, the queue is claimed as any other.
    set(&store, None).await;
    let rest = claim(&store, "node-b", 10).await;
    assert_eq!(rest.jobs.len(), 4);
    assert!(rest.held_back_until.is_none());
}

pub(super) async fn a_rate_limit_admits_its_burst_then_one_per_interval(store: Arc<dyn Store>) {
    let rate = RateLimit {
        starts: 10,
        period_ms: 1000,
        burst: 2,
    };
    set(
        &store,
        Some(QueueLimits {
            rate: Some(rate),
            ..QueueLimits::default()
        }),
    )
    .await;
    store
        .job_insert_many((0..20).map(|i| call(&format!("u{i}"))).collect())
        .await
        .unwrap();
    let before = Utc::now();
    let first = claim(&store, "node-a", 20).await;
    assert_eq!(first.jobs.len(), 3, "one start and a burst of two");
    let until = first.held_back_until.expect("held back by the rate");
    assert!(
        until > before && until <= Utc::now() + chrono::Duration::milliseconds(100),
        "the next start one interval (100 ms) on: {until}"
    );
    let again = claim(&store, "node-b", 20).await;
    assert!(again.jobs.is_empty(), "no start before the interval");

    // The summary says when the next start is due.
    let summary = store.queue_list(None).await.unwrap();
    let queue = summary.iter().find(|q| q.name == QUEUE).unwrap();
    assert_eq!(queue.limits.as_ref().unwrap().rate, Some(rate));
    assert!(queue.next_start_at.is_some());

    // The claim is timed by the store's clock; waiting out the interval lets one more in.
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let later = claim(&store, "node-b", 20).await;
    assert!(
        (1..=2).contains(&later.jobs.len()),
        "one interval's worth: {}",
        later.jobs.len()
    );
}

fn partitioned(concurrency: Option<u32>, rate: Option<RateLimit>) -> Option<QueueLimits> {
    Some(QueueLimits {
        partition: Some(Partitioning {
            by: "args.user".into(),
            concurrency,
            rate,
        }),
        ..QueueLimits::default()
    })
}

pub(super) async fn a_partition_limit_of_one_runs_each_key_in_order(store: Arc<dyn Store>) {
    set(&store, partitioned(Some(1), None)).await;
    let jobs = ["ann", "ann", "bob", "ann", "cy", "bob"]
        .iter()
        .map(|user| call(user))
        .collect();
    let ids = store.job_insert_many(jobs).await.unwrap();
    let first = claim(&store, "node-a", 10).await;
    let mut got = users(&first);
    got.sort();
    assert_eq!(got, ["ann", "bob", "cy"], "one of each key at a time");
    assert!(first.jobs.iter().any(|job| job.id == ids[0]), "ann's first");
    assert!(first.jobs.iter().any(|job| job.id == ids[2]), "bob's first");
    let busy = claim(&store, "node-b", 10).await;
    assert!(busy.jobs.is_empty(), "every key with jobs has one running");
    assert!(busy.held_back_until.is_some());

    // Ann's first finishes: her second (not her third) is next, on any node.
    let ann = Claimed {
        jobs: first
            .jobs
            .iter()
            .filter(|job| job.id == ids[0])
            .cloned()
            .collect(),
        held_back_until: None,
    };
    complete(&store, "node-a", &ann).await;
    let next = claim(&store, "node-b", 10).await;
    assert_eq!(
        next.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        [ids[1]]
    );
    assert_eq!(next.jobs[0].partition_key.as_deref(), Some("ann"));

    // Her second fails and waits for its retry: her third must not overtake it.
    let retry = outcome(
        ids[1],
        1,
        Resolution::Retry { at: Utc::now() },
        AttemptClass::Failed(FailureKind::GuestError),
    );
    finish(&store, "node-b", vec![retry]).await;
    assert!(
        users(&claim(&store, "node-b", 10).await).is_empty(),
        "ann's key is held by her job waiting to be retried"
    );
    store.job_stage().await.unwrap();
    let retried = claim(&store, "node-b", 10).await;
    assert_eq!(
        retried.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        [ids[1]],
        "the retried job keeps its place ahead of the later ones"
    );
}

pub(super) async fn a_key_with_many_jobs_does_not_starve_a_key_with_one(store: Arc<dyn Store>) {
    set(&store, partitioned(Some(100), None)).await;
    let mut jobs: Vec<NewJob> = (0..200).map(|_| call("big")).collect();
    jobs.push(call("small"));
    store.job_insert_many(jobs).await.unwrap();
    let first = claim(&store, "node-a", 2).await;
    let mut got = users(&first);
    got.sort();
    assert_eq!(got, ["big", "small"], "keys take turns within a claim");
    // Keys also take turns between claims: the next starts after the last key taken.
    let next = claim(&store, "node-a", 3).await;
    assert_eq!(users(&next), ["big", "big", "big"]);
}

pub(super) async fn a_partition_rate_limits_each_key_alone(store: Arc<dyn Store>) {
    let rate = RateLimit {
        starts: 1,
        period_ms: 60_000,
        burst: 0,
    };
    set(&store, partitioned(None, Some(rate))).await;
    let jobs = ["ann", "ann", "bob", "bob", "bob"]
        .iter()
        .map(|user| call(user))
        .collect();
    store.job_insert_many(jobs).await.unwrap();
    let first = claim(&store, "node-a", 10).await;
    let mut got = users(&first);
    got.sort();
    assert_eq!(got, ["ann", "bob"], "one start per key per minute");
    let until = first.held_back_until.expect("held back by the keys' rate");
    assert!(
        until > Utc::now() + chrono::Duration::seconds(50),
        "{until}"
    );
    assert!(claim(&store, "node-b", 10).await.jobs.is_empty());
    // A key that has not started yet is not held back by the others'.
    store.job_insert_many(vec![call("cy")]).await.unwrap();
    assert_eq!(users(&claim(&store, "node-b", 10).await), ["cy"]);
}

pub(super) async fn partition_keys_come_from_the_client_or_the_queue(store: Arc<dyn Store>) {
    // Enqueued before the queue had partitions: keyed when it gains them.
    let early = store.job_insert(call("ann")).await.unwrap();
    assert_eq!(early.partition_key, None);
    set(&store, partitioned(Some(1), None)).await;
    assert_eq!(
        store
            .job_get(early.id)
            .await
            .unwrap()
            .job
            .partition_key
            .as_deref(),
        Some("ann")
    );
    let mut chosen = call("ann");
    chosen.partition_key = Some("tenant-7".into());
    let mut no_field = NewJob::json("hello", "greet", &serde_json::json!({"other": 1}));
    no_field.queue = QUEUE.into();
    let ids = store
        .job_insert_many(vec![chosen, no_field, call("bob")])
        .await
        .unwrap();
    let keys: Vec<Option<String>> = {
        let mut keys = Vec::new();
        for id in &ids {
            keys.push(store.job_get(*id).await.unwrap().job.partition_key);
        }
        keys
    };
    assert_eq!(
        keys,
        [
            Some("tenant-7".into()),
            Some(String::new()),
            Some("bob".into())
        ]
    );
    // A queue without partitions keeps no key but the client's.
    let plain = store
        .job_insert(NewJob::json(
            "hello",
            "greet",
            &serde_json::json!({"user": "x"}),
        ))
        .await
        .unwrap();
    assert_eq!(plain.partition_key, None);
}

pub(super) async fn a_paused_limited_queue_yields_nothing_and_its_settings_stay_apart(
    store: Arc<dyn Store>,
) {
    set(
        &store,
        Some(QueueLimits {
            global_concurrency: Some(5),
            ..QueueLimits::default()
        }),
    )
    .await;
    store.job_insert(call("ann")).await.unwrap();
    store
        .queue_pause(QueuePause {
            name: QUEUE.into(),
            paused: true,
        })
        .await
        .unwrap();
    let claimed = claim(&store, NODE, 10).await;
    assert!(claimed.jobs.is_empty());
    store
        .queue_pause(QueuePause {
            name: QUEUE.into(),
            paused: false,
        })
        .await
        .unwrap();
    assert_eq!(claim(&store, NODE, 10).await.jobs.len(), 1);
    // The pause and the limits are kept apart: both are still set.
    let settings = store.queue_settings().await.unwrap();
    let queue = settings.iter().find(|q| q.name == QUEUE).unwrap();
    assert!(!queue.paused && queue.limits.is_some());

    // So is autoscaling, which does not make the queue limited.
    let autoscale = Autoscale {
        min: 2,
        max: 8,
        cooldown_secs: 10,
        shrink_after_secs: 30,
        target_wait_ms: 1000,
    };
    store
        .queue_set_autoscale(QueueAutoscale {
            name: QUEUE.into(),
            autoscale: Some(autoscale.clone()),
        })
        .await
        .unwrap();
    set(&store, None).await;
    let settings = store.queue_settings().await.unwrap();
    let queue = settings.iter().find(|q| q.name == QUEUE).unwrap();
    assert_eq!(queue.autoscale.as_ref(), Some(&autoscale));
    assert!(queue.limits.is_none());
    store.job_insert(call("bob")).await.unwrap();
    let plain = claim(&store, NODE, 10).await;
    assert_eq!(plain.jobs.len(), 1);
    assert!(
        plain.held_back_until.is_none(),
        "claimed as a queue without limits"
    );
}
