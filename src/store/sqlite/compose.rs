//! Composition on SQLite: what an attempt composed, written with its completion; the jobs
//! that wait on others, settled as those end; batches and their callbacks; topics.
//!
//! The same steps as `store/postgres/compose.rs`, on the one writer connection inside the
//! caller's transaction. SQLite has one writer, so nothing here needs the row locks that
//! PostgreSQL takes; ids go in as JSON arrays (`json_each`) where PostgreSQL binds arrays.
//! Released jobs' queues are returned for the caller to wake once it commits.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{JOB_COLUMNS, from_micros, insert_jobs, job_from_row, micros};
use crate::compose::{
    BatchCallbacks, BatchCounts, Composed, Dependency, IfFailed, callback_job, due_callbacks,
    edges_of, resolve,
};
use crate::model::{Job, JobId};
use crate::store::{
    BatchInfo, DependencyLink, Enqueued, JobTree, StoreError, StoreResult, Subscription,
};

/// A job that just ended, and the batch it counts in.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    pub id: JobId,
    pub state: String,
    pub batch_id: Option<i64>,
}

fn json_ids(ids: &[JobId]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

/// Stores the dependencies of jobs just inserted and settles those on jobs that had already
/// ended (or do not exist: `deleted`).
pub(super) async fn insert_dependencies(
    conn: &mut SqliteConnection,
    enqueued: &[Enqueued],
    dependencies: &[Vec<Dependency>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let edges = edges_of(enqueued, dependencies).map_err(StoreError::Invalid)?;
    if edges.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = edges
        .iter()
        .map(|e| serde_json::json!([e.job_id, e.position, e.depends_on, e.if_failed.as_str()]))
        .collect();
    sqlx::query(
        "INSERT INTO sluice_dependencies (job_id, position, depends_on, if_failed)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?1)",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    let mut targets: Vec<JobId> = edges.iter().map(|edge| edge.depends_on).collect();
    targets.sort_unstable();
    targets.dedup();
    let ended: Vec<JobId> = sqlx::query_scalar(
        "SELECT t.value FROM json_each(?1) AS t LEFT JOIN sluice_jobs AS j ON j.id = t.value
         WHERE j.id IS NULL OR j.state IN ('completed', 'discarded', 'cancelled')",
    )
    .bind(json_ids(&targets))
    .fetch_all(&mut *conn)
    .await?;
    resolve_edges(conn, ended, now).await
}

/// Settles what the `ended` jobs set off: their dependents' releases and cancellations (and
/// in turn those of the jobs waiting on the cancelled), and their batches' counts and
/// callbacks. Returns the queues where jobs became available.
pub(super) async fn settle(
    conn: &mut SqliteConnection,
    ended: Vec<Ended>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut queues = tally_batches(conn, &ended, now).await?;
    queues.extend(resolve_edges(conn, ended.into_iter().map(|job| job.id).collect(), now).await?);
    Ok(queues)
}

async fn resolve_edges(
    conn: &mut SqliteConnection,
    mut ended: Vec<JobId>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut released_queues = Vec::new();
    while !ended.is_empty() {
        let rows = sqlx::query(
            "UPDATE sluice_dependencies
             SET resolved = COALESCE((SELECT state FROM sluice_jobs WHERE id = depends_on), 'deleted')
             WHERE depends_on IN (SELECT value FROM json_each(?1)) AND resolved IS NULL
             RETURNING job_id, if_failed, resolved",
        )
        .bind(json_ids(&ended))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut edges = Vec::with_capacity(rows.len());
        for row in &rows {
            let if_failed: String = row.try_get("if_failed")?;
            edges.push((
                row.try_get::<JobId, _>("job_id")?,
                IfFailed::parse(&if_failed).unwrap_or_default(),
                row.try_get::<String, _>("resolved")?,
            ));
        }
        let resolved: Vec<serde_json::Value> = resolve(&edges)
            .into_iter()
            .map(|(id, r)| serde_json::json!([id, r.ended, r.cancel]))
            .collect();
        let rows = sqlx::query(
            "UPDATE sluice_jobs AS j
             SET waiting_on = j.waiting_on - x.ended,
                 state = CASE WHEN x.cancel THEN 'cancelled'
                              WHEN j.waiting_on - x.ended > 0 THEN 'held'
                              WHEN j.scheduled_at > ?2 THEN 'scheduled'
                              ELSE 'available' END,
                 finalized_at = CASE WHEN x.cancel THEN ?2 END
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS ended, value ->> 2 AS cancel
                   FROM json_each(?1)) AS x
             WHERE j.id = x.id AND j.state = 'held'
             RETURNING id, state, queue, batch_id",
        )
        .bind(serde_json::Value::Array(resolved).to_string())
        .bind(micros(now))
        .fetch_all(&mut *conn)
        .await?;
        let mut cancelled = Vec::new();
        for row in &rows {
            let state: String = row.try_get("state")?;
            match state.as_str() {
                "available" => released_queues.push(row.try_get("queue")?),
                "cancelled" => cancelled.push(Ended {
                    id: row.try_get("id")?,
                    state,
                    batch_id: row.try_get("batch_id")?,
                }),
                _ => {}
            }
        }
        released_queues.extend(tally_batches(conn, &cancelled, now).await?);
        ended = cancelled.into_iter().map(|job| job.id).collect();
    }
    Ok(released_queues)
}

/// Counts ended jobs in their batches, and enqueues each callback that falls due, once.
async fn tally_batches(
    conn: &mut SqliteConnection,
    ended: &[Ended],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut by_batch = std::collections::BTreeMap::<i64, [i32; 3]>::new();
    for job in ended {
        let Some(batch) = job.batch_id else { continue };
        let counts = by_batch.entry(batch).or_default();
        match job.state.as_str() {
            "completed" => counts[0] += 1,
            "discarded" => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    let mut queues = Vec::new();
    for (batch, [completed, discarded, cancelled]) in by_batch {
        sqlx::query(
            "UPDATE sluice_batches
             SET completed = completed + ?2, discarded = discarded + ?3, cancelled = cancelled + ?4
             WHERE id = ?1",
        )
        .bind(batch)
        .bind(completed)
        .bind(discarded)
        .bind(cancelled)
        .execute(&mut *conn)
        .await?;
        queues.extend(fire_due_callbacks(conn, batch, now).await?);
    }
    Ok(queues)
}

/// Enqueues the callbacks of `batch` that its counts call for and that have not run.
pub(super) async fn fire_due_callbacks(
    conn: &mut SqliteConnection,
    batch: i64,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let row = sqlx::query(
        "SELECT total, completed, discarded, cancelled, callbacks,
                finished_job IS NOT NULL AS finished, success_job IS NOT NULL AS success,
                discard_job IS NOT NULL AS discard
         FROM sluice_batches WHERE id = ?1",
    )
    .bind(batch)
    .fetch_one(&mut *conn)
    .await?;
    let counts = BatchCounts {
        total: row.try_get("total")?,
        completed: row.try_get("completed")?,
        discarded: row.try_get("discarded")?,
        cancelled: row.try_get("cancelled")?,
    };
    let callbacks: BatchCallbacks =
        serde_json::from_str(&row.try_get::<String, _>("callbacks")?).unwrap_or_default();
    let fired = [
        row.try_get("finished")?,
        row.try_get("success")?,
        row.try_get("discard")?,
    ];
    let mut queues = Vec::new();
    for kind in due_callbacks(counts, &callbacks, fired) {
        let Some(job) = callback_job(batch, kind, &callbacks, counts) else {
            continue;
        };
        queues.push(job.queue.clone());
        // Boxed: inserting jobs may settle dependencies, which may count in batches.
        let enqueued = Box::pin(insert_jobs(conn, std::slice::from_ref(&job), now)).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_batches SET {} = ?2 WHERE id = ?1",
            kind.column()
        )))
        .bind(batch)
        .bind(enqueued[0].id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(queues)
}

/// Creates a batch that `total` jobs, inserted next by the caller, will join.
pub(super) async fn create_batch(
    conn: &mut SqliteConnection,
    parent: Option<JobId>,
    callbacks: &BatchCallbacks,
    total: usize,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO sluice_batches (parent_id, created_at, total, callbacks) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
    )
    .bind(parent)
    .bind(micros(now))
    .bind(total as i32)
    .bind(serde_json::to_string(callbacks).expect("callbacks serialize"))
    .fetch_one(&mut *conn)
    .await?)
}

/// Writes what the completed attempts of one outcome batch composed, as one enqueue: their
/// batches, their children (with their dependencies) and their events. Returns the queues
/// to wake.
pub(super) async fn apply_composed(
    conn: &mut SqliteConnection,
    completions: &[(JobId, &Composed)],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let composed = crate::compose::CompletionsComposed::new(completions);
    let mut batches = Vec::new();
    for (parent, callbacks, total) in composed.batches() {
        batches.push(create_batch(conn, Some(parent), callbacks, total, now).await?);
    }
    let subscriptions = subscriptions_of(conn, &composed.topics()).await?;
    let jobs = composed.jobs(&batches, &subscriptions, now);
    let mut queues: Vec<String> = jobs.iter().map(|job| job.queue.clone()).collect();
    if !jobs.is_empty() {
        Box::pin(insert_jobs(conn, &jobs, now)).await?;
    }
    for batch in batches {
        queues.extend(fire_due_callbacks(conn, batch, now).await?);
    }
    Ok(queues)
}

/// The subscriptions of `topics`, in a stable order.
pub(super) async fn subscriptions_of(
    conn: &mut SqliteConnection,
    topics: &[&str],
) -> StoreResult<Vec<Subscription>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT topic, queue, module, function, max_attempts FROM sluice_subscriptions
         WHERE topic IN (SELECT value FROM json_each(?1)) ORDER BY topic, queue, module, function",
    )
    .bind(serde_json::to_string(topics).expect("topics serialize"))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(super) fn subscription_from_row(row: &SqliteRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        topic: row.try_get("topic")?,
        queue: row.try_get("queue")?,
        module: row.try_get("module")?,
        function: row.try_get("function")?,
        max_attempts: row.try_get("max_attempts")?,
    })
}

