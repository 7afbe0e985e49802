//! Circuit breakers through the store: policies set and audited, calls reported and judged,
//! probes handed out. Every change to a breaker's state is a compare-and-set on its row, so
//! nodes share one breaker without a lock and never both hand out the last probe.

use chrono::{DateTime, Utc};

use super::tokens::record_action;
use super::{OpError, OpResult};
use crate::breakers::{ALL_FUNCTIONS, BreakerPolicy, BreakerStatus};
use crate::store::{BreakerCalls, BreakerPut, BreakerRow, Store, StoreResult};

/// Compare-and-set tries before a change gives up (another node changing the same breaker
/// each time: it has judged the same calls).
const TRIES: usize = 5;

/// A breaker as shown: its effective policy, its state and its window's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerInfo {
    pub module: String,
    /// A function, or `*` for a module's policy that no call has used yet.
    pub function: String,
    /// The policy it follows, its own or its module's; `None` when it has none any more.
    pub policy: Option<BreakerPolicy>,
    pub status: BreakerStatus,
    /// Calls and failures in its window, since it last closed.
    pub calls: u64,
    pub failures: u64,
}

/// The policy `module`/`function` follows: its own, else its module's.
pub fn policy_for<'a>(
    rows: &'a [BreakerRow],
    module: &str,
    function: &str,
) -> Option<&'a BreakerPolicy> {
    let of = |name: &str| {
        rows.iter()
            .find(|row| row.module == module && row.function == name)
            .and_then(|row| row.policy.as_ref())
    };
    of(function).or_else(|| of(ALL_FUNCTIONS))
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Sets (or with `None` removes) the breaker policy of `function` of `module` (`*`: all its
/// functions without a policy of their own).
pub async fn set_breaker_policy(
    store: &dyn Store,
    module: &str,
    function: &str,
    policy: Option<BreakerPolicy>,
    actor: &str,
) -> OpResult<()> {
    check_names(module, function)?;
    if let Some(policy) = &policy {
        policy.check().map_err(OpError::Invalid)?;
    }
    let target = match &policy {
        Some(policy) => format!(
            "{module}.{function} {}",
            serde_json::to_string(policy).expect("policies serialize")
        ),
        None => format!("{module}.{function} none"),
    };
    store.breaker_policy_set(module, function, policy).await?;
    record_action(store, actor, "breaker.policy", &target).await;
    Ok(())
}

/// A module's name and a function's (or `*`), checked before they reach the store.
fn check_names(module: &str, function: &str) -> OpResult<()> {
    super::valid_module_name(module)?;
    if function.is_empty()
        || function.chars().count() > 128
        || function.chars().any(char::is_control)
    {
        return Err(OpError::Invalid(format!(
            "`{}` is not a function name: use 1 to 128 printable characters, or * for all",
            function.escape_debug()
        )));
    }
    Ok(())
}

/// Every breaker with a policy, and the functions' states.
pub async fn list_breakers(store: &dyn Store) -> OpResult<Vec<BreakerInfo>> {
    let rows = store.breaker_list().await?;
    let now = now_micros();
    let mut shown = Vec::with_capacity(rows.len());
    for row in &rows {
        let policy = policy_for(&rows, &row.module, &row.function).cloned();
        let (calls, failures) = match &policy {
            Some(policy) if row.function != ALL_FUNCTIONS => {
                let since =
                    (now - policy.window_secs as i64 * 1_000_000).max(row.status.counted_from);
                store
                    .breaker_calls_since(&row.module, &row.function, since)
                    .await?
            }
            _ => (0, 0),
        };
        shown.push(BreakerInfo {
            module: row.module.clone(),
            function: row.function.clone(),
            policy,
            status: row.status.clone(),
            calls,
            failures,
        });
    }
    Ok(shown)
}

/// Closes a breaker now, whatever its state; its window starts afresh.
pub async fn reset_breaker(
    store: &dyn Store,
    module: &str,
    function: &str,
    actor: &str,
) -> OpResult<()> {
    check_names(module, function)?;
    let Some(row) = store.breaker_get(module, function).await? else {
        return Err(OpError::BreakerNotFound(format!("{module}.{function}")));
    };
    store
        .breaker_put(BreakerPut {
            module: module.into(),
            function: function.into(),
            version: Some(row.version),
            status: BreakerStatus::closed(now_micros()),
        })
        .await?;
    record_action(
        store,
        actor,
        "breaker.reset",
        &format!("{module}.{function}"),
    )
    .await;
    Ok(())
}

/// Counts a node's calls and judges each breaker they concern (opening a closed one past
/// its rate, closing or reopening a half-open one by its probes).
pub async fn report_calls(store: &dyn Store, calls: &[BreakerCalls]) -> StoreResult<()> {
    let now = now_micros();
    store.breaker_calls_add(calls, now).await?;
    let rows = store.breaker_list().await?;
    for reported in calls {
        let Some(policy) = policy_for(&rows, &reported.module, &reported.function) else {
            continue;
        };
        for _ in 0..TRIES {
            let row = store
                .breaker_get(&reported.module, &reported.function)
                .await?;
            let (status, version) = match &row {
                Some(row) => (row.status.clone(), Some(row.version)),
                None => (
                    BreakerStatus::closed(now - policy.window_secs as i64 * 1_000_000),
                    None,
                ),
            };
            let since = (now - policy.window_secs as i64 * 1_000_000).max(status.counted_from);
            let window = store
                .breaker_calls_since(&reported.module, &reported.function, since)
                .await?;
            let next =
                status.after_report(policy, window, (reported.calls, reported.failures), now);
            if next == status && row.is_some() {
                break;
            }
            let changed = next.state != status.state;
            let (from, to, trips) = (status.state, next.state, next.trips);
            let put = BreakerPut {
                module: reported.module.clone(),
                function: reported.function.clone(),
                version,
                status: next,
            };
            if store.breaker_put(put).await? {
                if changed {
                    tracing::warn!(
                        module = %reported.module, function = %reported.function,
                        from = from.as_str(), to = to.as_str(),
                        calls = window.0, failures = window.1, trips,
                        "circuit breaker changed"
                    );
                }
                break;
            }
        }
    }
    Ok(())
}

/// Whether one call of `module`/`function` may run now under `policy`: `Err(until)` while
/// its breaker is open or its probes are out. Hands out a probe when the cooldown is over.
pub async fn admit_call(
    store: &dyn Store,
    module: &str,
    function: &str,
    policy: &BreakerPolicy,
) -> StoreResult<Result<BreakerStatus, DateTime<Utc>>> {
    let now = now_micros();
    for _ in 0..TRIES {
        let Some(row) = store.breaker_get(module, function).await? else {
            return Ok(Ok(BreakerStatus::closed(now)));
        };
        match row.status.admit(policy, now) {
            Err(until) => {
                return Ok(Err(
                    DateTime::from_timestamp_micros(until).unwrap_or_default()
                ));
            }
            Ok(next) if next == row.status => return Ok(Ok(next)),
            Ok(next) => {
                let put = BreakerPut {
                    module: module.into(),
                    function: function.into(),
                    version: Some(row.version),
                    status: next.clone(),
                };
                if store.breaker_put(put).await? {
                    return Ok(Ok(next));
                }
            }
        }
    }
    // Lost every race for the last probes: wait for their verdict.
    Ok(Err(Utc::now() + chrono::Duration::seconds(1)))
}
