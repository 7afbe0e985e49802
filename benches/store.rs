//! Store benchmark: bulk insert of 100,000 jobs on each store, one `job_insert_many` call.
//!
//! `cargo bench --bench store` (PostgreSQL at `SLUICE_TEST_POSTGRES_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).

use std::time::Instant;

use sluice::model::NewJob;
use sqlx::Connection;

const JOBS: usize = 100_000;
const RUNS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-store");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for run in 0..RUNS {
            let url = format!("sqlite://{}/bulk-{run}.db", dir.display());
            bulk_insert("sqlite", &url).await;
        }
        let admin = std::env::var("SLUICE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL is needed");
        for run in 0..RUNS {
            let name = format!("sluice_bench_{}_{run}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
            bulk_insert("postgres", &url).await;
            let drop = format!("DROP DATABASE {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
}

async fn bulk_insert(label: &str, url: &str) {
    let store = sluice::store::connect(url).await.unwrap();
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| {
            NewJob::json(
                "hello",
                "greet",
                &serde_json::json!({"name": format!("user {n}")}),
            )
        })
        .collect();
    let started = Instant::now();
    let ids = store.job_insert_many(jobs).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(ids.len(), JOBS);
    println!(
        "{label}: bulk insert of {JOBS} jobs in {:.0} ms = {:.0} jobs/s",
        elapsed.as_secs_f64() * 1e3,
        JOBS as f64 / elapsed.as_secs_f64()
    );
}
