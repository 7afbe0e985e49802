//! Composition end to end through the real binary, on both stores: a job's children, its
//! fan-out and fan-in, dependencies and their policies, batches and their callbacks, topics,
//! retry-after, and a module built against sluice:job@0.1.0 running beside 0.2.0 ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_test_artifacts as guests;

use crate::support::binary::Sluice;

both_stores!(
    a_fan_out_of_1000_fans_in_with_every_output,
    a_retried_parent_leaves_the_children_of_its_completed_attempt_only,
    each_dependency_policy_and_cancelling_what_waits,
    batch_callbacks_run_once_with_the_counts,
    a_topic_delivers_each_event_once_to_each_subscription,
    a_guest_handles_refusals_and_reads_only_its_own_dependencies,
    outputs_beyond_the_inline_cap_are_read_one_by_one,
    retry_after_runs_later_without_spending_an_attempt,
    a_module_built_against_0_1_0_still_uploads_and_runs,
    the_example_pipeline_ingests_transforms_and_stores,
);

fn run_until_idle(sluice: &Sluice) {
    run_queues_until_idle(sluice, &["default=16"]);
}

fn run_queues_until_idle(sluice: &Sluice, queues: &[&str]) {
    let mut args = vec![
        "run",
        "--exit-when-idle",
        "--backoff-base",
        "100ms",
        "--maintenance-interval",
        "100ms",
    ];
    for queue in queues {
        args.extend(["--queue", queue]);
    }
    let run = sluice.output(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Every job of `function`, oldest first.
fn jobs_of(sluice: &Sluice, module: &str, function: &str) -> Vec<Value> {
    let mut jobs: Vec<Value> = sluice
        .json(&["jobs", "--module", module, "--limit", "5000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["function"] == function)
        .cloned()
        .collect();
    jobs.reverse();
    jobs
}

fn tree(sluice: &Sluice, id: i64) -> Value {
    sluice.json(&["job", &id.to_string(), "--tree"])
}

async fn a_fan_out_of_1000_fans_in_with_every_output(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let parent = sluice.enqueue(&["composer", "fan_out", r#"{"n":1000}"#]);
    run_until_idle(&sluice);

    let squares = jobs_of(&sluice, "composer", "square");
    assert_eq!(squares.len(), 1000);
    assert!(squares.iter().all(|job| job["state"] == "completed"
        && job["parent_id"] == parent
        && job["attempt"] == 1));
    let sums = jobs_of(&sluice, "composer", "sum");
    assert_eq!(sums.len(), 1, "one fan-in");
    let sum = &sums[0];
    assert_eq!(sum["state"], "completed");
    assert_eq!(sum["waits_for"], 1000);
    let expected: u64 = (0..1000u64).map(|x| x * x).sum();
    assert_eq!(
        sum["output"],
        json!({"count": 1000, "sum": expected, "states": {"completed": 1000}})
    );

    let parent_tree = tree(&sluice, parent);
    assert_eq!(parent_tree["children_total"], 1001);
    assert!(parent_tree["parent"].is_null());
    let sum_tree = tree(&sluice, sum["id"].as_i64().unwrap());
    assert_eq!(sum_tree["parent"]["id"], parent);
    let waits_for = sum_tree["waits_for"].as_array().unwrap();
    assert_eq!(waits_for.len(), 1000);
    // In the order the parent named them: its children's, by id.
    let named: Vec<i64> = waits_for
        .iter()
        .map(|w| w["job_id"].as_i64().unwrap())
        .collect();
    let children: Vec<i64> = squares.iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(named, children);
    let square_tree = tree(&sluice, children[0]);
    assert_eq!(square_tree["waited_on_by"][0]["job_id"], sum["id"]);
}

async fn a_retried_parent_leaves_the_children_of_its_completed_attempt_only(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let parent = sluice.enqueue(&["composer", "enqueue_then_fail", r#"{"n":5,"succeed_at":3}"#]);
    run_until_idle(&sluice);
    let job = sluice.job(parent);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["output"], 3);
    assert_eq!(job["attempts"].as_array().unwrap().len(), 3);
    // Two attempts enqueued five children each and failed: theirs were never written.
    let children = jobs_of(&sluice, "composer", "square");
    assert_eq!(children.len(), 5);
    let mut outputs: Vec<i64> = children
        .iter()
        .map(|child| {
            assert_eq!(child["parent_id"], parent);
            child["output"].as_i64().unwrap()
        })
        .collect();
    outputs.sort_unstable();
    assert_eq!(outputs, [0, 1, 4, 9, 16]);
}

async fn each_dependency_policy_and_cancelling_what_waits(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    sluice.ok(&["upload", guests::HELLO]);
    let failing = sluice.enqueue(&["hello", "fail", "--max-attempts", "1"]);
    let good = sluice.enqueue(&["composer", "square", r#"{"x":7}"#]);
    let deps = format!("{failing},{good}");
    let cancelled = sluice.enqueue(&["composer", "sum", "--depends-on", &deps]);
    let anyway = sluice.enqueue(&["composer", "sum", "--depends-on", &deps, "--run-if-failed"]);
    // Waiting on the one that is cancelled with the first: cancelled in turn.
    let second_hand = sluice.enqueue(&["composer", "sum", "--depends-on", &cancelled.to_string()]);
    for id in [cancelled, anyway, second_hand] {
        assert_eq!(sluice.job(id)["state"], "held");
    }
    run_until_idle(&sluice);
    assert_eq!(sluice.job(failing)["state"], "discarded");
    for id in [cancelled, second_hand] {
        let job = sluice.job(id);
        assert_eq!(job["state"], "cancelled", "{job}");
        assert_eq!(job["attempt"], 0, "a cancelled dependent never ran");
    }
    let anyway = sluice.job(anyway);
    assert_eq!(anyway["state"], "completed");
    assert_eq!(
        anyway["output"],
        json!({"count": 1, "sum": 49, "states": {"completed": 1, "discarded": 1}})
    );

    // A job that waits on one scheduled far ahead stays held; cancelling the one it waits
    // for cancels it, and what waits on it, at once.
    let later = sluice.enqueue(&["composer", "square", r#"{"x":1}"#, "--in", "1h"]);
    let middle = sluice.enqueue(&["composer", "sum", "--depends-on", &later.to_string()]);
    let last = sluice.enqueue(&["composer", "sum", "--depends-on", &middle.to_string()]);
    let runs_anyway = sluice.enqueue(&[
        "composer",
        "sum",
        "--depends-on",
        &later.to_string(),
        "--run-if-failed",
    ]);
    sluice.ok(&["job", "cancel", &later.to_string()]);
    assert_eq!(sluice.job(middle)["state"], "cancelled");
    assert_eq!(sluice.job(last)["state"], "cancelled");
    assert_eq!(sluice.job(runs_anyway)["state"], "available");
    // A dependency that never existed counts as deleted: a failure.
    let orphan = sluice.enqueue(&["composer", "sum", "--depends-on", "999999"]);
    assert_eq!(sluice.job(orphan)["state"], "cancelled");
}

async fn batch_callbacks_run_once_with_the_counts(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let opener = sluice.enqueue(&["composer", "open_batch", r#"{"n":6,"fail_below":2}"#]);
    run_until_idle(&sluice);
    let members = jobs_of(&sluice, "composer", "fail_if_below");
    assert_eq!(members.len(), 6);
    let batch = members[0]["batch_id"]
        .as_i64()
        .expect("members have a batch");
    assert!(members.iter().all(|job| job["batch_id"] == batch));
    let shown = sluice.json(&["batch", &batch.to_string()]);
    assert_eq!(shown["parent_id"], opener);
    assert_eq!(shown["finished"], true);
    assert_eq!(
        shown["counts"],
        json!({"total": 6, "completed": 4, "discarded": 2, "cancelled": 0, "running": 0, "waiting": 0})
    );
    // Finished and discard ran, once each; success never did.
    let callbacks = jobs_of(&sluice, "composer", "batch_done");
    let contexts: Vec<&str> = callbacks
        .iter()
        .map(|job| job["output"]["context"].as_str().unwrap())
        .collect();
    let mut sorted = contexts.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["discard", "finished"], "{callbacks:?}");
    for callback in &callbacks {
        assert_eq!(callback["state"], "completed");
        assert_eq!(callback["output"]["batch"], batch);
    }
    let finished = callbacks
        .iter()
        .find(|job| job["output"]["context"] == "finished")
        .unwrap();
    assert_eq!(
        finished["output"]["counts"],
        json!({"total": 6, "completed": 4, "discarded": 2, "cancelled": 0})
    );
    assert_eq!(shown["on_finished"]["job_id"], finished["id"]);
    assert!(shown["on_success"]["job_id"].is_null());
}

async fn a_topic_delivers_each_event_once_to_each_subscription(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    for queue in ["default", "audit", "mail"] {
        let added = sluice.json(&[
            "topic",
            "subscribe",
            "posts",
            queue,
            "composer",
            "batch_done",
        ]);
        assert_eq!(added["new"], true);
    }
    let again = sluice.json(&[
        "topic",
        "subscribe",
        "posts",
        "mail",
        "composer",
        "batch_done",
    ]);
    assert_eq!(again["new"], false);
    let refused = sluice.fails(&["topic", "subscribe", "posts", "mail", "composer", "nope"]);
    assert!(refused.contains("nope"), "{refused}");
    assert_eq!(sluice.json(&["topic", "list"]).as_array().unwrap().len(), 3);

    let published = sluice.json(&["topic", "publish", "posts", r#"{"n":1}"#]);
    assert_eq!(published["ids"].as_array().unwrap().len(), 3);
    sluice.json(&["topic", "publish", "posts", r#"{"n":2}"#]);
    let nobody = sluice.json(&["topic", "publish", "nobody-listens", r#"{"n":0}"#]);
    assert_eq!(nobody["ids"], json!([]));
    // A guest's publish is delivered when its attempt completes.
    let publisher = sluice.enqueue(&[
        "composer",
        "publish",
        r#"{"topic":"posts","event":{"n":3}}"#,
    ]);
    run_queues_until_idle(&sluice, &["default=4", "audit=4", "mail=4"]);

    let delivered = jobs_of(&sluice, "composer", "batch_done");
    assert_eq!(delivered.len(), 9, "3 events x 3 subscriptions");
    let mut by_event = BTreeMap::<i64, Vec<String>>::new();
    for job in &delivered {
        assert_eq!(job["state"], "completed");
        let n = job["output"]["n"].as_i64().unwrap();
        by_event
            .entry(n)
            .or_default()
            .push(job["queue"].as_str().unwrap().to_string());
        if n == 3 {
            assert_eq!(job["parent_id"], publisher);
        }
    }
    for queues in by_event.values_mut() {
        queues.sort();
        assert_eq!(queues, &["audit", "default", "mail"]);
    }
    sluice.ok(&[
        "topic",
        "unsubscribe",
        "posts",
        "mail",
        "composer",
        "batch_done",
    ]);
    let gone = sluice.fails(&[
        "topic",
        "unsubscribe",
        "posts",
        "mail",
        "composer",
        "batch_done",
    ]);
    assert!(gone.contains("no subscription"), "{gone}");
    let published = sluice.json(&["topic", "publish", "posts", r#"{"n":4}"#]);
    assert_eq!(published["ids"].as_array().unwrap().len(), 2);
}

async fn a_guest_handles_refusals_and_reads_only_its_own_dependencies(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let refused = sluice.enqueue(&["composer", "enqueue_refused"]);
    let me = sluice.enqueue(&["composer", "whoami"]);
    let foreign = sluice.enqueue(&["composer", "read_foreign", &format!(r#"{{"id":{me}}}"#)]);
    let flood = sluice.enqueue(&[
        "composer",
        "fan_out",
        r#"{"n":20000}"#,
        "--max-attempts",
        "1",
    ]);
    run_until_idle(&sluice);

    let refusals = sluice.job(refused)["output"].clone();
    let refusals: Vec<&str> = refusals
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        refusals[0].contains("no module named `no-such-module`"),
        "{refusals:?}"
    );
    assert!(refusals[1].contains("no_such_function"), "{refusals:?}");
    assert!(refusals[2].contains("at least 1"), "{refusals:?}");
    assert!(refusals[3].contains("does not exist yet"), "{refusals:?}");
    // Nothing refused was held, and nothing else was enqueued.
    assert!(jobs_of(&sluice, "composer", "square").is_empty());

    let whoami = sluice.job(me);
    assert_eq!(
        whoami["output"],
        json!({"id": me, "attempt": 1, "parent": null, "batch": null})
    );
    assert_eq!(
        sluice.job(foreign)["output"],
        format!("job {me} is not one this job waited for")
    );
    // Past the bound, the attempt fails with the host's refusal and leaves nothing.
    let flood = sluice.job(flood);
    assert_eq!(flood["state"], "discarded");
    let message = flood["attempts"][0]["message"].as_str().unwrap();
    // 20,000 squares and the sum: one past the bound.
    assert!(message.contains("20000"), "{message}");
    assert!(jobs_of(&sluice, "composer", "square").is_empty());
}

async fn outputs_beyond_the_inline_cap_are_read_one_by_one(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    // Five outputs of about 1 MB: four fit the 4 MiB inline cap together, the fifth does not.
    let bigs: Vec<String> = (0..5)
        .map(|_| {
            sluice
                .enqueue(&["composer", "big", r#"{"bytes":1000000}"#])
                .to_string()
        })
        .collect();
    let measure = sluice.enqueue(&["composer", "measure", "--depends-on", &bigs.join(",")]);
    run_until_idle(&sluice);
    assert_eq!(
        sluice.job(measure)["output"],
        json!({"inline": [true, true, true, true, false], "lengths": [1000000, 1000000, 1000000, 1000000, 1000000]})
    );
    // A dependency that has ended already releases a new dependent at once.
    let waiting = sluice.enqueue(&["composer", "measure", "--depends-on", &bigs[0]]);
    assert_eq!(sluice.job(waiting)["state"], "available");
}

async fn retry_after_runs_later_without_spending_an_attempt(sluice: Sluice) {
    sluice.ok(&["upload", guests::COMPOSER]);
    let until = chrono::Utc::now().timestamp_millis() + 400;
    let job = sluice.enqueue(&[
        "composer",
        "retry_later",
        &format!(r#"{{"until_ms":{until}}}"#),
        "--max-attempts",
        "1",
    ]);
    // A snoozed job is scheduled, which `--exit-when-idle` does not wait for: a node runs
    // until it completed.
    let mut node = sluice.spawn_run(&["--maintenance-interval", "100ms"]);
    sluice.wait_until(
        Duration::from_secs(30),
        "the snoozed job to complete",
        |s| s.job(job)["state"] == "completed",
    );
    node.kill().unwrap();
    node.wait().unwrap();
    let job = sluice.job(job);
    // Snoozed until then, as often as it asked, and never charged: one attempt recorded.
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["attempts"].as_array().unwrap().len(), 1);
    let started = crate::support::binary::time(&job["attempts"][0]["started_at"]);
    assert!(started.timestamp_millis() >= until, "{job}");
    assert_eq!(job["output"], 1);
}

async fn a_module_built_against_0_1_0_still_uploads_and_runs(sluice: Sluice) {
    let upload = sluice.json(&["upload", guests::CLASSIC]);
    assert_eq!(upload["name"], "classic");
    let greet = sluice.enqueue(&["classic", "greet", r#"{"name":"Ada"}"#]);
    let fail = sluice.enqueue(&["classic", "fail", "--max-attempts", "1"]);
    sluice.ok(&["upload", guests::COMPOSER]);
    let modern = sluice.enqueue(&["composer", "square", r#"{"x":3}"#]);
    run_until_idle(&sluice);
    let greet = sluice.job(greet);
    assert_eq!(greet["output"], "Hello from 0.1.0, Ada!");
    assert_eq!(
        greet["attempts"][0]["logs"][0]["text"],
        "greeting Ada the 0.1.0 way"
    );
    let fail = sluice.job(fail);
    assert_eq!(fail["state"], "discarded");
    assert_eq!(
        fail["attempts"][0]["message"],
        "a 0.1.0 job failing as it always did"
    );
    assert_eq!(sluice.job(modern)["output"], 9);
}

async fn the_example_pipeline_ingests_transforms_and_stores(sluice: Sluice) {
    sluice.ok(&["upload", guests::PIPELINE]);
    sluice.ok(&[
        "topic",
        "subscribe",
        "posts.stored",
        "default",
        "pipeline",
        "notify",
    ]);
    let feed = json!({"posts": [
        {"author": "ada", "text": "Engines weave #algebra like looms weave #flowers"},
        {"author": "grace", "text": "A ship in port is safe #navy @ada"},
        {"author": "ada", "text": "That brain of mine is more than merely mortal #algebra"},
    ]});
    let ingest = sluice.enqueue(&["pipeline", "ingest", &feed.to_string()]);
    run_until_idle(&sluice);
    assert_eq!(sluice.job(ingest)["output"], 3);
    let transforms = jobs_of(&sluice, "pipeline", "transform");
    assert_eq!(transforms.len(), 3);
    let stored = jobs_of(&sluice, "pipeline", "store");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["output"],
        json!({
            "posts": 3,
            "words": 25,
            "by_author": {"ada": 2, "grace": 1},
            "top_hashtags": [["algebra", 2], ["flowers", 1], ["navy", 1]],
        })
    );
    let notified = jobs_of(&sluice, "pipeline", "notify");
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0]["output"],
        "stored 3 posts (25 words) by 2 authors"
    );
    assert_eq!(notified[0]["parent_id"], stored[0]["id"]);
}
