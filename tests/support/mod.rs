//! Helpers shared by the integration test binaries (each uses a part of them).
#![allow(dead_code)]

pub mod binary;

use std::path::PathBuf;
use std::sync::OnceLock;

use sluice::sandbox::{Sandbox, SandboxConfig};

/// A directory unique to this test, under cargo's per-target temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The component cache every test shares, so each guest compiles once per test run.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A sandbox with default settings and the shared cache.
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Sandbox::new(SandboxConfig::new(shared_cache_dir())).unwrap())
        .clone()
}

pub fn read_guest(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read guest {path}: {e}"))
}

/// The server the Postgres tests use; each test gets a database of its own on it.
pub fn postgres_admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh, empty database on the test server; returns its URL. Fails when the server is
/// unreachable: a Postgres test never silently skips.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the Postgres tests need a server at {admin} (set SLUICE_TEST_POSTGRES_URL): {e}"
            )
        });
    drop_databases_of_dead_runs(&mut conn).await;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("sluice_test_{}_{n}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Databases are named after the test process; those of processes that are gone are dropped.
async fn drop_databases_of_dead_runs(conn: &mut sqlx::PgConnection) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'sluice\\_test\\_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        for name in names {
            let pid = name.split('_').nth(2).unwrap_or("");
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await;
            }
        }
    })
    .await;
}
