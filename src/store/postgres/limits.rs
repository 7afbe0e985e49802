//! Queue limits on PostgreSQL: the claim of a limited queue, serialized across nodes by a
//! lock on the queue's row, and the partition keys of new and waiting jobs.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use super::{JOB_COLUMNS, PostgresStore, job_from_row};
use crate::limits::{LimitedClaim, Occupancy, PartitionAsk, PartitionBy, QueueLimits};
use crate::model::{Job, JobId, NewJob};
use crate::store::{
    Claimed, JobFetch, QueueLimitsSet, StoreResult, UNSETTLED_STATES, limits_from_json,
    partition_source,
};

/// Waiting jobs given a partition key per statement when a queue gains partitions.
const BACKFILL_BATCH: i64 = 2000;

/// The limits of those of `queues` that have partitions, for the keys of new jobs.
pub(super) async fn partitioned_queues(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> StoreResult<HashMap<String, QueueLimits>> {
    let mut queues: Vec<&str> = jobs.iter().map(|job| job.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    let rows = sqlx::query(
        "SELECT name, limits::text AS limits FROM sluice_queues
         WHERE name = ANY($1) AND limits ? 'partition'",
    )
    .bind(&queues)
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

impl PostgresStore {
    /// Whether `queue` is limited and not paused: a plain claim that found nothing asks.
    pub(super) async fn is_limited(&self, queue: &str) -> StoreResult<bool> {
        let limited: Option<bool> = sqlx::query_scalar(
            "SELECT limits IS NOT NULL AND NOT paused FROM sluice_queues WHERE name = $1",
        )
        .bind(queue)
        .fetch_optional(&self.pool)
        .await?;
        Ok(limited == Some(true))
    }

    /// Claims from a limited queue. The queue's row is locked for the transaction, so the
    /// claims of all nodes on this queue take turns and each sees what the others took: the
    /// limits are exact, not approximated per node. The database's clock times the rate.
    pub(super) async fn claim_limited(&self, params: &JobFetch) -> StoreResult<Claimed> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT paused, limits::text AS limits, rate_tat, partition_cursor,
                    (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now
             FROM sluice_queues WHERE name = $1 FOR UPDATE",
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
        let now: i64 = row.try_get("now")?;

        let occupancy: Vec<Occupancy> = if LimitedClaim::counts_occupancy(&limits) {
            // Each part reads a partial index of its state (every queue's claimed
            // jobs, a few hundred at most; the retrying ones): no index of its own, so a
            // queue without limits keeps its claims as they were. One condition on both
            // states read the whole table.
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT partition_key, sum(running), sum(retrying) FROM (
                     SELECT partition_key, 1 AS running, 0 AS retrying FROM sluice_jobs
                     WHERE state = 'running' AND queue = $1
                     UNION ALL
                     SELECT partition_key, 0, 1 FROM sluice_jobs
                     WHERE {UNSETTLED_STATES} AND state = 'retryable' AND queue = $1
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
                    "SELECT id FROM sluice_jobs WHERE state = 'available' AND queue = $1
                     ORDER BY priority, scheduled_at, id LIMIT $2",
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
                let tats: HashMap<String, i64> = if partitioning.rate.is_some() {
                    sqlx::query_as(
                        "SELECT key, tat FROM sluice_partition_rates WHERE queue = $1 AND key = ANY($2)",
                    )
                    .bind(&params.queue)
                    .bind(&keys)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect()
                } else {
                    HashMap::new()
                };
                let mut rounds = claim.rounds(&keys, &tats).expect("a queue with partitions");
                for round in 0.. {
                    let asks = rounds.next_round(round);
                    if asks.is_empty() {
                        break;
                    }
                    let heads = partition_heads(&mut tx, &params.queue, &asks).await?;
                    rounds.got(&asks, |key| {
                        heads.iter().filter(|(k, _)| k == key).count() as u32
                    });
                    ids.extend(heads.into_iter().map(|(_, id)| id));
                }
                let tats = claim.partitions_done(rounds.finish());
                if !tats.is_empty() {
                    let (keys, tats): (Vec<String>, Vec<i64>) = tats.into_iter().unzip();
                    sqlx::query(
                        "INSERT INTO sluice_partition_rates (queue, key, tat)
                         SELECT $1, key, tat FROM unnest($2::text[], $3::bigint[]) AS t(key, tat)
                         ON CONFLICT (queue, key) DO UPDATE SET tat = excluded.tat",
                    )
                    .bind(&params.queue)
                    .bind(&keys)
                    .bind(&tats)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }

        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs
             SET state = 'running', attempt = attempt + 1,
                 attempted_at = to_timestamp($2::double precision / 1000000),
                 lease_node = $3,
                 -- From the moment the lock was held, not the transaction's start (`now()`):
                 -- a claim that waited its turn still gives a whole lease.
                 lease_expires_at = to_timestamp($2::double precision / 1000000)
                                    + $4 * interval '1 microsecond'
             WHERE id = ANY($1) AND state = 'available'
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(&ids)
        .bind(now)
        .bind(&params.node)
        .bind(params.lease.as_micros() as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by_key(|job| (job.priority, job.scheduled_at, job.id));
        let (new_tat, held_back_until) = claim.finish(jobs.len() as u32);
        sqlx::query(
            "UPDATE sluice_queues SET rate_tat = $2, partition_cursor = $3 WHERE name = $1",
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
        let mut tx = self.pool.begin().await?;
        let limits = params
            .limits
            .as_ref()
            .map(|limits| serde_json::to_string(limits).expect("limits serialize"));
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused, limits) VALUES ($1, false, $2::jsonb)
             ON CONFLICT (name) DO UPDATE SET limits = $2::jsonb, updated_at = now()",
        )
        .bind(&params.name)
        .bind(limits)
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
        let done = sqlx::query(
            "DELETE FROM sluice_partition_rates
             WHERE tat < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The next jobs of each partition asked, in run order: `(key, id)`.
async fn partition_heads(
    conn: &mut PgConnection,
    queue: &str,
    asks: &[PartitionAsk],
) -> StoreResult<Vec<(String, JobId)>> {
    let keys: Vec<&str> = asks.iter().map(|ask| ask.key.as_str()).collect();
    let skips: Vec<i64> = asks.iter().map(|ask| i64::from(ask.skip)).collect();
    let takes: Vec<i64> = asks.iter().map(|ask| i64::from(ask.take)).collect();
    let heads = sqlx::query_as(
        "SELECT t.key, j.id FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS t(key, skip, n)
         CROSS JOIN LATERAL (
             SELECT id FROM sluice_jobs
             WHERE state = 'available' AND queue = $1 AND partition_key = t.key
             ORDER BY priority, id OFFSET t.skip LIMIT t.n
         ) AS j",
    )
    .bind(queue)
    .bind(&keys)
    .bind(&skips)
    .bind(&takes)
    .fetch_all(&mut *conn)
    .await?;
    Ok(heads)
}

/// Up to `limit` partition keys with available jobs, in turn: those after `cursor` (the
/// last claim's last key), then from the first. Each key is one probe of the partitions
/// index (a loose index scan), so a key with thousands of jobs costs no more than one.
async fn keys_in_turn(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
    queue: &str,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<String>> {
    // The first key: after the cursor, or the very first (the empty key included).
    let first = match after {
        Some(_) => "partition_key > $2",
        None => "partition_key IS NOT NULL AND $2::text IS NULL",
    };
    let keys = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE keys(key, n) AS (
             (SELECT partition_key, 1 FROM sluice_jobs
              WHERE state = 'available' AND queue = $1 AND partition_key IS NOT NULL AND {first}
              ORDER BY partition_key LIMIT 1)
             UNION ALL
             SELECT (SELECT partition_key FROM sluice_jobs
                     WHERE state = 'available' AND queue = $1 AND partition_key IS NOT NULL
                       AND partition_key > k.key
                     ORDER BY partition_key LIMIT 1), k.n + 1
             FROM keys AS k WHERE k.key IS NOT NULL AND k.n < $3
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
    conn: &mut PgConnection,
    queue: &str,
    by: &PartitionBy,
) -> StoreResult<()> {
    let mut after: JobId = 0;
    loop {
        let rows = sqlx::query(
            "SELECT id, module, function, args, codec FROM sluice_jobs
             WHERE queue = $1 AND id > $2 AND partition_key IS NULL
               AND state IN ('available', 'scheduled', 'retryable')
             ORDER BY id LIMIT $3",
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
        let mut ids = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let codec: String = row.try_get("codec")?;
            let job = partition_source(
                queue,
                row.try_get("module")?,
                row.try_get("function")?,
                row.try_get("args")?,
                &codec,
            );
            ids.push(row.try_get::<JobId, _>("id")?);
            keys.push(by.key_of(&job));
        }
        sqlx::query(
            "UPDATE sluice_jobs AS j SET partition_key = t.key
             FROM unnest($1::bigint[], $2::text[]) AS t(id, key) WHERE j.id = t.id",
        )
        .bind(&ids)
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    }
}
