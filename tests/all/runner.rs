//! The runner on a real PostgreSQL: a database that cannot be reached while a job's module is
//! looked up is the node's problem, never a failure charged to the job.

use std::sync::Arc;
use std::time::Duration;

use sluice::engine::{AttemptStart, Runner};
use sluice::model::{AttemptOutcome, Job, NewJob};
use sluice::runner::SandboxRunner;
use sluice::store::{JobFetch, ModuleUpload, Store};
use sluice_test_artifacts as guests;
use sqlx::Connection;

use crate::support::{fresh_postgres_database, postgres_admin_url, read_guest, sandbox};

/// A store holding the `hello` module and one claimed `hello.greet` job.
async fn store_with_a_claimed_job(url: &str) -> (Arc<dyn Store>, Job) {
    let store = sluice::store::connect(url).await.unwrap();
    let wasm = read_guest(guests::HELLO);
    let functions = sandbox().validate(&wasm).await.unwrap();
    store
        .module_upload(ModuleUpload {
            name: "hello".into(),
            digest: sluice::sandbox::digest_of(&wasm),
            wasm,
            functions,
        })
        .await
        .unwrap();
    let new = NewJob::json("hello", "greet", &serde_json::json!({"name": "Ada"}));
    store.job_insert(new).await.unwrap();
    let mut claimed = store
        .job_fetch(JobFetch {
            queue: "default".into(),
            limit: 1,
            node: "node-a".into(),
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    (store, claimed.pop().expect("the job was not claimed"))
}

/// Makes `database` refuse new connections and drops the ones it has, or lets it accept again.
async fn set_reachable(database: &str, reachable: bool) {
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let allow = format!("ALTER DATABASE {database} ALLOW_CONNECTIONS {reachable}");
    sqlx::query(sqlx::AssertSqlSafe(allow))
        .execute(&mut admin)
        .await
        .unwrap();
    if !reachable {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

fn completed(result: &sluice::engine::RunResult) -> bool {
    matches!(result.report.outcome, AttemptOutcome::Completed { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_leaves_the_attempt_unstarted_not_failed() {
    let url = fresh_postgres_database().await;
    let database = url.rsplit('/').next().unwrap().to_string();
    let (store, job) = store_with_a_claimed_job(&url).await;
    // Every run looks the latest version up again, so every run needs the store.
    let runner = SandboxRunner::with_latest_ttl(store, sandbox(), Duration::ZERO);

    // Nothing known yet: the attempt cannot start, and says why.
    set_reachable(&database, false).await;
    let unreachable = runner.run(&job, AttemptStart::unobserved()).await;
    set_reachable(&database, true).await;
    let not_started = unreachable
        .err()
        .expect("an unreachable store failed the job instead of leaving it unstarted");
    assert!(
        not_started.reason.contains("unavailable"),
        "unclear reason: {not_started}"
    );

    // Back: the same job runs.
    let ran = runner
        .run(&job, AttemptStart::unobserved())
        .await
        .expect("the store is back");
    assert!(completed(&ran), "{:?}", ran.report.outcome);
    assert_eq!(ran.module_version, Some(1));

    // Gone again, with the module known: the node runs on the version it last saw.
    set_reachable(&database, false).await;
    let stale = runner.run(&job, AttemptStart::unobserved()).await;
    set_reachable(&database, true).await;
    let stale = stale.expect("a known module needed the store");
    assert!(completed(&stale), "{:?}", stale.report.outcome);
    assert_eq!(stale.module_version, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_module_is_still_the_jobs_failure() {
    let url = fresh_postgres_database().await;
    let (store, mut job) = store_with_a_claimed_job(&url).await;
    job.module = "no_such_module".into();
    let runner = SandboxRunner::new(store, sandbox());
    let ran = runner
        .run(&job, AttemptStart::unobserved())
        .await
        .expect("the store was reachable");
    let failure = ran.report.failure().expect("a missing module ran");
    assert_eq!(failure.kind, sluice::model::FailureKind::ModuleError);
    assert!(failure.message.contains("no_such_module"), "{failure:?}");
}

/// Runs every job as completed, except those whose args are `"refused"`: their report carries
/// a NUL character, which PostgreSQL refuses to store (the sandbox never lets one through;
/// this stands for any outcome the database will not take).
struct UnstorableReports;

#[async_trait::async_trait]
impl Runner for UnstorableReports {
    async fn run(
        &self,
        job: &Job,
        started: AttemptStart,
    ) -> Result<sluice::engine::RunResult, sluice::engine::NotStarted> {
        use sluice::model::{AttemptReport, Failure, FailureKind, LogLine, LogStream};
        started.now(Duration::from_secs(60));
        let refused = job.args == br#""refused""#;
        let outcome = if refused {
            AttemptOutcome::Failed(Failure::new(FailureKind::GuestError, "bad \0 byte"))
        } else {
            AttemptOutcome::Completed {
                output: b"1".to_vec(),
            }
        };
        let logs = if refused {
            vec![LogLine {
                stream: LogStream::Info,
                text: "also \0 here".into(),
            }]
        } else {
            Vec::new()
        };
        Ok(sluice::engine::RunResult {
            module_version: Some(1),
            report: AttemptReport {
                outcome,
                fuel_consumed: 1,
                wall_time: Duration::from_millis(1),
                peak_memory_bytes: 0,
                logs,
                logs_dropped_bytes: 0,
                composed: Default::default(),
            },
        })
    }
}

/// An outcome the database refuses never costs the others in its batch theirs: the batch is
/// written one by one, and the refused one without its guest text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_outcome_does_not_fail_its_batch() {
    let url = fresh_postgres_database().await;
    let store = sluice::store::connect(&url).await.unwrap();
    let mut jobs = Vec::new();
    for i in 0..200 {
        let args = if i == 77 { "refused" } else { "fine" };
        let mut job = NewJob::json("hello", "greet", &serde_json::json!(args));
        job.max_attempts = 1;
        jobs.push(job);
    }
    let ids = store.job_insert_many(jobs).await.unwrap();
    let mut config = sluice::config::EngineConfig::new(
        "node-a".into(),
        vec![sluice::config::QueueConfig {
            name: "default".into(),
            concurrency: 16,
        }],
    );
    config.exit_when_idle = true;
    let metrics = Arc::new(sluice::engine::Metrics::default());
    sluice::engine::run_node(
        store.clone(),
        Arc::new(UnstorableReports),
        config,
        metrics,
        std::future::pending(),
    )
    .await
    .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let detail = store.job_get(*id).await.unwrap();
        assert_eq!(detail.attempts.len(), 1, "job {i}");
        if i == 77 {
            assert_eq!(detail.job.state, sluice::model::JobState::Discarded);
            let attempt = &detail.attempts[0];
            assert!(attempt.logs.is_empty());
            let message = attempt.message.as_deref().unwrap();
            assert!(
                message.contains("the store refused this attempt's report"),
                "{message}"
            );
        } else {
            assert_eq!(
                detail.job.state,
                sluice::model::JobState::Completed,
                "job {i}"
            );
        }
    }
}

/// A runner whose attempt starts and then never ends by itself, as a demoted attempt on a
/// starved thread might not: the node stops it from its side.
struct NeverEnds;

#[async_trait::async_trait]
impl Runner for NeverEnds {
    async fn run(
        &self,
        _job: &Job,
        started: AttemptStart,
    ) -> Result<sluice::engine::RunResult, sluice::engine::NotStarted> {
        started.now(Duration::from_millis(200));
        std::future::pending().await
    }
}

/// Past its deadline (and half a second), the node records `timeout` for an attempt that did
/// not stop, and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_stops_an_attempt_that_outruns_its_deadline() {
    let path = crate::support::temp_dir("never-ends").join("sluice.db");
    let store = sluice::store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut new = NewJob::json("hello", "greet", &serde_json::json!(null));
    new.max_attempts = 1;
    let id = store.job_insert(new).await.unwrap().id;
    let mut config = sluice::config::EngineConfig::new(
        "node-a".into(),
        vec![sluice::config::QueueConfig {
            name: "default".into(),
            concurrency: 1,
        }],
    );
    config.exit_when_idle = true;
    let started = std::time::Instant::now();
    sluice::engine::run_node(
        store.clone(),
        Arc::new(NeverEnds),
        config,
        Arc::new(sluice::engine::Metrics::default()),
        std::future::pending(),
    )
    .await
    .unwrap();
    let detail = store.job_get(id).await.unwrap();
    assert_eq!(detail.job.state, sluice::model::JobState::Discarded);
    let attempt = &detail.attempts[0];
    assert_eq!(
        attempt.outcome,
        sluice::model::AttemptClass::Failed(sluice::model::FailureKind::Timeout)
    );
    assert!(
        attempt
            .message
            .as_deref()
            .unwrap()
            .contains("the node stopped it"),
        "{:?}",
        attempt.message
    );
    // 200 ms deadline + 500 ms: recorded at about 0.7 s, far from the hang it would be.
    assert!(
        attempt.duration >= Duration::from_millis(700),
        "{:?}",
        attempt.duration
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
