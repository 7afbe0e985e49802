//! The database goes away while nodes run: PostgreSQL refuses and drops every connection of
//! the nodes' database for a while, or keeps killing them; SQLite's file is locked by another
//! process. Nodes keep running, lose nothing and resume within 5 s of the store coming back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_test_artifacts as guests;
use sqlx::Connection;

use crate::cluster::{History, Node, enqueue_many, outcomes_by_job, own_the_machine, scale, until};
use crate::support::binary::Sluice;
use crate::support::postgres_admin_url;

/// How soon after the store is back the nodes must be running attempts again.
const RESUME_WITHIN: Duration = Duration::from_secs(5);

/// Starts `count` nodes on enough 20 ms jobs to outlast the outage; returns once they run.
async fn busy_nodes(sluice: &Sluice, count: usize) -> (Vec<Node>, usize) {
    sluice.ok(&["upload", guests::HELLO]);
    let jobs = scale(4_000, 40_000);
    enqueue_many(sluice, "sleep", r#"{"ms":20}"#, jobs, &[]);
    let nodes = (0..count)
        .map(|i| {
            Node::start(
                sluice,
                &format!("node-{i}"),
                &["--queue", "default=8", "--exit-when-idle"],
                &[],
            )
        })
        .collect();
    let history = History::of(sluice);
    until(Duration::from_secs(30), "the first outcomes", || async {
        history.attempt_count().await >= 100
    })
    .await;
    (nodes, jobs)
}

/// Waits for the nodes to finish everything, then checks nothing was lost or run twice, and
/// returns how long after `back` the first attempt started.
async fn finish_and_check(
    sluice: &Sluice,
    mut nodes: Vec<Node>,
    jobs: usize,
    back: DateTime<Utc>,
) -> Duration {
    for node in &mut nodes {
        node.finishes(Duration::from_secs(120));
    }
    let history = History::of(sluice);
    let all = history.jobs().await;
    assert_eq!(all.len(), jobs);
    assert!(
        all.iter().all(|job| job.state == "completed"),
        "a job was lost"
    );
    let attempts = history.attempts().await;
    for (job, outcomes) in outcomes_by_job(&attempts) {
        assert_eq!(outcomes, ["completed"], "job {job}");
    }
    let resumed = attempts
        .iter()
        .map(|a| a.started_at)
        .filter(|started| *started >= back)
        .min()
        .expect("no attempt started after the outage");
    let resume = (resumed - back).to_std().unwrap();
    assert!(
        resume <= RESUME_WITHIN,
        "resumed {resume:?} after the store came back"
    );
    resume
}

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap()
}

/// Drops every connection to `database` but the caller's.
async fn terminate_connections(admin: &mut sqlx::PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap()
}

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_for_a_while_loses_nothing() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    let (nodes, jobs) = busy_nodes(&sluice, 2).await;
    let database = database_name(&sluice.database_url);
    let outage = Duration::from_secs(scale(3, 20) as u64);

    let mut admin = admin().await;
    let allow = |yes: bool| {
        sqlx::AssertSqlSafe(format!("ALTER DATABASE {database} ALLOW_CONNECTIONS {yes}"))
    };
    sqlx::query(allow(false)).execute(&mut admin).await.unwrap();
    let killed = terminate_connections(&mut admin, &database).await;
    assert!(killed > 0, "the nodes had no connection to lose");
    tokio::time::sleep(outage).await;
    sqlx::query(allow(true)).execute(&mut admin).await.unwrap();
    let back = Utc::now();

    let resume = finish_and_check(&sluice, nodes, jobs, back).await;
    println!(
        "postgres down for {outage:?} ({killed} connections dropped): {jobs} jobs, 0 lost, 0 run twice, resumed {resume:?} after it came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_killed_again_and_again_lose_nothing() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    let (nodes, jobs) = busy_nodes(&sluice, 2).await;
    let database = database_name(&sluice.database_url);

    let mut admin = admin().await;
    let mut killed = 0;
    for _ in 0..scale(10, 100) {
        killed += terminate_connections(&mut admin, &database).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let back = Utc::now();

    let resume = finish_and_check(&sluice, nodes, jobs, back).await;
    println!(
        "postgres connections killed {} times ({killed} in all): {jobs} jobs, 0 lost, 0 run twice, resumed {resume:?} after the last kill",
        scale(10, 100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_locked_by_another_process_loses_nothing() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::sqlite().await;
    let (nodes, jobs) = busy_nodes(&sluice, 1).await;
    let lock = Duration::from_secs(scale(3, 40) as u64);

    // This test process is the other process: it takes the write lock and sits on it.
    let mut other = sqlx::SqliteConnection::connect(&sluice.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    tokio::time::sleep(lock).await;
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let back = Utc::now();
    drop(other);

    let resume = finish_and_check(&sluice, nodes, jobs, back).await;
    println!(
        "sqlite write-locked for {lock:?}: {jobs} jobs, 0 lost, 0 run twice, resumed {resume:?} after the lock was released"
    );
}
