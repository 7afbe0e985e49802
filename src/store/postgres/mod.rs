//! The shared store: PostgreSQL, for many nodes. Claims use `FOR UPDATE SKIP LOCKED`, batches
//! travel as arrays through `unnest` (one statement per batch), new jobs wake every node with
//! LISTEN/NOTIFY, and all lease arithmetic uses the database's clock so nodes on different
//! machines agree on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use tokio::sync::broadcast;

use super::*;
use crate::model::{AttemptClass, Codec, LimitOverrides};

mod breakers;
mod compose;
mod cron;
mod dead_letters;
mod limits;
mod stats;
mod tokens;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The NOTIFY channel; the payload is the queue name.
const CHANNEL: &str = "sluice_jobs";

/// A bulk insert at least this large refreshes the jobs table's planner statistics.
const ANALYZE_AFTER_BULK: usize = 10_000;

pub struct PostgresStore {
    pool: PgPool,
    notifications: broadcast::Sender<String>,
    listener_started: Once,
    max_args_bytes: usize,
    /// Whether a background `ANALYZE` of the jobs table is running.
    analyzing: Arc<AtomicBool>,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        PostgresStore::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects with a pool of `options.pool_size` connections.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> StoreResult<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Database(message) => StoreError::Unavailable(message),
                other => other,
            })?;
        let (notifications, _) = broadcast::channel(1024);
        Ok(PostgresStore {
            pool,
            notifications,
            listener_started: Once::new(),
            max_args_bytes: DEFAULT_MAX_ARGS_BYTES,
            analyzing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Refuses args larger than `bytes` before they reach the database.
    pub fn with_max_args_bytes(mut self, bytes: usize) -> PostgresStore {
        self.max_args_bytes = bytes;
        self
    }

    /// Refreshes the jobs table's planner statistics after a bulk insert of `inserted` jobs.
    ///
    /// Until the table has statistics, the claim and outcome statements are planned as if
    /// it were tiny, and the outcome statement then read the whole table per batch: a drain
    /// right after a large bulk insert ran at 1.2k jobs/s, 3.5k once analyzed. Autovacuum
    /// (where it is on) would get there only within a minute. When the statistics describe
    /// fewer rows than were just inserted, the insert waits for `ANALYZE` (the next process
    /// to drain the table must find them); otherwise it runs in the background, at most one
    /// at a time: awaited after every batch of 10,000, it took a third of a bulk enqueue.
    async fn refresh_statistics(&self, inserted: usize) {
        let analyze = |pool: PgPool| async move {
            if let Err(error) = sqlx::query("ANALYZE sluice_jobs").execute(&pool).await {
                tracing::warn!(%error, "could not analyze sluice_jobs after a bulk insert");
            }
        };
        // -1 when the table was never analyzed.
        let described: f32 = sqlx::query_scalar(
            "SELECT reltuples FROM pg_class WHERE oid = 'sluice_jobs'::regclass",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap_or(-1.0);
        if described < inserted as f32 {
            analyze(self.pool.clone()).await;
        } else if !self.analyzing.swap(true, Ordering::AcqRel) {
            let (pool, analyzing) = (self.pool.clone(), self.analyzing.clone());
            tokio::spawn(async move {
                analyze(pool).await;
                analyzing.store(false, Ordering::Release);
            });
        }
    }

    /// Forwards NOTIFYs to subscribers, reconnecting with backoff when the connection drops.
    fn start_listener(&self) {
        let pool = self.pool.clone();
        let sender = self.notifications.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !pool.is_closed() {
                match listen(&pool, &sender).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, "lost the LISTEN connection; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    async fn notify(&self, queues: Vec<String>) -> StoreResult<()> {
        if !queues.is_empty() {
            sqlx::query(
                "SELECT pg_notify($1, q) FROM (SELECT DISTINCT unnest($2::text[]) AS q) AS queues",
            )
            .bind(CHANNEL)
            .bind(queues)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

/// Listens until the pool closes (Ok) or the connection fails (Err).
async fn listen(pool: &PgPool, sender: &broadcast::Sender<String>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(false);
    listener.listen(CHANNEL).await?;
    // Anything inserted while we were not listening would otherwise wait for a poll.
    let _ = sender.send(WAKE_ALL.to_string());
    loop {
        match listener.try_recv().await? {
            Some(notification) => {
                let _ = sender.send(notification.payload().to_string());
            }
            None if pool.is_closed() => return Ok(()),
            // The connection dropped; PgListener reconnects on the next call.
            None => {
                let _ = sender.send(WAKE_ALL.to_string());
            }
        }
    }
}

const MODULE_COLUMNS: &str = "name, version, digest, functions::text AS functions, length(wasm)::bigint AS size_bytes, uploaded_at";

fn job_from_row(row: &PgRow) -> StoreResult<Job> {
    let codec: String = row.try_get("codec")?;
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        queue: row.try_get("queue")?,
        module: row.try_get("module")?,
        module_version: row.try_get("module_version")?,
        function: row.try_get("function")?,
        args: row.try_get("args")?,
        codec: Codec::parse(&codec)
            .ok_or_else(|| StoreError::Database(format!("unknown codec {codec}")))?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Database(format!("unknown state {state}")))?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        inserted_at: row.try_get("inserted_at")?,
        scheduled_at: row.try_get("scheduled_at")?,
        attempted_at: row.try_get("attempted_at")?,
        lease_node: row.try_get("lease_node")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        finalized_at: row.try_get("finalized_at")?,
        limits: LimitOverrides {
            fuel: row
                .try_get::<Option<i64>, _>("fuel_limit")?
                .map(|v| v as u64),
            memory_bytes: row
                .try_get::<Option<i64>, _>("memory_limit")?
                .map(|v| v as u64),
            timeout: row
                .try_get::<Option<i64>, _>("timeout_ms")?
                .map(|ms| Duration::from_millis(ms as u64)),
        },
        output: row.try_get("output")?,
        lost_attempts: row.try_get("lost_attempts")?,
        partition_key: row.try_get("partition_key")?,
        parent_id: row.try_get("parent_id")?,
        batch_id: row.try_get("batch_id")?,
        waits_for: row.try_get("waits_for")?,
    })
}

fn module_from_row(row: &PgRow) -> StoreResult<ModuleInfo> {
    let functions: String = row.try_get("functions")?;
    Ok(ModuleInfo {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        digest: row.try_get("digest")?,
        functions: serde_json::from_str(&functions)
            .map_err(|e| StoreError::Database(e.to_string()))?,
        size_bytes: row.try_get("size_bytes")?,
        uploaded_at: row.try_get("uploaded_at")?,
    })
}

fn attempt_from_row(row: &PgRow) -> StoreResult<AttemptRecord> {
    let outcome: String = row.try_get("outcome")?;
    let logs: Option<String> = row.try_get("logs")?;
    Ok(AttemptRecord {
        attempt: row.try_get("attempt")?,
        node: row.try_get("node")?,
        module_version: row.try_get("module_version")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        outcome: AttemptClass::parse(&outcome)
            .ok_or_else(|| StoreError::Database(format!("unknown outcome {outcome}")))?,
        message: row.try_get("message")?,
        trap_code: row.try_get("trap_code")?,
        fuel_consumed: row.try_get::<i64, _>("fuel_consumed")? as u64,
        duration: Duration::from_micros(row.try_get::<i64, _>("duration_us")? as u64),
        peak_memory_bytes: row.try_get::<i64, _>("peak_memory")? as u64,
        logs: logs_from_json(logs.as_deref()),
        context: context_from_json(row.try_get::<Option<String>, _>("context")?.as_deref()),
    })
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    // Tokens and the audit log: see tokens.rs.
    async fn stats_add(&self, rows: Vec<MinuteStats>) -> StoreResult<()> {
        self.add_stats(rows).await
    }
    async fn stats_since(
        &self,
        since: DateTime<Utc>,
        queue: Option<String>,
    ) -> StoreResult<Vec<MinuteStats>> {
        self.stats_from(since, queue).await
    }
    async fn stats_prune(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.prune_stats(before).await
    }
    async fn token_create(&self, params: TokenCreate) -> StoreResult<TokenInfo> {
        self.create_token(params).await
    }
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        self.find_token(hash).await
    }
    async fn token_list(&self) -> StoreResult<Vec<TokenInfo>> {
        self.list_tokens().await
    }
    async fn token_revoke(&self, name: &str) -> StoreResult<bool> {
        self.revoke_token(name).await
    }
    async fn token_exists(&self) -> StoreResult<bool> {
        self.any_token().await
    }
    async fn audit_record(&self, params: AuditRecord) -> StoreResult<()> {
        self.record_audit(params).await
    }
    async fn audit_list(&self, limit: u32, before_id: Option<i64>) -> StoreResult<Vec<AuditEntry>> {
        self.list_audit(limit, before_id).await
    }

    async fn session_create(&self, params: SessionCreate) -> StoreResult<()> {
        self.create_session(params).await
    }
    async fn session_token(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        self.find_session(hash).await
    }
    async fn session_end(&self, hash: &str) -> StoreResult<()> {
        self.end_session(hash).await
    }
    async fn session_prune(&self) -> StoreResult<u64> {
        self.prune_sessions().await
    }
    async fn cron_put(&self, params: CronPut) -> StoreResult<CronEntry> {
        self.put_cron(params).await
    }
    async fn cron_list(&self) -> StoreResult<Vec<CronEntry>> {
        self.list_cron().await
    }
    async fn cron_remove(&self, name: &str) -> StoreResult<bool> {
        self.remove_cron(name).await
    }
    async fn cron_fire(&self, params: CronFire) -> StoreResult<Option<Vec<Enqueued>>> {
        self.fire_cron(params).await
    }
    async fn dead_letter_groups(&self) -> StoreResult<Vec<DeadLetterGroup>> {
        self.group_dead_letters().await
    }

    async fn dependency_results(
        &self,
        job: JobId,
    ) -> StoreResult<Vec<crate::compose::DependencyResult>> {
        compose::dependency_results(&mut *self.pool.acquire().await?, job).await
    }

    async fn job_output(&self, job: JobId) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT output FROM sluice_jobs WHERE id = $1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    async fn job_tree(&self, job: JobId) -> StoreResult<JobTree> {
        compose::job_tree(&mut *self.pool.acquire().await?, job).await
    }

    async fn batch_create(
        &self,
        callbacks: crate::compose::BatchCallbacks,
        mut jobs: Vec<NewJob>,
    ) -> StoreResult<(i64, Vec<Enqueued>)> {
        for job in &jobs {
            check_new_job(job, self.max_args_bytes)?;
        }
        let mut tx = self.pool.begin().await?;
        let batch = compose::create_batch(&mut tx, None, &callbacks, jobs.len()).await?;
        for job in &mut jobs {
            job.batch_id = Some(batch);
        }
        let enqueued = insert_jobs(&mut tx, jobs).await?;
        if enqueued.iter().any(|job| job.existing) {
            // A job already held its unique key: it is not this batch's to count.
            return Err(StoreError::Invalid(
                "a batch's jobs cannot take unique keys other jobs hold".into(),
            ));
        }
        compose::fire_due_callbacks(&mut tx, batch).await?;
        tx.commit().await?;
        Ok((batch, enqueued))
    }

    async fn batch_get(&self, id: i64) -> StoreResult<BatchInfo> {
        compose::batch_info(&mut *self.pool.acquire().await?, id).await
    }

    async fn topic_subscribe(&self, subscription: Subscription) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO sluice_subscriptions (topic, queue, module, function, max_attempts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (topic, queue, module, function) DO UPDATE SET max_attempts = $5
             RETURNING (xmax = 0) AS inserted",
        )
        .bind(&subscription.topic)
        .bind(&subscription.queue)
        .bind(&subscription.module)
        .bind(&subscription.function)
        .bind(subscription.max_attempts)
        .fetch_one(&self.pool)
        .await?;
        Ok(done.try_get("inserted")?)
    }

    async fn topic_unsubscribe(&self, subscription: &Subscription) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM sluice_subscriptions
             WHERE topic = $1 AND queue = $2 AND module = $3 AND function = $4",
        )
        .bind(&subscription.topic)
        .bind(&subscription.queue)
        .bind(&subscription.module)
        .bind(&subscription.function)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn topic_subscriptions(&self, topic: Option<&str>) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(
            "SELECT topic, queue, module, function, max_attempts FROM sluice_subscriptions
             WHERE $1::text IS NULL OR topic = $1 ORDER BY topic, queue, module, function",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(compose::subscription_from_row).collect()
    }

    async fn topic_publish(&self, event: crate::compose::Published) -> StoreResult<Vec<Enqueued>> {
        if event.args.len() > self.max_args_bytes {
            return Err(StoreError::ArgsTooLarge {
                size: event.args.len(),
                limit: self.max_args_bytes,
            });
        }
        let mut tx = self.pool.begin().await?;
        let subscriptions = compose::subscriptions_of(&mut tx, &[event.topic.as_str()]).await?;
        let jobs = crate::compose::deliveries(std::slice::from_ref(&event), &subscriptions, None);
        let enqueued = if jobs.is_empty() {
            Vec::new()
        } else {
            insert_jobs(&mut tx, jobs).await?
        };
        tx.commit().await?;
        Ok(enqueued)
    }
    async fn failures_recent(
        &self,
        params: RecentFailures,
    ) -> StoreResult<Vec<(JobId, AttemptRecord)>> {
        self.recent_failures(params).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cross_process_notify: true,
            multi_node: true,
        }
    }

    #[tracing::instrument(name = "store.migrate", level = "debug", skip_all)]
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx holds a Postgres advisory lock while migrating, so concurrent nodes serialize.
        MIGRATIONS.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => match StoreError::from(inner) {
                StoreError::Unavailable(message) => StoreError::Unavailable(message),
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        let receiver = self.notifications.subscribe();
        self.listener_started.call_once(|| self.start_listener());
        receiver
    }

    #[tracing::instrument(name = "store.module_upload", level = "debug", skip_all)]
    async fn module_upload(&self, params: ModuleUpload) -> StoreResult<Uploaded> {
        let functions = serde_json::to_string(&params.functions).expect("functions serialize");
        // Two uploads of different bytes may race for the same next version: the loser hits
        // the primary key and tries again with the next number.
        let mut tries = 0;
        let inserted = loop {
            let attempt = sqlx::query_scalar::<_, i32>(
                "INSERT INTO sluice_modules (name, version, digest, wasm, functions)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4::jsonb FROM sluice_modules WHERE name = $1
                 ON CONFLICT (name, digest) DO NOTHING RETURNING version",
            )
            .bind(&params.name)
            .bind(&params.digest)
            .bind(&params.wasm)
            .bind(&functions)
            .fetch_optional(&self.pool)
            .await;
            match attempt {
                Err(error) if is_unique_violation(&error) && tries < 5 => tries += 1,
                other => break other?,
            }
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = $1 AND digest = $2"
        )))
        .bind(&params.name)
        .bind(&params.digest)
        .fetch_one(&self.pool)
        .await?;
        Ok(Uploaded {
            module: module_from_row(&row)?,
            already_present: inserted.is_none(),
        })
    }

    #[tracing::instrument(name = "store.module_get", level = "debug", skip_all)]
    async fn module_get(&self, params: ModuleGet) -> StoreResult<ModuleInfo> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules
             WHERE name = $1 AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1"
        )))
        .bind(&params.name)
        .bind(params.version)
        .fetch_optional(&self.pool)
        .await?;
        match (row, params.version) {
            (Some(row), _) => module_from_row(&row),
            (None, Some(version)) => {
                self.module_get(ModuleGet {
                    name: params.name.clone(),
                    version: None,
                })
                .await?;
                Err(StoreError::ModuleVersionNotFound {
                    name: params.name,
                    version,
                })
            }
            (None, None) => Err(StoreError::ModuleNotFound(params.name)),
        }
    }

    #[tracing::instrument(name = "store.module_wasm", level = "debug", skip_all)]
    async fn module_wasm(&self, name: &str, version: i32) -> StoreResult<Vec<u8>> {
        sqlx::query_scalar("SELECT wasm FROM sluice_modules WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::ModuleVersionNotFound {
                name: name.to_string(),
                version,
            })
    }

    #[tracing::instrument(name = "store.module_list", level = "debug", skip_all)]
    async fn module_list(&self) -> StoreResult<Vec<ModuleInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT ON (name) {MODULE_COLUMNS} FROM sluice_modules ORDER BY name, version DESC"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(module_from_row).collect()
    }

    #[tracing::instrument(name = "store.module_versions", level = "debug", skip_all)]
    async fn module_versions(&self, name: &str) -> StoreResult<Vec<ModuleInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = $1 ORDER BY version DESC"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(module_from_row).collect()
    }

    #[tracing::instrument(name = "store.job_insert", level = "debug", skip_all)]
    async fn job_insert(&self, job: NewJob) -> StoreResult<Job> {
        let id = self.job_insert_many(vec![job]).await?[0];
        Ok(self.job_get(id).await?.job)
    }

    #[tracing::instrument(name = "store.job_enqueue", level = "debug", skip_all)]
    async fn job_enqueue(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>> {
        for job in &jobs {
            check_new_job(job, self.max_args_bytes)?;
        }
        let count = jobs.len();
        let enqueued = if jobs
            .iter()
            .any(|job| job.unique.is_some() || !job.depends_on.is_empty())
        {
            // Releasing expired keys, inserting and finding the holders, or inserting jobs
            // and what they wait for: all or nothing.
            let mut tx = self.pool.begin().await?;
            let enqueued = insert_jobs(&mut tx, jobs).await?;
            tx.commit().await?;
            enqueued
        } else {
            // One statement, committed on its own: no transaction's extra round trips.
            insert_jobs(&mut *self.pool.acquire().await?, jobs).await?
        };
        if count >= ANALYZE_AFTER_BULK {
            self.refresh_statistics(count).await;
        }
        Ok(enqueued)
    }

    #[tracing::instrument(name = "store.job_claim", level = "debug", skip_all)]
    async fn job_claim(&self, params: JobFetch) -> StoreResult<Claimed> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH picked AS (
                 SELECT id FROM sluice_jobs
                 WHERE state = 'available' AND queue = $1
                   -- A limited queue is claimed from under its row's lock (limits.rs).
                   AND NOT EXISTS (SELECT 1 FROM sluice_queues
                                   WHERE name = $1 AND (paused OR limits IS NOT NULL))
                 ORDER BY priority, scheduled_at, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             -- `id = ANY(ARRAY(...))`, not a join with `picked`: joined, the planner hashed
             -- the whole table per claim while it was small (a seq scan of 10,000 jobs per
             -- claim); an array of ids is always looked up through the primary key.
             UPDATE sluice_jobs AS j
             SET state = 'running', attempt = j.attempt + 1, attempted_at = now(),
                 lease_node = $3, lease_expires_at = now() + $4 * interval '1 microsecond'
             WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
             RETURNING {}",
            JOB_COLUMNS
                .split(", ")
                .map(|c| format!("j.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(&params.queue)
        .bind(params.limit as i64)
        .bind(&params.node)
        .bind(params.lease.as_micros() as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if jobs.is_empty() && self.is_limited(&params.queue).await? {
            return self.claim_limited(&params).await;
        }
        jobs.sort_by_key(|job| (job.priority, job.scheduled_at, job.id));
        Ok(Claimed {
            jobs,
            held_back_until: None,
        })
    }

    #[tracing::instrument(name = "store.job_finish_many", level = "debug", skip_all)]
    async fn job_finish_many(&self, params: &JobFinishMany) -> StoreResult<Vec<JobId>> {
        if params.outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = FinishColumns::default();
        for outcome in &params.outcomes {
            columns.push(outcome);
        }
        // One transaction: the outcomes, what the completed attempts composed, and what the
        // jobs' ends set off (dependents released or cancelled, batches counted).
        let mut tx = self.pool.begin().await?;
        // One statement: apply each outcome only where the lease and attempt still match,
        // and record the history of exactly the rows that were applied.
        let applied = sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::bytea[], $6::timestamptz[],
                                      $7::int[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[],
                                      $12::text[], $13::bigint[], $14::bigint[], $15::bigint[], $16::text[],
                                      $17::bool[], $18::text[])
                     AS i(id, attempt, state, output, scheduled_at, module_version, started_at, finished_at,
                          outcome, message, trap_code, fuel_consumed, duration_us, peak_memory, logs, counts,
                          context)
                     CROSS JOIN (SELECT $1::text AS node, 'running'::text AS running) AS fence
             ),
             updated AS (
                 UPDATE sluice_jobs AS j
                 SET state = i.state,
                     output = COALESCE(i.output, j.output),
                     scheduled_at = COALESCE(i.scheduled_at, j.scheduled_at),
                     attempt = CASE WHEN i.counts THEN j.attempt ELSE j.attempt - 1 END,
                     lost_in_a_row = 0,
                     finalized_at = CASE WHEN i.state IN ('completed', 'discarded', 'cancelled') THEN now() END,
                     lease_node = NULL, lease_expires_at = NULL
                 FROM input AS i
                 -- The batch drives, through the primary key: `id = ANY` is the only
                 -- condition on the table alone, so the planner knows the batch's size. The
                 -- fence is compared with the input's own columns, which the planner cannot
                 -- see into: a condition like `lease_node = $1`, judged from statistics taken
                 -- while no job was leased, put the matching rows at one, and the plan read
                 -- the whole table, or the whole batch, per row: a drain of 10,000 jobs ran
                 -- at 0.8k jobs/s, one of 30,000 at 3.3k.
                 WHERE j.id = ANY($2) AND j.id = i.id AND j.attempt = i.attempt
                   AND j.lease_node = i.node AND j.state = i.running
                 RETURNING j.id, j.state, j.batch_id
             ),
             recorded AS (
                 INSERT INTO sluice_attempts (job_id, attempt, node, module_version, started_at, finished_at,
                     outcome, message, trap_code, fuel_consumed, duration_us, peak_memory, logs, context)
                 SELECT i.id, i.attempt, $1, i.module_version, i.started_at, i.finished_at, i.outcome,
                        i.message, i.trap_code, i.fuel_consumed, i.duration_us, i.peak_memory, i.logs::jsonb,
                        i.context::jsonb
                 FROM input AS i JOIN updated AS u ON u.id = i.id
                 -- No `ON CONFLICT`: the fence above lets each attempt's outcome land once,
                 -- and a speculative insert cost a confirmation record per row.
                 WHERE i.counts
             )
             SELECT id, state, batch_id FROM updated",
        )
        .bind(&params.node)
        .bind(columns.id)
        .bind(columns.attempt)
        .bind(columns.state)
        .bind(columns.output)
        .bind(columns.scheduled_at)
        .bind(columns.module_version)
        .bind(columns.started_at)
        .bind(columns.finished_at)
        .bind(columns.outcome)
        .bind(columns.message)
        .bind(columns.trap_code)
        .bind(columns.fuel_consumed)
        .bind(columns.duration_us)
        .bind(columns.peak_memory)
        .bind(columns.logs)
        .bind(columns.counts)
        .bind(columns.context)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(applied.len());
        let mut ended = Vec::new();
        for row in &applied {
            let id: JobId = row.try_get("id")?;
            let state: String = row.try_get("state")?;
            ids.push(id);
            if crate::compose::is_end(&state) {
                ended.push(compose::Ended {
                    id,
                    state,
                    batch_id: row.try_get("batch_id")?,
                });
            }
        }
        let completions = composed_completions(params, &ids);
        compose::apply_composed(&mut tx, &completions).await?;
        compose::settle(&mut tx, ended).await?;
        tx.commit().await?;
        Ok(ids)
    }

    #[tracing::instrument(name = "store.job_lease_extend", level = "debug", skip_all)]
    async fn job_lease_extend(&self, params: LeaseExtend) -> StoreResult<u64> {
        // A row the completer is writing is skipped, not waited for: its outcome ends the
        // lease anyway, and the two statements, locking the same rows in their own orders,
        // deadlocked now and then. Were that write to fail, the next beat renews the lease.
        let done = sqlx::query(
            "WITH held AS (
                 SELECT id FROM sluice_jobs
                 WHERE id = ANY($3) AND state || '' = 'running' AND lease_node = $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE sluice_jobs SET lease_expires_at = now() + $2 * interval '1 microsecond'
             WHERE id = ANY(ARRAY(SELECT id FROM held))",
        )
        .bind(&params.node)
        .bind(params.lease.as_micros() as i64)
        .bind(&params.jobs)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(name = "store.job_rescue", level = "debug", skip_all)]
    async fn job_rescue(&self, params: JobRescue) -> StoreResult<Vec<JobId>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "WITH expired AS (
                 SELECT id, attempt, lease_node, attempted_at FROM sluice_jobs
                 WHERE state = 'running' AND lease_expires_at < now()
                 FOR UPDATE SKIP LOCKED
             ),
             updated AS (
                 UPDATE sluice_jobs AS j
                 -- A job its user asked to cancel is not run again; one lost too often is
                 -- dead-lettered; the rest run again after a backoff.
                 SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                                  WHEN j.lost_in_a_row + 1 >= $1 THEN 'discarded'
                                  WHEN $2 = 0 THEN 'available' ELSE 'retryable' END,
                     finalized_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.lost_in_a_row + 1 >= $1
                                         THEN now() END,
                     scheduled_at = now() + LEAST($2 * power(2, LEAST(j.lost_in_a_row, 20)), $3)
                                            * interval '1 microsecond',
                     lost_attempts = j.lost_attempts + 1, lost_in_a_row = j.lost_in_a_row + 1,
                     lease_node = NULL, lease_expires_at = NULL
                 FROM expired AS e WHERE j.id = e.id
                 RETURNING j.id, j.state, j.queue, j.batch_id
             ),
             recorded AS (
                 INSERT INTO sluice_attempts (job_id, attempt, node, started_at, finished_at, outcome, message,
                     duration_us)
                 SELECT e.id, e.attempt, e.lease_node, COALESCE(e.attempted_at, now()), now(),
                        CASE WHEN u.state = 'discarded' THEN 'poisoned' ELSE 'lease_expired' END,
                        CASE WHEN u.state = 'discarded' THEN $4
                             ELSE 'the lease of node ' || e.lease_node || ' expired: the node stopped heartbeating' END,
                        (extract(epoch FROM now() - COALESCE(e.attempted_at, now())) * 1000000)::bigint
                 FROM expired AS e JOIN updated AS u ON u.id = e.id
                 ON CONFLICT (job_id, attempt) DO NOTHING
             )
             SELECT id, state, queue, batch_id FROM updated",
        )
        .bind(params.poison_limit)
        .bind(params.backoff.as_micros() as i64)
        .bind(Duration::from_secs(3600).as_micros() as i64)
        .bind(poisoned_message(params.poison_limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut queues = Vec::new();
        let mut ended = Vec::new();
        for row in &rows {
            let id = row.try_get("id")?;
            ids.push(id);
            let state: String = row.try_get("state")?;
            if state == "available" {
                queues.push(row.try_get("queue")?);
            } else if crate::compose::is_end(&state) {
                ended.push(compose::Ended {
                    id,
                    state,
                    batch_id: row.try_get("batch_id")?,
                });
            }
        }
        compose::settle(&mut tx, ended).await?;
        tx.commit().await?;
        self.notify(queues).await?;
        ids.sort_unstable();
        Ok(ids)
    }

    #[tracing::instrument(name = "store.job_stage", level = "debug", skip_all)]
    async fn job_stage(&self) -> StoreResult<u64> {
        let queues: Vec<String> = sqlx::query_scalar(
            "UPDATE sluice_jobs SET state = 'available'
             WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now() RETURNING queue",
        )
        .fetch_all(&self.pool)
        .await?;
        let staged = queues.len() as u64;
        self.notify(queues).await?;
        Ok(staged)
    }

    #[tracing::instrument(name = "store.job_cancel", level = "debug", skip_all)]
    async fn job_cancel(&self, id: JobId) -> StoreResult<Job> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs SET state = 'cancelled', finalized_at = now()
             WHERE id = $1 AND state IN ('available', 'scheduled', 'retryable', 'held')
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let job = job_from_row(&row)?;
            // The jobs waiting on it are cancelled with it (or run, if they said so).
            let ended = compose::Ended {
                id,
                state: "cancelled".into(),
                batch_id: job.batch_id,
            };
            compose::settle(&mut tx, vec![ended]).await?;
            tx.commit().await?;
            return Ok(job);
        }
        drop(tx);
        // Running: a request its node acts on (see migrations/postgres/0003).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now())
             WHERE id = $1 AND state = 'running'
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                self.notify(vec![WAKE_CANCEL.to_string()]).await?;
                job_from_row(&row)
            }
            None => Err(refused(self, id, JobState::Cancelled).await),
        }
    }

    #[tracing::instrument(name = "store.job_cancel_requests", level = "debug", skip_all)]
    async fn job_cancel_requests(&self, params: CancelRequests) -> StoreResult<Vec<JobId>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM sluice_jobs
             WHERE id = ANY($2) AND state = 'running' AND lease_node = $1
               AND cancel_requested_at IS NOT NULL",
        )
        .bind(&params.node)
        .bind(&params.jobs)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(name = "store.job_retry", level = "debug", skip_all)]
    async fn job_retry(&self, params: JobRetry) -> StoreResult<Job> {
        let id = params.id;
        // Edited args meet the cap new jobs meet.
        if let Some(args) = &params.json_args
            && args.len() > self.max_args_bytes
        {
            return Err(StoreError::ArgsTooLarge {
                size: args.len(),
                limit: self.max_args_bytes,
            });
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs
             SET state = 'available', scheduled_at = now(), finalized_at = NULL,
                 max_attempts = GREATEST(max_attempts, attempt + 1), cancel_requested_at = NULL,
                 args = COALESCE($2, args), codec = CASE WHEN $2 IS NULL THEN codec ELSE 'json' END
             WHERE id = $1 AND state IN ('scheduled', 'retryable', 'completed', 'discarded', 'cancelled')
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(id)
        .bind(params.json_args)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                self.notify(vec![job.queue.clone()]).await?;
                Ok(job)
            }
            None => Err(refused(self, id, JobState::Available).await),
        }
    }

    #[tracing::instrument(name = "store.job_delete", level = "debug", skip_all)]
    async fn job_delete(&self, id: JobId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM sluice_jobs WHERE id = $1 RETURNING state, batch_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        // What waited for it resolves it as `deleted`; its batch counts it as cancelled
        // unless it had ended already.
        let state: String = row.try_get("state")?;
        let batch_id = if crate::compose::is_end(&state) {
            None
        } else {
            row.try_get("batch_id")?
        };
        let ended = compose::Ended {
            id,
            state: "cancelled".into(),
            batch_id,
        };
        compose::settle(&mut tx, vec![ended]).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.job_prune", level = "debug", skip_all)]
    async fn job_prune(&self, params: JobPrune) -> StoreResult<u64> {
        if !params.state.is_finished() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM sluice_jobs WHERE id IN (
                 SELECT id FROM sluice_jobs
                 WHERE finalized_at IS NOT NULL AND finalized_at < $1 AND state = $2
                   -- A job's output is kept until the jobs waiting for it have ended.
                   AND NOT EXISTS (
                       SELECT 1 FROM sluice_dependencies AS d
                       JOIN sluice_jobs AS w ON w.id = d.job_id
                       WHERE d.depends_on = sluice_jobs.id
                         AND w.state NOT IN ('completed', 'discarded', 'cancelled'))
                 ORDER BY finalized_at LIMIT $3)",
        )
        .bind(params.finished_before)
        .bind(params.state.as_str())
        .bind(i64::from(params.limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(name = "store.reclaim_space", level = "debug", skip_all)]
    async fn reclaim_space(&self) -> StoreResult<bool> {
        // Autovacuum may be off for the server or for the jobs table alone, or behind: it
        // visits a database at most once a minute, and ten drain-and-prune cycles of
        // 100,000 jobs in a minute left the tables ten times their size, the drain at half
        // its rate. So the leader vacuums when autovacuum is off or the dead rows outnumber
        // the live ones (and 10,000).
        let needed: bool = sqlx::query_scalar(
            "SELECT current_setting('autovacuum') = 'off'
                 OR COALESCE('autovacuum_enabled=false' = ANY(c.reloptions), false)
                 OR COALESCE(s.n_dead_tup > GREATEST(s.n_live_tup, 10000), false)
             FROM pg_class AS c LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
             WHERE c.oid = 'sluice_jobs'::regclass",
        )
        .fetch_one(&self.pool)
        .await?;
        if !needed {
            return Ok(false);
        }
        // Outside a transaction, as VACUUM must be; ANALYZE keeps the plans' estimates true
        // to a table that pruning just emptied. Index pages the first pass empties become
        // reusable only at the next pass: with one, every index held two generations of
        // pages after the second cycle (2.03x the first cycle's size, then steady).
        for _ in 0..2 {
            sqlx::query("VACUUM (ANALYZE) sluice_jobs, sluice_attempts")
                .execute(&self.pool)
                .await?;
        }
        Ok(true)
    }

    #[tracing::instrument(name = "store.storage_sizes", level = "debug", skip_all)]
    async fn storage_sizes(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class AS c
             JOIN pg_namespace AS n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname LIKE 'sluice\\_%'
               AND c.relkind IN ('r', 'i')
             ORDER BY 2 DESC, 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, bytes)| (name, bytes as u64))
            .collect())
    }

    #[tracing::instrument(name = "store.job_get", level = "debug", skip_all)]
    async fn job_get(&self, id: JobId) -> StoreResult<JobDetail> {
        // One snapshot for both reads (READ COMMITTED takes one per statement), so the job
        // and its attempts agree.
        let mut snapshot = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *snapshot)
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *snapshot)
        .await?
        .ok_or(StoreError::JobNotFound(id))?;
        let attempts = sqlx::query(
            "SELECT attempt, node, module_version, started_at, finished_at, outcome, message, trap_code,
                    fuel_consumed, duration_us, peak_memory, logs::text AS logs, context::text AS context
             FROM sluice_attempts WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&mut *snapshot)
        .await?;
        snapshot.commit().await?;
        Ok(JobDetail {
            job: job_from_row(&row)?,
            attempts: attempts
                .iter()
                .map(attempt_from_row)
                .collect::<StoreResult<_>>()?,
        })
    }

    #[tracing::instrument(name = "store.job_list", level = "debug", skip_all)]
    async fn job_list(&self, params: JobList) -> StoreResult<Vec<Job>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE true"
        ));
        push_list_filters(&mut query, &params);
        if let Some(text) = &params.args_contains {
            query
                .push(" AND codec = 'json' AND position(")
                .push_bind(text.as_bytes().to_vec())
                .push(" IN args) > 0");
            // Only among the newest jobs the other filters match: a search never reads
            // the whole table.
            query.push(
                " AND id >= COALESCE((SELECT min(id) FROM (SELECT id FROM sluice_jobs WHERE true",
            );
            push_list_filters(&mut query, &params);
            query
                .push(" ORDER BY id DESC LIMIT ")
                .push_bind(ARGS_SEARCH_WINDOW)
                .push(") AS recent), 0)");
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(params.limit as i64);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    #[tracing::instrument(name = "store.job_count", level = "debug", skip_all)]
    async fn job_count(&self, params: JobCount) -> StoreResult<u64> {
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM sluice_jobs WHERE true");
        push_filters(
            &mut query,
            params.state,
            params.queue.as_deref(),
            params.module.as_deref(),
        );
        let count: i64 = query.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    #[tracing::instrument(name = "store.job_work_left", level = "debug", skip_all)]
    async fn job_work_left(&self, queues: &[String]) -> StoreResult<bool> {
        // One statement, one snapshot; each EXISTS probes its own partial index.
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sluice_jobs WHERE state = 'available' AND queue = ANY($1))
                 OR EXISTS (SELECT 1 FROM sluice_jobs WHERE state = 'running' AND queue = ANY($1))
                 OR EXISTS (SELECT 1 FROM sluice_jobs WHERE state = 'retryable' AND queue = ANY($1))",
        )
        .bind(queues)
        .fetch_one(&self.pool)
        .await?)
    }

    #[tracing::instrument(name = "store.queue_list", level = "debug", skip_all)]
    async fn queue_list(&self, count_cap: Option<u32>) -> StoreResult<Vec<QueueSummary>> {
        let statement = super::queue_count_statement(count_cap.is_some(), "$1");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        if let Some(cap) = count_cap {
            query = query.bind(i64::from(cap));
        }
        let counts = query.fetch_all(&self.pool).await?;
        let settings = self.queue_settings().await?;
        let rows = counts
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("queue")?,
                    row.try_get("state")?,
                    row.try_get::<i64, _>("n")? as u64,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(summarize_queues(settings, rows, count_cap))
    }

    #[tracing::instrument(name = "store.queue_pause", level = "debug", skip_all)]
    async fn queue_pause(&self, params: QueuePause) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET paused = $2, updated_at = now()",
        )
        .bind(&params.name)
        .bind(params.paused)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.queue_settings", level = "debug", skip_all)]
    async fn queue_settings(&self) -> StoreResult<Vec<QueueSettings>> {
        let rows = sqlx::query(
            "SELECT name, paused, concurrency, limits::text AS limits, rate_tat,
                    autoscale::text AS autoscale FROM sluice_queues",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let concurrency: Option<i32> = row.try_get("concurrency")?;
                Ok(QueueSettings {
                    name: row.try_get("name")?,
                    paused: row.try_get("paused")?,
                    concurrency: concurrency.and_then(|n| u32::try_from(n).ok()),
                    limits: limits_from_json(row.try_get("limits")?)?,
                    rate_tat: row.try_get("rate_tat")?,
                    autoscale: autoscale_from_json(row.try_get("autoscale")?)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "store.queue_set_concurrency", level = "debug", skip_all)]
    async fn queue_set_concurrency(&self, params: QueueConcurrency) -> StoreResult<()> {
        let concurrency = params
            .concurrency
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused, concurrency) VALUES ($1, false, $2)
             ON CONFLICT (name) DO UPDATE SET concurrency = $2, updated_at = now()",
        )
        .bind(&params.name)
        .bind(concurrency)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.queue_set_limits", level = "debug", skip_all)]
    async fn queue_set_limits(&self, params: QueueLimitsSet) -> StoreResult<()> {
        self.set_limits(params).await
    }

    #[tracing::instrument(name = "store.setting_get", level = "debug", skip_all)]
    async fn setting_get(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value::text FROM sluice_settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    #[tracing::instrument(name = "store.setting_put", level = "debug", skip_all)]
    async fn setting_put(&self, key: &str, value: &str, replace: bool) -> StoreResult<bool> {
        let statement = if replace {
            "INSERT INTO sluice_settings (key, value) VALUES ($1, $2::jsonb)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()"
        } else {
            "INSERT INTO sluice_settings (key, value) VALUES ($1, $2::jsonb)
             ON CONFLICT (key) DO NOTHING"
        };
        let done = sqlx::query(statement)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.breaker_list", level = "debug", skip_all)]
    async fn breaker_list(&self) -> StoreResult<Vec<BreakerRow>> {
        self.list_breakers().await
    }

    #[tracing::instrument(name = "store.breaker_get", level = "debug", skip_all)]
    async fn breaker_get(&self, module: &str, function: &str) -> StoreResult<Option<BreakerRow>> {
        self.get_breaker(module, function).await
    }

    #[tracing::instrument(name = "store.breaker_policy_set", level = "debug", skip_all)]
    async fn breaker_policy_set(
        &self,
        module: &str,
        function: &str,
        policy: Option<crate::breakers::BreakerPolicy>,
    ) -> StoreResult<()> {
        self.set_breaker_policy(module, function, policy).await
    }

    #[tracing::instrument(name = "store.breaker_put", level = "debug", skip_all)]
    async fn breaker_put(&self, params: BreakerPut) -> StoreResult<bool> {
        self.put_breaker(params).await
    }

    #[tracing::instrument(name = "store.breaker_calls_add", level = "debug", skip_all)]
    async fn breaker_calls_add(&self, calls: &[BreakerCalls], now: i64) -> StoreResult<()> {
        self.add_breaker_calls(calls, now).await
    }

    #[tracing::instrument(name = "store.breaker_calls_since", level = "debug", skip_all)]
    async fn breaker_calls_since(
        &self,
        module: &str,
        function: &str,
        since: i64,
    ) -> StoreResult<(u64, u64)> {
        self.breaker_calls_after(module, function, since).await
    }

    #[tracing::instrument(name = "store.breaker_calls_prune", level = "debug", skip_all)]
    async fn breaker_calls_prune(&self, before: i64) -> StoreResult<u64> {
        self.prune_breaker_calls(before).await
    }

    #[tracing::instrument(name = "store.queue_set_autoscale", level = "debug", skip_all)]
    async fn queue_set_autoscale(&self, params: QueueAutoscale) -> StoreResult<()> {
        let autoscale = params
            .autoscale
            .map(|autoscale| serde_json::to_string(&autoscale).expect("settings serialize"));
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused, autoscale) VALUES ($1, false, $2::jsonb)
             ON CONFLICT (name) DO UPDATE SET autoscale = $2::jsonb, updated_at = now()",
        )
        .bind(&params.name)
        .bind(autoscale)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.partition_rates_prune", level = "debug", skip_all)]
    async fn partition_rates_prune(&self) -> StoreResult<u64> {
        self.prune_partition_rates().await
    }

    #[tracing::instrument(name = "store.node_heartbeat", level = "debug", skip_all)]
    async fn node_heartbeat(&self, params: NodeHeartbeat) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sluice_nodes (id, host, pid, queues, running, version, lease_ms)
             VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), queues = $4::jsonb, running = $5,
                 version = $6, lease_ms = $7",
        )
        .bind(&params.id)
        .bind(&params.host)
        .bind(params.pid as i32)
        .bind(serde_json::to_string(&params.queues).expect("queue names serialize"))
        .bind(params.running as i32)
        .bind(&params.version)
        .bind(i64::try_from(params.lease.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.node_list", level = "debug", skip_all)]
    async fn node_list(&self) -> StoreResult<Vec<NodeInfo>> {
        let rows = sqlx::query(
            "SELECT id, host, pid, started_at, heartbeat_at, queues::text AS queues, running,
                    version, lease_ms,
                    EXISTS (SELECT 1 FROM sluice_leader l
                            WHERE l.node_id = n.id AND l.expires_at > now()) AS leader
             FROM sluice_nodes n ORDER BY started_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let queues: String = row.try_get("queues")?;
                Ok(NodeInfo {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: row.try_get::<i32, _>("pid")? as u32,
                    started_at: row.try_get("started_at")?,
                    heartbeat_at: row.try_get("heartbeat_at")?,
                    queues: serde_json::from_str(&queues).unwrap_or_default(),
                    running: row.try_get::<i32, _>("running")? as u32,
                    version: row.try_get("version")?,
                    lease: Duration::from_millis(row.try_get::<i64, _>("lease_ms")?.max(0) as u64),
                    leader: row.try_get("leader")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "store.node_remove", level = "debug", skip_all)]
    async fn node_remove(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.node_prune", level = "debug", skip_all)]
    async fn node_prune(&self, heartbeat_before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sluice_nodes WHERE heartbeat_at < $1")
            .bind(heartbeat_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(name = "store.leader_elect", level = "debug", skip_all)]
    async fn leader_elect(&self, params: LeaderElect) -> StoreResult<bool> {
        let leader: Option<String> = sqlx::query_scalar(
            "INSERT INTO sluice_leader AS l (name, node_id, elected_at, expires_at)
             VALUES ('default', $1, now(), now() + $2 * interval '1 microsecond')
             ON CONFLICT (name) DO UPDATE SET
                 elected_at = CASE WHEN l.node_id = excluded.node_id THEN l.elected_at ELSE excluded.elected_at END,
                 node_id = excluded.node_id, expires_at = excluded.expires_at
             WHERE l.node_id = excluded.node_id OR l.expires_at < now()
             RETURNING node_id",
        )
        .bind(&params.node)
        .bind(params.term.as_micros() as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(leader.is_some())
    }

    #[tracing::instrument(name = "store.leader_resign", level = "debug", skip_all)]
    async fn leader_resign(&self, node: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_leader WHERE node_id = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// New jobs as column arrays, for one `unnest` insert.
#[derive(Default)]
struct InsertColumns {
    queue: Vec<String>,
    module: Vec<String>,
    module_version: Vec<Option<i32>>,
    function: Vec<String>,
    args: Vec<Vec<u8>>,
    codec: Vec<&'static str>,
    priority: Vec<i16>,
    max_attempts: Vec<i32>,
    scheduled_at: Vec<Option<DateTime<Utc>>>,
    fuel_limit: Vec<Option<i64>>,
    timeout_ms: Vec<Option<i64>>,
    memory_limit: Vec<Option<i64>>,
    unique_key: Vec<Option<String>>,
    unique_expires_at: Vec<Option<DateTime<Utc>>>,
    unique_states: Vec<Option<i16>>,
    partition_key: Vec<Option<String>>,
    parent_id: Vec<Option<JobId>>,
    batch_id: Vec<Option<i64>>,
    waits_for: Vec<i32>,
}

impl InsertColumns {
    fn push(&mut self, job: NewJob) {
        self.queue.push(job.queue);
        self.module.push(job.module);
        self.module_version.push(job.module_version);
        self.function.push(job.function);
        self.args.push(job.args);
        self.codec.push(job.codec.as_str());
        self.priority.push(job.priority);
        self.max_attempts.push(job.max_attempts);
        self.scheduled_at.push(job.scheduled_at);
        self.fuel_limit.push(job.limits.fuel.map(|v| v as i64));
        self.timeout_ms
            .push(job.limits.timeout.map(|t| t.as_millis() as i64));
        self.memory_limit
            .push(job.limits.memory_bytes.map(|v| v as i64));
        let (key, expires_at, states) = job.unique.map_or((None, None, None), |unique| {
            (
                Some(unique.key),
                unique.expires_at,
                unique.states.map(i16::from),
            )
        });
        self.unique_key.push(key);
        self.unique_expires_at.push(expires_at);
        self.unique_states.push(states);
        self.parent_id.push(job.parent_id);
        self.batch_id.push(job.batch_id);
        self.waits_for.push(job.depends_on.len() as i32);
    }
}

/// Enqueues `jobs` in the caller's own transaction (River's `InsertTx`): they exist if and
/// only if it commits, and nodes are woken as it commits (NOTIFY is transactional). Checks
/// the args' size as the store does; the caller checks the calls (`sluice::client`).
pub async fn enqueue_in(conn: &mut PgConnection, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>> {
    for job in &jobs {
        check_new_job(job, DEFAULT_MAX_ARGS_BYTES)?;
    }
    insert_jobs(conn, jobs).await
}

/// Checks that `conn`'s database has every migration this build has (a client does not
/// migrate; on an older schema its insert would fail on a missing column, in words that do
/// not say why).
pub async fn schema_in(conn: &mut PgConnection) -> StoreResult<()> {
    let found = sqlx::query_scalar(super::NEWEST_APPLIED_MIGRATION)
        .fetch_one(&mut *conn)
        .await;
    super::schema_verdict(found, &MIGRATIONS)
}

/// The latest version of a module (or the version asked for), read on `conn`.
pub async fn module_in(conn: &mut PgConnection, params: ModuleGet) -> StoreResult<ModuleInfo> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MODULE_COLUMNS} FROM sluice_modules
         WHERE name = $1 AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1"
    )))
    .bind(&params.name)
    .bind(params.version)
    .fetch_optional(&mut *conn)
    .await?;
    match (row, params.version) {
        (Some(row), _) => module_from_row(&row),
        (None, Some(version)) => Err(StoreError::ModuleVersionNotFound {
            name: params.name,
            version,
        }),
        (None, None) => Err(StoreError::ModuleNotFound(params.name)),
    }
}

/// Inserts the jobs in one statement on `conn`; with unique keys, `conn` must be in a
/// transaction (an expired key is released, and the holders of taken keys found, with it).
async fn insert_jobs(conn: &mut PgConnection, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>> {
    let partitioned = limits::partitioned_queues(conn, &jobs).await?;
    let partition_keys = crate::limits::partition_keys(&jobs, &partitioned);
    let keys: Vec<Option<String>> = jobs
        .iter()
        .map(|job| job.unique.as_ref().map(|unique| unique.key.clone()))
        .collect();
    let keyed: Vec<String> = keys.iter().flatten().cloned().collect();
    let dependencies = crate::compose::dependencies_of(&jobs);
    let mut columns = InsertColumns::default();
    for job in jobs {
        columns.push(job);
    }
    columns.partition_key = partition_keys;
    // Without keys, no conflict is possible: no arbiter index to check per row.
    let on_conflict = if keyed.is_empty() {
        ""
    } else {
        // Either unique index (idempotency keys, unique jobs' keys) may refuse a row.
        "ON CONFLICT DO NOTHING"
    };
    // One statement for the whole batch; the insert trigger notifies each queue once.
    let insert = format!(
        "INSERT INTO sluice_jobs (queue, module, module_version, function, args, codec, state,
             priority, max_attempts, scheduled_at, fuel_limit, timeout_ms, memory_limit,
             unique_key, unique_expires_at, unique_states, partition_key, parent_id, batch_id,
             waits_for, waiting_on)
         SELECT queue, module, module_version, function, args, codec,
                CASE WHEN waits_for > 0 THEN 'held'
                     WHEN scheduled_at > now() THEN 'scheduled' ELSE 'available' END,
                priority, max_attempts, COALESCE(scheduled_at, now()), fuel_limit, timeout_ms,
                memory_limit, unique_key, unique_expires_at, unique_states, partition_key,
                parent_id, batch_id, waits_for, waits_for
         FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bytea[], $6::text[],
                     $7::smallint[], $8::int[], $9::timestamptz[], $10::bigint[], $11::bigint[],
                     $12::bigint[], $13::text[], $14::timestamptz[], $15::smallint[], $16::text[],
                     $17::bigint[], $18::bigint[], $19::int[])
              WITH ORDINALITY AS x(queue, module, module_version, function, args, codec, priority,
                                   max_attempts, scheduled_at, fuel_limit, timeout_ms, memory_limit,
                                   unique_key, unique_expires_at, unique_states, partition_key,
                                   parent_id, batch_id, waits_for, ord)
         ORDER BY ord
         {on_conflict}
         RETURNING id, unique_key"
    );
    if !keyed.is_empty() {
        // An expired key is free again.
        sqlx::query(
            "UPDATE sluice_jobs SET unique_key = NULL, unique_expires_at = NULL
             WHERE unique_key = ANY($1) AND unique_expires_at <= now()",
        )
        .bind(&keyed)
        .execute(&mut *conn)
        .await?;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(columns.queue)
        .bind(columns.module)
        .bind(columns.module_version)
        .bind(columns.function)
        .bind(columns.args)
        .bind(columns.codec)
        .bind(columns.priority)
        .bind(columns.max_attempts)
        .bind(columns.scheduled_at)
        .bind(columns.fuel_limit)
        .bind(columns.timeout_ms)
        .bind(columns.memory_limit)
        .bind(columns.unique_key)
        .bind(columns.unique_expires_at)
        .bind(columns.unique_states)
        .bind(columns.partition_key)
        .bind(columns.parent_id)
        .bind(columns.batch_id)
        .bind(columns.waits_for)
        .fetch_all(&mut *conn)
        .await?;
    let inserted = rows
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("unique_key")?)))
        .collect::<StoreResult<Vec<(JobId, Option<String>)>>>()?;
    let mut holders = std::collections::HashMap::new();
    if inserted.len() < keys.len() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, unique_key FROM sluice_jobs WHERE unique_key = ANY($1) AND {HOLDS_UNIQUE_KEY}"
        )))
        .bind(&keyed)
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            holders.insert(row.try_get::<String, _>("unique_key")?, row.try_get("id")?);
        }
    }
    let keys: Vec<Option<&str>> = keys.iter().map(Option::as_deref).collect();
    let enqueued = match_enqueued(&keys, inserted, &holders)?;
    if let Some(dependencies) = dependencies {
        compose::insert_dependencies(conn, &enqueued, &dependencies).await?;
    }
    Ok(enqueued)
}

