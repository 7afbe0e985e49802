//! The store conformance suite: every behaviour, run against SQLite and against PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sluice::model::{
    AttemptClass, AttemptRecord, FailureKind, JobFunction, JobState, LimitOverrides, NewJob,
    UniqueKey,
};
use sluice::store::{
    CancelRequests, CronEntry, CronFire, CronPut, JobCount, JobFetch, JobFinishMany, JobList,
    JobOutcome, JobPrune, JobRescue, LeaderElect, LeaseExtend, MinuteStats, Misfire, ModuleGet,
    ModuleUpload, NodeHealth, NodeHeartbeat, QueueConcurrency, QueuePause, Resolution, SqliteStore,
    Store, StoreError,
};

use crate::support::{fresh_postgres_database, temp_dir};

mod breakers;
mod compose;
mod limits;
use self::breakers::*;
use self::compose::*;
use self::limits::*;

async fn sqlite_store() -> Arc<dyn Store> {
    let path = temp_dir("sqlite").join("sluice.db");
    sluice::store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn postgres_store() -> Arc<dyn Store> {
    sluice::store::connect(&fresh_postgres_database().await)
        .await
        .unwrap()
}

/// Runs each listed behaviour once per store.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::sqlite_store().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::postgres_store().await).await;
                }
            )*
        }
    };
}

conformance!(
    insert_and_get_round_trip,
    scheduled_jobs_wait_and_retry_runs_them_now,
    fetch_claims_in_run_order_under_a_lease,
    outcomes_move_states_and_write_history,
    a_stale_lease_cannot_overwrite_the_new_owner,
    leases_extend_and_expired_ones_are_rescued,
    a_lost_attempt_does_not_count_and_a_job_lost_too_often_is_poisoned,
    retryable_jobs_are_staged_when_due,
    cancel_retry_delete_and_typed_not_found,
    prune_removes_only_old_finished_jobs,
    each_finished_state_is_kept_for_its_own_retention,
    pruned_space_is_reused,
    lease_renewal_beside_outcome_writes_never_fails,
    list_count_and_queue_summaries,
    modules_are_versioned_and_deduplicated,
    concurrent_claimers_never_share_a_job,
    bulk_insert_keeps_order_and_refuses_oversized_args,
    migrations_are_idempotent_and_concurrent_safe,
    one_leader_at_a_time,
    nodes_heartbeat,
    inserts_wake_subscribers,
    every_move_follows_the_state_machine,
    a_paused_queue_yields_no_jobs,
    tokens_are_found_by_hash_and_revoked,
    sessions_stand_for_their_token_until_they_end,
    dead_letters_group_discards_and_keep_their_context,
    the_audit_log_pages_newest_first,
    listing_filters_by_function_args_and_id_range,
    queue_settings_keep_pause_and_concurrency_apart,
    a_unique_key_returns_its_holder_until_it_expires,
    a_unique_job_holds_its_key_while_unfinished,
    stats_add_up_by_minute_and_queue,
    a_job_is_read_with_its_attempts_in_one_snapshot,
    cron_entries_are_seeded_replaced_and_removed,
    a_cron_slot_is_inserted_once,
    a_global_concurrency_holds_across_claimers,
    a_rate_limit_admits_its_burst_then_one_per_interval,
    a_partition_limit_of_one_runs_each_key_in_order,
    a_key_with_many_jobs_does_not_starve_a_key_with_one,
    a_partition_rate_limits_each_key_alone,
    partition_keys_come_from_the_client_or_the_queue,
    a_paused_limited_queue_yields_nothing_and_its_settings_stay_apart,
    breaker_states_change_by_compare_and_set,
    breaker_calls_add_up_per_second_and_prune,
    a_breaker_opens_holds_probes_and_closes,
    settings_are_stored_by_name,
    a_completion_writes_what_it_composed_and_nothing_else_does,
    held_jobs_are_released_or_cancelled_as_their_dependencies_end,
    an_output_outlives_retention_until_its_dependents_end,
    a_batch_counts_its_jobs_and_calls_back_once_each,
    an_event_becomes_one_job_per_subscription,
    a_held_unique_job_holds_its_key,
);

