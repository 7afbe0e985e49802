//! The real `sluice` binary, driven as a user would: one store, commands, their JSON output.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{fresh_postgres_database, shared_cache_dir, temp_dir};

/// The `sluice` binary pointed at one store.
pub struct Sluice {
    pub database_url: String,
}

impl Sluice {
    pub async fn sqlite() -> Sluice {
        let path = temp_dir("cli").join("sluice.db");
        Sluice {
            database_url: format!("sqlite://{}", path.display()),
        }
    }

    pub async fn postgres() -> Sluice {
        Sluice {
            database_url: fresh_postgres_database().await,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_CACHE_DIR", shared_cache_dir())
            .env("SLUICE_LOG", "warn,sluice=info")
            // Many nodes run at once in the tests: none takes the API's default port;
            // a test of the API passes `--listen 127.0.0.1:0`.
            .env("SLUICE_LISTEN", "none")
            // A node's address in the caller's environment would send the commands there.
            .env_remove("SLUICE_URL")
            .env_remove("SLUICE_TOKEN")
            .stdin(Stdio::null());
        command
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("cannot run sluice")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            !output.status.success(),
            "sluice {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    pub fn enqueue(&self, args: &[&str]) -> i64 {
        let mut full = vec!["enqueue"];
        full.extend_from_slice(args);
        self.json(&full)["id"].as_i64().unwrap()
    }

    pub fn job(&self, id: i64) -> Value {
        self.json(&["job", &id.to_string()])
    }

    pub fn spawn_run(&self, args: &[&str]) -> Child {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        self.command(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits for a condition on the store, checked every 50 ms, for at most `limit`.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut condition: impl FnMut(&Sluice) -> bool,
    ) {
        let started = Instant::now();
        while !condition(self) {
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn count(&self, state: &str) -> usize {
        self.json(&["jobs", "--state", state, "--limit", "100000"])
            .as_array()
            .unwrap()
            .len()
    }
}

pub fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}
