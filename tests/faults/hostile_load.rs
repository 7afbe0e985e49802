//! Every misbehaving guest injected into a stream of normal jobs: each hostile attempt fails
//! with its own classification, the node carries on, and the normal jobs keep at least 80%
//! of the throughput they have on their own.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_test_artifacts as guests;

use crate::cluster::{Attempt, History, Node, enqueue_many, own_the_machine, scale};
use crate::support::binary::Sluice;

/// One hostile job: function, args, the outcomes it may end in (a loop ends in whichever of
/// its fuel and its deadline runs out first).
const HOSTILE: &[(&str, &str, &[&str])] = &[
    ("infinite_loop", "null", &["out_of_fuel", "timeout"]),
    ("allocate_forever", "null", &["memory_limit"]),
    ("recurse_forever", "null", &["trap"]),
    ("panic", "null", &["panic"]),
    ("unreachable", "null", &["trap"]),
    ("huge_output", r#"{"mb":4}"#, &["output_too_large"]),
    ("huge_output", r#"{"mb":300}"#, &["memory_limit"]),
    ("log_flood", r#"{"lines":200000}"#, &["completed"]),
    ("read_file", r#"{"path":"/etc/passwd"}"#, &["guest_error"]),
    ("read_env", r#"{"name":"PATH"}"#, &["guest_error"]),
    (
        "open_socket",
        r#"{"addr":"127.0.0.1:5432"}"#,
        &["guest_error"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_alone_and_normal_jobs_keep_their_pace() {
    let _machine = own_the_machine().await;
    let sluice = Sluice::postgres().await;
    sluice.ok(&["upload", guests::HELLO]);
    sluice.ok(&["upload", guests::HOSTILE]);
    let normal = scale(5_000, 50_000);
    let history = History::of(&sluice);

    // Alternate runs without and with the hostile guests; keep each side's best, since the
    // machine is shared and one slow run says little.
    let (mut alone, mut attacked) = (0.0f64, 0.0f64);
    for round in 0..3 {
        alone = alone.max(run_normal_jobs(&sluice, &history, normal, false, round).await);
        attacked = attacked.max(run_normal_jobs(&sluice, &history, normal, true, round).await);
    }
    let ratio = attacked / alone;
    println!(
        "{normal} normal jobs: {alone:.0} jobs/s alone, {attacked:.0} jobs/s beside {} hostile ones: ratio {ratio:.2}",
        HOSTILE.len()
    );
    assert!(
        ratio >= 0.8,
        "normal throughput fell to {ratio:.2} of its pace under attack"
    );
}

/// Runs `normal` no-op jobs (plus, if `attack`, one of each hostile job enqueued first) on one
/// node until idle; checks every outcome and returns the normal jobs' throughput.
async fn run_normal_jobs(
    sluice: &Sluice,
    history: &History,
    normal: usize,
    attack: bool,
    round: usize,
) -> f64 {
    let before: usize = history.jobs().await.len();
    let mut hostile_ids = Vec::new();
    if attack {
        for (function, args, _) in HOSTILE {
            let id = sluice.enqueue(&["hostile", function, args, "--max-attempts", "1"]);
            hostile_ids.push(id);
        }
    }
    enqueue_many(sluice, "noop", "null", normal, &[]);
    let mut node = Node::start(
        sluice,
        &format!("node-{round}-{attack}"),
        &["--queue", "default=16", "--exit-when-idle"],
        &[],
    );
    node.finishes(Duration::from_secs(120));

    let jobs = history.jobs().await;
    let attempts = history.attempts().await;
    let by_job: BTreeMap<i64, &Attempt> = attempts.iter().map(|a| (a.job, a)).collect();
    for (id, (function, _, expected)) in hostile_ids.iter().zip(HOSTILE) {
        let outcome = &by_job[id].outcome;
        assert!(
            expected.contains(&outcome.as_str()),
            "hostile::{function} ended in {outcome}, expected one of {expected:?}"
        );
    }
    let runs: Vec<&Attempt> = jobs[before..]
        .iter()
        .filter(|job| job.function == "noop")
        .map(|job| {
            assert_eq!(
                job.state, "completed",
                "normal job {} did not complete",
                job.id
            );
            by_job[&job.id]
        })
        .collect();
    assert_eq!(runs.len(), normal);
    let first = runs.iter().map(|a| a.started_at).min().unwrap();
    let last = runs.iter().map(|a| a.finished_at).max().unwrap();
    normal as f64 / (last - first).to_std().unwrap().as_secs_f64()
}
