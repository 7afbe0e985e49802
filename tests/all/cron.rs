//! Periodic jobs through the binary and the API: entries set, listed and removed; a running
//! node inserts one job per slot; missed slots follow the entry's policy; the config file's
//! entries are seeded and applied.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::store::{CronEntry, CronPut, Misfire};
use sluice_test_artifacts as guests;

use crate::api::{Node, response};
use crate::support::binary::{Sluice, time};
use crate::support::temp_dir;

both_stores!(
    a_node_inserts_one_job_per_slot,
    missed_slots_follow_the_misfire_policy,
    entries_are_set_and_refused_through_the_api,
    the_config_file_seeds_and_applies_entries,
);

/// The slots (scheduled times) of the jobs of `function`, oldest first.
fn slots_of(sluice: &Sluice, function: &str) -> Vec<DateTime<Utc>> {
    let jobs = sluice.json(&["jobs", "--limit", "100000"]);
    let mut slots: Vec<DateTime<Utc>> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["function"] == function)
        .map(|job| time(&job["scheduled_at"]))
        .collect();
    slots.sort();
    slots
}

/// Node settings under which a leader is elected at once and runs a round every 100 ms; the
/// cron grace (twice the lease and two rounds, 6.2 s) outlasts any stall of a loaded machine,
/// so no slot is missed in these tests.
const FAST_LEADER: [&str; 4] = ["--lease", "3s", "--maintenance-interval", "100ms"];

async fn a_node_inserts_one_job_per_slot(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let added = sluice.json(&[
        "cron",
        "add",
        "tick",
        "* * * * * *",
        "hello",
        "greet",
        r#"{"name":"Ada"}"#,
    ]);
    assert_eq!(added["misfire"], "skip");
    assert_eq!(added["timezone"], "UTC");
    assert_eq!(
        time(&added["next_slot"]),
        time(&added["last_slot"]) + TimeDelta::seconds(1)
    );
    let listed = sluice.json(&["cron", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["args"], json!({"name": "Ada"}));

    let mut args = vec!["--queue", "default=4"];
    args.extend(FAST_LEADER);
    let mut node = sluice.spawn_run(&args);
    sluice.wait_until(Duration::from_secs(60), "four slots run", |sluice| {
        sluice.count("completed") >= 4
    });
    sluice.ok(&["cron", "remove", "tick"]);
    let _ = node.kill();
    let _ = node.wait();

    let slots = slots_of(&sluice, "greet");
    let distinct: BTreeSet<_> = slots.iter().collect();
    assert_eq!(
        distinct.len(),
        slots.len(),
        "a slot inserted twice: {slots:?}"
    );
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TimeDelta::seconds(1),
            "a slot missed: {slots:?}"
        );
    }
    assert!(slots[0] > time(&added["last_slot"]));
    assert!(slots.iter().all(|slot| slot.timestamp_subsec_nanos() == 0));
    let job = sluice.json(&["jobs", "--state", "completed", "--limit", "1"]);
    assert_eq!(job[0]["output"], json!("Hello, Ada!"));
    assert!(
        sluice
            .json(&["cron", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        sluice
            .fails(&["cron", "remove", "tick"])
            .contains("no cron entry named `tick`")
    );
}

async fn missed_slots_follow_the_misfire_policy(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    // Daily at midnight UTC, last handled two days ago: the two midnights since were missed
    // (unless this runs in the seconds after one, when the newest is still on time).
    let now = Utc::now();
    let midnight = now.duration_trunc(TimeDelta::days(1)).unwrap();
    assert!(
        now - midnight > TimeDelta::seconds(30),
        "run again: this test reads today's midnight as missed"
    );
    let store = sluice::store::connect(&sluice.database_url).await.unwrap();
    for (name, misfire, function) in [
        ("skipped", Misfire::Skip, "greet"),
        ("once", Misfire::RunOnce, "noop"),
    ] {
        let entry = CronEntry {
            name: name.into(),
            schedule: "0 0 * * *".into(),
            timezone: "UTC".into(),
            misfire,
            queue: "default".into(),
            module: "hello".into(),
            function: function.into(),
            args: r#"{"name":"Ada"}"#.into(),
            priority: 0,
            max_attempts: 1,
            last_slot: midnight - TimeDelta::days(2),
            updated_at: now,
        };
        store
            .cron_put(CronPut {
                entry,
                replace: false,
            })
            .await
            .unwrap();
    }
    let mut args = vec!["--queue", "elsewhere=1"];
    args.extend(FAST_LEADER);
    let mut node = sluice.spawn_run(&args);
    sluice.wait_until(Duration::from_secs(60), "both entries handled", |sluice| {
        let entries = sluice.json(&["cron", "list"]);
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| time(&entry["last_slot"]) == midnight)
    });
    let _ = node.kill();
    let _ = node.wait();
    assert!(
        slots_of(&sluice, "greet").is_empty(),
        "skip inserts no missed slot"
    );
    assert_eq!(
        slots_of(&sluice, "noop"),
        [midnight],
        "run once inserts one job, at the newest missed slot"
    );
}

