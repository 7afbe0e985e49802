//! Queue limits on SQLite: the claim of a limited queue, in one write transaction on the one
//! writer connection, and the partition keys of new and waiting jobs.

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection};

use super::WRITE_TRANSACTION;
use super::{JOB_COLUMNS, SqliteStore, job_from_row, now_micros};
use crate::limits::{LimitedClaim, Occupancy, PartitionBy, QueueLimits};
use crate::model::{Job, JobId, NewJob};
use crate::store::{
    Claimed, JobFetch, QueueLimitsSet, StoreResult, UNSETTLED_STATES, limits_from_json,
    partition_source,
};

/// Waiting jobs given a partition key per statement when a queue gains partitions.
const BACKFILL_BATCH: i64 = 2000;

/// The limits of the queues of `jobs` that have partitions, for the keys of new jobs.
pub(super) async fn partitioned_queues(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> StoreResult<HashMap<String, QueueLimits>> {
    let mut queues: Vec<&str> = jobs.iter().map(|job| job.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    let rows = sqlx::query(
        "SELECT name, limits FROM sluice_queues
         WHERE name IN (SELECT value FROM json_each(?1))
           AND json_extract(limits, '$.partition') IS NOT NULL",
    )
    .bind(serde_json::to_string(&queues).expect("names serialize"))
    .fetch_all(&mut *conn)
    .await?;
    let mut limits = HashMap::new();
    for row in rows {
        if let Some(parsed) = limits_from_json(row.try_get("limits")?)? {
            limits.insert(row.try_get("name")?, parsed);
        }
    }
    Ok(limits)
}

impl SqliteStore {
    /// Whether `queue` is limited and not paused: a plain claim that found nothing asks.
    pub(super) async fn is_limited(&self, queue: &str) -> StoreResult<bool> {
        let limited: Option<bool> = sqlx::query_scalar(
            "SELECT limits IS NOT NULL AND NOT paused FROM sluice_queues WHERE name = ?1",
        )
        .bind(queue)
        .fetch_optional(&self.readers)
        .await?;
        Ok(limited == Some(true))
    }

    /// Claims from a limited queue, in one transaction on the writer: every claim of this
    /// database takes its turn, so the limits are exact.
    pub(super) async fn claim_limited(&self, params: &JobFetch) -> StoreResult<Claimed> {
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let Some(row) = sqlx::query(
            "SELECT paused, limits, rate_tat, partition_cursor FROM sluice_queues WHERE name = ?1",
        )
        .bind(&params.queue)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Claimed::default());
        };
        let paused: bool = row.try_get("paused")?;
        let Some(limits) = limits_from_json(row.try_get("limits")?)? else {
            return Ok(Claimed::default());
        };
        if paused {
            return Ok(Claimed::default());
        }
        let rate_tat: Option<i64> = row.try_get("rate_tat")?;
        let cursor: Option<String> = row.try_get("partition_cursor")?;
        let now = now_micros();

        let occupancy: Vec<Occupancy> = if LimitedClaim::counts_occupancy(&limits) {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT partition_key, sum(running), sum(retrying) FROM (
                     SELECT partition_key, 1 AS running, 0 AS retrying FROM sluice_jobs
                     WHERE state = 'running' AND queue = ?1
                     UNION ALL
                     SELECT partition_key, 0, 1 FROM sluice_jobs
                     WHERE {UNSETTLED_STATES} AND state = 'retryable' AND queue = ?1
                 ) AS occupied GROUP BY partition_key"
            )))
            .bind(&params.queue)
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        let mut claim = LimitedClaim::new(&limits, rate_tat, cursor, occupancy, params.limit, now);
        if claim.wanted == 0 {
            tx.commit().await?;
            let (_, held_back_until) = claim.finish(0);
            return Ok(Claimed {
                jobs: Vec::new(),
                held_back_until,
            });
        }

        let mut ids: Vec<JobId> = Vec::new();
        match &limits.partition {
            None => {
                ids = sqlx::query_scalar(
                    "SELECT id FROM sluice_jobs WHERE state = 'available' AND queue = ?1
                     ORDER BY priority, scheduled_at, id LIMIT ?2",
                )
                .bind(&params.queue)
                .bind(i64::from(claim.wanted))
                .fetch_all(&mut *tx)
                .await?;
            }
            Some(partitioning) => {
                let look = claim.keys_to_look_at();
                let keys =
                    keys_in_turn(&mut tx, &params.queue, claim.cursor.as_deref(), look).await?;
                let mut tats: HashMap<String, i64> = HashMap::new();
                if partitioning.rate.is_some() {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT key, tat FROM sluice_partition_rates
                         WHERE queue = ?1 AND key IN (SELECT value FROM json_each(?2))",
                    )
                    .bind(&params.queue)
                    .bind(serde_json::to_string(&keys).expect("keys serialize"))
                    .fetch_all(&mut *tx)
                    .await?;
                    tats.extend(rows);
                }
                let mut rounds = claim.rounds(&keys, &tats).expect("a queue with partitions");
                for round in 0.. {
                    let asks = rounds.next_round(round);
                    if asks.is_empty() {
                        break;
                    }
                    let mut got = HashMap::new();
                    // One probe of the partitions index per key; SQLite has no LATERAL, and
                    // its queries cost no round trip.
                    for ask in &asks {
                        let heads: Vec<JobId> = sqlx::query_scalar(
                            "SELECT id FROM sluice_jobs
                             WHERE state = 'available' AND queue = ?1 AND partition_key = ?2
                             ORDER BY priority, id LIMIT ?3 OFFSET ?4",
                        )
                        .bind(&params.queue)
                        .bind(&ask.key)
                        .bind(i64::from(ask.take))
                        .bind(i64::from(ask.skip))
                        .fetch_all(&mut *tx)
                        .await?;
                        got.insert(ask.key.clone(), heads.len() as u32);
                        ids.extend(heads);
                    }
                    rounds.got(&asks, |key| got.get(key).copied().unwrap_or(0));
                }
                let tats = claim.partitions_done(rounds.finish());
                for (key, tat) in &tats {
                    sqlx::query(
                        "INSERT INTO sluice_partition_rates (queue, key, tat) VALUES (?1, ?2, ?3)
                         ON CONFLICT (queue, key) DO UPDATE SET tat = excluded.tat",
                    )
                    .bind(&params.queue)
                    .bind(key)
                    .bind(tat)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }

        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs
             SET state = 'running', attempt = attempt + 1, attempted_at = ?2,
                 lease_node = ?3, lease_expires_at = ?4
             WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'available'
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(serde_json::to_string(&ids).expect("ids serialize"))
        .bind(now)
        .bind(&params.node)
        .bind(now + params.lease.as_micros() as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by_key(|job| (job.priority, job.scheduled_at, job.id));
        let (new_tat, held_back_until) = claim.finish(jobs.len() as u32);
        sqlx::query(
            "UPDATE sluice_queues SET rate_tat = ?2, partition_cursor = ?3 WHERE name = ?1",
        )
        .bind(&params.queue)
        .bind(new_tat)
        .bind(&claim.cursor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claimed {
            jobs,
            held_back_until,
        })
    }

    pub(super) async fn set_limits(&self, params: QueueLimitsSet) -> StoreResult<()> {
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let limits = params
            .limits
            .as_ref()
            .map(|limits| serde_json::to_string(limits).expect("limits serialize"));
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused, limits, updated_at) VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET limits = ?2, updated_at = ?3",
        )
        .bind(&params.name)
        .bind(limits)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        let by = params
            .limits
            .as_ref()
            .and_then(|limits| limits.partition.as_ref())
            .and_then(|partition| PartitionBy::parse(&partition.by).ok());
        if let Some(by) = by {
            backfill_partition_keys(&mut tx, &params.name, &by).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn prune_partition_rates(&self) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sluice_partition_rates WHERE tat < ?1")
            .bind(now_micros())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Up to `limit` partition keys with available jobs, in turn: those after `cursor` (the
/// last claim's last key), then from the first; one index probe per key.
async fn keys_in_turn(
    conn: &mut SqliteConnection,
    queue: &str,
    cursor: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<String>> {
    let mut keys = keys_after(conn, queue, cursor, limit).await?;
    if let Some(cursor) = cursor
        && (keys.len() as i64) < limit
    {
        let wrapped = keys_after(conn, queue, None, limit - keys.len() as i64).await?;
        keys.extend(wrapped.into_iter().take_while(|key| key.as_str() <= cursor));
    }
    Ok(keys)
}

async fn keys_after(
    conn: &mut SqliteConnection,
    queue: &str,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<String>> {
    let first = match after {
        Some(_) => "partition_key > ?2",
        None => "?2 IS NULL",
    };
    let keys = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE keys(key, n) AS (
             SELECT (SELECT partition_key FROM sluice_jobs
                     WHERE state = 'available' AND queue = ?1 AND partition_key IS NOT NULL AND {first}
                     ORDER BY partition_key LIMIT 1), 1
             UNION ALL
             SELECT (SELECT partition_key FROM sluice_jobs
                     WHERE state = 'available' AND queue = ?1 AND partition_key IS NOT NULL
                       AND partition_key > k.key
                     ORDER BY partition_key LIMIT 1), k.n + 1
             FROM keys AS k WHERE k.key IS NOT NULL AND k.n < ?3
         )
         SELECT key FROM keys WHERE key IS NOT NULL"
    )))
    .bind(queue)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(keys)
}

/// Gives the queue's waiting jobs that have no partition key the one `by` derives.
async fn backfill_partition_keys(
    conn: &mut SqliteConnection,
    queue: &str,
    by: &PartitionBy,
) -> StoreResult<()> {
    let mut after: JobId = 0;
    loop {
        let rows = sqlx::query(
            "SELECT id, module, function, args, codec FROM sluice_jobs
             WHERE queue = ?1 AND id > ?2 AND partition_key IS NULL
               AND state IN ('available', 'scheduled', 'retryable')
             ORDER BY id LIMIT ?3",
        )
        .bind(queue)
        .bind(after)
        .bind(BACKFILL_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("id")?;
        let mut keyed = Vec::with_capacity(rows.len());
        for row in &rows {
            let codec: String = row.try_get("codec")?;
            let job = partition_source(
                queue,
                row.try_get("module")?,
                row.try_get("function")?,
                row.try_get("args")?,
                &codec,
            );
            keyed.push(serde_json::json!([
                row.try_get::<JobId, _>("id")?,
                by.key_of(&job)
            ]));
        }
        sqlx::query(
            "UPDATE sluice_jobs SET partition_key = k.value ->> 1
             FROM json_each(?1) AS k WHERE sluice_jobs.id = k.value ->> 0",
        )
        .bind(serde_json::Value::Array(keyed).to_string())
        .execute(&mut *conn)
        .await?;
    }
}