async fn settings_are_stored_by_name(store: Arc<dyn Store>) {
    assert_eq!(store.setting_get("retention").await.unwrap(), None);
    assert!(
        store
            .setting_put("retention", r#"{"a":1}"#, false)
            .await
            .unwrap()
    );
    assert!(
        !store
            .setting_put("retention", r#"{"a":2}"#, false)
            .await
            .unwrap(),
        "a seed does not replace"
    );
    let read: serde_json::Value =
        serde_json::from_str(&store.setting_get("retention").await.unwrap().unwrap()).unwrap();
    assert_eq!(read, serde_json::json!({"a": 1}));
    assert!(
        store
            .setting_put("retention", r#"{"a":3}"#, true)
            .await
            .unwrap()
    );
    let read: serde_json::Value =
        serde_json::from_str(&store.setting_get("retention").await.unwrap().unwrap()).unwrap();
    assert_eq!(read, serde_json::json!({"a": 3}));
    assert_eq!(store.setting_get("other").await.unwrap(), None);
}

const NODE: &str = "node-a";
const LEASE: Duration = Duration::from_secs(60);
/// Rescue as the tests use it: jobs come back at once, and are poisoned after 3 losses.
const RESCUE: JobRescue = JobRescue {
    poison_limit: 3,
    backoff: Duration::ZERO,
};

fn job(function: &str) -> NewJob {
    NewJob::json("hello", function, &serde_json::json!({"name": "Ada"}))
}

fn fetch(queue: &str, limit: u32, node: &str, lease: Duration) -> JobFetch {
    JobFetch {
        queue: queue.into(),
        limit,
        node: node.into(),
        lease,
    }
}

fn record(attempt: i32, outcome: AttemptClass) -> AttemptRecord {
    let now = Utc::now();
    AttemptRecord {
        attempt,
        node: NODE.into(),
        module_version: Some(1),
        started_at: now - chrono::Duration::milliseconds(5),
        finished_at: now,
        outcome,
        message: match outcome {
            AttemptClass::Completed => None,
            _ => Some(format!("{outcome} happened")),
        },
        trap_code: None,
        fuel_consumed: 1234,
        duration: Duration::from_millis(5),
        peak_memory_bytes: 65536,
        logs: vec![],
        context: None,
    }
}

fn outcome(id: i64, attempt: i32, resolution: Resolution, class: AttemptClass) -> JobOutcome {
    JobOutcome {
        id,
        attempt,
        resolution,
        record: record(attempt, class),
        composed: Default::default(),
    }
}

async fn finish(store: &Arc<dyn Store>, node: &str, outcomes: Vec<JobOutcome>) -> Vec<i64> {
    store
        .job_finish_many(&JobFinishMany {
            node: node.into(),
            outcomes,
        })
        .await
        .unwrap()
}

async fn insert_and_get_round_trip(store: Arc<dyn Store>) {
    let mut new = job("greet");
    new.queue = "mail".into();
    new.priority = 3;
    new.max_attempts = 7;
    new.module_version = Some(2);
    new.limits = LimitOverrides {
        fuel: Some(99),
        memory_bytes: Some(1 << 20),
        timeout: Some(Duration::from_millis(1500)),
    };
    let inserted = store.job_insert(new.clone()).await.unwrap();
    let got = store.job_get(inserted.id).await.unwrap();
    assert_eq!(got.job, inserted);
    assert!(got.attempts.is_empty());
    let job = got.job;
    assert_eq!(
        (
            job.queue.as_str(),
            job.module.as_str(),
            job.function.as_str()
        ),
        ("mail", "hello", "greet")
    );
    assert_eq!(job.args, new.args);
    assert_eq!(job.state, JobState::Available);
    assert_eq!(
        (
            job.priority,
            job.attempt,
            job.max_attempts,
            job.module_version
        ),
        (3, 0, 7, Some(2))
    );
    assert_eq!(job.limits, new.limits);
    assert!(job.lease_node.is_none() && job.finalized_at.is_none() && job.output.is_none());
}

async fn scheduled_jobs_wait_and_retry_runs_them_now(store: Arc<dyn Store>) {
    let mut later = job("greet");
    later.scheduled_at = Some(Utc::now() + chrono::Duration::hours(1));
    let later = store.job_insert(later).await.unwrap();
    assert_eq!(later.state, JobState::Scheduled);
    assert_eq!(store.job_stage().await.unwrap(), 0);
    assert!(
        store
            .job_fetch(fetch("default", 10, NODE, LEASE))
            .await
            .unwrap()
            .is_empty()
    );

    let now = store.job_retry(later.id.into()).await.unwrap();
    assert_eq!(now.state, JobState::Available);
    let fetched = store
        .job_fetch(fetch("default", 10, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(fetched.iter().map(|j| j.id).collect::<Vec<_>>(), [later.id]);
}

async fn fetch_claims_in_run_order_under_a_lease(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for priority in [5, 0, 9, 0] {
        let mut new = job("greet");
        new.priority = priority;
        ids.push(store.job_insert(new).await.unwrap().id);
    }
    let mut other = job("greet");
    other.queue = "other".into();
    store.job_insert(other).await.unwrap();

    let before = Utc::now() - chrono::Duration::seconds(1);
    let first = store
        .job_fetch(fetch("default", 3, NODE, LEASE))
        .await
        .unwrap();
    // Priority 0 first (oldest first among equals), then 5.
    assert_eq!(
        first.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1], ids[3], ids[0]]
    );
    for job in &first {
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.attempt, 1);
        assert_eq!(job.lease_node.as_deref(), Some(NODE));
        let expires = job.lease_expires_at.unwrap();
        assert!(
            expires > before + chrono::Duration::seconds(50),
            "lease expires at {expires}"
        );
        assert!(job.attempted_at.is_some());
    }
    let second = store
        .job_fetch(fetch("default", 3, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(second.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[2]]);
    assert!(
        store
            .job_fetch(fetch("default", 3, NODE, LEASE))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn outcomes_move_states_and_write_history(store: Arc<dyn Store>) {
    for _ in 0..5 {
        store.job_insert(job("greet")).await.unwrap();
    }
    let jobs = store
        .job_fetch(fetch("default", 5, NODE, LEASE))
        .await
        .unwrap();
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let retry_at = Utc::now() + chrono::Duration::minutes(10);
    let applied = finish(
        &store,
        NODE,
        vec![
            outcome(
                ids[0],
                1,
                Resolution::Complete {
                    output: b"\"done\"".to_vec(),
                },
                AttemptClass::Completed,
            ),
            outcome(
                ids[1],
                1,
                Resolution::Retry { at: retry_at },
                AttemptClass::Failed(FailureKind::GuestError),
            ),
            outcome(
                ids[2],
                1,
                Resolution::Discard,
                AttemptClass::Failed(FailureKind::BadArgs),
            ),
            outcome(
                ids[3],
                1,
                Resolution::Snooze { at: retry_at },
                AttemptClass::Completed,
            ),
            outcome(ids[4], 1, Resolution::Release, AttemptClass::Abandoned),
        ],
    )
    .await;
    assert_eq!(
        applied.iter().copied().collect::<HashSet<_>>(),
        ids.iter().copied().collect()
    );

    let completed = store.job_get(ids[0]).await.unwrap();
    assert_eq!(completed.job.state, JobState::Completed);
    assert_eq!(completed.job.output.as_deref(), Some(&b"\"done\""[..]));
    assert!(completed.job.finalized_at.is_some() && completed.job.lease_node.is_none());
    assert_eq!(completed.attempts.len(), 1);
    let history = &completed.attempts[0];
    assert_eq!(
        (history.attempt, history.node.as_str(), history.outcome),
        (1, NODE, AttemptClass::Completed)
    );
    assert_eq!(
        (history.fuel_consumed, history.module_version),
        (1234, Some(1))
    );
    assert_eq!(history.duration, Duration::from_millis(5));

    let retryable = store.job_get(ids[1]).await.unwrap();
    assert_eq!(retryable.job.state, JobState::Retryable);
    assert_eq!(
        retryable.job.scheduled_at.timestamp_micros(),
        retry_at.timestamp_micros()
    );
    assert_eq!(
        retryable.attempts[0].outcome,
        AttemptClass::Failed(FailureKind::GuestError)
    );
    assert_eq!(
        retryable.attempts[0].message.as_deref(),
        Some("guest_error happened")
    );
    assert!(retryable.job.finalized_at.is_none());

    let discarded = store.job_get(ids[2]).await.unwrap();
    assert_eq!(discarded.job.state, JobState::Discarded);
    assert!(discarded.job.finalized_at.is_some());

    let snoozed = store.job_get(ids[3]).await.unwrap();
    assert_eq!(snoozed.job.state, JobState::Scheduled);
    assert_eq!(
        snoozed.job.attempt, 0,
        "a snooze does not count as an attempt"
    );
    assert!(snoozed.attempts.is_empty());

    let released = store.job_get(ids[4]).await.unwrap();
    assert_eq!(
        (released.job.state, released.job.attempt),
        (JobState::Available, 0)
    );
    assert!(released.job.lease_node.is_none() && released.attempts.is_empty());

    let released = store.job_get(ids[4]).await.unwrap();
    assert_eq!(
        (released.job.state, released.job.attempt),
        (JobState::Available, 0)
    );
    assert!(released.job.lease_node.is_none() && released.attempts.is_empty());

    // A finished job cannot be finished again.
    let again = finish(
        &store,
        NODE,
        vec![outcome(
            ids[0],
            1,
            Resolution::Discard,
            AttemptClass::Completed,
        )],
    )
    .await;
    assert!(again.is_empty());
    assert_eq!(
        store.job_get(ids[0]).await.unwrap().job.state,
        JobState::Completed
    );
}

async fn a_stale_lease_cannot_overwrite_the_new_owner(store: Arc<dyn Store>) {
    let id = store.job_insert(job("greet")).await.unwrap().id;
    // Node A claims with a lease that is already over, as if it stalled.
    let claimed = store
        .job_fetch(fetch("default", 1, "node-a", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, id);
    assert_eq!(store.job_rescue(RESCUE).await.unwrap(), [id]);
    let claimed = store
        .job_fetch(fetch("default", 1, "node-b", LEASE))
        .await
        .unwrap();
    assert_eq!((claimed[0].id, claimed[0].attempt), (id, 2));

    // A wakes up and reports its attempt: refused. B's report is applied.
    let stale = finish(
        &store,
        "node-a",
        vec![outcome(id, 1, Resolution::Discard, AttemptClass::Completed)],
    )
    .await;
    assert!(stale.is_empty());
    let current = Resolution::Complete {
        output: b"1".to_vec(),
    };
    assert_eq!(
        finish(
            &store,
            "node-b",
            vec![outcome(id, 2, current, AttemptClass::Completed)]
        )
        .await,
        [id]
    );

    // The same node cannot report an old attempt of a job it claimed again, either.
    let detail = store.job_get(id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Completed);
    let history: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.node.as_str(), a.outcome))
        .collect();
    assert_eq!(
        history,
        [
            (1, "node-a", AttemptClass::LeaseExpired),
            (2, "node-b", AttemptClass::Completed)
        ]
    );
}

async fn leases_extend_and_expired_ones_are_rescued(store: Arc<dyn Store>) {
    for _ in 0..3 {
        store.job_insert(job("greet")).await.unwrap();
    }
    let mine = store
        .job_fetch(fetch("default", 2, NODE, Duration::ZERO))
        .await
        .unwrap();
    let theirs = store
        .job_fetch(fetch("default", 1, "node-b", Duration::ZERO))
        .await
        .unwrap();
    // Extending refreshes only this node's leases, of the jobs it names.
    let mut named: Vec<i64> = mine.iter().map(|j| j.id).collect();
    named.push(theirs[0].id);
    let extend = |node: &str, jobs: Vec<i64>| LeaseExtend {
        node: node.into(),
        jobs,
        lease: LEASE,
    };
    assert_eq!(
        store.job_lease_extend(extend(NODE, named)).await.unwrap(),
        2
    );
    // A job the node no longer names keeps its old lease and is rescued.
    let abandoned = store.job_insert(job("greet")).await.unwrap().id;
    store
        .job_fetch(fetch("default", 1, NODE, Duration::ZERO))
        .await
        .unwrap();
    let still_mine = mine.iter().map(|j| j.id).collect();
    assert_eq!(
        store
            .job_lease_extend(extend(NODE, still_mine))
            .await
            .unwrap(),
        2
    );
    let rescued = store.job_rescue(RESCUE).await.unwrap();
    assert_eq!(rescued, [theirs[0].id, abandoned]);
    for job in &mine {
        let now = store.job_get(job.id).await.unwrap().job;
        assert_eq!(now.state, JobState::Running);
        assert!(now.lease_expires_at.unwrap() > Utc::now() + chrono::Duration::seconds(50));
    }
    let rescued = store.job_get(theirs[0].id).await.unwrap();
    assert_eq!(rescued.job.state, JobState::Available);
    assert!(rescued.job.lease_node.is_none());
    assert_eq!(rescued.attempts[0].outcome, AttemptClass::LeaseExpired);
    assert!(
        rescued.attempts[0]
            .message
            .as_deref()
            .unwrap()
            .contains("node-b")
    );
}

async fn a_lost_attempt_does_not_count_and_a_job_lost_too_often_is_poisoned(store: Arc<dyn Store>) {
    let mut one_attempt = job("greet");
    one_attempt.max_attempts = 1;
    let id = store.job_insert(one_attempt).await.unwrap().id;
    let lose = |store: Arc<dyn Store>, rescue: JobRescue| async move {
        let claimed = store
            .job_fetch(fetch("default", 1, NODE, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            store.job_rescue(rescue).await.unwrap(),
            claimed.iter().map(|j| j.id).collect::<Vec<_>>()
        );
    };
    // Lost twice: back each time, though its one attempt is "used", since losses do not count.
    lose(store.clone(), RESCUE).await;
    lose(store.clone(), RESCUE).await;
    let lost = store.job_get(id).await.unwrap().job;
    assert_eq!(lost.state, JobState::Available);
    assert_eq!(
        (lost.attempt, lost.lost_attempts, lost.counted_attempts()),
        (2, 2, 0)
    );
    // The third loss in a row dead-letters it, with a class of its own.
    lose(store.clone(), RESCUE).await;
    let detail = store.job_get(id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Discarded);
    assert!(detail.job.finalized_at.is_some());
    let classes: Vec<AttemptClass> = detail.attempts.iter().map(|a| a.outcome).collect();
    use AttemptClass::{LeaseExpired, Poisoned};
    assert_eq!(classes, [LeaseExpired, LeaseExpired, Poisoned]);
    assert!(
        detail.attempts[2]
            .message
            .as_deref()
            .unwrap()
            .contains("3 times in a row")
    );

    // An attempt that ends resets the count; with a backoff the rescued job waits for it.
    let other = store.job_insert(job("greet")).await.unwrap().id;
    lose(store.clone(), RESCUE).await;
    let claimed = store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    let failed = AttemptClass::Failed(FailureKind::Trap);
    let soon = Utc::now() - chrono::Duration::seconds(1);
    finish(
        &store,
        NODE,
        vec![outcome(
            other,
            claimed[0].attempt,
            Resolution::Retry { at: soon },
            failed,
        )],
    )
    .await;
    store.job_stage().await.unwrap();
    let waiting = JobRescue {
        poison_limit: 2,
        backoff: Duration::from_secs(3600),
    };
    lose(store.clone(), waiting).await;
    let waited = store.job_get(other).await.unwrap().job;
    assert_eq!(
        waited.state,
        JobState::Retryable,
        "one loss in a row since the last end"
    );
    assert!(waited.scheduled_at > Utc::now() + chrono::Duration::minutes(50));
}

async fn retryable_jobs_are_staged_when_due(store: Arc<dyn Store>) {
    let due = store.job_insert(job("greet")).await.unwrap().id;
    let not_due = store.job_insert(job("greet")).await.unwrap().id;
    store
        .job_fetch(fetch("default", 2, NODE, LEASE))
        .await
        .unwrap();
    let past = Utc::now() - chrono::Duration::seconds(1);
    let future = Utc::now() + chrono::Duration::hours(1);
    let failed = AttemptClass::Failed(FailureKind::Trap);
    finish(
        &store,
        NODE,
        vec![
            outcome(due, 1, Resolution::Retry { at: past }, failed),
            outcome(not_due, 1, Resolution::Retry { at: future }, failed),
        ],
    )
    .await;
    assert_eq!(store.job_stage().await.unwrap(), 1);
    assert_eq!(
        store.job_get(due).await.unwrap().job.state,
        JobState::Available
    );
    assert_eq!(
        store.job_get(not_due).await.unwrap().job.state,
        JobState::Retryable
    );
    let again = store
        .job_fetch(fetch("default", 5, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!((again.len(), again[0].id, again[0].attempt), (1, due, 2));
}

async fn cancel_retry_delete_and_typed_not_found(store: Arc<dyn Store>) {
    let id = store.job_insert(job("greet")).await.unwrap().id;
    let cancelled = store.job_cancel(id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finalized_at.is_some());
    assert!(matches!(
        store.job_cancel(id).await,
        Err(StoreError::InvalidTransition {
            state: JobState::Cancelled,
            wanted: JobState::Cancelled,
            ..
        })
    ));
    let retried = store.job_retry(id.into()).await.unwrap();
    assert_eq!(
        (retried.state, retried.finalized_at),
        (JobState::Available, None)
    );

    // Cancelling a running job is a request its node sees and resolves: the job stays
    // running until the node writes the `cancelled` attempt.
    let running = store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    assert!(matches!(
        store.job_retry(id.into()).await,
        Err(StoreError::InvalidTransition {
            state: JobState::Running,
            ..
        })
    ));
    let requests = |node: &str| CancelRequests {
        node: node.into(),
        jobs: vec![id],
    };
    assert!(
        store
            .job_cancel_requests(requests(NODE))
            .await
            .unwrap()
            .is_empty()
    );
    let requested = store.job_cancel(id).await.unwrap();
    assert_eq!(requested.state, JobState::Running);
    assert_eq!(
        store.job_cancel_requests(requests(NODE)).await.unwrap(),
        [id]
    );
    assert!(
        store
            .job_cancel_requests(requests("node-b"))
            .await
            .unwrap()
            .is_empty()
    );
    let applied = finish(
        &store,
        NODE,
        vec![outcome(
            id,
            running[0].attempt,
            Resolution::Cancel,
            AttemptClass::Cancelled,
        )],
    )
    .await;
    assert_eq!(applied, [id]);
    let detail = store.job_get(id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Cancelled);
    assert!(detail.job.finalized_at.is_some());
    assert_eq!(
        detail.attempts.last().unwrap().outcome,
        AttemptClass::Cancelled
    );

    // An attempt that completed before the interrupt landed stays completed.
    store.job_retry(id.into()).await.unwrap();
    let running = store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    assert!(
        store
            .job_cancel_requests(requests(NODE))
            .await
            .unwrap()
            .is_empty(),
        "a retry clears the old request"
    );
    store.job_cancel(id).await.unwrap();
    let done = Resolution::Complete {
        output: b"1".to_vec(),
    };
    finish(
        &store,
        NODE,
        vec![outcome(
            id,
            running[0].attempt,
            done,
            AttemptClass::Completed,
        )],
    )
    .await;
    assert_eq!(
        store.job_get(id).await.unwrap().job.state,
        JobState::Completed
    );

    // A node that died with a request pending: rescue cancels the job instead of rerunning it.
    store.job_retry(id.into()).await.unwrap();
    store
        .job_fetch(fetch("default", 1, NODE, Duration::ZERO))
        .await
        .unwrap();
    store.job_cancel(id).await.unwrap();
    assert_eq!(store.job_rescue(RESCUE).await.unwrap(), [id]);
    assert_eq!(
        store.job_get(id).await.unwrap().job.state,
        JobState::Cancelled
    );

    // A finished job retried gets one more attempt even past its max.
    let mut once = job("greet");
    once.max_attempts = 1;
    let once = store.job_insert(once).await.unwrap().id;
    store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    finish(
        &store,
        NODE,
        vec![outcome(
            once,
            1,
            Resolution::Discard,
            AttemptClass::Failed(FailureKind::Panic),
        )],
    )
    .await;
    let retried = store.job_retry(once.into()).await.unwrap();
    assert_eq!(
        (retried.state, retried.attempt, retried.max_attempts),
        (JobState::Available, 1, 2)
    );

    store.job_delete(id).await.unwrap();
    assert!(matches!(store.job_get(id).await, Err(StoreError::JobNotFound(x)) if x == id));
    assert!(matches!(
        store.job_delete(id).await,
        Err(StoreError::JobNotFound(_))
    ));
    assert!(matches!(
        store.job_cancel(424242).await,
        Err(StoreError::JobNotFound(424242))
    ));
    assert!(matches!(
        store.job_retry(424242.into()).await,
        Err(StoreError::JobNotFound(424242))
    ));
}

async fn prune_removes_only_old_finished_jobs(store: Arc<dyn Store>) {
    // Five completed, one discarded, one cancelled, one waiting.
    let ids = store.job_insert_many(vec![job("greet"); 7]).await.unwrap();
    let waiting = store.job_insert(job("greet")).await.unwrap().id;
    store.job_cancel(ids[6]).await.unwrap();
    store
        .job_fetch(fetch("default", 6, NODE, LEASE))
        .await
        .unwrap();
    let mut outcomes: Vec<JobOutcome> = ids[..5]
        .iter()
        .map(|&id| {
            outcome(
                id,
                1,
                Resolution::Complete {
                    output: b"1".to_vec(),
                },
                AttemptClass::Completed,
            )
        })
        .collect();
    outcomes.push(outcome(
        ids[5],
        1,
        Resolution::Discard,
        AttemptClass::Failed(FailureKind::BadArgs),
    ));
    finish(&store, NODE, outcomes).await;
    let prune = |state: JobState, finished_before: chrono::DateTime<Utc>, limit: u32| {
        let store = store.clone();
        async move {
            store
                .job_prune(JobPrune {
                    state,
                    finished_before,
                    limit,
                })
                .await
                .unwrap()
        }
    };
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    let soon = Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(prune(JobState::Completed, an_hour_ago, 100).await, 0);
    // Each state alone, and at most the limit per call, oldest first.
    assert_eq!(prune(JobState::Discarded, soon, 100).await, 1);
    assert_eq!(prune(JobState::Completed, soon, 2).await, 2);
    assert!(matches!(
        store.job_get(ids[0]).await,
        Err(StoreError::JobNotFound(_))
    ));
    assert_eq!(
        store.job_get(ids[4]).await.unwrap().job.state,
        JobState::Completed,
        "the newest stay for later batches"
    );
    assert_eq!(prune(JobState::Completed, soon, 2).await, 2);
    assert_eq!(prune(JobState::Completed, soon, 2).await, 1);
    assert_eq!(prune(JobState::Completed, soon, 2).await, 0);
    assert_eq!(
        store.job_get(ids[6]).await.unwrap().job.state,
        JobState::Cancelled
    );
    assert_eq!(prune(JobState::Cancelled, soon, 100).await, 1);
    // Unfinished jobs are never pruned, whatever the state asked.
    assert_eq!(prune(JobState::Available, soon, 100).await, 0);
    assert_eq!(
        store.job_get(waiting).await.unwrap().job.state,
        JobState::Available
    );
}

/// The leader's prune: each finished state kept for its own retention, deleted in batches
/// until none is left.
async fn each_finished_state_is_kept_for_its_own_retention(store: Arc<dyn Store>) {
    let batches = sluice::maintenance::PRUNE_BATCH as usize;
    let count = batches + batches / 4;
    let ids = store
        .job_insert_many(vec![job("greet"); count + 1])
        .await
        .unwrap();
    store.job_cancel(ids[count]).await.unwrap();
    let mut claimed = 0;
    while claimed < count {
        claimed += store
            .job_fetch(fetch("default", 1000, NODE, LEASE))
            .await
            .unwrap()
            .len();
    }
    let outcomes: Vec<JobOutcome> = ids[..count]
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            if i % 2 == 0 {
                outcome(
                    id,
                    1,
                    Resolution::Complete { output: vec![] },
                    AttemptClass::Completed,
                )
            } else {
                outcome(
                    id,
                    1,
                    Resolution::Discard,
                    AttemptClass::Failed(FailureKind::BadArgs),
                )
            }
        })
        .collect();
    for chunk in outcomes.chunks(500) {
        finish(&store, NODE, chunk.to_vec()).await;
    }
    let count_of = |state: JobState| {
        let store = store.clone();
        async move {
            store
                .job_count(JobCount {
                    state: Some(state),
                    queue: None,
                    module: None,
                })
                .await
                .unwrap()
        }
    };
    // Dead letters kept for a day; completed and cancelled jobs not at all.
    let retention = sluice::config::Retention {
        completed: Duration::ZERO,
        discarded: Duration::from_secs(24 * 3600),
        cancelled: Duration::ZERO,
    };
    let later = Utc::now() + chrono::Duration::seconds(5);
    let pruned = sluice::maintenance::prune_finished(store.as_ref(), &retention, later)
        .await
        .unwrap();
    let completed = count.div_ceil(2) as u64;
    assert_eq!(
        pruned,
        completed + 1,
        "every completed job and the cancelled one"
    );
    assert_eq!(count_of(JobState::Completed).await, 0);
    assert_eq!(count_of(JobState::Cancelled).await, 0);
    assert_eq!(count_of(JobState::Discarded).await, (count / 2) as u64);
}

/// Runs `count` jobs to completion and prunes them; returns the store's size before the
/// prune.
async fn run_and_prune(store: &Arc<dyn Store>, count: usize) -> u64 {
    let jobs = (0..count).map(|_| job("greet")).collect();
    store.job_insert_many(jobs).await.unwrap();
    let claimed = store
        .job_fetch(fetch("default", count as u32, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed.len(), count);
    let complete = || Resolution::Complete {
        output: vec![b'x'; 256],
    };
    let outcomes = claimed
        .iter()
        .map(|job| outcome(job.id, 1, complete(), AttemptClass::Completed))
        .collect();
    assert_eq!(finish(store, NODE, outcomes).await.len(), count);
    let sizes = store.storage_sizes().await.unwrap();
    assert!(
        sizes
            .iter()
            .any(|(name, bytes)| name == "sluice_jobs" && *bytes > 0),
        "the jobs table is among the sizes: {sizes:?}"
    );
    let soon = Utc::now() + chrono::Duration::seconds(5);
    let pruned = sluice::maintenance::prune_finished(
        store.as_ref(),
        &sluice::config::Retention::all(Duration::ZERO),
        soon,
    )
    .await
    .unwrap();
    assert_eq!(pruned, count as u64);
    sizes.iter().map(|(_, bytes)| bytes).sum()
}

/// After a prune, the space of the pruned jobs serves the next ones: SQLite reuses free
/// pages, and on PostgreSQL the leader's `reclaim_space` vacuums when autovacuum is off
/// (as on this project's CI server). Where autovacuum is on, it reclaims in its own time.
async fn pruned_space_is_reused(store: Arc<dyn Store>) {
    let first = run_and_prune(&store, 2_000).await;
    let vacuumed = store.reclaim_space().await.unwrap();
    let second = run_and_prune(&store, 2_000).await;
    store.reclaim_space().await.unwrap();
    let third = run_and_prune(&store, 2_000).await;
    println!(
        "store sizes before each prune: {first}, {second}, {third} bytes; vacuumed {vacuumed}"
    );
    if vacuumed || !store.capabilities().multi_node {
        assert!(
            third as f64 <= first as f64 * 1.5,
            "the third round grew the store from {first} to {third} bytes"
        );
    }
}

/// The heartbeat renews the leases of every job a node holds while the completer writes
/// their outcomes, batch by batch and in another order: neither statement may fail (they
/// used to deadlock now and then on PostgreSQL) and every outcome lands.
async fn lease_renewal_beside_outcome_writes_never_fails(store: Arc<dyn Store>) {
    let count = 3_000;
    let jobs = (0..count).map(|_| job("greet")).collect();
    store.job_insert_many(jobs).await.unwrap();
    let claimed = store
        .job_fetch(fetch("default", count as u32, NODE, LEASE))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|job| job.id).collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = {
        let (store, ids, done) = (store.clone(), ids.clone(), done.clone());
        tokio::spawn(async move {
            let mut beats = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let lease = LeaseExtend {
                    node: NODE.into(),
                    jobs: ids.clone(),
                    lease: LEASE,
                };
                store.job_lease_extend(lease).await.unwrap();
                beats += 1;
            }
            beats
        })
    };
    let mut applied = 0;
    for batch in ids.rchunks(100) {
        let outcomes = batch
            .iter()
            .rev()
            .map(|&id| {
                let complete = Resolution::Complete {
                    output: b"1".to_vec(),
                };
                outcome(id, 1, complete, AttemptClass::Completed)
            })
            .collect();
        applied += finish(&store, NODE, outcomes).await.len();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let beats = heartbeat.await.unwrap();
    assert_eq!(applied, count);
    assert!(beats > 0, "the heartbeat ran beside the outcome writes");
    let completed = JobCount {
        state: Some(JobState::Completed),
        queue: None,
        module: None,
    };
    assert_eq!(store.job_count(completed).await.unwrap(), count as u64);
}

async fn list_count_and_queue_summaries(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (queue, module) in [
        ("a", "m1"),
        ("a", "m2"),
        ("b", "m1"),
        ("b", "m1"),
        ("b", "m2"),
    ] {
        let mut new = job("greet");
        new.queue = queue.into();
        new.module = module.into();
        ids.push(store.job_insert(new).await.unwrap().id);
    }
    store.job_fetch(fetch("b", 1, NODE, LEASE)).await.unwrap();
    let all = store
        .job_list(JobList {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    let page = store
        .job_list(JobList {
            limit: 2,
            before_id: Some(ids[3]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let b_m1 = JobList {
        queue: Some("b".into()),
        module: Some("m1".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.job_list(b_m1).await.unwrap().len(), 2);
    let running = JobList {
        state: Some(JobState::Running),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.job_list(running).await.unwrap()[0].id, ids[2]);

    let count = |state, queue: Option<&str>, module: Option<&str>| JobCount {
        state,
        queue: queue.map(String::from),
        module: module.map(String::from),
    };
    assert_eq!(store.job_count(count(None, None, None)).await.unwrap(), 5);
    assert_eq!(
        store
            .job_count(count(Some(JobState::Available), Some("b"), None))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .job_count(count(None, None, Some("m2")))
            .await
            .unwrap(),
        2
    );
    let work_left = |queues: &[&str]| {
        let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        let store = store.clone();
        async move { store.job_work_left(&queues).await.unwrap() }
    };
    assert!(work_left(&["b"]).await);
    assert!(work_left(&["no-such-queue", "a"]).await);
    assert!(!work_left(&["no-such-queue"]).await);

    store
        .queue_pause(QueuePause {
            name: "c".into(),
            paused: true,
        })
        .await
        .unwrap();
    let queues = store.queue_list(None).await.unwrap();
    let names: Vec<_> = queues.iter().map(|q| (q.name.as_str(), q.paused)).collect();
    assert_eq!(names, [("a", false), ("b", false), ("c", true)]);
    assert_eq!(queues[0].count(JobState::Available), 2);
    assert_eq!(
        (
            queues[1].count(JobState::Available),
            queues[1].count(JobState::Running)
        ),
        (2, 1)
    );
    store
        .queue_pause(QueuePause {
            name: "c".into(),
            paused: false,
        })
        .await
        .unwrap();
    assert!(!store.queue_list(None).await.unwrap()[2].paused);

    // Under a cap each state is counted only so far, across queues, and says so.
    let capped = store.queue_list(Some(3)).await.unwrap();
    let available: u64 = capped.iter().map(|q| q.count(JobState::Available)).sum();
    assert_eq!(available, 3, "{capped:?}");
    assert_eq!(capped[0].capped, [JobState::Available], "{capped:?}");
    assert_eq!(capped[1].count(JobState::Running), 1);
    let exact = store.queue_list(Some(1_000)).await.unwrap();
    assert!(exact.iter().all(|q| q.capped.is_empty()), "{exact:?}");
    let counts = |queues: &[sluice::store::QueueSummary]| {
        let sorted = |q: &sluice::store::QueueSummary| {
            let mut counts: Vec<_> = q.counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            counts.sort();
            counts
        };
        queues.iter().map(sorted).collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&exact),
        counts(&store.queue_list(None).await.unwrap())
    );
}

async fn queue_settings_keep_pause_and_concurrency_apart(store: Arc<dyn Store>) {
    assert!(store.queue_settings().await.unwrap().is_empty());
    let set = |name: &str, concurrency: Option<u32>| QueueConcurrency {
        name: name.into(),
        concurrency,
    };
    store
        .queue_set_concurrency(set("mail", Some(3)))
        .await
        .unwrap();
    store
        .queue_pause(QueuePause {
            name: "mail".into(),
            paused: true,
        })
        .await
        .unwrap();
    store
        .queue_set_concurrency(set("reports", Some(1)))
        .await
        .unwrap();
    let settings = store.queue_settings().await.unwrap();
    let mut found: Vec<_> = settings
        .iter()
        .map(|q| (q.name.as_str(), q.paused, q.concurrency))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [("mail", true, Some(3)), ("reports", false, Some(1))]
    );
    // Clearing the concurrency leaves the pause; the summaries show both.
    store
        .queue_set_concurrency(set("mail", None))
        .await
        .unwrap();
    let queues = store.queue_list(None).await.unwrap();
    let found: Vec<_> = queues
        .iter()
        .map(|q| (q.name.as_str(), q.paused, q.concurrency))
        .collect();
    assert_eq!(found, [("mail", true, None), ("reports", false, Some(1))]);
}

async fn a_unique_key_returns_its_holder_until_it_expires(store: Arc<dyn Store>) {
    let keyed = |key: &str, expires_in: chrono::Duration| {
        let mut job = job("greet");
        job.unique = Some(UniqueKey {
            key: key.into(),
            expires_at: Some(Utc::now() + expires_in),
            states: None,
        });
        job
    };
    let hour = chrono::Duration::hours(1);
    let first = store.job_enqueue(vec![keyed("a", hour)]).await.unwrap()[0];
    assert!(!first.existing);
    let again = store.job_enqueue(vec![keyed("a", hour)]).await.unwrap()[0];
    assert_eq!((again.id, again.existing), (first.id, true));

    // In one batch: a new key twice, a job without one, and the held key.
    let batch = store
        .job_enqueue(vec![
            keyed("b", hour),
            job("greet"),
            keyed("b", hour),
            keyed("a", hour),
        ])
        .await
        .unwrap();
    let found: Vec<bool> = batch.iter().map(|e| e.existing).collect();
    assert_eq!(found, [false, false, true, true]);
    assert!(batch[0].id < batch[1].id);
    assert_eq!(batch[2].id, batch[0].id);
    assert_eq!(batch[3].id, first.id);
    let all = JobCount {
        state: None,
        queue: None,
        module: None,
    };
    assert_eq!(store.job_count(all).await.unwrap(), 3);

    // An expired key is free: the next enqueue with it makes a new job.
    let stale = store
        .job_enqueue(vec![keyed("c", -chrono::Duration::seconds(1))])
        .await
        .unwrap()[0];
    let fresh = store.job_enqueue(vec![keyed("c", hour)]).await.unwrap()[0];
    assert!(!fresh.existing);
    assert_ne!(fresh.id, stale.id);
    // A deleted job gives its key up too.
    store.job_delete(fresh.id).await.unwrap();
    assert!(!store.job_enqueue(vec![keyed("c", hour)]).await.unwrap()[0].existing);
}

async fn stats_add_up_by_minute_and_queue(store: Arc<dyn Store>) {
    let now = MinuteStats::minute_of(Utc::now());
    let earlier = now - chrono::Duration::minutes(3);
    let counted = |minute, queue: &str, completed: u32, failed: u32, wait_ms: u64| {
        let mut stats = MinuteStats::new(minute, queue.into());
        for n in 0..completed + failed {
            stats.count(n < completed, Duration::from_millis(wait_ms));
        }
        stats
    };
    // Two nodes' counts for the same minute and queue add up.
    store
        .stats_add(vec![
            counted(now, "a", 3, 1, 4),
            counted(earlier, "a", 2, 0, 40),
        ])
        .await
        .unwrap();
    store
        .stats_add(vec![
            counted(now, "a", 1, 0, 4),
            counted(now, "b", 5, 5, 1500),
        ])
        .await
        .unwrap();
    let rows = store.stats_since(earlier, None).await.unwrap();
    let found: Vec<_> = rows
        .iter()
        .map(|r| (r.minute, r.queue.as_str(), r.completed, r.failed))
        .collect();
    assert_eq!(
        found,
        [(earlier, "a", 2, 0), (now, "a", 4, 1), (now, "b", 5, 5)]
    );
    assert_eq!(rows[1].wait_quantile_ms(0.5), Some(5));
    assert_eq!(rows[2].wait_quantile_ms(0.99), Some(2000));
    let only_b = store.stats_since(earlier, Some("b".into())).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert!(
        store
            .stats_since(now + chrono::Duration::minutes(1), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stats_prune(now).await.unwrap(), 1);
    assert_eq!(store.stats_since(earlier, None).await.unwrap().len(), 2);
}

async fn modules_are_versioned_and_deduplicated(store: Arc<dyn Store>) {
    let upload = |wasm: &[u8]| ModuleUpload {
        name: "hello".into(),
        digest: sluice::sandbox::digest_of(wasm),
        wasm: wasm.to_vec(),
        functions: vec![JobFunction {
            name: "greet".into(),
            description: "says hello".into(),
        }],
    };
    let first = store.module_upload(upload(b"v1 bytes")).await.unwrap();
    assert_eq!((first.module.version, first.already_present), (1, false));
    assert_eq!(first.module.size_bytes, 8);
    let same = store.module_upload(upload(b"v1 bytes")).await.unwrap();
    assert_eq!((same.module.version, same.already_present), (1, true));
    let second = store.module_upload(upload(b"v2 bytes!")).await.unwrap();
    assert_eq!((second.module.version, second.already_present), (2, false));
    let mut other = upload(b"other");
    other.name = "other".into();
    store.module_upload(other).await.unwrap();

    let latest = store
        .module_get(ModuleGet {
            name: "hello".into(),
            version: None,
        })
        .await
        .unwrap();
    assert_eq!(latest, second.module);
    assert!(latest.exports("greet") && !latest.exports("nope"));
    let v1 = store
        .module_get(ModuleGet {
            name: "hello".into(),
            version: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(v1.digest, sluice::sandbox::digest_of(b"v1 bytes"));
    assert_eq!(store.module_wasm("hello", 1).await.unwrap(), b"v1 bytes");
    assert!(matches!(
        store
            .module_get(ModuleGet {
                name: "hello".into(),
                version: Some(9)
            })
            .await,
        Err(StoreError::ModuleVersionNotFound { version: 9, .. })
    ));
    assert!(matches!(
        store.module_get(ModuleGet { name: "nope".into(), version: None }).await,
        Err(StoreError::ModuleNotFound(name)) if name == "nope"
    ));
    let listed: Vec<_> = store
        .module_list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.version))
        .collect();
    assert_eq!(listed, [("hello".to_string(), 2), ("other".to_string(), 1)]);
}

async fn concurrent_claimers_never_share_a_job(store: Arc<dyn Store>) {
    const JOBS: usize = 10_000;
    const CLAIMERS: usize = 8;
    let ids = store
        .job_insert_many((0..JOBS).map(|_| job("noop")).collect())
        .await
        .unwrap();
    assert_eq!(ids.len(), JOBS);
    let mut claimers = Vec::new();
    for n in 0..CLAIMERS {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let node = format!("claimer-{n}");
            let mut claimed = Vec::new();
            loop {
                let batch = store
                    .job_fetch(fetch("default", 50, &node, LEASE))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                assert!(
                    batch
                        .iter()
                        .all(|j| j.lease_node.as_deref() == Some(node.as_str()))
                );
                claimed.extend(batch.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut busy_claimers = 0;
    for claimer in claimers {
        let claimed = claimer.await.unwrap();
        busy_claimers += usize::from(!claimed.is_empty());
        for id in claimed {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS);
    assert!(
        busy_claimers > 1,
        "only one claimer got work; the test proved nothing"
    );
}

async fn bulk_insert_keeps_order_and_refuses_oversized_args(store: Arc<dyn Store>) {
    let jobs: Vec<NewJob> = (0..5000)
        .map(|n| {
            NewJob::json(
                "hello",
                "echo",
                &serde_json::json!({"text": n.to_string(), "times": 1}),
            )
        })
        .collect();
    let ids = store.job_insert_many(jobs.clone()).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let last = store.job_get(ids[4999]).await.unwrap().job;
    assert_eq!(last.args, jobs[4999].args);

    let mut huge = job("greet");
    huge.args = vec![b' '; sluice::store::DEFAULT_MAX_ARGS_BYTES + 1];
    let refused = store.job_insert_many(vec![job("greet"), huge]).await;
    assert!(
        matches!(refused, Err(StoreError::ArgsTooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.job_count(JobCount::default()).await.unwrap(),
        5000,
        "nothing of a refused batch is stored"
    );
}

async fn migrations_are_idempotent_and_concurrent_safe(store: Arc<dyn Store>) {
    store.job_insert(job("greet")).await.unwrap();
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    a.unwrap();
    b.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.job_count(JobCount::default()).await.unwrap(), 1);
}

async fn one_leader_at_a_time(store: Arc<dyn Store>) {
    let elect = |node: &str, term: Duration| LeaderElect {
        node: node.into(),
        term,
    };
    assert!(store.leader_elect(elect("a", LEASE)).await.unwrap());
    assert!(!store.leader_elect(elect("b", LEASE)).await.unwrap());
    assert!(
        store.leader_elect(elect("a", LEASE)).await.unwrap(),
        "the leader renews its term"
    );
    store.leader_resign("a").await.unwrap();
    assert!(
        store
            .leader_elect(elect("b", Duration::ZERO))
            .await
            .unwrap()
    );
    // b's term is already over: a takes over without b resigning.
    assert!(store.leader_elect(elect("a", LEASE)).await.unwrap());
    assert!(!store.leader_elect(elect("b", LEASE)).await.unwrap());
}

async fn nodes_heartbeat(store: Arc<dyn Store>) {
    let beat = |running| NodeHeartbeat {
        id: "n1".into(),
        host: "box".into(),
        pid: 42,
        queues: vec!["default".into()],
        running,
        version: "9.9.9".into(),
        lease: Duration::from_secs(30),
    };
    store.node_heartbeat(beat(0)).await.unwrap();
    let first = store.node_list().await.unwrap();
    store.node_heartbeat(beat(3)).await.unwrap();
    let nodes = store.node_list().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        (nodes[0].running, nodes[0].pid, nodes[0].queues.clone()),
        (3, 42, vec!["default".to_string()])
    );
    assert_eq!(nodes[0].started_at, first[0].started_at);
    assert!(nodes[0].heartbeat_at >= first[0].heartbeat_at);
    assert_eq!(
        (nodes[0].version.as_str(), nodes[0].lease),
        ("9.9.9", Duration::from_secs(30))
    );
    assert!(!nodes[0].leader);
    let beat_at = nodes[0].heartbeat_at;
    let health = |after_secs| nodes[0].health(beat_at + chrono::Duration::seconds(after_secs));
    assert_eq!(
        [health(1), health(25), health(31)],
        [NodeHealth::Up, NodeHealth::Late, NodeHealth::Dead]
    );
    // The leader is marked as such while its term runs.
    let elect = LeaderElect {
        node: "n1".into(),
        term: LEASE,
    };
    assert!(store.leader_elect(elect).await.unwrap());
    assert!(store.node_list().await.unwrap()[0].leader);
    // Pruning forgets only nodes whose heartbeat is older than the cut.
    let before_beat = beat_at - chrono::Duration::seconds(1);
    assert_eq!(store.node_prune(before_beat).await.unwrap(), 0);
    assert_eq!(
        store
            .node_prune(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    store.node_heartbeat(beat(0)).await.unwrap();
    store.node_remove("n1").await.unwrap();
    assert!(store.node_list().await.unwrap().is_empty());
}

async fn inserts_wake_subscribers(store: Arc<dyn Store>) {
    let mut wakeups = store.subscribe();
    let mut later = job("greet");
    later.queue = "later".into();
    later.scheduled_at = Some(Utc::now() + chrono::Duration::hours(1));
    // The listener may need a moment to start; keep inserting until a wake-up for "mail"
    // arrives, and never one for a queue whose job is not available.
    let woken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            store.job_insert(later.clone()).await.unwrap();
            let mut now = job("greet");
            now.queue = "mail".into();
            store.job_insert(now).await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), wakeups.recv()).await {
                Ok(Ok(queue)) if queue == "mail" => return queue,
                Ok(Ok(queue)) => assert_ne!(queue, "later"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(woken.unwrap(), "mail");
}

#[tokio::test]
async fn an_unreachable_database_is_a_typed_retryable_error() {
    let error = sluice::store::connect("postgres://postgres@127.0.0.1:1/nowhere")
        .await
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
    let error = sluice::store::connect("mysql://x").await.err().unwrap();
    assert!(matches!(error, StoreError::UnsupportedUrl(_)));
    let error = sluice::store::connect("sqlite:///nonexistent-dir/sub/x.db")
        .await
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn postgres_survives_killed_connections() {
    let url = fresh_postgres_database().await;
    let store = sluice::store::connect(&url).await.unwrap();
    store.job_insert(job("greet")).await.unwrap();
    let database = url.rsplit('/').next().unwrap().to_string();
    let admin = sluice::store::connect(&url).await.unwrap();
    drop(admin);
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&crate::support::postgres_admin_url())
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&database)
        .execute(&mut conn)
        .await
        .unwrap();
    // The first call may see the dead connection: it must be a typed, retryable error.
    let mut recovered = false;
    for _ in 0..5 {
        match store.job_count(JobCount::default()).await {
            Ok(count) => {
                assert_eq!(count, 1);
                recovered = true;
                break;
            }
            Err(error) => assert!(error.is_retryable(), "{error:?}"),
        }
    }
    assert!(recovered, "the store did not reconnect");
}

/// PostgreSQL's history has no foreign key (it cost a row lock per attempt recorded); a
/// statement trigger deletes a deleted job's attempts instead, for single deletes and prunes.
#[tokio::test]
async fn postgres_deleting_jobs_deletes_their_history() {
    let url = fresh_postgres_database().await;
    let store = sluice::store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(store.job_insert(job("greet")).await.unwrap().id);
    }
    let claimed = store
        .job_fetch(fetch("default", 3, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let outcomes = ids
        .iter()
        .map(|&id| {
            outcome(
                id,
                1,
                Resolution::Complete {
                    output: b"1".to_vec(),
                },
                AttemptClass::Completed,
            )
        })
        .collect();
    finish(&store, NODE, outcomes).await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut history = async || -> Vec<i64> {
        sqlx::query_scalar("SELECT job_id FROM sluice_attempts ORDER BY job_id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(history().await, ids);

    store.job_delete(ids[0]).await.unwrap();
    assert_eq!(history().await, ids[1..]);

    let pruned = store
        .job_prune(JobPrune {
            state: JobState::Completed,
            finished_before: Utc::now() + chrono::Duration::hours(1),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(history().await, Vec::<i64>::new());
}

/// SQLite writes a batch of outcomes as one statement list inside one transaction; when a
/// statement in the middle fails, nothing of the batch is kept and the one writer connection
/// is left usable, not stuck inside the failed transaction.
#[tokio::test]
async fn sqlite_a_failed_outcome_batch_keeps_nothing_and_the_writer_goes_on() {
    let path = temp_dir("sqlite-failed-flush").join("sluice.db");
    let url = format!("sqlite://{}", path.display());
    let store = sluice::store::connect(&url).await.unwrap();
    let id = store.job_insert(job("greet")).await.unwrap().id;
    store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    let done = || JobFinishMany {
        node: NODE.into(),
        outcomes: vec![outcome(
            id,
            1,
            Resolution::Complete {
                output: b"1".to_vec(),
            },
            AttemptClass::Completed,
        )],
    };
    // The history table gone: the batch fails after its transaction has begun.
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rename = async |conn: &mut sqlx::SqliteConnection, from: &str, to: &str| {
        let sql = format!("ALTER TABLE {from} RENAME TO {to}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(conn)
            .await
            .unwrap();
    };
    rename(&mut other, "sluice_attempts", "sluice_attempts_away").await;
    let error = store.job_finish_many(&done()).await.unwrap_err();
    assert!(error.to_string().contains("sluice_attempts"), "{error}");
    rename(&mut other, "sluice_attempts_away", "sluice_attempts").await;
    let kept = store.job_get(id).await.unwrap();
    assert_eq!(kept.job.state, JobState::Running);
    assert!(kept.attempts.is_empty(), "{:?}", kept.attempts);

    // The writer takes new work at once, and the same batch then goes through.
    let next = store.job_insert(job("greet")).await.unwrap();
    assert_eq!(next.state, JobState::Available);
    assert_eq!(store.job_finish_many(&done()).await.unwrap(), vec![id]);
    let detail = store.job_get(id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Completed);
    assert_eq!(detail.attempts.len(), 1);
}

#[tokio::test]
async fn sqlite_refuses_args_over_a_configured_cap() {
    let path = temp_dir("sqlite-cap").join("cap.db");
    let store = SqliteStore::open(&path.display().to_string())
        .await
        .unwrap()
        .with_max_args_bytes(8);
    store.migrate().await.unwrap();
    let error = store.job_insert(job("greet")).await.unwrap_err();
    assert!(
        matches!(error, StoreError::ArgsTooLarge { size: 14, limit: 8 }),
        "{error:?}"
    );
    assert_eq!(store.job_count(JobCount::default()).await.unwrap(), 0);
}

/// Drives one job through every operation and checks each observed move against the one
/// written-down state machine.
async fn every_move_follows_the_state_machine(store: Arc<dyn Store>) {
    let mut later = job("greet");
    later.scheduled_at = Some(Utc::now() + chrono::Duration::hours(1));
    let id = store.job_insert(later).await.unwrap().id;
    let mut states = vec![store.job_get(id).await.unwrap().job.state];
    let mut observe = async |store: &Arc<dyn Store>| {
        states.push(store.job_get(id).await.unwrap().job.state);
    };
    store.job_retry(id.into()).await.unwrap(); // scheduled -> available
    observe(&store).await;
    store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap(); // -> running
    observe(&store).await;
    let past = Utc::now() - chrono::Duration::seconds(1);
    let failed = AttemptClass::Failed(FailureKind::Trap);
    finish(
        &store,
        NODE,
        vec![outcome(id, 1, Resolution::Retry { at: past }, failed)],
    )
    .await; // -> retryable
    observe(&store).await;
    store.job_stage().await.unwrap(); // -> available
    observe(&store).await;
    store
        .job_fetch(fetch("default", 1, NODE, Duration::ZERO))
        .await
        .unwrap(); // -> running
    observe(&store).await;
    store.job_rescue(RESCUE).await.unwrap(); // -> available (no backoff)
    observe(&store).await;
    store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap(); // -> running
    observe(&store).await;
    let done = Resolution::Complete {
        output: b"1".to_vec(),
    };
    finish(
        &store,
        NODE,
        vec![outcome(id, 3, done, AttemptClass::Completed)],
    )
    .await; // -> completed
    observe(&store).await;
    store.job_retry(id.into()).await.unwrap(); // -> available
    observe(&store).await;
    store.job_cancel(id).await.unwrap(); // -> cancelled
    observe(&store).await;

    use JobState::*;
    assert_eq!(
        states,
        [
            Scheduled, Available, Running, Retryable, Available, Running, Available, Running,
            Completed, Available, Cancelled
        ]
    );
    for pair in states.windows(2) {
        assert!(
            pair[0].can_move_to(pair[1]),
            "{} -> {} is not in the state machine",
            pair[0],
            pair[1]
        );
    }
}

async fn a_paused_queue_yields_no_jobs(store: Arc<dyn Store>) {
    let id = store.job_insert(job("greet")).await.unwrap().id;
    let pause = |paused| QueuePause {
        name: "default".into(),
        paused,
    };
    store.queue_pause(pause(true)).await.unwrap();
    assert!(
        store
            .job_fetch(fetch("default", 10, NODE, LEASE))
            .await
            .unwrap()
            .is_empty()
    );
    store.queue_pause(pause(false)).await.unwrap();
    let fetched = store
        .job_fetch(fetch("default", 10, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(fetched.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

async fn tokens_are_found_by_hash_and_revoked(store: Arc<dyn Store>) {
    use sluice::model::Role;
    use sluice::store::TokenCreate;
    assert!(!store.token_exists().await.unwrap());
    let ci = store
        .token_create(TokenCreate {
            name: "ci".into(),
            role: Role::Operate,
            hash: "h1".into(),
        })
        .await
        .unwrap();
    assert_eq!(ci.role, Role::Operate);
    assert!(store.token_exists().await.unwrap());
    // A second token of that name is refused, and the first is untouched.
    let again = store
        .token_create(TokenCreate {
            name: "ci".into(),
            role: Role::Admin,
            hash: "h2".into(),
        })
        .await;
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
    assert_eq!(store.token_by_hash("h1").await.unwrap(), Some(ci.clone()));
    assert_eq!(store.token_by_hash("h2").await.unwrap(), None);
    store
        .token_create(TokenCreate {
            name: "admin".into(),
            role: Role::Admin,
            hash: "h3".into(),
        })
        .await
        .unwrap();
    let names: Vec<String> = store
        .token_list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["admin", "ci"]);
    assert!(store.token_revoke("ci").await.unwrap());
    assert!(!store.token_revoke("ci").await.unwrap());
    assert_eq!(store.token_by_hash("h1").await.unwrap(), None);
    assert!(store.token_exists().await.unwrap());
}

async fn sessions_stand_for_their_token_until_they_end(store: Arc<dyn Store>) {
    use sluice::model::Role;
    use sluice::store::{SessionCreate, TokenCreate};
    let token = |name: &str, hash: &str| TokenCreate {
        name: name.into(),
        role: Role::Read,
        hash: hash.into(),
    };
    let alice = store.token_create(token("alice", "t-alice")).await.unwrap();
    store.token_create(token("bob", "t-bob")).await.unwrap();
    let session = |hash: &str, token_hash: &str, lasts: chrono::Duration| SessionCreate {
        hash: hash.into(),
        token_hash: token_hash.into(),
        expires_at: Utc::now() + lasts,
    };
    let hour = chrono::Duration::hours(1);
    store
        .session_create(session("s1", "t-alice", hour))
        .await
        .unwrap();
    store
        .session_create(session("s2", "t-alice", hour))
        .await
        .unwrap();
    store
        .session_create(session("s3", "t-bob", hour))
        .await
        .unwrap();
    store
        .session_create(session("old", "t-bob", -chrono::Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(
        store.session_token("s1").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.session_token("t-alice").await.unwrap(),
        None,
        "a token is no session"
    );
    assert_eq!(store.session_token("nope").await.unwrap(), None);
    // An expired session stands for nobody, and pruning forgets it (and only it).
    assert_eq!(store.session_token("old").await.unwrap(), None);
    assert_eq!(store.session_prune().await.unwrap(), 1);
    assert_eq!(store.session_prune().await.unwrap(), 0);
    assert!(store.session_token("s3").await.unwrap().is_some());
    // Ending one session leaves the token's others.
    store.session_end("s1").await.unwrap();
    store.session_end("s1").await.unwrap();
    assert_eq!(store.session_token("s1").await.unwrap(), None);
    assert_eq!(store.session_token("s2").await.unwrap(), Some(alice));
    // Revoking a token ends every session of it, and no other.
    assert!(store.token_revoke("alice").await.unwrap());
    assert_eq!(store.session_token("s2").await.unwrap(), None);
    assert!(store.session_token("s3").await.unwrap().is_some());
}

async fn dead_letters_group_discards_and_keep_their_context(store: Arc<dyn Store>) {
    use sluice::model::DiscardContext;
    use sluice::store::RecentFailures;
    for function in ["fail", "fail", "fail", "greet", "fail", "fail"] {
        store.job_insert(job(function)).await.unwrap();
    }
    let ids: Vec<i64> = store
        .job_fetch(fetch("default", 6, NODE, LEASE))
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let failed = AttemptClass::Failed(FailureKind::GuestError);
    let context = DiscardContext {
        node_version: "9.9.9".into(),
        node_in_flight: 7,
        queue_running: 3,
        queue_concurrency: 4,
    };
    let later = Utc::now() + chrono::Duration::minutes(10);
    // (Each record is stamped as it is made: in this order, so "newest" is well defined.)
    let mut outcomes = vec![
        outcome(ids[0], 1, Resolution::Discard, failed),
        outcome(ids[1], 1, Resolution::Discard, failed),
        outcome(ids[2], 1, Resolution::Discard, failed),
        outcome(
            ids[3],
            1,
            Resolution::Discard,
            AttemptClass::Failed(FailureKind::BadArgs),
        ),
        outcome(ids[4], 1, Resolution::Retry { at: later }, failed),
        outcome(
            ids[5],
            1,
            Resolution::Complete {
                output: b"null".to_vec(),
            },
            AttemptClass::Completed,
        ),
    ];
    outcomes[2].record.context = Some(context.clone());
    finish(&store, NODE, outcomes).await;

    let groups = store.dead_letter_groups().await.unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let fail = groups.iter().find(|g| g.function == "fail").unwrap();
    assert_eq!(
        (fail.module.as_str(), fail.class.as_str(), fail.jobs),
        ("hello", "guest_error", 3)
    );
    assert_eq!(fail.last_job, ids[2]);
    assert_eq!(fail.last_message, record(1, failed).message);
    let greet = groups.iter().find(|g| g.function == "greet").unwrap();
    assert_eq!(
        (greet.class.as_str(), greet.jobs, greet.last_job),
        ("bad_args", 1, ids[3])
    );

    // A function's recent failures: the discarded and the retrying, newest first; never a
    // completed attempt, nor another function's.
    let recent = |function: &str, limit: u32| {
        let store = store.clone();
        let function = function.to_string();
        async move {
            store
                .failures_recent(RecentFailures {
                    module: "hello".into(),
                    function,
                    limit,
                })
                .await
                .unwrap()
        }
    };
    let failures = recent("fail", 10).await;
    let failed_ids: Vec<i64> = failures.iter().map(|(id, _)| *id).collect();
    assert_eq!(failed_ids, [ids[4], ids[2], ids[1], ids[0]], "{failures:?}");
    assert!(failures.iter().all(|(_, r)| r.outcome == failed));
    assert_eq!(recent("fail", 2).await.len(), 2);
    assert!(recent("noop", 10).await.is_empty());

    // The discarding attempt keeps the context it was recorded with; others have none.
    let detail = store.job_get(ids[2]).await.unwrap();
    assert_eq!(detail.attempts[0].context, Some(context));
    assert_eq!(
        store.job_get(ids[0]).await.unwrap().attempts[0].context,
        None
    );

    // Retrying a job takes it out of the dead letters.
    store.job_retry(ids[2].into()).await.unwrap();
    let groups = store.dead_letter_groups().await.unwrap();
    let fail = groups.iter().find(|g| g.function == "fail").unwrap();
    assert_eq!((fail.jobs, fail.last_job), (2, ids[1]));
}

async fn the_audit_log_pages_newest_first(store: Arc<dyn Store>) {
    use sluice::store::AuditRecord;
    for n in 0..5 {
        store
            .audit_record(AuditRecord {
                actor: format!("actor{n}"),
                action: "job.retry".into(),
                target: n.to_string(),
            })
            .await
            .unwrap();
    }
    let newest = store.audit_list(2, None).await.unwrap();
    assert_eq!(
        newest.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["4", "3"]
    );
    assert_eq!(newest[0].actor, "actor4");
    assert!(newest[0].at >= newest[1].at);
    let rest = store.audit_list(10, Some(newest[1].id)).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["2", "1", "0"]
    );
}

async fn listing_filters_by_function_args_and_id_range(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (function, name) in [
        ("greet", "Ada"),
        ("noop", "Ada"),
        ("greet", "Grace"),
        ("greet", "Alan"),
    ] {
        let new = NewJob::json("hello", function, &serde_json::json!({ "name": name }));
        ids.push(store.job_insert(new).await.unwrap().id);
    }
    let list = |list: JobList| {
        let store = store.clone();
        async move {
            store
                .job_list(JobList { limit: 100, ..list })
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    let greet = list(JobList {
        function: Some("greet".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(greet, [ids[3], ids[2], ids[0]]);
    let ada = list(JobList {
        args_contains: Some("Ada".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ada, [ids[1], ids[0]]);
    let greet_ada = list(JobList {
        function: Some("greet".into()),
        args_contains: Some("\"Ada\"".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(greet_ada, [ids[0]]);
    let between = list(JobList {
        after_id: Some(ids[0]),
        before_id: Some(ids[3]),
        ..Default::default()
    })
    .await;
    assert_eq!(between, [ids[2], ids[1]]);
    let nobody = list(JobList {
        args_contains: Some("Linus".into()),
        ..Default::default()
    })
    .await;
    assert!(nobody.is_empty());
}

/// A job and its attempts are read at one moment: while outcomes are written, a read never
/// shows an attempt beside its job's older state (a running job with its attempt recorded)
/// or a finished job without it.
async fn a_job_is_read_with_its_attempts_in_one_snapshot(store: Arc<dyn Store>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = 400;
    store
        .job_insert_many((0..count).map(|_| job("greet")).collect())
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .job_fetch(fetch("default", count as u32, NODE, LEASE))
        .await
        .unwrap()
        .iter()
        .map(|job| job.id)
        .collect();
    // The writer finishes the jobs one at a time; the reader reads the one being finished.
    let finished = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, ids, finished) = (store.clone(), ids.clone(), finished.clone());
        tokio::spawn(async move {
            for &id in &ids {
                let complete = Resolution::Complete {
                    output: b"1".to_vec(),
                };
                finish(
                    &store,
                    NODE,
                    vec![outcome(id, 1, complete, AttemptClass::Completed)],
                )
                .await;
                finished.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let (mut reads, mut running, mut completed) = (0, 0, 0);
    while finished.load(Ordering::SeqCst) < ids.len() {
        let id = ids[finished.load(Ordering::SeqCst).min(ids.len() - 1)];
        let detail = store.job_get(id).await.unwrap();
        let recorded = detail.attempts.len() as i32;
        match detail.job.state {
            JobState::Running => {
                running += 1;
                assert_eq!(recorded, detail.job.attempt - 1, "job {id}: {detail:?}");
            }
            JobState::Completed => {
                completed += 1;
                assert_eq!(recorded, detail.job.attempt, "job {id}: {detail:?}");
            }
            other => panic!("job {id} is {other}"),
        }
        reads += 1;
    }
    writer.await.unwrap();
    assert!(
        running > 0 && completed > 0,
        "the reads saw both sides of the writes ({reads} reads)"
    );
}

/// A cron entry at whole second `at` (seconds since the epoch).
fn cron_entry(name: &str, schedule: &str, last_slot: i64) -> CronEntry {
    CronEntry {
        name: name.into(),
        schedule: schedule.into(),
        timezone: "UTC".into(),
        misfire: Misfire::Skip,
        queue: "default".into(),
        module: "hello".into(),
        function: "greet".into(),
        args: r#"{"name":"Ada"}"#.into(),
        priority: 0,
        max_attempts: 3,
        last_slot: chrono::DateTime::from_timestamp(last_slot, 0).unwrap(),
        updated_at: Utc::now(),
    }
}

async fn cron_entries_are_seeded_replaced_and_removed(store: Arc<dyn Store>) {
    let put = |entry: CronEntry, replace: bool| {
        let store = store.clone();
        async move { store.cron_put(CronPut { entry, replace }).await.unwrap() }
    };
    let first = put(cron_entry("nightly", "0 3 * * *", 1_000), false).await;
    assert_eq!(first, store.cron_list().await.unwrap()[0]);

    // Seeding again (from the config file) keeps what is stored.
    let seeded = put(cron_entry("nightly", "0 4 * * *", 2_000), false).await;
    assert_eq!(seeded.schedule, "0 3 * * *");
    assert_eq!(seeded.last_slot, first.last_slot);

    // Replacing with the same schedule keeps its place; with another, it starts anew.
    let mut moved = cron_entry("nightly", "0 3 * * *", 3_000);
    moved.queue = "reports".into();
    moved.misfire = Misfire::RunOnce;
    let replaced = put(moved, true).await;
    assert_eq!(
        (replaced.queue.as_str(), replaced.misfire),
        ("reports", Misfire::RunOnce)
    );
    assert_eq!(
        replaced.last_slot, first.last_slot,
        "same schedule, same place"
    );
    let rescheduled = put(cron_entry("nightly", "0 4 * * *", 3_000), true).await;
    assert_eq!(rescheduled.schedule, "0 4 * * *");
    assert_eq!(rescheduled.last_slot.timestamp(), 3_000);

    put(cron_entry("hourly", "0 * * * *", 1_000), false).await;
    let names: Vec<String> = store
        .cron_list()
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);
    assert!(store.cron_remove("nightly").await.unwrap());
    assert!(!store.cron_remove("nightly").await.unwrap());
    assert_eq!(store.cron_list().await.unwrap().len(), 1);
}

async fn a_cron_slot_is_inserted_once(store: Arc<dyn Store>) {
    let base = Utc::now().timestamp() - 60;
    let entry = cron_entry("tick", "* * * * * *", base);
    store
        .cron_put(CronPut {
            entry: entry.clone(),
            replace: false,
        })
        .await
        .unwrap();
    let at = |second: i64| chrono::DateTime::from_timestamp(base + second, 0).unwrap();
    let fire = |expected: i64, slots: Vec<i64>| CronFire {
        name: "tick".into(),
        expected_last_slot: at(expected),
        last_slot: at(*slots.last().unwrap()),
        jobs: slots
            .iter()
            .map(|slot| sluice::ops::slot_job(&entry, at(*slot)))
            .collect(),
    };

    let inserted = store.cron_fire(fire(0, vec![1, 2])).await.unwrap().unwrap();
    assert!(inserted.iter().all(|job| !job.existing));
    for (enqueued, slot) in inserted.iter().zip([1, 2]) {
        let job = store.job_get(enqueued.id).await.unwrap().job;
        assert_eq!(
            job.scheduled_at,
            at(slot),
            "a slot's job is scheduled at the slot"
        );
        assert_eq!(job.state, JobState::Available);
        assert_eq!(
            (job.queue.as_str(), job.function.as_str()),
            ("default", "greet")
        );
    }
    assert_eq!(store.cron_list().await.unwrap()[0].last_slot, at(2));

    // A node that read the entry before that (a leader whose term ran out) inserts nothing.
    assert!(
        store
            .cron_fire(fire(0, vec![1, 2, 3]))
            .await
            .unwrap()
            .is_none()
    );
    let count = |store: Arc<dyn Store>| async move {
        store
            .job_count(JobCount {
                queue: None,
                state: None,
                module: None,
            })
            .await
            .unwrap()
    };
    assert_eq!(count(store.clone()).await, 2);

    // An entry moved back (removed and added again by hand at an older place) finds the
    // slots' jobs by their keys instead of inserting them again.
    let mut back = entry.clone();
    back.schedule = "*/1 * * * * *".into();
    back.last_slot = at(1);
    store
        .cron_put(CronPut {
            entry: back,
            replace: true,
        })
        .await
        .unwrap();
    let again = store.cron_fire(fire(1, vec![2, 3])).await.unwrap().unwrap();
    assert!(again[0].existing, "slot 2 is held by its job");
    assert_eq!(again[0].id, inserted[1].id);
    assert!(!again[1].existing, "slot 3 is new");
    assert_eq!(count(store.clone()).await, 3);

    // A removed entry fires nothing.
    assert!(store.cron_remove("tick").await.unwrap());
    assert!(store.cron_fire(fire(3, vec![4])).await.unwrap().is_none());
    assert_eq!(count(store).await, 3);
}

async fn a_unique_job_holds_its_key_while_unfinished(store: Arc<dyn Store>) {
    use sluice::unique::UniqueOptions;
    let unique = |args: serde_json::Value, options: &UniqueOptions| {
        let mut job = NewJob::json("hello", "greet", &args);
        job.unique = Some(options.key_for(&job, Utc::now()).unwrap());
        job
    };
    let plain = UniqueOptions::default();
    let ada = || unique(serde_json::json!({"name": "Ada"}), &plain);
    let first = store.job_enqueue(vec![ada()]).await.unwrap()[0];
    assert!(!first.existing);
    let again = store.job_enqueue(vec![ada()]).await.unwrap()[0];
    assert_eq!((again.id, again.existing), (first.id, true));

    // In bulk: the held key, another call, and the other call again.
    let grace = || unique(serde_json::json!({"name": "Grace"}), &plain);
    let batch = store
        .job_enqueue(vec![ada(), grace(), grace()])
        .await
        .unwrap();
    assert_eq!((batch[0].id, batch[0].existing), (first.id, true));
    assert!(!batch[1].existing);
    assert_eq!((batch[2].id, batch[2].existing), (batch[1].id, true));

    // Claimed and running, it still holds the key; completed, it no longer does.
    let claimed = store
        .job_fetch(fetch("default", 1, NODE, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, first.id);
    assert!(store.job_enqueue(vec![ada()]).await.unwrap()[0].existing);
    finish(
        &store,
        NODE,
        vec![outcome(
            first.id,
            1,
            Resolution::Complete { output: vec![] },
            AttemptClass::Completed,
        )],
    )
    .await;
    let next = store.job_enqueue(vec![ada()]).await.unwrap()[0];
    assert!(!next.existing, "a completed job no longer holds its key");
    assert_ne!(next.id, first.id);

    // The completed job cannot come back while the new one holds the key.
    let refused = store.job_retry(first.id.into()).await;
    assert!(
        matches!(refused, Err(StoreError::UniqueKeyHeld)),
        "{refused:?}"
    );
    assert_eq!(
        store.job_get(first.id).await.unwrap().job.state,
        JobState::Completed
    );

    // Named finished states hold the key too.
    let kept = UniqueOptions {
        finished: vec!["cancelled".into()],
        ..Default::default()
    };
    let once = || unique(serde_json::json!({"name": "Once"}), &kept);
    let cancelled = store.job_enqueue(vec![once()]).await.unwrap()[0];
    store.job_cancel(cancelled.id).await.unwrap();
    let after = store.job_enqueue(vec![once()]).await.unwrap()[0];
    assert_eq!((after.id, after.existing), (cancelled.id, true));
}
