//! A node's side of the circuit breakers: the policies and states it last read from the
//! store, the calls it counted since its last report, and the gate each attempt passes.
//! A function without a policy passes at once and is not counted; a closed breaker passes
//! without asking the store; only an open or half-open one asks it (for a probe).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::breakers::{ALL_FUNCTIONS, BreakerPolicy, BreakerState, BreakerStatus};
use crate::model::{AttemptClass, Job};
use crate::store::{BreakerCalls, BreakerRow};

/// How often a node reports its calls and reads the breakers again.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

type Function = (String, String);

/// What the node knows of the breakers.
#[derive(Default)]
pub(crate) struct Breakers {
    /// Whether any breaker has a policy: without one, an attempt passes without a lock.
    any_policy: AtomicBool,
    rows: Mutex<Vec<BreakerRow>>,
    /// Calls and failures counted since the last report, by function.
    counted: Mutex<HashMap<Function, (u64, u64)>>,
}

impl Breakers {
    fn policy(&self, job: &Job) -> Option<(BreakerPolicy, BreakerStatus)> {
        if !self.any_policy.load(Ordering::Relaxed) {
            return None;
        }
        let rows = self.rows.lock().unwrap();
        let policy = crate::ops::policy_for(&rows, &job.module, &job.function)?.clone();
        let status = rows
            .iter()
            .find(|row| row.module == job.module && row.function == job.function)
            .map_or_else(|| BreakerStatus::closed(0), |row| row.status.clone());
        Some((policy, status))
    }

    /// Whether `job` may start now: `Err(until)` while its breaker holds it back.
    pub(crate) async fn admit(&self, shared: &Shared, job: &Job) -> Result<(), DateTime<Utc>> {
        let Some((policy, status)) = self.policy(job) else {
            return Ok(());
        };
        let now = Utc::now().timestamp_micros();
        match status.state {
            BreakerState::Closed => return Ok(()),
            BreakerState::Open if status.reopen_at.is_some_and(|at| now < at) => {
                let until = status.reopen_at.unwrap_or(now);
                return Err(DateTime::from_timestamp_micros(until).unwrap_or_default());
            }
            _ => {}
        }
        match crate::ops::admit_call(shared.store.as_ref(), &job.module, &job.function, &policy)
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(until)) => Err(until),
            // The store unreachable: let it run, as a closed breaker would; the outcome
            // will wait for the store like any other.
            Err(error) => {
                shared.metrics.exported.store_error("breaker_admit");
                tracing::debug!(%error, "cannot ask for a probe now");
                Ok(())
            }
        }
    }

    /// Counts an attempt's outcome, if its function has a breaker and the class counts.
    pub(crate) fn record(&self, job: &Job, class: AttemptClass) {
        let Some((policy, _)) = self.policy(job) else {
            return;
        };
        let Some(failed) = policy.counts(class) else {
            return;
        };
        let mut counted = self.counted.lock().unwrap();
        let entry = counted
            .entry((job.module.clone(), job.function.clone()))
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(failed);
    }

    fn take_counts(&self) -> Vec<BreakerCalls> {
        let counted = std::mem::take(&mut *self.counted.lock().unwrap());
        counted
            .into_iter()
            .map(|((module, function), (calls, failures))| BreakerCalls {
                module,
                function,
                calls,
                failures,
            })
            .collect()
    }

    fn put_back(&self, calls: Vec<BreakerCalls>) {
        let mut counted = self.counted.lock().unwrap();
        for call in calls {
            let entry = counted.entry((call.module, call.function)).or_default();
            entry.0 += call.calls;
            entry.1 += call.failures;
        }
    }
}

/// Reads the breakers from the store. A node does this once before its first claim too, so
/// a node that just started guards its first attempts as well.
pub(crate) async fn load(shared: &Shared) {
    match shared.store.breaker_list().await {
        Ok(rows) => {
            for row in rows.iter().filter(|row| row.function != ALL_FUNCTIONS) {
                shared.metrics.exported.set_breaker_state(
                    &row.module,
                    &row.function,
                    row.status.state,
                );
            }
            let any_policy = rows.iter().any(|row| row.policy.is_some());
            *shared.breakers.rows.lock().unwrap() = rows;
            shared
                .breakers
                .any_policy
                .store(any_policy, Ordering::Relaxed);
        }
        Err(error) => {
            shared.metrics.exported.store_error("breaker_list");
            tracing::debug!(%error, "cannot read the breakers now");
        }
    }
}

/// Reports the node's calls and reads the breakers again, until the node finishes (and once
/// more then, so the last calls count).
pub(crate) async fn follow(shared: Arc<Shared>, finished: CancellationToken) {
    let mut ticks = tokio::time::interval(FOLLOW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            () = finished.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let calls = shared.breakers.take_counts();
        if !calls.is_empty()
            && let Err(error) = crate::ops::report_calls(shared.store.as_ref(), &calls).await
        {
            shared.metrics.exported.store_error("breaker_report");
            tracing::debug!(%error, "cannot report calls to the breakers now");
            shared.breakers.put_back(calls);
        }
        load(&shared).await;
        if last {
            return;
        }
    }
}
