//! The embedded store: one SQLite file in WAL mode, for a single machine with no set-up.
//!
//! SQLite serializes writers, so each claim is one `UPDATE … RETURNING` and no row can be
//! claimed twice. Timestamps are integer microseconds since the Unix epoch, taken from this
//! machine's clock (every node of a SQLite store runs on this machine).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
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

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Bound parameters per row of a multi-row insert; SQLite allows 32,766 per statement.
/// How every write transaction of the writer begins: taking the write lock at once (waiting
/// for it under the busy timeout). A deferred `BEGIN` whose first statement reads takes a
/// snapshot, and its first write then fails at once with `SQLITE_BUSY_SNAPSHOT` (517) if
/// another process (a node beside a CLI enqueue) wrote since: no timeout waits for that.
pub(super) const WRITE_TRANSACTION: &str = "BEGIN IMMEDIATE";
const INSERT_COLUMNS: usize = 23;
const ROWS_PER_INSERT: usize = 32_766 / INSERT_COLUMNS;

/// Rows sqlx's worker thread may hand over before the caller reads them: more than a claim
/// of the default `max_fetch` (1,000) returns.
const ROW_BUFFER: usize = 4096;

/// Inserts the attempt records (from `attempt_json`) of the JSON array bound as `?1`, for the
/// node bound as `?2`. Callers complete the statement (a join, a `WHERE`, then the conflict
/// clause); a macro so that both statements stay `&'static str` for sqlx's statement cache.
macro_rules! insert_attempts_from_json {
    () => {
        "INSERT INTO sluice_attempts (job_id, attempt, node, module_version, started_at,
             finished_at, outcome, message, trap_code, fuel_consumed, duration_us, peak_memory, logs,
             context)
         SELECT value ->> 0, value ->> 1, ?2, value ->> 2, value ->> 3, value ->> 4,
                value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10,
                value ->> 11, value ->> 12
         FROM jsonb_each(?1)"
    };
}