/// Outcomes as column arrays, for one `unnest` update.
#[derive(Default)]
struct FinishColumns {
    id: Vec<JobId>,
    attempt: Vec<i32>,
    state: Vec<&'static str>,
    output: Vec<Option<Vec<u8>>>,
    scheduled_at: Vec<Option<DateTime<Utc>>>,
    module_version: Vec<Option<i32>>,
    started_at: Vec<DateTime<Utc>>,
    finished_at: Vec<DateTime<Utc>>,
    outcome: Vec<&'static str>,
    message: Vec<Option<String>>,
    trap_code: Vec<Option<String>>,
    fuel_consumed: Vec<i64>,
    duration_us: Vec<i64>,
    peak_memory: Vec<i64>,
    logs: Vec<Option<String>>,
    counts: Vec<bool>,
    context: Vec<Option<String>>,
}

impl FinishColumns {
    fn push(&mut self, outcome: &JobOutcome) {
        let state = resolved_state(&outcome.resolution);
        self.counts.push(outcome.resolution.counts());
        let (output, scheduled_at) = match &outcome.resolution {
            Resolution::Complete { output } => (Some(output.clone()), None),
            Resolution::Retry { at } | Resolution::Snooze { at } => (None, Some(*at)),
            Resolution::Discard | Resolution::Release | Resolution::Cancel => (None, None),
        };
        let record = &outcome.record;
        self.id.push(outcome.id);
        self.attempt.push(outcome.attempt);
        self.state.push(state.as_str());
        self.output.push(output);
        self.scheduled_at.push(scheduled_at);
        self.module_version.push(record.module_version);
        self.started_at.push(record.started_at);
        self.finished_at.push(record.finished_at);
        self.outcome.push(record.outcome.as_str());
        self.message.push(record.message.clone());
        self.trap_code.push(record.trap_code.clone());
        self.fuel_consumed.push(record.fuel_consumed as i64);
        self.duration_us.push(record.duration.as_micros() as i64);
        self.peak_memory.push(record.peak_memory_bytes as i64);
        self.logs.push(logs_json(&record.logs));
        self.context.push(context_json(record.context.as_ref()));
    }
}
