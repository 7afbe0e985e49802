//! A job that brings down every node that runs it: its lost attempts never count against its
//! max attempts, and after the poison limit of losses in a row it is dead-lettered as
//! `poisoned` instead of walking from node to node. On both stores, through the binary.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use sluice_test_artifacts as guests;

use crate::cluster::{History, Node, outcomes_by_job, own_the_machine, until};
use crate::support::binary::Sluice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_nodes_is_poisoned_on_postgres() {
    let _machine = own_the_machine().await;
    a_job_that_kills_its_nodes_is_poisoned(Sluice::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_nodes_is_poisoned_on_sqlite() {
    let _machine = own_the_machine().await;
    a_job_that_kills_its_nodes_is_poisoned(Sluice::sqlite().await).await;
}

async fn a_job_that_kills_its_nodes_is_poisoned(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    // One attempt allowed: were lost attempts counted, the first loss would dead-letter it.
    let id = sluice.enqueue(&["hello", "noop", "--max-attempts", "1"]);
    let history = History::of(&sluice);
    let timing = ["--lease", "1s", "--maintenance-interval", "100ms"];
    // The leader that rescues: it serves another queue, so it never runs the job itself.
    let mut rescuer_args = vec!["--queue", "elsewhere=1", "--backoff-base", "10ms"];
    rescuer_args.extend_from_slice(&timing);
    let _rescuer = Node::start(&sluice, "rescuer", &rescuer_args, &[]);
    let mut doomed_args = vec!["--queue", "default=1"];
    doomed_args.extend_from_slice(&timing);
    // Each node that claims the job dies before it starts it, as if the job crashed it.
    for round in 1..=3 {
        let mut doomed = Node::start(
            &sluice,
            &format!("doomed-{round}"),
            &doomed_args,
            &[("SLUICE_CRASH_AT", "claimed:1")],
        );
        let status = doomed.wait(Duration::from_secs(30));
        assert_eq!(status.signal(), Some(9), "round {round}\n{}", doomed.log());
        until(
            Duration::from_secs(30),
            "the lost attempt to be recorded",
            || async { history.attempt_count().await >= round },
        )
        .await;
    }
    until(
        Duration::from_secs(30),
        "the job to be dead-lettered",
        || async {
            history
                .jobs()
                .await
                .iter()
                .any(|job| job.id == id && job.state == "discarded")
        },
    )
    .await;
    let outcomes = outcomes_by_job(&history.attempts().await);
    assert_eq!(
        outcomes[&id],
        ["lease_expired", "lease_expired", "poisoned"]
    );
    let job = sluice.job(id);
    let last = &job["attempts"][2];
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("3 times in a row"),
        "{last}"
    );
}
