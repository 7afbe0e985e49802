//! Circuit breakers in the conformance suite: policies and states kept per function, each
//! change a compare-and-set, calls counted per second and read over a window; and the
//! breaker's life through `sluice::ops` on each store: open, wait, probe, close.

use std::sync::Arc;

use chrono::Utc;
use sluice::breakers::{BreakerPolicy, BreakerState, BreakerStatus};
use sluice::store::{BreakerCalls, BreakerPut, Store};

fn calls(function: &str, calls: u64, failures: u64) -> BreakerCalls {
    BreakerCalls {
        module: "hello".into(),
        function: function.into(),
        calls,
        failures,
    }
}

pub(super) async fn breaker_states_change_by_compare_and_set(store: Arc<dyn Store>) {
    let now = Utc::now().timestamp_micros();
    let closed = BreakerStatus::closed(now);
    let put = |version, status: &BreakerStatus| BreakerPut {
        module: "hello".into(),
        function: "greet".into(),
        version,
        status: status.clone(),
    };
    assert!(store.breaker_put(put(None, &closed)).await.unwrap());
    assert!(
        !store.breaker_put(put(None, &closed)).await.unwrap(),
        "a second first row is refused"
    );
    let row = store.breaker_get("hello", "greet").await.unwrap().unwrap();
    assert_eq!(row.status, closed);
    let open = BreakerStatus {
        state: BreakerState::Open,
        trips: 1,
        reopen_at: Some(now + 5_000_000),
        ..closed.clone()
    };
    assert!(
        store
            .breaker_put(put(Some(row.version), &open))
            .await
            .unwrap()
    );
    assert!(
        !store
            .breaker_put(put(Some(row.version), &closed))
            .await
            .unwrap(),
        "a change made from a stale version is refused"
    );
    assert_eq!(
        store
            .breaker_get("hello", "greet")
            .await
            .unwrap()
            .unwrap()
            .status,
        open
    );

    // Policies live on their own rows and never touch the state.
    let policy = BreakerPolicy {
        min_calls: 3,
        ..BreakerPolicy::default()
    };
    store
        .breaker_policy_set("hello", "*", Some(policy.clone()))
        .await
        .unwrap();
    let rows = store.breaker_list().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        sluice::ops::policy_for(&rows, "hello", "greet"),
        Some(&policy)
    );
    assert_eq!(sluice::ops::policy_for(&rows, "other", "greet"), None);
    store.breaker_policy_set("hello", "*", None).await.unwrap();
    let rows = store.breaker_list().await.unwrap();
    assert_eq!(sluice::ops::policy_for(&rows, "hello", "greet"), None);
    assert_eq!(
        store
            .breaker_get("hello", "greet")
            .await
            .unwrap()
            .unwrap()
            .status,
        open
    );
}

pub(super) async fn breaker_calls_add_up_per_second_and_prune(store: Arc<dyn Store>) {
    let second = 1_000_000;
    let t0 = 1_700_000_000 * second;
    store
        .breaker_calls_add(&[calls("greet", 3, 1), calls("fail", 2, 2)], t0)
        .await
        .unwrap();
    store
        .breaker_calls_add(&[calls("greet", 4, 4)], t0 + 300_000)
        .await
        .unwrap();
    store
        .breaker_calls_add(&[calls("greet", 5, 0)], t0 + 2 * second)
        .await
        .unwrap();
    assert_eq!(
        store
            .breaker_calls_since("hello", "greet", t0)
            .await
            .unwrap(),
        (12, 5)
    );
    assert_eq!(
        store
            .breaker_calls_since("hello", "greet", t0 + second)
            .await
            .unwrap(),
        (5, 0)
    );
    assert_eq!(
        store
            .breaker_calls_since("hello", "fail", t0)
            .await
            .unwrap(),
        (2, 2)
    );
    assert_eq!(store.breaker_calls_prune(t0 + second).await.unwrap(), 2);
    assert_eq!(
        store
            .breaker_calls_since("hello", "greet", 0)
            .await
            .unwrap(),
        (5, 0)
    );
}

pub(super) async fn a_breaker_opens_holds_probes_and_closes(store: Arc<dyn Store>) {
    let policy = BreakerPolicy {
        failure_rate: 0.5,
        min_calls: 4,
        cooldown_secs: 1,
        probes: 2,
        ..BreakerPolicy::default()
    };
    sluice::ops::set_breaker_policy(store.as_ref(), "hello", "greet", Some(policy.clone()), "t")
        .await
        .unwrap();
    // Below the minimum of calls, or below the rate: closed.
    sluice::ops::report_calls(store.as_ref(), &[calls("greet", 3, 3)])
        .await
        .unwrap();
    let admitted = sluice::ops::admit_call(store.as_ref(), "hello", "greet", &policy)
        .await
        .unwrap();
    assert!(admitted.is_ok(), "3 calls are too few to judge");
    sluice::ops::report_calls(store.as_ref(), &[calls("greet", 2, 0)])
        .await
        .unwrap();
    let listed = sluice::ops::list_breakers(store.as_ref()).await.unwrap();
    let greet = listed.iter().find(|b| b.function == "greet").unwrap();
    assert_eq!(greet.status.state, BreakerState::Open, "3 of 5 failed");
    assert_eq!((greet.calls, greet.failures), (5, 3));

    // Open: calls wait until the cooldown ends.
    let until = sluice::ops::admit_call(store.as_ref(), "hello", "greet", &policy)
        .await
        .unwrap()
        .expect_err("open");
    assert!(until > Utc::now());
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(10)).await;

    // Then two probes, no third; two successes close it.
    for _ in 0..2 {
        let probe = sluice::ops::admit_call(store.as_ref(), "hello", "greet", &policy)
            .await
            .unwrap();
        assert_eq!(probe.unwrap().state, BreakerState::HalfOpen);
    }
    assert!(
        sluice::ops::admit_call(store.as_ref(), "hello", "greet", &policy)
            .await
            .unwrap()
            .is_err(),
        "the probes are out"
    );
    sluice::ops::report_calls(store.as_ref(), &[calls("greet", 2, 0)])
        .await
        .unwrap();
    let row = store.breaker_get("hello", "greet").await.unwrap().unwrap();
    assert_eq!(row.status.state, BreakerState::Closed);
    assert_eq!(row.status.trips, 0);
    // The failures before the close no longer count: one more failure does not reopen it.
    sluice::ops::report_calls(store.as_ref(), &[calls("greet", 1, 1)])
        .await
        .unwrap();
    let row = store.breaker_get("hello", "greet").await.unwrap().unwrap();
    assert_eq!(row.status.state, BreakerState::Closed);

    // Reset closes an open one; an unknown breaker is a typed error.
    sluice::ops::report_calls(store.as_ref(), &[calls("greet", 10, 10)])
        .await
        .unwrap();
    assert_eq!(
        store
            .breaker_get("hello", "greet")
            .await
            .unwrap()
            .unwrap()
            .status
            .state,
        BreakerState::Open
    );
    sluice::ops::reset_breaker(store.as_ref(), "hello", "greet", "t")
        .await
        .unwrap();
    assert_eq!(
        store
            .breaker_get("hello", "greet")
            .await
            .unwrap()
            .unwrap()
            .status
            .state,
        BreakerState::Closed
    );
    let missing = sluice::ops::reset_breaker(store.as_ref(), "hello", "nope", "t").await;
    assert_eq!(missing.unwrap_err().code(), "breaker_not_found");
}
