//! Cron across a leader change: three nodes on one PostgreSQL, a slot every second, the
//! leader killed with `kill -9`; every slot gets exactly one job, none missed, none doubled.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sluice_test_artifacts as guests;
use sqlx::Connection;

use crate::cluster::{Node, own_the_machine, until};
use crate::many_nodes::leader;
use crate::support::binary::Sluice;

/// The slots of the entry's jobs, oldest first, read from each job's slot key
/// (`cron:tick:<unix seconds>`), not its scheduled time: a slot's job that ran on the killed
/// leader is rescued and rescheduled, so its `scheduled_at` no longer names its slot.
async fn slots(url: &str) -> Vec<DateTime<Utc>> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT unique_key FROM sluice_jobs WHERE unique_key LIKE 'cron:tick:%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut slots: Vec<DateTime<Utc>> = keys
        .iter()
        .map(|key| {
            let seconds = key.trim_start_matches("cron:tick:").parse().unwrap();
            DateTime::from_timestamp(seconds, 0).unwrap()
        })
        .collect();
    slots.sort();
    slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_survives_a_leader_kill_without_a_missed_or_doubled_slot() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
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
    until(Duration::from_secs(30), "a leader", || async {
        leader(&url).await.is_some()
    })
    .await;
    let added = sluice.json(&["cron", "add", "tick", "* * * * * *", "hello", "noop"]);
    until(Duration::from_secs(30), "three slots inserted", || async {
        slots(&url).await.len() >= 3
    })
    .await;
    let first = leader(&url).await.expect("a leader");
    let index: usize = first.trim_start_matches("node-").parse().unwrap();
    let killed_at = nodes[index].kill();

    until(Duration::from_secs(30), "a new leader", || async {
        matches!(leader(&url).await, Some(node) if node != first)
    })
    .await;
    // Slots on both sides of the change: five seconds past the kill.
    let past = killed_at + TimeDelta::seconds(5);
    until(Duration::from_secs(30), "slots past the kill", || async {
        slots(&url).await.last().is_some_and(|last| *last >= past)
    })
    .await;
    sluice.ok(&["cron", "remove", "tick"]);

    let slots = slots(&url).await;
    let distinct: BTreeSet<_> = slots.iter().collect();
    assert_eq!(
        distinct.len(),
        slots.len(),
        "a slot inserted twice: {slots:?}"
    );
    // Every job the entry made carries its slot's key: none came in some other way.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice_jobs WHERE function = 'noop'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs as usize, slots.len(), "jobs without a slot key");
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(1),
            "a slot missed around the kill at {killed_at}: {slots:?}"
        );
    }
    let created: DateTime<Utc> = added["last_slot"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        slots[0],
        created + TimeDelta::seconds(1),
        "the first slot after the entry was added"
    );
    // The new leader's only own duty here: no node but the two leaders inserted anything.
    let took_over: usize = nodes
        .iter()
        .map(|node| node.log().matches("leader=true").count())
        .sum();
    assert_eq!(took_over, 2, "one leader, then one other");
    println!(
        "cron every second: leader {first} killed at {killed_at}; {} slots from {} to {}, each once",
        slots.len(),
        slots[0],
        slots[slots.len() - 1]
    );
}
