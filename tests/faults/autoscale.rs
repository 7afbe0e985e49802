//! Autoscaling through the real binary on PostgreSQL: a node whose queue autoscales between
//! 2 and 12 starts at 2, reaches 12 under a backlog (and never more), and shrinks back to 2
//! once the backlog is gone; each change is in its log.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_test_artifacts as guests;
use sqlx::{Connection, Row};

use crate::cluster::{Node, completed, enqueue_many, own_the_machine, until};
use crate::support::binary::Sluice;

/// The concurrencies the node's log says it scaled to, in order.
fn scaled_to(node: &Node) -> Vec<u32> {
    node.log()
        .lines()
        .filter(|line| line.contains("queue concurrency autoscaled"))
        .filter_map(|line| {
            let at = line.find(" to=")? + 4;
            line[at..].split(' ').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_reaches_its_max_under_a_backlog_and_shrinks_after() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    sluice.ok(&[
        "queue",
        "autoscale",
        "default",
        "--min",
        "2",
        "--max",
        "12",
        "--cooldown",
        "1s",
        "--shrink-after",
        "2s",
        "--target-wait",
        "1h",
    ]);
    let node = Node::start(&sluice, "node-0", &["--queue", "default=16"], &[]);
    until(
        Duration::from_secs(30),
        "brought down to its min",
        || async { scaled_to(&node).first() == Some(&2) },
    )
    .await;

    let jobs = 1000;
    enqueue_many(&sluice, "sleep", r#"{"ms":100}"#, jobs, &[]);
    until(Duration::from_secs(90), "grown to its max", || async {
        scaled_to(&node).contains(&12)
    })
    .await;
    let url = sluice.database_url.clone();
    until(Duration::from_secs(120), "the backlog drained", || async {
        completed(&url).await == jobs as i64
    })
    .await;
    until(
        Duration::from_secs(60),
        "shrunk back to its min",
        || async { scaled_to(&node).last() == Some(&2) },
    )
    .await;

    // The history: at most 12 at once, and 12 at some moment.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT started_at, finished_at FROM sluice_attempts")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for row in &rows {
        edges.push((row.get(0), 1));
        edges.push((row.get(1), -1));
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    let steps = scaled_to(&node);
    println!("autoscaling 2..12: concurrency went {steps:?}; at most {most} attempts at once");
    assert_eq!(most, 12, "the max reached and never passed: {steps:?}");
    let peak = steps.iter().position(|&n| n == 12).unwrap();
    assert!(
        steps[..peak].windows(2).skip(1).all(|w| w[0] < w[1]),
        "it grew step by step: {steps:?}"
    );
    assert!(
        steps[peak..].windows(2).all(|w| w[0] > w[1]),
        "then only shrank: {steps:?}"
    );
}
