//! The harness of the fault tests: nodes as child processes, and the store's history read
//! straight from its tables, where every attempt a node finished or lost is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use tokio::sync::{Mutex, MutexGuard};

use crate::support::binary::Sluice;
use crate::support::temp_dir;

/// Serializes the scenarios: each measures timings that a neighbour would disturb.
pub async fn own_the_machine() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::const_new(());
    MACHINE.lock().await
}

/// Whether this is the long manual run (`SLUICE_SOAK=1`).
pub fn soak() -> bool {
    std::env::var_os("SLUICE_SOAK").is_some()
}

/// `ci` in CI, `long` in a soak run.
pub fn scale(ci: usize, long: usize) -> usize {
    if soak() { long } else { ci }
}

/// A `sluice run` process with its own node id; its log goes to a file kept for diagnosis.
pub struct Node {
    pub id: String,
    child: Child,
    log: PathBuf,
}

impl Node {
    pub fn start(sluice: &Sluice, id: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
        let log = temp_dir("node-log").join(format!("{id}.log"));
        let mut full = vec!["run", "--node-id", id];
        full.extend_from_slice(args);
        let mut command = sluice.command(&full);
        command.envs(env.iter().copied());
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start sluice run");
        Node {
            id: id.to_string(),
            child,
            log,
        }
    }

    /// `kill -9`; returns when the process is gone, with the moment it was killed.
    pub fn kill(&mut self) -> DateTime<Utc> {
        let at = Utc::now();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        at
    }

