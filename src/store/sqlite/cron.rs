//! Cron entries and the insertion of their slots' jobs, on SQLite (times in microseconds).

use chrono::Utc;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::WRITE_TRANSACTION;
use super::{SqliteStore, from_micros, insert_jobs, micros};
use crate::store::{
    CRON_COLUMNS, CronEntry, CronFire, CronPut, Enqueued, Misfire, StoreError, StoreResult,
    check_new_job,
};

fn entry_from_row(row: &SqliteRow) -> StoreResult<CronEntry> {
    let misfire: String = row.try_get("misfire")?;
    Ok(CronEntry {
        name: row.try_get("name")?,
        schedule: row.try_get("schedule")?,
        timezone: row.try_get("timezone")?,
        misfire: Misfire::parse(&misfire)
            .ok_or_else(|| StoreError::Database(format!("unknown misfire policy {misfire}")))?,
        queue: row.try_get("queue")?,
        module: row.try_get("module")?,
        function: row.try_get("function")?,
        args: row.try_get("args")?,
        priority: row.try_get("priority")?,
        max_attempts: row.try_get("max_attempts")?,
        last_slot: from_micros(row.try_get("last_slot")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

impl SqliteStore {
    pub(super) async fn put_cron(&self, params: CronPut) -> StoreResult<CronEntry> {
        let entry = &params.entry;
        // An unchanged schedule keeps its place; a changed one starts from now.
        let stored = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sluice_cron ({CRON_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (name) DO UPDATE SET
                 last_slot = CASE WHEN schedule = excluded.schedule AND timezone = excluded.timezone
                                  THEN last_slot ELSE excluded.last_slot END,
                 schedule = excluded.schedule, timezone = excluded.timezone,
                 misfire = excluded.misfire, queue = excluded.queue, module = excluded.module,
                 function = excluded.function, args = excluded.args,
                 priority = excluded.priority, max_attempts = excluded.max_attempts,
                 updated_at = excluded.updated_at
             WHERE ?13
             RETURNING {CRON_COLUMNS}"
        )))
        .bind(&entry.name)
        .bind(&entry.schedule)
        .bind(&entry.timezone)
        .bind(entry.misfire.as_str())
        .bind(&entry.queue)
        .bind(&entry.module)
        .bind(&entry.function)
        .bind(&entry.args)
        .bind(entry.priority)
        .bind(entry.max_attempts)
        .bind(micros(entry.last_slot))
        .bind(micros(entry.updated_at))
        .bind(params.replace)
        .fetch_optional(&self.writer)
        .await?;
        match stored {
            Some(row) => entry_from_row(&row),
            // Kept as it was: seeding does not replace.
            None => {
                let kept = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CRON_COLUMNS} FROM sluice_cron WHERE name = ?1"
                )))
                .bind(&entry.name)
                .fetch_one(&self.readers)
                .await?;
                entry_from_row(&kept)
            }
        }
    }

    pub(super) async fn list_cron(&self) -> StoreResult<Vec<CronEntry>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CRON_COLUMNS} FROM sluice_cron ORDER BY name"
        )))
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    pub(super) async fn remove_cron(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sluice_cron WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn fire_cron(&self, params: CronFire) -> StoreResult<Option<Vec<Enqueued>>> {
        for job in &params.jobs {
            check_new_job(job, self.max_args_bytes)?;
        }
        let now = Utc::now();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let moved =
            sqlx::query("UPDATE sluice_cron SET last_slot = ?1 WHERE name = ?2 AND last_slot = ?3")
                .bind(micros(params.last_slot))
                .bind(&params.name)
                .bind(micros(params.expected_last_slot))
                .execute(&mut *tx)
                .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        let enqueued = insert_jobs(&mut tx, &params.jobs, now).await?;
        tx.commit().await?;
        self.wake_inserted(&params.jobs, &enqueued, now);
        Ok(Some(enqueued))
    }
}
