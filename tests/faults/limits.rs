//! Queue limits across nodes, through the real binary on one PostgreSQL: three nodes hold a
//! rate of 50 starts a second together, and a partition limit of 1 runs each key's jobs one
//! at a time in enqueue order while other keys proceed, across a `kill -9` of a node.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_test_artifacts as guests;
use sqlx::{Connection, Row};

use crate::cluster::{History, Node, completed, enqueue_many, own_the_machine, until};
use crate::support::binary::Sluice;
use crate::support::temp_dir;

/// The most starts in any one-second window (half-open), and the window's start.
fn worst_second(starts: &[DateTime<Utc>]) -> (usize, Option<DateTime<Utc>>) {
    let mut worst = (0, None);
    let mut end = 0;
    for (begin, from) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < *from + chrono::Duration::seconds(1) {
            end += 1;
        }
        if end - begin > worst.0 {
            worst = (end - begin, Some(*from));
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_hold_a_rate_of_fifty_starts_a_second_together() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    const RATE: usize = 50;
    const BURST: usize = 5;
    let burst = BURST.to_string();
    sluice.ok(&[
        "queue", "limits", "default", "--rate", "50/1s", "--burst", &burst,
    ]);
    let jobs = 400;
    enqueue_many(&sluice, "noop", "null", jobs, &[]);
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            Node::start(
                &sluice,
                &format!("node-{i}"),
                &["--queue", "default=16"],
                &[],
            )
        })
        .collect();
    let url = sluice.database_url.clone();
    until(Duration::from_secs(60), "every job completed", || async {
        completed(&url).await == jobs as i64
    })
    .await;

    // A start is a claim the store admitted: the job's `attempted_at`, on the store's clock.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT attempted_at, lease_node IS NULL AS done FROM sluice_jobs ORDER BY attempted_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let starts: Vec<DateTime<Utc>> = rows.iter().map(|row| row.get(0)).collect();
    let (worst, at) = worst_second(&starts);
    let span = (starts[starts.len() - 1] - starts[0]).as_seconds_f64();
    // After the burst, one start every 20 ms: the span the limit allows is the floor.
    let used = (jobs - 1 - BURST) as f64 / RATE as f64 / span;
    let per_node: BTreeMap<String, usize> = History::of(&sluice).attempts().await.iter().fold(
        BTreeMap::new(),
        |mut counts, attempt| {
            *counts.entry(attempt.node.clone()).or_default() += 1;
            counts
        },
    );
    println!(
        "rate 50/s + burst {BURST}, 3 nodes: worst second {worst} starts (from {at:?}); \
         {jobs} starts in {span:.2} s, {:.1}% of the limit used; by node {per_node:?}",
        used * 100.0
    );
    assert!(
        worst <= RATE + BURST,
        "{worst} starts in one second, above 50 + {BURST}"
    );
    assert!(used >= 0.9, "only {:.1}% of the limit used", used * 100.0);
    assert!(
        per_node.len() == 3,
        "all three nodes took part: {per_node:?}"
    );
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_limit_of_one_keeps_each_keys_order_across_nodes_and_a_kill() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    sluice.ok(&[
        "queue",
        "limits",
        "default",
        "--partition-by",
        "args.user",
        "--partition-concurrency",
        "1",
    ]);
    // Five keys, their jobs interleaved in enqueue order; each job sleeps 40 ms.
    let keys = ["ann", "bob", "cy", "dee", "eve"];
    let per_key = 12;
    let batch = temp_dir("batch").join("args.jsonl");
    let mut lines = String::new();
    for _ in 0..per_key {
        for key in keys {
            lines.push_str(&format!("{{\"user\":\"{key}\",\"ms\":40}}\n"));
        }
    }
    std::fs::write(&batch, lines).unwrap();
    sluice.ok(&[
        "enqueue",
        "hello",
        "sleep",
        "--batch",
        batch.to_str().unwrap(),
    ]);
    let args = [
        "--queue",
        "default=4",
        "--lease",
        "2s",
        "--maintenance-interval",
        "100ms",
    ];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&sluice, &format!("node-{i}"), &args, &[]))
        .collect();
    let url = sluice.database_url.clone();
    let total = (keys.len() * per_key) as i64;
    until(
        Duration::from_secs(60),
        "a fifth of the jobs done",
        || async { completed(&url).await >= total / 5 },
    )
    .await;
    // A node killed while it holds a key's job (whichever node does: five keys at a time
    // need not reach all three): that key waits for the rescue, then goes on in order.
    let history = History::of(&sluice);
    let holder = std::sync::Mutex::new(None);
    until(Duration::from_secs(60), "a node running a job", || async {
        let running = history
            .jobs()
            .await
            .into_iter()
            .find(|job| job.state == "running")
            .and_then(|job| job.lease_node);
        let found = running.is_some();
        *holder.lock().unwrap() = running;
        found
    })
    .await;
    let holder = holder.into_inner().unwrap().expect("found above");
    let index: usize = holder.trim_start_matches("node-").parse().unwrap();
    let killed_at = nodes[index].kill();
    until(Duration::from_secs(90), "every job completed", || async {
        completed(&url).await == total
    })
    .await;

    // Each key's completed attempts, in the order they started.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT j.partition_key, j.id, a.started_at, a.finished_at, a.node
         FROM sluice_attempts AS a JOIN sluice_jobs AS j ON j.id = a.job_id
         WHERE a.outcome = 'completed' ORDER BY a.started_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    type Run = (i64, DateTime<Utc>, DateTime<Utc>, String);
    let mut by_key: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for row in &rows {
        by_key.entry(row.get(0)).or_default().push((
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
        ));
    }
    assert_eq!(
        by_key.len(),
        keys.len(),
        "every key ran: {:?}",
        by_key.keys()
    );
    for (key, runs) in &by_key {
        assert_eq!(runs.len(), per_key, "{key}: one completed attempt per job");
        for pair in runs.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{key} ran out of enqueue order: {runs:?}"
            );
            assert!(
                pair[0].2 <= pair[1].1,
                "{key} ran two jobs at once: {pair:?}"
            );
        }
    }
    // Other keys proceed meanwhile: runs of different keys overlap in time.
    let all: Vec<&Run> = by_key.values().flatten().collect();
    let overlapping = all
        .iter()
        .any(|a| all.iter().any(|b| a.0 != b.0 && a.1 < b.2 && b.1 < a.2));
    assert!(
        overlapping,
        "the keys ran one after another, not side by side"
    );
    let lost: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sluice_attempts WHERE outcome = 'lease_expired'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let nodes_used: std::collections::BTreeSet<&String> = all.iter().map(|run| &run.3).collect();
    println!(
        "partition limit 1, 5 keys x {per_key} jobs, 3 nodes, {holder} killed at {killed_at}: \
         every key in enqueue order, one at a time; {lost} attempts lost; nodes {nodes_used:?}"
    );
}
