//! Circuit breakers' policies, states and call counts on SQLite.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::breakers::{BreakerPolicy, BreakerState, BreakerStatus};
use crate::store::{BreakerCalls, BreakerPut, BreakerRow, StoreError, StoreResult};

const COLUMNS: &str = "module, function, policy, state, trips, reopen_at, \
     probes_left, probes_passed, counted_from, version";

fn row_of(row: &SqliteRow) -> StoreResult<BreakerRow> {
    let policy: Option<String> = row.try_get("policy")?;
    let state: String = row.try_get("state")?;
    Ok(BreakerRow {
        module: row.try_get("module")?,
        function: row.try_get("function")?,
        policy: policy
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|error| {
                StoreError::Database(format!("a breaker policy is unreadable: {error}"))
            })?,
        status: BreakerStatus {
            state: BreakerState::parse(&state)
                .ok_or_else(|| StoreError::Database(format!("unknown breaker state {state}")))?,
            trips: row.try_get::<i32, _>("trips")? as u32,
            reopen_at: row.try_get("reopen_at")?,
            probes_left: row.try_get::<i32, _>("probes_left")? as u32,
            probes_passed: row.try_get::<i32, _>("probes_passed")? as u32,
            counted_from: row.try_get("counted_from")?,
        },
        version: row.try_get("version")?,
    })
}

impl SqliteStore {
    pub(super) async fn list_breakers(&self) -> StoreResult<Vec<BreakerRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sluice_breakers ORDER BY module, function"
        )))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(row_of).collect()
    }

    pub(super) async fn get_breaker(
        &self,
        module: &str,
        function: &str,
    ) -> StoreResult<Option<BreakerRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sluice_breakers WHERE module = ?1 AND function = ?2"
        )))
        .bind(module)
        .bind(function)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(row_of).transpose()
    }

    pub(super) async fn set_breaker_policy(
        &self,
        module: &str,
        function: &str,
        policy: Option<BreakerPolicy>,
    ) -> StoreResult<()> {
        let policy =
            policy.map(|policy| serde_json::to_string(&policy).expect("policies serialize"));
        sqlx::query(
            "INSERT INTO sluice_breakers (module, function, policy, counted_from)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (module, function) DO UPDATE SET policy = ?3,
                 version = sluice_breakers.version + 1",
        )
        .bind(module)
        .bind(function)
        .bind(policy)
        .bind(super::now_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(super) async fn put_breaker(&self, params: BreakerPut) -> StoreResult<bool> {
        let status = &params.status;
        let query = match params.version {
            None => sqlx::query(
                "INSERT INTO sluice_breakers (module, function, state, trips, reopen_at, probes_left,
                     probes_passed, counted_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE sluice_breakers SET state = ?3, trips = ?4, reopen_at = ?5, probes_left = ?6,
                     probes_passed = ?7, counted_from = ?8, version = version + 1
                 WHERE module = ?1 AND function = ?2 AND version = ?9",
            ),
        }
        .bind(&params.module)
        .bind(&params.function)
        .bind(status.state.as_str())
        .bind(status.trips as i32)
        .bind(status.reopen_at)
        .bind(status.probes_left as i32)
        .bind(status.probes_passed as i32)
        .bind(status.counted_from);
        let done = match params.version {
            Some(version) => query.bind(version),
            None => query,
        }
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn add_breaker_calls(
        &self,
        calls: &[BreakerCalls],
        now: i64,
    ) -> StoreResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let second = now - now.rem_euclid(1_000_000);
        let rows: Vec<serde_json::Value> = calls
            .iter()
            .map(|c| serde_json::json!([c.module, c.function, c.calls, c.failures]))
            .collect();
        sqlx::query(
            "INSERT INTO sluice_breaker_calls (module, function, second, calls, failures)
             SELECT value ->> 0, value ->> 1, ?2, value ->> 2, value ->> 3 FROM json_each(?1) WHERE true
             ON CONFLICT (module, function, second) DO UPDATE SET
                 calls = sluice_breaker_calls.calls + excluded.calls,
                 failures = sluice_breaker_calls.failures + excluded.failures",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(second)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(super) async fn breaker_calls_after(
        &self,
        module: &str,
        function: &str,
        since: i64,
    ) -> StoreResult<(u64, u64)> {
        let (calls, failures): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT sum(calls), sum(failures) FROM sluice_breaker_calls
             WHERE module = ?1 AND function = ?2 AND second >= ?3",
        )
        .bind(module)
        .bind(function)
        .bind(since - since.rem_euclid(1_000_000))
        .fetch_one(&self.readers)
        .await?;
        Ok((calls.unwrap_or(0) as u64, failures.unwrap_or(0) as u64))
    }

    pub(super) async fn prune_breaker_calls(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sluice_breaker_calls WHERE second < ?1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