async fn entries_are_set_and_refused_through_the_api(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let node = Node::start(&sluice, &["serve"]);
    let put = |name: &str, body: Value| {
        let request = node
            .http
            .put(node.url(&format!("/v1/cron/{name}")))
            .json(&body);
        async move { response(request.send().await.unwrap()).await }
    };
    let good = json!({
        "schedule": "0 9 * * MON-FRI",
        "timezone": "Europe/Paris",
        "module": "hello",
        "function": "greet",
        "args": {"name": "Ada"},
        "queue": "reports",
        "misfire": "run_once",
    });
    let (status, view) = put("weekday-report", good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["misfire"], "run_once");
    assert_eq!(view["queue"], "reports");
    // 09:00 in Paris: 08:00 UTC in winter, 07:00 in summer, on a weekday.
    let next = time(&view["next_slot"]);
    assert!(
        ["07:00:00", "08:00:00"].contains(&next.format("%H:%M:%S").to_string().as_str()),
        "{next}"
    );
    assert!(
        !["Sat", "Sun"].contains(&next.format("%a").to_string().as_str()),
        "{next}"
    );
    let (status, listed) = node.get("/v1/cron").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["name"], "weekday-report");

    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, status, code, words) in [
        (
            with("schedule", json!("61 * * * *")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "is not a cron expression",
        ),
        (
            with("schedule", json!("0 0 30 2 *")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "never falls on a date",
        ),
        (
            with("timezone", json!("Mars/Olympus")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "is not a time zone",
        ),
        (
            with("misfire", json!("sometimes")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "is not a misfire policy",
        ),
        (
            with("module", json!("nope")),
            StatusCode::NOT_FOUND,
            "module_not_found",
            "nope",
        ),
        (
            with("function", json!("nope")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
            "nope",
        ),
        (
            with("max_attempts", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "max-attempts",
        ),
    ] {
        let (got, problem) = put("bad", body).await;
        assert_eq!(got, status, "{problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{problem}"
        );
    }
    let (status, problem) = put("bad name!", good.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = put("bad", with("surprise", json!(1))).await;
    assert!(status.is_client_error());
    // Nothing refused was stored.
    let (_, listed) = node.get("/v1/cron").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let (status, _) = node.delete("/v1/cron/weekday-report").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = node.delete("/v1/cron/weekday-report").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "cron_not_found");
    let audit = sluice.json(&["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"cron.put") && actions.contains(&"cron.remove"),
        "{actions:?}"
    );
}

async fn the_config_file_seeds_and_applies_entries(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let file = temp_dir("cron-config").join("sluice.toml");
    let write = |schedule: &str| {
        std::fs::write(
            &file,
            format!(
                "[cron.nightly]\nschedule = \"{schedule}\"\nmodule = \"hello\"\n\
                 function = \"greet\"\nargs = {{ name = \"Ada\" }}\n"
            ),
        )
        .unwrap()
    };
    let config = file.to_str().unwrap();
    write("0 3 * * *");
    // A node seeds what the store lacks.
    let mut args = vec!["--config", config, "run", "--queue", "elsewhere=1"];
    args.extend(FAST_LEADER);
    let mut node = sluice
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sluice.wait_until(Duration::from_secs(60), "the entry seeded", |sluice| {
        !sluice
            .json(&["cron", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    });
    let _ = node.kill();
    let _ = node.wait();
    let listed = sluice.json(&["cron", "list"]);
    assert_eq!(listed[0]["schedule"], "0 3 * * *");
    assert_eq!(listed[0]["args"], json!({"name": "Ada"}));

    // A changed file does not replace the stored entry at a node's start; `config apply` does.
    write("0 4 * * *");
    sluice.ok(&["--config", config, "cron", "list"]);
    let applied = sluice.json(&["--config", config, "config", "apply"]);
    assert_eq!(applied["cron"][0]["schedule"], "0 4 * * *");
    assert_eq!(sluice.json(&["cron", "list"])[0]["schedule"], "0 4 * * *");

    // A mistake in the file is refused with the entry's name, and nothing changes.
    write("not a schedule");
    let error = sluice.fails(&["--config", config, "config", "apply"]);
    assert!(
        error.contains("cron entry nightly") && error.contains("is not a cron expression"),
        "{error}"
    );
    assert_eq!(sluice.json(&["cron", "list"])[0]["schedule"], "0 4 * * *");
}
