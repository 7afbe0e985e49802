//! Every misbehaving guest injected into a stream of normal jobs: each hostile attempt fails
//! with its own classification, every normal job completes exactly once, and the stream is
//! not held up behind the hostile attempts.
//!
//! How much of its throughput the stream keeps beside hostile guests is a benchmark figure
//! (`sluice bench --beside hostile`, BENCHMARKS.md), not an assertion: on a shared 2-core
//! machine the same ratio measured 0.45 to 1.1 from one run to the next.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_test_artifacts as guests;

use crate::cluster::{Attempt, History, Node, enqueue_many, own_the_machine, scale};
use crate::support::binary::Sluice;

/// One hostile job: function, args, the outcome it ends in when it gets the CPU it needs
/// (a loop ends in whichever of its fuel and its deadline runs out first). Beside the
/// stream a demoted attempt may get little CPU, on a loaded machine next to nothing, so
/// `timeout` is always a correct end too: the class is checked exactly, one at a time, in
/// `tests/all/sandbox.rs`.
const HOSTILE: &[(&str, &str, &[&str])] = &[
    ("infinite_loop", "null", &["out_of_fuel", "timeout"]),
    ("allocate_forever", "null", &["memory_limit"]),
    ("recurse_forever", "null", &["trap"]),
    ("panic", "null", &["panic"]),
    ("unreachable", "null", &["trap"]),
    ("huge_output", r#"{"mb":4}"#, &["output_too_large"]),
    ("huge_output", r#"{"mb":300}"#, &["memory_limit"]),
    ("log_flood", r#"{"lines":20000}"#, &["completed"]),
    ("read_file", r#"{"path":"/etc/passwd"}"#, &["guest_error"]),
    ("read_env", r#"{"name":"PATH"}"#, &["guest_error"]),
    (
        "open_socket",
        r#"{"addr":"127.0.0.1:5432"}"#,
        &["guest_error"],
    ),
    // Each of these loops through one host import until its deadline.
    ("log_loop", r#"{"kib":256}"#, &["timeout"]),
    ("report_panic_loop", r#"{"kib":256}"#, &["timeout"]),
    ("stdout_loop", r#"{"kib":256}"#, &["timeout"]),
    ("clock_loop", "null", &["timeout", "out_of_fuel"]),
    ("random_loop", r#"{"kib":512}"#, &["timeout", "out_of_fuel"]),
    ("poll_loop", "null", &["timeout", "out_of_fuel"]),
    ("sleep_forever", "null", &["timeout"]),
    ("random_loop", r#"{"kib":4096}"#, &["resource_limit"]),
    ("exit", r#"{"status":0}"#, &["exit"]),
    ("exit", r#"{"status":3}"#, &["exit"]),
    ("handle_flood", "null", &["resource_limit"]),
    ("huge_error", r#"{"mb":16}"#, &["guest_error"]),
    ("huge_panic", r#"{"mb":16}"#, &["panic"]),
];

/// The deadline every hostile job runs under.
const DEADLINE: Duration = Duration::from_secs(10);

/// The most guest text (message and captured logs) one attempt row may hold: the 8 KiB
/// message cap and the 64 KiB log budget, with room for JSON escaping and notes.
const MAX_STORED_TEXT: i64 = 200 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_alone_and_normal_jobs_are_not_held_up_on_postgres() {
    let _machine = own_the_machine().await;
    hostile_guests_beside_normal_jobs(Sluice::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_alone_and_normal_jobs_are_not_held_up_on_sqlite() {
    let _machine = own_the_machine().await;
    hostile_guests_beside_normal_jobs(Sluice::sqlite().await).await;
}

async fn hostile_guests_beside_normal_jobs(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    sluice.ok(&["upload", guests::HOSTILE]);
    let normal = scale(5_000, 50_000);
    let history = History::of(&sluice);

    let mut hostile_ids = Vec::new();
    let timeout = format!("{}s", DEADLINE.as_secs());
    for (function, args, _) in HOSTILE {
        let id = sluice.enqueue(&[
            "hostile",
            function,
            args,
            "--max-attempts",
            "1",
            "--timeout",
            &timeout,
        ]);
        hostile_ids.push(id);
    }
    enqueue_many(&sluice, "noop", "null", normal, &[]);
    let mut node = Node::start(
        &sluice,
        "node",
        &["--queue", "default=16", "--exit-when-idle"],
        &[],
    );
    node.finishes(Duration::from_secs(180));

    let jobs = history.jobs().await;
    let attempts = history.attempts().await;
    let mut by_job: BTreeMap<i64, Vec<&Attempt>> = BTreeMap::new();
    for attempt in &attempts {
        by_job.entry(attempt.job).or_default().push(attempt);
    }
    let mut loop_ended = None;
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    for (id, (function, _, expected)) in hostile_ids.iter().zip(HOSTILE) {
        let [attempt] = by_job[id].as_slice() else {
            panic!("hostile::{function} has attempts {:?}", by_job[id]);
        };
        assert!(
            expected.contains(&attempt.outcome.as_str()) || attempt.outcome == "timeout",
            "hostile::{function} ended in {}, expected one of {expected:?} or timeout",
            attempt.outcome
        );
        *classes.entry(attempt.outcome.clone()).or_insert(0) += 1;
        // Whatever it did, it ended within its deadline and a second (the promise; the
        // overshoot measured is milliseconds).
        let ran = (attempt.finished_at - attempt.started_at).to_std().unwrap();
        assert!(
            ran < DEADLINE + Duration::from_secs(1),
            "hostile::{function} ran {ran:?} under a deadline of {DEADLINE:?}"
        );
        if *function == "infinite_loop" {
            loop_ended = Some(attempt.finished_at);
        }
    }
    let runs: Vec<&Attempt> = jobs
        .iter()
        .filter(|job| job.function == "noop")
        .map(|job| {
            assert_eq!(
                job.state, "completed",
                "normal job {} did not complete",
                job.id
            );
            let [attempt] = by_job[&job.id].as_slice() else {
                panic!("normal job {} has attempts {:?}", job.id, by_job[&job.id]);
            };
            *attempt
        })
        .collect();
    assert_eq!(runs.len(), normal);
    let first = runs.iter().map(|a| a.started_at).min().unwrap();
    let last = runs.iter().map(|a| a.finished_at).max().unwrap();
    // The loop runs until its 10 s deadline, behind the stream while the stream lasts (about a
    // second): a stream that waited for it, or for a free slot, would end after it.
    // (Hostile attempts in the foreground also start within the stream; the first ones
    // claimed are the hostile jobs, enqueued first.)
    let loop_ended = loop_ended.expect("the loop is one of the hostile jobs");
    assert!(
        last < loop_ended,
        "the normal jobs finished at {last}, after the infinite loop ended at {loop_ended}"
    );
    let stored = history.largest_attempt_text().await;
    assert!(
        stored <= MAX_STORED_TEXT,
        "an attempt row holds {stored} bytes of guest text"
    );
    let rate = normal as f64 / (last - first).to_std().unwrap().as_secs_f64();
    println!(
        "{normal} normal jobs beside {} hostile ones: {rate:.0} jobs/s, done {:?} before the loop ended; hostile classes {classes:?}",
        HOSTILE.len(),
        (loop_ended - last).to_std().unwrap()
    );
}
