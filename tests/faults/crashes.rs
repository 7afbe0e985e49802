//! `kill -9` at chosen moments of a node's work, on both stores: every job still completes,
//! only the jobs the killed node held run again (and their history says so), and they are
//! rescued within the lease period.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_test_artifacts as guests;

use crate::cluster::{History, Node, enqueue_many, outcomes_by_job, own_the_machine, scale, until};
use crate::support::binary::Sluice;

/// The lease the nodes of these scenarios hold; a dead node's jobs come back after it.
const LEASE: Duration = Duration::from_secs(2);
const MAINTENANCE: Duration = Duration::from_millis(100);

/// When the doomed node dies.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Killed from outside while attempts run.
    DuringAttempts,
    /// Kills itself at an engine crash point (`SLUICE_CRASH_AT`), its N-th passage.
    At(&'static str, u32),
}

macro_rules! crash_scenarios {
    ($($name:ident: $moment:expr,)*) => {
        mod sqlite {
            use super::Moment;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let _machine = super::own_the_machine().await;
                    super::a_node_dies(super::Sluice::sqlite().await, 1, $moment).await;
                }
            )*
        }
        mod postgres {
            use super::Moment;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let _machine = super::own_the_machine().await;
                    super::a_node_dies(super::Sluice::postgres().await, 2, $moment).await;
                }
            )*
        }
    };
}

crash_scenarios! {
    killed_during_attempts: Moment::DuringAttempts,
    killed_between_claim_and_start: Moment::At("claimed", 3),
    killed_before_writing_outcomes: Moment::At("flushing", 5),
    killed_after_writing_outcomes: Moment::At("flushed", 5),
}

fn node_args() -> Vec<String> {
    vec![
        "--queue".into(),
        "default=16".into(),
        "--lease".into(),
        format!("{}ms", LEASE.as_millis()),
        "--maintenance-interval".into(),
        format!("{}ms", MAINTENANCE.as_millis()),
    ]
}

async fn a_node_dies(sluice: Sluice, survivors: usize, moment: Moment) {
    sluice.ok(&["upload", guests::HELLO]);
    let jobs = scale(3_000, 30_000);
    enqueue_many(&sluice, "sleep", r#"{"ms":5}"#, jobs, &[]);
    let history = History::of(&sluice);

    let args = node_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let crash_spec;
    let env: Vec<(&str, &str)> = match moment {
        Moment::DuringAttempts => vec![],
        Moment::At(point, n) => {
            crash_spec = format!("{point}:{n}");
            vec![("SLUICE_CRASH_AT", crash_spec.as_str())]
        }
    };
    let mut doomed = Node::start(&sluice, "doomed", &args, &env);
    let killed_at: DateTime<Utc> = match moment {
        Moment::DuringAttempts => {
            until(
                Duration::from_secs(30),
                "the doomed node to finish some attempts",
                || async { history.attempt_count().await >= 50 },
            )
            .await;
            doomed.kill()
        }
        Moment::At(..) => {
            let status = doomed.wait(Duration::from_secs(30));
            assert_eq!(
                status.signal(),
                Some(9),
                "the crash point did not fire\n{}",
                doomed.log()
            );
            Utc::now()
        }
    };
    // PostgreSQL finishes a statement it received whole even when its client is gone (a
    // claim or an outcome batch sent just before the kill): wait for the dead node's sessions
    // to end. Then the set cannot grow, nor shrink before the lease runs out.
    until(
        Duration::from_secs(30),
        "the killed node's sessions to end",
        || async { history.other_sessions().await == 0 },
    )
    .await;
    let held = history.leased_by("doomed").await;

    let mut survivor_args = args.clone();
    survivor_args.push("--exit-when-idle");
    let mut nodes: Vec<Node> = (0..survivors)
        .map(|i| Node::start(&sluice, &format!("survivor-{i}"), &survivor_args, &[]))
        .collect();
    for node in &mut nodes {
        node.finishes(Duration::from_secs(60));
    }

    let attempts = history.attempts().await;
    let all = history.jobs().await;
    assert_eq!(all.len(), jobs);
    for job in &all {
        assert_eq!(job.state, "completed", "job {} was lost", job.id);
    }
    let mut rerun = BTreeSet::new();
    for (job, outcomes) in outcomes_by_job(&attempts) {
        match outcomes.as_slice() {
            [one] if one == "completed" => {}
            [first, second] if first == "lease_expired" && second == "completed" => {
                rerun.insert(job);
            }
            other => panic!("job {job} has attempts {other:?}"),
        }
    }
    assert_eq!(
        rerun, held,
        "exactly the jobs the killed node held ran again"
    );
    if !matches!(moment, Moment::At("flushed", _)) {
        // Dying with nothing claimed would prove nothing; after a flush the node may
        // have had nothing else in flight.
        assert!(!held.is_empty(), "the node died holding no job");
    }
    let rescue_delays: Vec<Duration> = attempts
        .iter()
        .filter(|a| a.outcome == "lease_expired")
        .map(|a| (a.finished_at - killed_at).to_std().unwrap_or_default())
        .collect();
    let slowest = rescue_delays.iter().max().copied().unwrap_or_default();
    // The lease was renewed at most a third of a lease before the kill; the next
    // maintenance round after it expires rescues (measured: about one lease, BENCHMARKS.md).
    // A lease of slack, so a loaded machine passes while a rescue that waited for anything
    // but the lease would not.
    let bound = LEASE * 2 + MAINTENANCE;
    assert!(
        slowest <= bound,
        "rescued {slowest:?} after the kill (bound {bound:?})"
    );
    println!(
        "{moment:?} on {}: {} jobs, 0 lost, {} held by the killed node ran twice, rescued {:?}-{:?} after the kill (lease {LEASE:?})",
        if history_is_pg(&sluice) {
            "postgres"
        } else {
            "sqlite"
        },
        jobs,
        held.len(),
        rescue_delays.iter().min().copied().unwrap_or_default(),
        slowest,
    );
}

fn history_is_pg(sluice: &Sluice) -> bool {
    sluice.database_url.starts_with("postgres")
}