pub struct SqliteStore {
    /// The one connection that writes. SQLite admits one writer at a time; with several
    /// writing connections, the losers of each race sleep in SQLite's busy handler (up to
    /// 100 ms a time) and a claim could wait over a second behind outcome writes. Waiting
    /// for this connection instead is a FIFO queue in the pool, with no sleeping.
    writer: SqlitePool,
    /// Connections that only read; in WAL mode they never wait for the writer.
    readers: SqlitePool,
    /// Wakes this process's producers when it inserts or stages jobs.
    inserted: broadcast::Sender<String>,
    max_args_bytes: usize,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn now_micros() -> i64 {
    micros(Utc::now())
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`; `:memory:` is refused since
    /// each pooled connection would see its own empty database.
    pub async fn open(path: &str) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, &StoreOptions::default()).await
    }

    /// Opens the database file at `path` with `options`.
    pub async fn open_with(path: &str, store: &StoreOptions) -> StoreResult<SqliteStore> {
        if path.is_empty() || path.contains(":memory:") {
            return Err(StoreError::UnsupportedUrl(format!(
                "sqlite://{path} (use a file path)"
            )));
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::UnsupportedUrl(format!("sqlite://{path}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if store.sqlite_full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // sqlx's worker thread hands rows over through a bounded channel and stops when it is
        // full until the async side reads; with its default of 50, a claim of hundreds of jobs
        // kept the one writer waiting on a busy runtime. Room for the largest claim: 10% more
        // drain (BENCHMARKS.md).
        let options = options.row_buffer_size(ROW_BUFFER);
        let unavailable =
            |e: sqlx::Error| StoreError::Unavailable(format!("cannot open sqlite://{path}: {e}"));
        // The writer first: it creates the file and switches it to WAL mode.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let readers = SqlitePoolOptions::new()
            .max_connections((store.pool_size / 2).max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(unavailable)?;
        let (inserted, _) = broadcast::channel(1024);
        Ok(SqliteStore {
            writer,
            readers,
            inserted,
            max_args_bytes: DEFAULT_MAX_ARGS_BYTES,
        })
    }

    /// Refuses args larger than `bytes` before they reach the database.
    pub fn with_max_args_bytes(mut self, bytes: usize) -> SqliteStore {
        self.max_args_bytes = bytes;
        self
    }

    fn wake(&self, queues: impl IntoIterator<Item = String>) {
        for queue in queues {
            // No receiver is fine: nobody is waiting.
            let _ = self.inserted.send(queue);
        }
    }

    /// Wakes the producers of the queues where `jobs` (just committed, as `enqueued`) made
    /// jobs available: a job found holding a key, or scheduled later, wakes nobody.
    /// Inside `job_finish_many`'s open transaction: writes what the applied completions
    /// composed, settles what the ended jobs set off, and commits. Returns the applied ids
    /// and the queues to wake.
    async fn settle_finished(
        &self,
        writer: &mut SqliteConnection,
        params: &JobFinishMany,
        rows: Vec<SqliteRow>,
    ) -> StoreResult<(Vec<JobId>, Vec<String>)> {
        let now = Utc::now();
        let mut ids = Vec::with_capacity(rows.len());
        let mut ended = Vec::new();
        for row in &rows {
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
        let mut queues = compose::apply_composed(writer, &completions, now).await?;
        queues.extend(compose::settle(writer, ended, now).await?);
        sqlx::query("COMMIT").execute(&mut *writer).await?;
        queues.sort_unstable();
        queues.dedup();
        Ok((ids, queues))
    }

    fn wake_inserted(&self, jobs: &[NewJob], enqueued: &[Enqueued], now: DateTime<Utc>) {
        let mut queues: Vec<String> = jobs
            .iter()
            .zip(enqueued)
            .filter(|(job, enqueued)| {
                !enqueued.existing && initial_state(job, now) == JobState::Available
            })
            .map(|(job, _)| job.queue.clone())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        self.wake(queues);
    }
}

/// Enqueues `jobs` in the caller's own transaction: they exist if and only if it commits.
/// Nodes find them at their next poll (SQLite has no notifications across processes). The
/// caller checks the calls (`sluice::client`).
pub async fn enqueue_in(
    conn: &mut SqliteConnection,
    jobs: Vec<NewJob>,
) -> StoreResult<Vec<Enqueued>> {
    for job in &jobs {
        check_new_job(job, DEFAULT_MAX_ARGS_BYTES)?;
    }
    insert_jobs(conn, &jobs, Utc::now()).await
}

/// Checks that `conn`'s database has every migration this build has (a client does not
/// migrate; on an older schema its insert would fail on a missing column, in words that do
/// not say why).
pub async fn schema_in(conn: &mut SqliteConnection) -> StoreResult<()> {
    let found = sqlx::query_scalar(super::NEWEST_APPLIED_MIGRATION)
        .fetch_one(&mut *conn)
        .await;
    super::schema_verdict(found, &MIGRATIONS)
}

/// The latest version of a module (or the version asked for), read on `conn`.
pub async fn module_in(conn: &mut SqliteConnection, params: ModuleGet) -> StoreResult<ModuleInfo> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MODULE_COLUMNS} FROM sluice_modules
         WHERE name = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC LIMIT 1"
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

/// Inserts the jobs on `conn`, which is in a transaction: expired keys are released and the
/// holders of taken keys found with the insert.
async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> StoreResult<Vec<Enqueued>> {
    let partitioned = limits::partitioned_queues(conn, jobs).await?;
    let partition_keys = crate::limits::partition_keys(jobs, &partitioned);
    let keys: Vec<Option<&str>> = jobs
        .iter()
        .map(|job| job.unique.as_ref().map(|unique| unique.key.as_str()))
        .collect();
    let keyed: Vec<&str> = keys.iter().flatten().copied().collect();
    let mut inserted = Vec::with_capacity(jobs.len());
    let mut holders = std::collections::HashMap::new();
    for chunk in keyed.chunks(ROWS_PER_INSERT) {
        // An expired key is free again.
        let mut release = QueryBuilder::<Sqlite>::new(
            "UPDATE sluice_jobs SET unique_key = NULL, unique_expires_at = NULL WHERE unique_expires_at <= ",
        );
        release.push_bind(micros(now)).push(" AND unique_key IN (");
        let mut list = release.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        release.push(")");
        release.build().execute(&mut *conn).await?;
    }
    for (chunk, partition_keys) in jobs
        .chunks(ROWS_PER_INSERT)
        .zip(partition_keys.chunks(ROWS_PER_INSERT))
    {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO sluice_jobs (queue, module, module_version, function, args, codec, state, \
                 priority, max_attempts, inserted_at, scheduled_at, fuel_limit, timeout_ms, memory_limit, attempt, \
                 unique_key, unique_expires_at, unique_states, partition_key, parent_id, batch_id, \
                 waits_for, waiting_on) ",
        );
        insert.push_values(
            chunk.iter().zip(partition_keys),
            |mut row, (job, partition_key)| {
                row.push_bind(&job.queue)
                    .push_bind(&job.module)
                    .push_bind(job.module_version)
                    .push_bind(&job.function)
                    .push_bind(&job.args)
                    .push_bind(job.codec.as_str())
                    .push_bind(initial_state(job, now).as_str())
                    .push_bind(job.priority)
                    .push_bind(job.max_attempts)
                    .push_bind(micros(now))
                    .push_bind(micros(job.scheduled_at.unwrap_or(now)))
                    .push_bind(job.limits.fuel.map(|v| v as i64))
                    .push_bind(job.limits.timeout.map(|t| t.as_millis() as i64))
                    .push_bind(job.limits.memory_bytes.map(|v| v as i64))
                    .push_bind(0)
                    .push_bind(job.unique.as_ref().map(|unique| unique.key.as_str()))
                    .push_bind(
                        job.unique
                            .as_ref()
                            .and_then(|unique| unique.expires_at.map(micros)),
                    )
                    .push_bind(job.unique.as_ref().and_then(|unique| unique.states))
                    .push_bind(partition_key)
                    .push_bind(job.parent_id)
                    .push_bind(job.batch_id)
                    .push_bind(job.depends_on.len() as i32)
                    .push_bind(job.depends_on.len() as i32);
            },
        );
        if !keyed.is_empty() {
            // Either unique index (idempotency keys, unique jobs' keys) may refuse a row.
            insert.push(" ON CONFLICT DO NOTHING");
        }
        insert.push(" RETURNING id, unique_key");
        let rows = insert.build().fetch_all(&mut *conn).await?;
        for row in &rows {
            inserted.push((row.try_get("id")?, row.try_get("unique_key")?));
        }
    }
    if inserted.len() < jobs.len() {
        for chunk in keyed.chunks(ROWS_PER_INSERT) {
            let mut find = QueryBuilder::<Sqlite>::new(
                "SELECT id, unique_key FROM sluice_jobs WHERE unique_key IN (",
            );
            let mut list = find.separated(", ");
            for key in chunk {
                list.push_bind(*key);
            }
            find.push(") AND ").push(HOLDS_UNIQUE_KEY);
            for row in &find.build().fetch_all(&mut *conn).await? {
                holders.insert(row.try_get::<String, _>("unique_key")?, row.try_get("id")?);
            }
        }
    }
    let enqueued = match_enqueued(&keys, inserted, &holders)?;
    if let Some(dependencies) = crate::compose::dependencies_of(jobs) {
        // A job released at once (all it waits for had ended) is found at the next poll.
        compose::insert_dependencies(conn, &enqueued, &dependencies, now).await?;
    }
    Ok(enqueued)
}

fn queue_settings_from_row(row: &SqliteRow) -> StoreResult<QueueSettings> {
    let concurrency: Option<i64> = row.try_get("concurrency")?;
    Ok(QueueSettings {
        name: row.try_get("name")?,
        paused: row.try_get("paused")?,
        concurrency: concurrency.and_then(|n| u32::try_from(n).ok()),
        limits: limits_from_json(row.try_get("limits")?)?,
        rate_tat: row.try_get("rate_tat")?,
        autoscale: autoscale_from_json(row.try_get("autoscale")?)?,
    })
}

fn job_from_row(row: &SqliteRow) -> StoreResult<Job> {
    let codec: String = row.try_get("codec")?;
    let state: String = row.try_get("state")?;
    let opt_time = |column: &str| -> StoreResult<Option<DateTime<Utc>>> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(from_micros))
    };
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
        inserted_at: from_micros(row.try_get("inserted_at")?),
        scheduled_at: from_micros(row.try_get("scheduled_at")?),
        attempted_at: opt_time("attempted_at")?,
        lease_node: row.try_get("lease_node")?,
        lease_expires_at: opt_time("lease_expires_at")?,
        finalized_at: opt_time("finalized_at")?,
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

fn module_from_row(row: &SqliteRow) -> StoreResult<ModuleInfo> {
    let functions: String = row.try_get("functions")?;
    Ok(ModuleInfo {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        digest: row.try_get("digest")?,
        functions: serde_json::from_str(&functions)
            .map_err(|e| StoreError::Database(e.to_string()))?,
        size_bytes: row.try_get("size_bytes")?,
        uploaded_at: from_micros(row.try_get("uploaded_at")?),
    })
}

fn attempt_from_row(row: &SqliteRow) -> StoreResult<AttemptRecord> {
    let outcome: String = row.try_get("outcome")?;
    let logs: Option<String> = row.try_get("logs")?;
    Ok(AttemptRecord {
        attempt: row.try_get("attempt")?,
        node: row.try_get("node")?,
        module_version: row.try_get("module_version")?,
        started_at: from_micros(row.try_get("started_at")?),
        finished_at: from_micros(row.try_get("finished_at")?),
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

const MODULE_COLUMNS: &str =
    "name, version, digest, functions, length(wasm) AS size_bytes, uploaded_at";

#[async_trait::async_trait]
impl Store for SqliteStore {
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
        compose::dependency_results(&mut *self.readers.acquire().await?, job).await
    }

    async fn job_output(&self, job: JobId) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT output FROM sluice_jobs WHERE id = ?1")
                .bind(job)
                .fetch_optional(&self.readers)
                .await?
                .flatten(),
        )
    }

    async fn job_tree(&self, job: JobId) -> StoreResult<JobTree> {
        compose::job_tree(&mut *self.readers.acquire().await?, job).await
    }

    async fn batch_create(
        &self,
        callbacks: crate::compose::BatchCallbacks,
        mut jobs: Vec<NewJob>,
    ) -> StoreResult<(i64, Vec<Enqueued>)> {
        for job in &jobs {
            check_new_job(job, self.max_args_bytes)?;
        }
        let now = Utc::now();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let batch = compose::create_batch(&mut tx, None, &callbacks, jobs.len(), now).await?;
        for job in &mut jobs {
            job.batch_id = Some(batch);
        }
        let enqueued = insert_jobs(&mut tx, &jobs, now).await?;
        if enqueued.iter().any(|job| job.existing) {
            // A job already held its unique key: it is not this batch's to count.
            return Err(StoreError::Invalid(
                "a batch's jobs cannot take unique keys other jobs hold".into(),
            ));
        }
        let queues = compose::fire_due_callbacks(&mut tx, batch, now).await?;
        tx.commit().await?;
        self.wake_inserted(&jobs, &enqueued, now);
        self.wake(queues);
        Ok((batch, enqueued))
    }

    async fn batch_get(&self, id: i64) -> StoreResult<BatchInfo> {
        compose::batch_info(&mut *self.readers.acquire().await?, id).await
    }

    async fn topic_subscribe(&self, subscription: Subscription) -> StoreResult<bool> {
        let existed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sluice_subscriptions
                            WHERE topic = ?1 AND queue = ?2 AND module = ?3 AND function = ?4)",
        )
        .bind(&subscription.topic)
        .bind(&subscription.queue)
        .bind(&subscription.module)
        .bind(&subscription.function)
        .fetch_one(&self.writer)
        .await?;
        sqlx::query(
            "INSERT INTO sluice_subscriptions (topic, queue, module, function, max_attempts, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (topic, queue, module, function) DO UPDATE SET max_attempts = ?5",
        )
        .bind(&subscription.topic)
        .bind(&subscription.queue)
        .bind(&subscription.module)
        .bind(&subscription.function)
        .bind(subscription.max_attempts)
        .bind(now_micros())
        .execute(&self.writer)
        .await?;
        Ok(!existed)
    }

    async fn topic_unsubscribe(&self, subscription: &Subscription) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM sluice_subscriptions
             WHERE topic = ?1 AND queue = ?2 AND module = ?3 AND function = ?4",
        )
        .bind(&subscription.topic)
        .bind(&subscription.queue)
        .bind(&subscription.module)
        .bind(&subscription.function)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn topic_subscriptions(&self, topic: Option<&str>) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(
            "SELECT topic, queue, module, function, max_attempts FROM sluice_subscriptions
             WHERE ?1 IS NULL OR topic = ?1 ORDER BY topic, queue, module, function",
        )
        .bind(topic)
        .fetch_all(&self.readers)
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
        let now = Utc::now();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let subscriptions = compose::subscriptions_of(&mut tx, &[event.topic.as_str()]).await?;
        let jobs = crate::compose::deliveries(std::slice::from_ref(&event), &subscriptions, None);
        let enqueued = if jobs.is_empty() {
            Vec::new()
        } else {
            insert_jobs(&mut tx, &jobs, now).await?
        };
        tx.commit().await?;
        self.wake_inserted(&jobs, &enqueued, now);
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
            cross_process_notify: false,
            multi_node: false,
        }
    }

    #[tracing::instrument(name = "store.migrate", level = "debug", skip_all)]
    async fn migrate(&self) -> StoreResult<()> {
        // Two processes migrating at once: the loser fails on the migrations table and
        // finds everything applied when it runs again.
        match MIGRATIONS.run(&self.writer).await {
            Ok(()) => Ok(()),
            Err(_) => MIGRATIONS
                .run(&self.writer)
                .await
                .map_err(|e| StoreError::Migration(e.to_string())),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inserted.subscribe()
    }

    #[tracing::instrument(name = "store.module_upload", level = "debug", skip_all)]
    async fn module_upload(&self, params: ModuleUpload) -> StoreResult<Uploaded> {
        let functions = serde_json::to_string(&params.functions).expect("functions serialize");
        // One statement: the next version number and the insert are atomic under SQLite's
        // write lock; identical bytes hit the (name, digest) constraint and insert nothing.
        let inserted = sqlx::query(
            "INSERT INTO sluice_modules (name, version, digest, wasm, functions, uploaded_at)
             SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4, ?5 FROM sluice_modules WHERE name = ?1
             ON CONFLICT (name, digest) DO NOTHING RETURNING version",
        )
        .bind(&params.name)
        .bind(&params.digest)
        .bind(&params.wasm)
        .bind(&functions)
        .bind(now_micros())
        .fetch_optional(&self.writer)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = ? AND digest = ?"
        )))
        .bind(&params.name)
        .bind(&params.digest)
        .fetch_one(&self.writer)
        .await?;
        Ok(Uploaded {
            module: module_from_row(&row)?,
            already_present: inserted.is_none(),
        })
    }

    #[tracing::instrument(name = "store.module_get", level = "debug", skip_all)]
    async fn module_get(&self, params: ModuleGet) -> StoreResult<ModuleInfo> {
        let row = match params.version {
            Some(version) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = ? AND version = ?"
            )))
            .bind(&params.name)
            .bind(version)
            .fetch_optional(&self.readers)
            .await?,
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = ? ORDER BY version DESC LIMIT 1"
            )))
            .bind(&params.name)
            .fetch_optional(&self.readers)
            .await?,
        };
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
        sqlx::query_scalar("SELECT wasm FROM sluice_modules WHERE name = ? AND version = ?")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.readers)
            .await?
            .ok_or_else(|| StoreError::ModuleVersionNotFound {
                name: name.to_string(),
                version,
            })
    }

    #[tracing::instrument(name = "store.module_list", level = "debug", skip_all)]
    async fn module_list(&self) -> StoreResult<Vec<ModuleInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules m
             WHERE version = (SELECT MAX(version) FROM sluice_modules WHERE name = m.name)
             ORDER BY name"
        )))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(module_from_row).collect()
    }

    #[tracing::instrument(name = "store.module_versions", level = "debug", skip_all)]
    async fn module_versions(&self, name: &str) -> StoreResult<Vec<ModuleInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MODULE_COLUMNS} FROM sluice_modules WHERE name = ?1 ORDER BY version DESC"
        )))
        .bind(name)
        .fetch_all(&self.readers)
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
        let now = Utc::now();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let enqueued = insert_jobs(&mut tx, &jobs, now).await?;
        tx.commit().await?;
        self.wake_inserted(&jobs, &enqueued, now);
        Ok(enqueued)
    }

    #[tracing::instrument(name = "store.job_claim", level = "debug", skip_all)]
    async fn job_claim(&self, params: JobFetch) -> StoreResult<Claimed> {
        let now = now_micros();
        let expires = now + params.lease.as_micros() as i64;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs
             SET state = 'running', attempt = attempt + 1, attempted_at = ?1,
                 lease_node = ?2, lease_expires_at = ?3
             WHERE id IN (SELECT id FROM sluice_jobs
                          WHERE state = 'available' AND queue = ?4
                            -- A limited queue is claimed in limits.rs.
                            AND NOT EXISTS (SELECT 1 FROM sluice_queues
                                            WHERE name = ?4 AND (paused OR limits IS NOT NULL))
                          ORDER BY priority, scheduled_at, id LIMIT ?5)
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(now)
        .bind(&params.node)
        .bind(expires)
        .bind(&params.queue)
        .bind(params.limit as i64)
        .fetch_all(&self.writer)
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
        // One statement list per batch, whatever its size, sent as one query: each query is a
        // round trip to sqlx's SQLite worker thread, and the one writer connection is held
        // (claims wait) while the runtime, busy with attempts, gets round to the next one;
        // BEGIN, two statements and COMMIT as four queries cost 5% of the drain. The outcomes go
        // in as one JSON array of arrays, read with `jsonb_each` so that each field lookup
        // reads a parsed value instead of parsing the text again. The unary `+`s keep the
        // planner from driving the join from the state index's running jobs, which scanned
        // the whole batch once per running job: quadratic once a node holds hundreds of
        // claimed jobs. The batch drives instead, one rowid lookup per outcome.
        let now = now_micros();
        let outcomes: Vec<serde_json::Value> = params
            .outcomes
            .iter()
            .map(|outcome| {
                let (output, scheduled_at) = match &outcome.resolution {
                    Resolution::Complete { output } => (Some(hex::encode(output)), None),
                    Resolution::Retry { at } | Resolution::Snooze { at } => {
                        (None, Some(micros(*at)))
                    }
                    Resolution::Discard | Resolution::Release | Resolution::Cancel => (None, None),
                };
                // Positional, as `o` below reads it: shorter to parse than named fields.
                serde_json::json!([
                    outcome.id,
                    outcome.attempt,
                    resolved_state(&outcome.resolution).as_str(),
                    output,
                    scheduled_at,
                    i32::from(!outcome.resolution.counts()),
                ])
            })
            .collect();
        // History first, for exactly the outcomes the update below applies (the same fence).
        let records: Vec<serde_json::Value> = params
            .outcomes
            .iter()
            .filter(|outcome| outcome.resolution.counts())
            .map(|outcome| attempt_json(outcome.id, &outcome.record))
            .collect();
        let mut writer = self.writer.acquire().await?;
        let applied = sqlx::query(concat!(
            "BEGIN IMMEDIATE; ",
            insert_attempts_from_json!(),
            " JOIN sluice_jobs AS j ON j.id = value ->> 0
             WHERE +j.state = 'running' AND +j.lease_node = ?2 AND j.attempt = value ->> 1
             ON CONFLICT (job_id, attempt) DO NOTHING;
             UPDATE sluice_jobs AS j
             SET state = o.state, output = COALESCE(unhex(o.output), j.output),
                 scheduled_at = COALESCE(o.scheduled_at, j.scheduled_at),
                 attempt = j.attempt - o.uncount, lost_in_a_row = 0,
                 finalized_at = CASE WHEN o.state IN ('completed', 'discarded', 'cancelled') THEN ?4 END,
                 lease_node = NULL, lease_expires_at = NULL
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS state,
                          value ->> 3 AS output, value ->> 4 AS scheduled_at,
                          value ->> 5 AS uncount
                   FROM jsonb_each(?3)) AS o
             WHERE j.id = o.id AND +j.state = 'running' AND +j.lease_node = ?2
               AND j.attempt = o.attempt
             RETURNING id, state, batch_id;"
        ))
        .bind(serde_json::Value::Array(records).to_string())
        .bind(&params.node)
        .bind(serde_json::Value::Array(outcomes).to_string())
        .bind(now)
        .fetch_all(&mut *writer)
        .await;
        // The transaction stays open for what the outcomes set off (composition.rs).
        let finished = match applied {
            Ok(rows) => self.settle_finished(&mut writer, params, rows).await,
            Err(error) => Err(error.into()),
        };
        match finished {
            Ok((ids, queues)) => {
                self.wake(queues);
                Ok(ids)
            }
            Err(error) => {
                // The list stopped at the failing statement, maybe inside the transaction:
                // end it here, before the connection goes back to the pool.
                let _ = sqlx::query("ROLLBACK").execute(&mut *writer).await;
                Err(error)
            }
        }
    }

    #[tracing::instrument(name = "store.job_lease_extend", level = "debug", skip_all)]
    async fn job_lease_extend(&self, params: LeaseExtend) -> StoreResult<u64> {
        let expires = now_micros() + params.lease.as_micros() as i64;
        let ids = serde_json::to_string(&params.jobs).expect("ids serialize");
        let done = sqlx::query(
            "UPDATE sluice_jobs SET lease_expires_at = ?
             WHERE state = 'running' AND lease_node = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(expires)
        .bind(&params.node)
        .bind(ids)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(name = "store.job_rescue", level = "debug", skip_all)]
    async fn job_rescue(&self, params: JobRescue) -> StoreResult<Vec<JobId>> {
        let now = now_micros();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let expired = sqlx::query(
            "SELECT id, attempt, lease_node, attempted_at, queue, lost_in_a_row, batch_id,
                    cancel_requested_at IS NOT NULL AS cancel_requested
             FROM sluice_jobs
             WHERE state = 'running' AND lease_expires_at < ?",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(expired.len());
        let mut queues = Vec::new();
        let mut ended = Vec::new();
        for row in &expired {
            let id: JobId = row.try_get("id")?;
            let node: String = row.try_get("lease_node")?;
            let lost_in_a_row = row.try_get::<i32, _>("lost_in_a_row")? + 1;
            // As on PostgreSQL: cancelled on request, dead-lettered when lost too often,
            // else run again after a backoff.
            let (state, finalized) = if row.try_get::<bool, _>("cancel_requested")? {
                ("cancelled", Some(now))
            } else if lost_in_a_row >= params.poison_limit {
                ("discarded", Some(now))
            } else if params.backoff.is_zero() {
                ("available", None)
            } else {
                ("retryable", None)
            };
            let mut record = lease_expired_record(
                row.try_get("attempt")?,
                node.clone(),
                from_micros(
                    row.try_get::<Option<i64>, _>("attempted_at")?
                        .unwrap_or(now),
                ),
                from_micros(now),
            );
            if state == "discarded" {
                record.outcome = AttemptClass::Poisoned;
                record.message = Some(poisoned_message(lost_in_a_row));
            }
            sqlx::query(
                "UPDATE sluice_jobs
                 SET state = ?1, finalized_at = ?2, scheduled_at = ?3,
                     lost_attempts = lost_attempts + 1, lost_in_a_row = ?4,
                     lease_node = NULL, lease_expires_at = NULL
                 WHERE id = ?5",
            )
            .bind(state)
            .bind(finalized)
            .bind(now + params.wait_micros(lost_in_a_row))
            .bind(lost_in_a_row)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            insert_attempts(&mut tx, &node, vec![attempt_json(id, &record)]).await?;
            if state == "available" {
                queues.push(row.try_get::<String, _>("queue")?);
            } else if finalized.is_some() {
                ended.push(compose::Ended {
                    id,
                    state: state.to_string(),
                    batch_id: row.try_get("batch_id")?,
                });
            }
            ids.push(id);
        }
        queues.extend(compose::settle(&mut tx, ended, from_micros(now)).await?);
        tx.commit().await?;
        self.wake(queues);
        Ok(ids)
    }

    #[tracing::instrument(name = "store.job_stage", level = "debug", skip_all)]
    async fn job_stage(&self) -> StoreResult<u64> {
        let queues: Vec<String> = sqlx::query_scalar(
            "UPDATE sluice_jobs SET state = 'available'
             WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= ? RETURNING queue",
        )
        .bind(now_micros())
        .fetch_all(&self.writer)
        .await?;
        let staged = queues.len() as u64;
        let mut distinct = queues;
        distinct.sort_unstable();
        distinct.dedup();
        self.wake(distinct);
        Ok(staged)
    }

    #[tracing::instrument(name = "store.job_cancel", level = "debug", skip_all)]
    async fn job_cancel(&self, id: JobId) -> StoreResult<Job> {
        let now = now_micros();
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs SET state = 'cancelled', finalized_at = ?
             WHERE id = ? AND state IN ('available', 'scheduled', 'retryable', 'held')
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(now)
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
            let queues = compose::settle(&mut tx, vec![ended], from_micros(now)).await?;
            tx.commit().await?;
            self.wake(queues);
            return Ok(job);
        }
        drop(tx);
        // Running: a request its node acts on (see migrations/sqlite/0003). Nodes in other
        // processes find it by polling; one in this process is woken.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sluice_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?)
             WHERE id = ? AND state = 'running'
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(now)
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(row) => {
                self.wake([WAKE_CANCEL.to_string()]);
                job_from_row(&row)
            }
            None => Err(refused(self, id, JobState::Cancelled).await),
        }
    }

    #[tracing::instrument(name = "store.job_cancel_requests", level = "debug", skip_all)]
    async fn job_cancel_requests(&self, params: CancelRequests) -> StoreResult<Vec<JobId>> {
        let ids = serde_json::to_string(&params.jobs).expect("ids serialize");
        Ok(sqlx::query_scalar(
            "SELECT id FROM sluice_jobs
             WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'running'
               AND lease_node = ?1 AND cancel_requested_at IS NOT NULL",
        )
        .bind(&params.node)
        .bind(ids)
        .fetch_all(&self.readers)
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
             SET state = 'available', scheduled_at = ?1, finalized_at = NULL,
                 max_attempts = MAX(max_attempts, attempt + 1), cancel_requested_at = NULL,
                 args = COALESCE(?3, args), codec = CASE WHEN ?3 IS NULL THEN codec ELSE 'json' END
             WHERE id = ?2 AND state IN ('scheduled', 'retryable', 'completed', 'discarded', 'cancelled')
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(now_micros())
        .bind(id)
        .bind(params.json_args)
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                self.wake([job.queue.clone()]);
                Ok(job)
            }
            None => Err(refused(self, id, JobState::Available).await),
        }
    }

    #[tracing::instrument(name = "store.job_delete", level = "debug", skip_all)]
    async fn job_delete(&self, id: JobId) -> StoreResult<()> {
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        let row = sqlx::query("DELETE FROM sluice_jobs WHERE id = ? RETURNING state, batch_id")
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
        let queues = compose::settle(&mut tx, vec![ended], Utc::now()).await?;
        tx.commit().await?;
        self.wake(queues);
        Ok(())
    }

    #[tracing::instrument(name = "store.job_prune", level = "debug", skip_all)]
    async fn job_prune(&self, params: JobPrune) -> StoreResult<u64> {
        if !params.state.is_finished() {
            return Ok(0);
        }
        // `finalized_at IS NOT NULL` restates the finalized index's predicate (SQLite uses a
        // partial index only then): the oldest of the state are found without a scan.
        let done = sqlx::query(
            "DELETE FROM sluice_jobs WHERE id IN (
                 SELECT id FROM sluice_jobs
                 WHERE finalized_at IS NOT NULL AND finalized_at < ?1 AND state = ?2
                   -- A job's output is kept until the jobs waiting for it have ended.
                   AND NOT EXISTS (
                       SELECT 1 FROM sluice_dependencies AS d
                       JOIN sluice_jobs AS w ON w.id = d.job_id
                       WHERE d.depends_on = sluice_jobs.id
                         AND w.state NOT IN ('completed', 'discarded', 'cancelled'))
                 ORDER BY finalized_at LIMIT ?3)",
        )
        .bind(micros(params.finished_before))
        .bind(params.state.as_str())
        .bind(i64::from(params.limit))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// SQLite reuses the pages of deleted rows by itself (the file keeps its size).
    async fn reclaim_space(&self) -> StoreResult<bool> {
        Ok(false)
    }

    #[tracing::instrument(name = "store.storage_sizes", level = "debug", skip_all)]
    async fn storage_sizes(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'sluice\\_%' ESCAPE '\\'
             GROUP BY name ORDER BY 2 DESC, 1",
        )
        .fetch_all(&self.readers)
        .await?;
        // Pages freed by deletes belong to no table until they are reused, but the file
        // keeps them: they count.
        let free: i64 = sqlx::query_scalar(
            "SELECT f.freelist_count * p.page_size FROM pragma_freelist_count AS f, pragma_page_size AS p",
        )
        .fetch_one(&self.readers)
        .await?;
        let mut sizes: Vec<(String, u64)> = rows
            .into_iter()
            .map(|(name, bytes)| (name, bytes as u64))
            .collect();
        sizes.push(("(free pages)".to_string(), free as u64));
        sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(sizes)
    }

    #[tracing::instrument(name = "store.job_get", level = "debug", skip_all)]
    async fn job_get(&self, id: JobId) -> StoreResult<JobDetail> {
        // One read transaction: in WAL mode its snapshot holds from the first read, so the
        // job and its attempts agree (an attempt is never shown beside its job's older state).
        let mut snapshot = self.readers.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&mut *snapshot)
        .await?
        .ok_or(StoreError::JobNotFound(id))?;
        let attempts =
            sqlx::query("SELECT * FROM sluice_attempts WHERE job_id = ? ORDER BY attempt")
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
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {JOB_COLUMNS} FROM sluice_jobs WHERE 1 = 1"
        ));
        push_list_filters(&mut query, &params);
        if let Some(text) = &params.args_contains {
            query
                .push(" AND codec = 'json' AND instr(args, ")
                .push_bind(text.as_bytes().to_vec())
                .push(") > 0");
            // Only among the newest jobs the other filters match: a search never reads
            // the whole table.
            query.push(
                " AND id >= COALESCE((SELECT min(id) FROM (SELECT id FROM sluice_jobs WHERE 1 = 1",
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
        let rows = query.build().fetch_all(&self.readers).await?;
        rows.iter().map(job_from_row).collect()
    }

    #[tracing::instrument(name = "store.job_count", level = "debug", skip_all)]
    async fn job_count(&self, params: JobCount) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM sluice_jobs WHERE 1 = 1");
        push_filters(
            &mut query,
            params.state,
            params.queue.as_deref(),
            params.module.as_deref(),
        );
        let count: i64 = query.build_query_scalar().fetch_one(&self.readers).await?;
        Ok(count as u64)
    }

    #[tracing::instrument(name = "store.job_work_left", level = "debug", skip_all)]
    async fn job_work_left(&self, queues: &[String]) -> StoreResult<bool> {
        // One statement, one snapshot.
        let queues = serde_json::to_string(queues).expect("strings serialize");
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sluice_jobs
                            WHERE state IN ('available', 'running', 'retryable')
                              AND queue IN (SELECT value FROM json_each(?1)))",
        )
        .bind(queues)
        .fetch_one(&self.readers)
        .await?)
    }

    #[tracing::instrument(name = "store.queue_list", level = "debug", skip_all)]
    async fn queue_list(&self, count_cap: Option<u32>) -> StoreResult<Vec<QueueSummary>> {
        let statement = super::queue_count_statement(count_cap.is_some(), "?1");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        if let Some(cap) = count_cap {
            query = query.bind(i64::from(cap));
        }
        let counts = query.fetch_all(&self.readers).await?;
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
            "INSERT INTO sluice_queues (name, paused, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET paused = ?2, updated_at = ?3",
        )
        .bind(&params.name)
        .bind(params.paused)
        .bind(now_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.queue_settings", level = "debug", skip_all)]
    async fn queue_settings(&self) -> StoreResult<Vec<QueueSettings>> {
        let rows = sqlx::query(
            "SELECT name, paused, concurrency, limits, rate_tat, autoscale FROM sluice_queues",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(queue_settings_from_row).collect()
    }

    #[tracing::instrument(name = "store.queue_set_limits", level = "debug", skip_all)]
    async fn queue_set_limits(&self, params: QueueLimitsSet) -> StoreResult<()> {
        self.set_limits(params).await
    }

    #[tracing::instrument(name = "store.setting_get", level = "debug", skip_all)]
    async fn setting_get(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM sluice_settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    #[tracing::instrument(name = "store.setting_put", level = "debug", skip_all)]
    async fn setting_put(&self, key: &str, value: &str, replace: bool) -> StoreResult<bool> {
        let statement = if replace {
            "INSERT INTO sluice_settings (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        } else {
            "INSERT INTO sluice_settings (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO NOTHING"
        };
        let done = sqlx::query(statement)
            .bind(key)
            .bind(value)
            .bind(now_micros())
            .execute(&self.writer)
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
            "INSERT INTO sluice_queues (name, paused, autoscale, updated_at) VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET autoscale = ?2, updated_at = ?3",
        )
        .bind(&params.name)
        .bind(autoscale)
        .bind(now_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.partition_rates_prune", level = "debug", skip_all)]
    async fn partition_rates_prune(&self) -> StoreResult<u64> {
        self.prune_partition_rates().await
    }

    #[tracing::instrument(name = "store.queue_set_concurrency", level = "debug", skip_all)]
    async fn queue_set_concurrency(&self, params: QueueConcurrency) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sluice_queues (name, paused, concurrency, updated_at) VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET concurrency = ?2, updated_at = ?3",
        )
        .bind(&params.name)
        .bind(params.concurrency.map(i64::from))
        .bind(now_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.node_heartbeat", level = "debug", skip_all)]
    async fn node_heartbeat(&self, params: NodeHeartbeat) -> StoreResult<()> {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO sluice_nodes (id, host, pid, started_at, heartbeat_at, queues, running,
                 version, lease_ms)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = ?4, queues = ?5, running = ?6,
                 version = ?7, lease_ms = ?8",
        )
        .bind(&params.id)
        .bind(&params.host)
        .bind(params.pid as i64)
        .bind(now)
        .bind(serde_json::to_string(&params.queues).expect("queue names serialize"))
        .bind(params.running as i64)
        .bind(&params.version)
        .bind(i64::try_from(params.lease.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.node_list", level = "debug", skip_all)]
    async fn node_list(&self) -> StoreResult<Vec<NodeInfo>> {
        let rows = sqlx::query(
            "SELECT n.*, EXISTS (SELECT 1 FROM sluice_leader l
                                 WHERE l.node_id = n.id AND l.expires_at > ?1) AS leader
             FROM sluice_nodes n ORDER BY started_at",
        )
        .bind(now_micros())
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let queues: String = row.try_get("queues")?;
                Ok(NodeInfo {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: row.try_get::<i64, _>("pid")? as u32,
                    started_at: from_micros(row.try_get("started_at")?),
                    heartbeat_at: from_micros(row.try_get("heartbeat_at")?),
                    queues: serde_json::from_str(&queues).unwrap_or_default(),
                    running: row.try_get::<i64, _>("running")? as u32,
                    version: row.try_get("version")?,
                    lease: Duration::from_millis(row.try_get::<i64, _>("lease_ms")?.max(0) as u64),
                    leader: row.try_get("leader")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "store.node_remove", level = "debug", skip_all)]
    async fn node_remove(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_nodes WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.node_prune", level = "debug", skip_all)]
    async fn node_prune(&self, heartbeat_before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sluice_nodes WHERE heartbeat_at < ?1")
            .bind(micros(heartbeat_before))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(name = "store.leader_elect", level = "debug", skip_all)]
    async fn leader_elect(&self, params: LeaderElect) -> StoreResult<bool> {
        let now = now_micros();
        let leader: Option<String> = sqlx::query_scalar(
            "INSERT INTO sluice_leader (name, node_id, elected_at, expires_at) VALUES ('default', ?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET
                 elected_at = CASE WHEN node_id = ?1 THEN elected_at ELSE ?2 END,
                 node_id = ?1, expires_at = ?3
             WHERE node_id = ?1 OR expires_at < ?2
             RETURNING node_id",
        )
        .bind(&params.node)
        .bind(now)
        .bind(now + params.term.as_micros() as i64)
        .fetch_optional(&self.writer)
        .await?;
        Ok(leader.is_some())
    }

    #[tracing::instrument(name = "store.leader_resign", level = "debug", skip_all)]
    async fn leader_resign(&self, node: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_leader WHERE node_id = ?")
            .bind(node)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// One attempt record as a JSON array for `insert_attempts_from_json!`.
fn attempt_json(job_id: JobId, record: &AttemptRecord) -> serde_json::Value {
    // Positional, in the column order of `insert_attempts_from_json!`.
    serde_json::json!([
        job_id,
        record.attempt,
        record.module_version,
        micros(record.started_at),
        micros(record.finished_at),
        record.outcome.as_str(),
        record.message,
        record.trap_code,
        record.fuel_consumed as i64,
        record.duration.as_micros() as i64,
        record.peak_memory_bytes as i64,
        logs_json(&record.logs),
        context_json(record.context.as_ref()),
    ])
}

/// Inserts attempt records (from `attempt_json`) in one statement.
async fn insert_attempts(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    node: &str,
    records: Vec<serde_json::Value>,
) -> StoreResult<()> {
    sqlx::query(concat!(
        insert_attempts_from_json!(),
        " WHERE true ON CONFLICT (job_id, attempt) DO NOTHING"
    ))
    .bind(serde_json::Value::Array(records).to_string())
    .bind(node)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
