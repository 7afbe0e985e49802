//! A circuit breaker across two nodes on one PostgreSQL, through the real binary: a function
//! that starts failing opens it; the jobs enqueued while it is open wait without spending an
//! attempt; after the cooldown the probes succeed and it closes, and every job runs once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_test_artifacts as guests;
use sqlx::{Connection, Row};

use crate::cluster::{Node, enqueue_many, own_the_machine, until};
use crate::support::binary::Sluice;

fn greet(sluice: &Sluice) -> Value {
    let list = sluice.json(&["breaker", "list"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|breaker| breaker["function"] == "greet")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_on_failures_holds_jobs_without_attempts_and_closes_on_recovery() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    // Bad args count here (`--ignore ''`): the way to make `greet` fail, then recover.
    sluice.ok(&[
        "breaker",
        "set",
        "hello",
        "greet",
        "--failure-rate",
        "0.5",
        "--window",
        "30s",
        "--min-calls",
        "5",
        "--cooldown",
        "2s",
        "--probes",
        "2",
        "--ignore",
        "",
    ]);
    let args = [
        "--queue",
        "default=4",
        "--lease",
        "2s",
        "--maintenance-interval",
        "100ms",
    ];
    let _nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&sluice, &format!("node-{i}"), &args, &[]))
        .collect();

    // The function starts failing: ten calls with args it cannot read, one attempt each.
    enqueue_many(
        &sluice,
        "greet",
        r#"{"nope":1}"#,
        10,
        &["--max-attempts", "1"],
    );
    until(Duration::from_secs(30), "the breaker open", || async {
        greet(&sluice)["state"] == "open"
    })
    .await;
    let open = greet(&sluice);
    let reopen_at: DateTime<Utc> = open["reopen_at"].as_str().unwrap().parse().unwrap();

    // It recovers: good calls, enqueued while it is open.
    let enqueued_at = Utc::now();
    enqueue_many(&sluice, "greet", r#"{"name":"Ada"}"#, 10, &[]);
    let url = sluice.database_url.clone();
    let good = || async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(
            "SELECT j.id, j.state, j.attempt, count(a.job_id) AS attempts, min(a.started_at) AS started
             FROM sluice_jobs AS j LEFT JOIN sluice_attempts AS a ON a.job_id = j.id
             WHERE j.args = convert_to('{\"name\":\"Ada\"}', 'UTF8')
             GROUP BY j.id ORDER BY j.id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    until(
        Duration::from_secs(60),
        "every good job completed",
        || async {
            let rows = good().await;
            rows.len() == 10
                && rows
                    .iter()
                    .all(|row| row.get::<String, _>("state") == "completed")
        },
    )
    .await;

    let rows = good().await;
    let mut first_start: Option<DateTime<Utc>> = None;
    for row in &rows {
        let id: i64 = row.get("id");
        assert_eq!(
            (row.get::<i32, _>("attempt"), row.get::<i64, _>("attempts")),
            (1, 1),
            "job {id} ran once: no attempt spent while the breaker was open"
        );
        let started: DateTime<Utc> = row.get("started");
        first_start = Some(first_start.map_or(started, |first| first.min(started)));
    }
    let first_start = first_start.unwrap();
    assert!(
        first_start >= reopen_at,
        "a good job started at {first_start}, before the cooldown ended at {reopen_at}"
    );
    until(Duration::from_secs(10), "the breaker closed", || async {
        greet(&sluice)["state"] == "closed"
    })
    .await;
    println!(
        "breaker: opened after {} failures of {} calls, reopened for probes at {reopen_at}; \
         10 jobs enqueued at {enqueued_at} waited, the first started at {first_start}, \
         each ran once; closed",
        open["failures"], open["calls"]
    );
}
