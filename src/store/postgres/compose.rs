//! Composition on PostgreSQL: what an attempt composed, written with its completion; the
//! jobs that wait on others, settled as those end; batches and their callbacks; topics.
//!
//! Every function here runs on a connection inside the caller's transaction, so a job's end
//! and all it sets off (releases, cancellations, counts, callbacks) commit together.

use sqlx::{PgConnection, Row};

use super::{CHANNEL, JOB_COLUMNS, insert_jobs, job_from_row};
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

/// Stores the dependencies of jobs just inserted and settles those on jobs that had already
/// ended. The dependencies' rows are locked first: one ending at this moment either ended
/// before (and is settled here) or, ending after, finds these edges.
pub(super) async fn insert_dependencies(
    conn: &mut PgConnection,
    enqueued: &[Enqueued],
    dependencies: &[Vec<Dependency>],
) -> StoreResult<()> {
    let edges = edges_of(enqueued, dependencies).map_err(StoreError::Invalid)?;
    if edges.is_empty() {
        return Ok(());
    }
    let mut targets: Vec<JobId> = edges.iter().map(|edge| edge.depends_on).collect();
    targets.sort_unstable();
    targets.dedup();
    let found = sqlx::query(
        "SELECT id, state, batch_id FROM sluice_jobs WHERE id = ANY($1) ORDER BY id FOR SHARE",
    )
    .bind(&targets)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO sluice_dependencies (job_id, position, depends_on, if_failed)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[])",
    )
    .bind(edges.iter().map(|e| e.job_id).collect::<Vec<_>>())
    .bind(edges.iter().map(|e| e.position).collect::<Vec<_>>())
    .bind(edges.iter().map(|e| e.depends_on).collect::<Vec<_>>())
    .bind(
        edges
            .iter()
            .map(|e| e.if_failed.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    let mut ended = Vec::new();
    let mut present = std::collections::HashSet::new();
    for row in &found {
        let id: JobId = row.try_get("id")?;
        present.insert(id);
        let state: String = row.try_get("state")?;
        if crate::compose::is_end(&state) {
            ended.push(id);
        }
    }
    // A dependency that does not exist resolves as `deleted`, like one deleted later.
    ended.extend(targets.iter().filter(|id| !present.contains(id)));
    resolve_edges(conn, ended).await
}

/// Settles what the `ended` jobs set off: their dependents' releases and cancellations (and
/// in turn those of the jobs waiting on the cancelled), and their batches' counts and
/// callbacks.
pub(super) async fn settle(conn: &mut PgConnection, ended: Vec<Ended>) -> StoreResult<()> {
    tally_batches(conn, &ended).await?;
    resolve_edges(conn, ended.into_iter().map(|job| job.id).collect()).await
}

/// Resolves the edges on the `ended` jobs, releases or cancels the dependents they leave
/// with nothing to wait for, and goes on with the cancelled ones.
async fn resolve_edges(conn: &mut PgConnection, mut ended: Vec<JobId>) -> StoreResult<()> {
    let mut released_queues: Vec<String> = Vec::new();
    while !ended.is_empty() {
        let rows = sqlx::query(
            "UPDATE sluice_dependencies AS d SET resolved = COALESCE(j.state, 'deleted')
             FROM unnest($1::bigint[]) AS e(id) LEFT JOIN sluice_jobs AS j ON j.id = e.id
             WHERE d.depends_on = e.id AND d.resolved IS NULL
             RETURNING d.job_id, d.if_failed, d.resolved",
        )
        .bind(&ended)
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
        let resolved = resolve(&edges);
        let ids: Vec<JobId> = resolved.iter().map(|(id, _)| *id).collect();
        // In id order, so two settlings touching the same dependents cannot deadlock.
        sqlx::query("SELECT id FROM sluice_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        let rows = sqlx::query(
            "UPDATE sluice_jobs AS j
             SET waiting_on = j.waiting_on - x.ended,
                 state = CASE WHEN x.cancel THEN 'cancelled'
                              WHEN j.waiting_on - x.ended > 0 THEN 'held'
                              WHEN j.scheduled_at > now() THEN 'scheduled'
                              ELSE 'available' END,
                 finalized_at = CASE WHEN x.cancel THEN now() END
             FROM unnest($1::bigint[], $2::int[], $3::bool[]) AS x(id, ended, cancel)
             WHERE j.id = x.id AND j.state = 'held'
             RETURNING j.id, j.state, j.queue, j.batch_id",
        )
        .bind(&ids)
        .bind(resolved.iter().map(|(_, r)| r.ended).collect::<Vec<_>>())
        .bind(resolved.iter().map(|(_, r)| r.cancel).collect::<Vec<_>>())
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
        tally_batches(conn, &cancelled).await?;
        ended = cancelled.into_iter().map(|job| job.id).collect();
    }
    if !released_queues.is_empty() {
        // Delivered when the transaction commits, like the insert trigger's.
        sqlx::query(
            "SELECT pg_notify($1, q) FROM (SELECT DISTINCT unnest($2::text[]) AS q) AS queues",
        )
        .bind(CHANNEL)
        .bind(&released_queues)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Counts ended jobs in their batches, and enqueues each callback that falls due, once: the
/// update that counts holds the batch's row until the transaction ends, and the callback's
/// job id is recorded in that row.
async fn tally_batches(conn: &mut PgConnection, ended: &[Ended]) -> StoreResult<()> {
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
    if by_batch.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = by_batch.keys().copied().collect();
    sqlx::query("SELECT id FROM sluice_batches WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(
        "UPDATE sluice_batches AS b
         SET completed = b.completed + x.completed, discarded = b.discarded + x.discarded,
             cancelled = b.cancelled + x.cancelled
         FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[])
              AS x(id, completed, discarded, cancelled)
         WHERE b.id = x.id
         RETURNING b.id",
    )
    .bind(&ids)
    .bind(by_batch.values().map(|c| c[0]).collect::<Vec<_>>())
    .bind(by_batch.values().map(|c| c[1]).collect::<Vec<_>>())
    .bind(by_batch.values().map(|c| c[2]).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        fire_due_callbacks(conn, row.try_get("id")?).await?;
    }
    Ok(())
}

/// Enqueues the callbacks of `batch` that its counts call for and that have not run.
pub(super) async fn fire_due_callbacks(conn: &mut PgConnection, batch: i64) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT total, completed, discarded, cancelled, callbacks::text AS callbacks,
                finished_job IS NOT NULL AS finished, success_job IS NOT NULL AS success,
                discard_job IS NOT NULL AS discard
         FROM sluice_batches WHERE id = $1",
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
    for kind in due_callbacks(counts, &callbacks, fired) {
        let Some(job) = callback_job(batch, kind, &callbacks, counts) else {
            continue;
        };
        // Boxed: inserting jobs may settle dependencies, which may count in batches.
        let enqueued = Box::pin(insert_jobs(conn, vec![job])).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_batches SET {} = $2 WHERE id = $1",
            kind.column()
        )))
        .bind(batch)
        .bind(enqueued[0].id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Creates a batch that `total` jobs, inserted next by the caller, will join.
pub(super) async fn create_batch(
    conn: &mut PgConnection,
    parent: Option<JobId>,
    callbacks: &BatchCallbacks,
    total: usize,
) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO sluice_batches (parent_id, total, callbacks) VALUES ($1, $2, $3::jsonb)
         RETURNING id",
    )
    .bind(parent)
    .bind(total as i32)
    .bind(serde_json::to_string(callbacks).expect("callbacks serialize"))
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Writes what the completed attempts of one outcome batch composed, as one enqueue: their
/// batches, their children (with their dependencies) and their events.
pub(super) async fn apply_composed(
    conn: &mut PgConnection,
    completions: &[(JobId, &Composed)],
) -> StoreResult<()> {
    let composed = crate::compose::CompletionsComposed::new(completions);
    let mut batches = Vec::new();
    for (parent, callbacks, total) in composed.batches() {
        batches.push(create_batch(conn, Some(parent), callbacks, total).await?);
    }
    let subscriptions = subscriptions_of(conn, &composed.topics()).await?;
    let jobs = composed.jobs(&batches, &subscriptions, chrono::Utc::now());
    if !jobs.is_empty() {
        Box::pin(insert_jobs(conn, jobs)).await?;
    }
    for batch in batches {
        fire_due_callbacks(conn, batch).await?;
    }
    Ok(())
}

