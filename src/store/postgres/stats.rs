//! Per-minute stats for charts, on PostgreSQL: each node adds its counts with one upsert.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};

use super::PostgresStore;
use crate::store::{MinuteStats, STATS_WAIT_BUCKETS, StoreResult};

const WAIT_COLUMNS: &str = "wait_0, wait_1, wait_2, wait_3, wait_4, wait_5, wait_6, wait_7, wait_8, wait_9, wait_10, wait_11, wait_12, wait_13, wait_14, wait_15";

impl PostgresStore {
    pub(super) async fn add_stats(&self, rows: Vec<MinuteStats>) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO sluice_stats (minute, queue, completed, failed, {WAIT_COLUMNS}) "
        ));
        insert.push_values(&rows, |mut row, stats| {
            row.push_bind(stats.minute)
                .push_bind(&stats.queue)
                .push_bind(as_i64(stats.completed))
                .push_bind(as_i64(stats.failed));
            for count in stats.wait {
                row.push_bind(as_i64(count));
            }
        });
        insert.push(
            " ON CONFLICT (minute, queue) DO UPDATE SET
                 completed = sluice_stats.completed + excluded.completed,
                 failed = sluice_stats.failed + excluded.failed,
                 wait_0 = sluice_stats.wait_0 + excluded.wait_0,
                 wait_1 = sluice_stats.wait_1 + excluded.wait_1,
                 wait_2 = sluice_stats.wait_2 + excluded.wait_2,
                 wait_3 = sluice_stats.wait_3 + excluded.wait_3,
                 wait_4 = sluice_stats.wait_4 + excluded.wait_4,
                 wait_5 = sluice_stats.wait_5 + excluded.wait_5,
                 wait_6 = sluice_stats.wait_6 + excluded.wait_6,
                 wait_7 = sluice_stats.wait_7 + excluded.wait_7,
                 wait_8 = sluice_stats.wait_8 + excluded.wait_8,
                 wait_9 = sluice_stats.wait_9 + excluded.wait_9,
                 wait_10 = sluice_stats.wait_10 + excluded.wait_10,
                 wait_11 = sluice_stats.wait_11 + excluded.wait_11,
                 wait_12 = sluice_stats.wait_12 + excluded.wait_12,
                 wait_13 = sluice_stats.wait_13 + excluded.wait_13,
                 wait_14 = sluice_stats.wait_14 + excluded.wait_14,
                 wait_15 = sluice_stats.wait_15 + excluded.wait_15",
        );
        insert.build().execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn stats_from(
        &self,
        since: DateTime<Utc>,
        queue: Option<String>,
    ) -> StoreResult<Vec<MinuteStats>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT minute, queue, completed, failed, {WAIT_COLUMNS} FROM sluice_stats
             WHERE minute >= $1 AND ($2::text IS NULL OR queue = $2) ORDER BY minute, queue"
        )))
        .bind(since)
        .bind(queue)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut wait = [0u64; STATS_WAIT_BUCKETS];
                for (i, count) in wait.iter_mut().enumerate() {
                    *count = row.try_get::<i64, _>(4 + i)?.max(0) as u64;
                }
                Ok(MinuteStats {
                    minute: row.try_get("minute")?,
                    queue: row.try_get("queue")?,
                    completed: row.try_get::<i64, _>("completed")?.max(0) as u64,
                    failed: row.try_get::<i64, _>("failed")?.max(0) as u64,
                    wait,
                })
            })
            .collect()
    }

    pub(super) async fn prune_stats(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sluice_stats WHERE minute < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn as_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