/// The jobs `job` waited for, in the order it named them, with their outputs.
pub(super) async fn dependency_results(
    conn: &mut SqliteConnection,
    job: JobId,
) -> StoreResult<Vec<crate::compose::DependencyResult>> {
    let rows = sqlx::query(
        "SELECT d.depends_on, j.module, j.function, COALESCE(d.resolved, j.state, 'deleted') AS state,
                j.output
         FROM sluice_dependencies AS d LEFT JOIN sluice_jobs AS j ON j.id = d.depends_on
         WHERE d.job_id = ?1 ORDER BY d.position",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let output: Option<Vec<u8>> = if state == "completed" {
                row.try_get("output")?
            } else {
                None
            };
            Ok(crate::compose::DependencyResult {
                job_id: row.try_get("depends_on")?,
                module: row
                    .try_get::<Option<String>, _>("module")?
                    .unwrap_or_default(),
                function: row
                    .try_get::<Option<String>, _>("function")?
                    .unwrap_or_default(),
                output_bytes: output.as_ref().map_or(0, |o| o.len() as u64),
                output,
                state,
            })
        })
        .collect()
}

/// The most children a tree lists; `children_total` says how many there are.
const TREE_CHILDREN: i64 = 1000;

/// A job's place in its composition.
pub(super) async fn job_tree(conn: &mut SqliteConnection, id: JobId) -> StoreResult<JobTree> {
    let job = fetch_job(conn, id)
        .await?
        .ok_or(StoreError::JobNotFound(id))?;
    let parent = match job.parent_id {
        Some(parent) => fetch_job(conn, parent).await?,
        None => None,
    };
    let children = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE parent_id = ?1 ORDER BY id LIMIT ?2"
    )))
    .bind(id)
    .bind(TREE_CHILDREN)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(job_from_row)
    .collect::<StoreResult<Vec<Job>>>()?;
    let children_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice_jobs WHERE parent_id = ?1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let links = |rows: Vec<SqliteRow>| {
        rows.iter()
            .map(|row| {
                Ok(DependencyLink {
                    job_id: row.try_get("other")?,
                    if_failed: IfFailed::parse(&row.try_get::<String, _>("if_failed")?)
                        .unwrap_or_default(),
                    state: row
                        .try_get::<Option<String>, _>("state")?
                        .unwrap_or_else(|| "deleted".into()),
                    function: row
                        .try_get::<Option<String>, _>("call")?
                        .unwrap_or_default(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()
    };
    let waits_for = links(
        sqlx::query(
            "SELECT d.depends_on AS other, d.if_failed, j.state, j.module || '.' || j.function AS call
             FROM sluice_dependencies AS d LEFT JOIN sluice_jobs AS j ON j.id = d.depends_on
             WHERE d.job_id = ?1 ORDER BY d.position",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?,
    )?;
    let waited_on_by = links(
        sqlx::query(
            "SELECT d.job_id AS other, d.if_failed, j.state, j.module || '.' || j.function AS call
             FROM sluice_dependencies AS d JOIN sluice_jobs AS j ON j.id = d.job_id
             WHERE d.depends_on = ?1 ORDER BY d.job_id LIMIT ?2",
        )
        .bind(id)
        .bind(TREE_CHILDREN)
        .fetch_all(&mut *conn)
        .await?,
    )?;
    let batch = match job.batch_id {
        Some(batch) => Some(batch_info(conn, batch).await?),
        None => None,
    };
    Ok(JobTree {
        job,
        parent,
        children,
        children_total: children_total as u64,
        waits_for,
        waited_on_by,
        batch,
    })
}

async fn fetch_job(conn: &mut SqliteConnection, id: JobId) -> StoreResult<Option<Job>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE id = ?1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

/// A batch's counts, callbacks and the callbacks' jobs.
pub(super) async fn batch_info(conn: &mut SqliteConnection, id: i64) -> StoreResult<BatchInfo> {
    let row = sqlx::query(
        "SELECT id, parent_id, created_at, total, completed, discarded, cancelled, callbacks,
                finished_job, success_job, discard_job
         FROM sluice_batches WHERE id = ?1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::BatchNotFound(id))?;
    let states = sqlx::query(
        "SELECT count(*) FILTER (WHERE state = 'running') AS running,
                count(*) FILTER (WHERE state IN ('available', 'scheduled', 'retryable', 'held'))
                    AS waiting
         FROM sluice_jobs WHERE batch_id = ?1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(BatchInfo {
        id,
        parent_id: row.try_get("parent_id")?,
        created_at: from_micros(row.try_get("created_at")?),
        counts: BatchCounts {
            total: row.try_get("total")?,
            completed: row.try_get("completed")?,
            discarded: row.try_get("discarded")?,
            cancelled: row.try_get("cancelled")?,
        },
        running: states.try_get::<i64, _>("running")? as u64,
        waiting: states.try_get::<i64, _>("waiting")? as u64,
        callbacks: serde_json::from_str(&row.try_get::<String, _>("callbacks")?)
            .unwrap_or_default(),
        finished_job: row.try_get("finished_job")?,
        success_job: row.try_get("success_job")?,
        discard_job: row.try_get("discard_job")?,
    })
}
