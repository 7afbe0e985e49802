//! `sluice::client` as an application uses it: enqueueing in its own transaction on both
//! stores (a job if and only if the transaction commits; on PostgreSQL a wake-up only at the
//! commit), and over a node's HTTP API.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use sluice::client::{Call, ClientError, HttpClient, enqueue_in_postgres, enqueue_in_sqlite};
use sluice::store::sqlx::{self, Connection};
use sluice_test_artifacts as guests;

use crate::support::binary::Sluice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_postgres_transaction_exists_only_if_it_commits() {
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    let store = sluice::store::connect(&sluice.database_url).await.unwrap();
    let mut wakeups = store.subscribe();
    // The listener says it is listening with a wake-up for every queue.
    let listening = tokio::time::timeout(Duration::from_secs(10), wakeups.recv()).await;
    assert_eq!(listening.unwrap().unwrap(), sluice::store::WAKE_ALL);
    let mut conn = sqlx::PgConnection::connect(&sluice.database_url)
        .await
        .unwrap();

    // Rolled back: no job, and no wake-up for its queue.
    let mut tx = conn.begin().await.unwrap();
    let rolled = Call::new("hello", "greet")
        .json(&serde_json::json!({"name": "never"}))
        .unwrap()
        .queue("rolled-back");
    let ids = enqueue_in_postgres(&mut tx, &[rolled]).await.unwrap();
    tx.rollback().await.unwrap();
    let missing = sluice.fails(&["job", &ids[0].id.to_string()]);
    assert!(missing.contains(&ids[0].id.to_string()), "{missing}");
    assert_eq!(sluice.count("available"), 0);

    // Committed: the wake-up comes with the commit, and it is the first one: the rolled
    // back insert sent none.
    let mut tx = conn.begin().await.unwrap();
    let call = Call::new("hello", "greet")
        .json(&serde_json::json!({"name": "tx"}))
        .unwrap()
        .queue("committed");
    let enqueued = enqueue_in_postgres(&mut tx, &[call]).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(10), async {
        // Not before the commit: nothing is visible yet.
        assert_eq!(sluice.count("available"), 0);
        tx.commit().await.unwrap();
        wakeups.recv().await.unwrap()
    })
    .await
    .expect("the commit woke no one");
    assert_eq!(woken, "committed");
    sluice.ok(&["run", "--queue", "committed=2", "--exit-when-idle"]);
    let job = sluice.job(enqueued[0].id);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["output"], "Hello, tx!");

    refusals_leave_the_transaction_usable(&sluice, &mut conn).await;
}

