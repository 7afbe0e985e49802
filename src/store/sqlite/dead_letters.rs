//! Dead letters on SQLite: discarded jobs grouped by what failed and how, and the recent
//! failures of one function. Both read a bounded window of `sluice_jobs_unsettled`.

use sqlx::Row;

use super::{SqliteStore, attempt_from_row, from_micros};
use crate::model::{AttemptRecord, JobId};
use crate::store::{
    DEAD_LETTER_WINDOW, DeadLetterGroup, RecentFailures, StoreResult, UNSETTLED_STATES,
};

impl SqliteStore {
    pub(super) async fn group_dead_letters(&self) -> StoreResult<Vec<DeadLetterGroup>> {
        // SQLite takes the bare `a.message` from the row that gave `max(d.id)`, where
        // PostgreSQL needs an ordered `array_agg`.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH dead AS (
                 SELECT id, module, function, attempt, finalized_at FROM sluice_jobs
                 WHERE {UNSETTLED_STATES} AND state = 'discarded' ORDER BY state, id DESC LIMIT ?1
             )
             SELECT d.module, d.function, COALESCE(a.outcome, 'unknown') AS class,
                    count(*) AS jobs, max(d.id) AS last_job,
                    COALESCE(d.finalized_at, a.finished_at) AS last_at, a.message AS last_message
             FROM dead AS d
             LEFT JOIN sluice_attempts AS a ON a.job_id = d.id AND a.attempt = d.attempt
             GROUP BY 1, 2, 3
             ORDER BY last_job DESC"
        )))
        .bind(i64::from(DEAD_LETTER_WINDOW))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetterGroup {
                    module: row.try_get("module")?,
                    function: row.try_get("function")?,
                    class: row.try_get("class")?,
                    jobs: row.try_get::<i64, _>("jobs")? as u64,
                    last_job: row.try_get("last_job")?,
                    last_at: from_micros(row.try_get("last_at")?),
                    last_message: row.try_get("last_message")?,
                })
            })
            .collect()
    }

    pub(super) async fn recent_failures(
        &self,
        params: RecentFailures,
    ) -> StoreResult<Vec<(JobId, AttemptRecord)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH unsettled AS (
                 SELECT id, module, function FROM sluice_jobs
                 WHERE {UNSETTLED_STATES} AND state IN ('retryable', 'discarded')
                 ORDER BY id DESC LIMIT ?3
             )
             SELECT a.* FROM unsettled AS u JOIN sluice_attempts AS a ON a.job_id = u.id
             WHERE u.module = ?1 AND u.function = ?2 AND a.outcome <> 'completed'
             ORDER BY a.finished_at DESC LIMIT ?4"
        )))
        .bind(&params.module)
        .bind(&params.function)
        .bind(i64::from(DEAD_LETTER_WINDOW))
        .bind(i64::from(params.limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("job_id")?, attempt_from_row(row)?)))
            .collect()
    }
}