    /// Waits for the process to exit by itself, for at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "node {} still running after {limit:?}\n{}",
                    self.id,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a clean exit (`--exit-when-idle`), failing with the node's log otherwise.
    pub fn finishes(&mut self, limit: Duration) {
        let status = self.wait(limit);
        assert!(
            status.success(),
            "node {} exited with {status}\n{}",
            self.id,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enqueues `count` calls of `hello.FUNCTION` with the same args, in one bulk insert.
pub fn enqueue_many(sluice: &Sluice, function: &str, args: &str, count: usize, extra: &[&str]) {
    let file = temp_dir("batch").join("args.jsonl");
    std::fs::write(&file, format!("{args}\n").repeat(count)).unwrap();
    let mut full = vec![
        "enqueue",
        "hello",
        function,
        "--batch",
        file.to_str().unwrap(),
    ];
    full.extend_from_slice(extra);
    let out = sluice.json(&full);
    assert_eq!(out["count"], count as u64);
}

/// One row of the attempt history.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub job: i64,
    pub attempt: i32,
    pub node: String,
    pub outcome: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// One row of the jobs table, as far as these tests care.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub function: String,
    pub state: String,
    pub lease_node: Option<String>,
}

/// Reads the tables of either store. Timestamps: PostgreSQL's are read as microseconds since
/// the epoch, which is how SQLite stores them.
pub struct History {
    url: String,
}

const ATTEMPTS_PG: &str = "SELECT job_id, attempt::bigint, node, outcome, \
    (extract(epoch FROM started_at) * 1000000)::bigint AS started_us, \
    (extract(epoch FROM finished_at) * 1000000)::bigint AS finished_us FROM sluice_attempts";
const ATTEMPTS_SQLITE: &str = "SELECT job_id, attempt, node, outcome, \
    started_at AS started_us, finished_at AS finished_us FROM sluice_attempts";
const JOBS: &str = "SELECT id, function, state, lease_node FROM sluice_jobs ORDER BY id";

impl History {
    pub fn of(sluice: &Sluice) -> History {
        History {
            url: sluice.database_url.clone(),
        }
    }

    fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }

    pub async fn attempts(&self) -> Vec<Attempt> {
        use sqlx::Connection;
        let to_time = |us: i64| Utc.timestamp_micros(us).unwrap();
        let map = |row: &dyn RowLike| Attempt {
            job: row.i64(0),
            attempt: row.i64(1) as i32,
            node: row.string(2),
            outcome: row.string(3),
            started_at: to_time(row.i64(4)),
            finished_at: to_time(row.i64(5)),
        };
        if self.is_postgres() {
            let mut conn = self.pg().await;
            let rows = sqlx::query(ATTEMPTS_PG).fetch_all(&mut conn).await.unwrap();
            rows.iter().map(|r| map(r)).collect()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let rows = sqlx::query(ATTEMPTS_SQLITE)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            rows.iter().map(|r| map(r)).collect()
        }
    }

    pub async fn jobs(&self) -> Vec<JobRow> {
        use sqlx::Connection;
        let map = |row: &dyn RowLike| JobRow {
            id: row.i64(0),
            function: row.string(1),
            state: row.string(2),
            lease_node: row.opt_string(3),
        };
        if self.is_postgres() {
            let mut conn = self.pg().await;
            let rows = sqlx::query(JOBS).fetch_all(&mut conn).await.unwrap();
            rows.iter().map(|r| map(r)).collect()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let rows = sqlx::query(JOBS).fetch_all(&mut conn).await.unwrap();
            rows.iter().map(|r| map(r)).collect()
        }
    }

    /// How many attempts have finished (a cheap progress probe).
    pub async fn attempt_count(&self) -> i64 {
        use sqlx::Connection;
        const COUNT: &str = "SELECT count(*) FROM sluice_attempts";
        if self.is_postgres() {
            let mut conn = self.pg().await;
            sqlx::query_scalar(COUNT)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(COUNT)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }

    /// Sessions other than this one on the store's database (always 0 for SQLite). A
    /// killed node's PostgreSQL sessions finish the statement they were running, then end.
    pub async fn other_sessions(&self) -> i64 {
        if !self.is_postgres() {
            return 0;
        }
        let mut conn = self.pg().await;
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }

    /// The most bytes of guest-controlled text one attempt row holds (message and logs).
    pub async fn largest_attempt_text(&self) -> i64 {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut conn = self.pg().await;
            sqlx::query_scalar(
                "SELECT COALESCE(max(octet_length(COALESCE(message, '')) + octet_length(COALESCE(logs::text, ''))), 0)::bigint FROM sluice_attempts",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(
                "SELECT COALESCE(max(length(CAST(COALESCE(message, '') AS BLOB)) + length(CAST(COALESCE(logs, '') AS BLOB))), 0) FROM sluice_attempts",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap()
        }
    }

    async fn pg(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }

    /// Ids of the jobs a node holds a lease on (running, as far as the store knows).
    pub async fn leased_by(&self, node: &str) -> BTreeSet<i64> {
        self.jobs()
            .await
            .into_iter()
            .filter(|job| job.state == "running" && job.lease_node.as_deref() == Some(node))
            .map(|job| job.id)
            .collect()
    }
}

/// Reads a column from either driver's row, so one mapping serves both stores.
trait RowLike {
    fn i64(&self, i: usize) -> i64;
    fn string(&self, i: usize) -> String;
    fn opt_string(&self, i: usize) -> Option<String>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn i64(&self, i: usize) -> i64 {
                self.get(i)
            }
            fn string(&self, i: usize) -> String {
                self.get(i)
            }
            fn opt_string(&self, i: usize) -> Option<String> {
                self.get(i)
            }
        }
    };
}
row_like!(sqlx::postgres::PgRow);
row_like!(sqlx::sqlite::SqliteRow);

/// Each job's attempt outcomes, in attempt order.
pub fn outcomes_by_job(attempts: &[Attempt]) -> BTreeMap<i64, Vec<String>> {
    let mut sorted = attempts.to_vec();
    sorted.sort_by_key(|a| (a.job, a.attempt));
    let mut by_job: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for attempt in sorted {
        by_job.entry(attempt.job).or_default().push(attempt.outcome);
    }
    by_job
}

/// Waits for a condition checked every 20 ms, for at most `limit`; returns how long it took.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// How many jobs of the PostgreSQL store at `url` completed.
pub async fn completed(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM sluice_jobs WHERE state = 'completed'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}