/// A call the CLI would refuse is refused with its words, before anything is inserted; the
/// application's transaction goes on.
async fn refusals_leave_the_transaction_usable(sluice: &Sluice, conn: &mut sqlx::PgConnection) {
    let mut tx = conn.begin().await.unwrap();
    let error = enqueue_in_postgres(&mut tx, &[Call::new("hello", "nope")])
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::UnknownFunction(_)), "{error}");
    assert!(
        error.to_string().contains("exports no function `nope`"),
        "{error}"
    );
    let error = enqueue_in_postgres(&mut tx, &[Call::new("missing", "greet")])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
    let error = enqueue_in_postgres(&mut tx, &[Call::new("hello", "noop").max_attempts(0)])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--max-attempts"), "{error}");
    let kept = enqueue_in_postgres(&mut tx, &[Call::new("hello", "noop").queue("kept")])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sluice.job(kept[0].id)["queue"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_sqlite_transaction_exists_only_if_it_commits() {
    let sluice = Sluice::sqlite().await;
    sluice.ok(&["upload", guests::HELLO]);
    let path = sluice.database_url.trim_start_matches("sqlite://");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();

    let mut tx = conn.begin().await.unwrap();
    enqueue_in_sqlite(&mut tx, &[Call::new("hello", "noop")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(sluice.count("available"), 0);

    let mut tx = conn.begin().await.unwrap();
    let call = Call::new("hello", "greet")
        .json(&serde_json::json!({"name": "lite"}))
        .unwrap();
    let keyed = Call::new("hello", "noop").idempotency_key("once");
    let enqueued = enqueue_in_sqlite(&mut tx, &[call, keyed.clone(), keyed])
        .await
        .unwrap();
    assert_eq!(enqueued[2].id, enqueued[1].id);
    assert!(enqueued[2].existing);
    tx.commit().await.unwrap();
    drop(conn);
    sluice.ok(&["run", "--exit-when-idle"]);
    assert_eq!(sluice.job(enqueued[0].id)["output"], "Hello, lite!");
    assert_eq!(sluice.count("completed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_client_enqueues_through_a_node() {
    #[derive(Serialize)]
    struct Echo {
        text: String,
        times: u32,
    }
    let sluice = Sluice::sqlite().await;
    sluice.ok(&["upload", guests::HELLO]);
    let mut node = sluice
        .command(&["run", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(node.stderr.take().unwrap());
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(at) = line.find("API listening on ") {
                let _ = found.send(line[at + "API listening on ".len()..].to_string());
            }
        }
    });
    let base = address.recv_timeout(Duration::from_secs(60)).unwrap();
    let client = HttpClient::new(base);

    let typed = Call::new("hello", "echo")
        .postcard(&Echo {
            text: "typed".into(),
            times: 2,
        })
        .unwrap()
        .priority(1)
        .timeout(Duration::from_secs(5));
    let one = client.enqueue(&typed).await.unwrap();
    assert!(!one.existing);
    let keyed = Call::new("hello", "noop").idempotency_key("http-once");
    let many = client
        .enqueue_many(&[keyed.clone(), Call::new("hello", "noop"), keyed])
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    assert_eq!((many[2].id, many[2].existing), (many[0].id, true));
    let error = client
        .enqueue(&Call::new("hello", "nope"))
        .await
        .unwrap_err();
    match &error {
        ClientError::Problem { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (422, "unknown_function"))
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("exports no function `nope`"));

    sluice.wait_until(Duration::from_secs(30), "the jobs to complete", |s| {
        s.count("completed") == 3
    });
    let job = sluice.job(one.id);
    assert_eq!(
        job["output"],
        serde_json::json!({"text": "typed", "times": 2})
    );
    assert_eq!(job["priority"], 1);
    let _ = node.kill();
    let _ = node.wait();
}

/// Forgets that the newest migration was applied on `$conn`, as on a database migrated by
/// an older node; evaluates to its version.
macro_rules! drop_newest_migration {
    ($conn:expr) => {{
        let newest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&mut $conn)
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(newest)
            .execute(&mut $conn)
            .await
            .unwrap();
        newest
    }};
}
/// Against a database a node has not migrated to this version (or never set up), the
/// transactional enqueue says so and what to do, instead of failing on a missing column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_named_on_postgres() {
    let never_set_up = crate::support::fresh_postgres_database().await;
    let mut conn = sqlx::PgConnection::connect(&never_set_up).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let error = enqueue_in_postgres(&mut tx, &[Call::new("hello", "greet")])
        .await
        .unwrap_err();
    assert_schema_behind(&error, None);
    drop(tx);

    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    let mut conn = sqlx::PgConnection::connect(&sluice.database_url)
        .await
        .unwrap();
    let newest = drop_newest_migration!(conn);
    let mut tx = conn.begin().await.unwrap();
    let error = enqueue_in_postgres(&mut tx, &[Call::new("hello", "greet")])
        .await
        .unwrap_err();
    assert_schema_behind(&error, Some(newest - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_named_on_sqlite() {
    let dir = crate::support::temp_dir("client-schema");
    let never_set_up = format!("sqlite://{}?mode=rwc", dir.join("empty.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&never_set_up)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let error = enqueue_in_sqlite(&mut tx, &[Call::new("hello", "greet")])
        .await
        .unwrap_err();
    assert_schema_behind(&error, None);
    drop(tx);

    let sluice = Sluice::sqlite().await;
    sluice.ok(&["upload", guests::HELLO]);
    let mut conn = sqlx::SqliteConnection::connect(&sluice.database_url)
        .await
        .unwrap();
    let newest = drop_newest_migration!(conn);
    let mut tx = conn.begin().await.unwrap();
    let error = enqueue_in_sqlite(&mut tx, &[Call::new("hello", "greet")])
        .await
        .unwrap_err();
    assert_schema_behind(&error, Some(newest - 1));
}

fn assert_schema_behind(error: &ClientError, found: Option<i64>) {
    match error {
        ClientError::Store(sluice::store::StoreError::SchemaBehind { found: got, needed }) => {
            assert_eq!(*got, found, "{error}");
            assert!(*needed > found.unwrap_or(0), "{error}");
        }
        other => panic!("expected an older schema to be named, got {other}"),
    }
    assert!(
        error.to_string().contains("run `sluice migrate`"),
        "{error}"
    );
}