/// The subscriptions of `topics`, in a stable order.
pub(super) async fn subscriptions_of(
    conn: &mut PgConnection,
    topics: &[&str],
) -> StoreResult<Vec<Subscription>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT topic, queue, module, function, max_attempts FROM sluice_subscriptions
         WHERE topic = ANY($1) ORDER BY topic, queue, module, function",
    )
    .bind(topics)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(super) fn subscription_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<Subscription> {
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
    conn: &mut PgConnection,
    job: JobId,
) -> StoreResult<Vec<crate::compose::DependencyResult>> {
    let rows = sqlx::query(
        "SELECT d.depends_on, j.module, j.function, COALESCE(d.resolved, j.state, 'deleted') AS state,
                j.output
         FROM sluice_dependencies AS d LEFT JOIN sluice_jobs AS j ON j.id = d.depends_on
         WHERE d.job_id = $1 ORDER BY d.position",
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
pub(super) async fn job_tree(conn: &mut PgConnection, id: JobId) -> StoreResult<JobTree> {
    let job = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::JobNotFound(id))?;
    let job = job_from_row(&job)?;
    let parent = match job.parent_id {
        Some(parent) => fetch_job(conn, parent).await?,
        None => None,
    };
    let children = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE parent_id = $1 ORDER BY id LIMIT $2"
    )))
    .bind(id)
    .bind(TREE_CHILDREN)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(job_from_row)
    .collect::<StoreResult<Vec<Job>>>()?;
    let children_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice_jobs WHERE parent_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let links = |rows: Vec<sqlx::postgres::PgRow>| {
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
             WHERE d.job_id = $1 ORDER BY d.position",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?,
    )?;
    let waited_on_by = links(
        sqlx::query(
            "SELECT d.job_id AS other, d.if_failed, j.state, j.module || '.' || j.function AS call
             FROM sluice_dependencies AS d JOIN sluice_jobs AS j ON j.id = d.job_id
             WHERE d.depends_on = $1 ORDER BY d.job_id LIMIT $2",
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

async fn fetch_job(conn: &mut PgConnection, id: JobId) -> StoreResult<Option<Job>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(job_from_row)
    .transpose()
}

/// A batch's counts, callbacks and the callbacks' jobs.
pub(super) async fn batch_info(conn: &mut PgConnection, id: i64) -> StoreResult<BatchInfo> {
    let row = sqlx::query(
        "SELECT id, parent_id, created_at, total, completed, discarded, cancelled,
                callbacks::text AS callbacks, finished_job, success_job, discard_job
         FROM sluice_batches WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::BatchNotFound(id))?;
    let (running, waiting): (i64, i64) = {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE state = 'running') AS running,
                    count(*) FILTER (WHERE state IN ('available', 'scheduled', 'retryable', 'held'))
                        AS waiting
             FROM sluice_jobs WHERE batch_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        (row.try_get("running")?, row.try_get("waiting")?)
    };
    Ok(BatchInfo {
        id,
        parent_id: row.try_get("parent_id")?,
        created_at: row.try_get("created_at")?,
        counts: BatchCounts {
            total: row.try_get("total")?,
            completed: row.try_get("completed")?,
            discarded: row.try_get("discarded")?,
            cancelled: row.try_get("cancelled")?,
        },
        running: running as u64,
        waiting: waiting as u64,
        callbacks: serde_json::from_str(&row.try_get::<String, _>("callbacks")?)
            .unwrap_or_default(),
        finished_job: row.try_get("finished_job")?,
        success_job: row.try_get("success_job")?,
        discard_job: row.try_get("discard_job")?,
    })
}
