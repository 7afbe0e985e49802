//! An application enqueueing jobs with `sluice::client`, which needs neither wasmtime nor
//! clap: `sluice = { default-features = false, features = ["client"] }`.
//!
//! ```sh
//! cargo run --example enqueue --no-default-features --features client -- http://127.0.0.1:7700
//! cargo run --example enqueue --no-default-features --features client -- postgres://localhost/app
//! ```
//!
//! Over HTTP it enqueues through a node's API; given a database URL it enqueues in the
//! application's own transaction, beside the application's own writes: the job exists if and
//! only if the transaction commits.

use sluice::client::{Call, HttpClient, enqueue_in_postgres, enqueue_in_sqlite};
use sluice::store::sqlx::{self, Connection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:7700".to_string());
    let welcome = Call::new("hello", "greet")
        .json(&serde_json::json!({ "name": "Ada" }))?
        .idempotency_key("welcome-ada");

    let enqueued = if target.starts_with("http") {
        HttpClient::new(&target).enqueue(&welcome).await?
    } else if target.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&target).await?;
        let mut tx = conn.begin().await?;
        // ... the application's own writes go here, in the same transaction ...
        let enqueued = enqueue_in_postgres(&mut tx, &[welcome]).await?;
        tx.commit().await?; // nodes are woken now, not before
        enqueued[0]
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&target).await?;
        let mut tx = conn.begin().await?;
        let enqueued = enqueue_in_sqlite(&mut tx, &[welcome]).await?;
        tx.commit().await?; // nodes find it at their next poll
        enqueued[0]
    };
    let note = if enqueued.existing {
        " (it already existed)"
    } else {
        ""
    };
    println!("job {}{note}", enqueued.id);
    Ok(())
}
