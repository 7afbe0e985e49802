//! End to end through the real `sluice` binary, on both stores: the seed's scenario,
//! scheduling, hot upgrade, `kill -9` and SIGTERM with attempts in flight, bad input.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use sluice_test_artifacts as guests;

use crate::support::binary::{Sluice, time};
use crate::support::temp_dir;

macro_rules! both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Sluice::sqlite().await);
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Sluice::postgres().await);
                }
            )*
        }
    };
}

both_stores!(
    retention_is_stored_seeded_set_and_applied,
    queue_limits_from_flags_and_the_config_file,
    large_jobs_wait_for_the_memory_budget_and_spend_no_attempt,
    a_second_interrupt_exits_at_once,
    cancelling_a_running_job_interrupts_its_attempt,
    a_closed_stdout_ends_a_command_quietly,
    the_seed_scenario_runs_to_its_final_states,
    a_new_version_is_used_by_the_next_attempts,
    kill_9_with_attempts_in_flight_loses_nothing,
    sigterm_finishes_or_hands_back_running_attempts,
    bad_input_is_refused_and_nothing_is_stored,
);

fn large_jobs_wait_for_the_memory_budget_and_spend_no_attempt(sluice: Sluice) {
    sluice.ok(&["upload", guests::HOSTILE]);
    // Six jobs of 24 MiB on a node whose budget holds one and a bit: they take turns.
    let ids: Vec<i64> = (0..6)
        .map(|_| {
            sluice.enqueue(&[
                "hostile",
                "hold_memory",
                r#"{"mb":24,"ms":300}"#,
                "--max-attempts",
                "1",
            ])
        })
        .collect();
    let budget = (40u64 << 20).to_string();
    let ran = sluice.json(&[
        "run",
        "--exit-when-idle",
        "--queue",
        "default=6",
        "--memory-budget",
        &budget,
    ]);
    // They started together and the budget made all but one wait.
    assert!(ran["waits_for_the_node"].as_u64().unwrap() >= 5, "{ran}");
    assert_eq!(ran["attempts"]["completed"], 6, "{ran}");
    for id in ids {
        let job = sluice.job(id);
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["output"], 24);
        // Waiting for memory is not an attempt: one attempt, completed, whatever the turns.
        let attempts = job["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["outcome"], "completed");
    }
    // A budget below one attempt's start is refused.
    let error = sluice.fails(&["run", "--exit-when-idle", "--memory-budget", "1000"]);
    assert!(
        error.contains("--memory-budget (node.memory_budget) must be at least"),
        "{error}"
    );
}

fn a_second_interrupt_exits_at_once(sluice: Sluice) {
    use std::io::BufRead;
    sluice.ok(&["upload", guests::HELLO]);
    let mut node = sluice
        .command(&["run", "--grace", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The node's log, line by line, as it writes it.
    let (lines, log) = std::sync::mpsc::channel::<String>();
    let stderr = node.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let sleeper = sluice.enqueue(&["hello", "sleep", r#"{"ms":60000}"#]);
    sluice.wait_until(Duration::from_secs(20), "the attempt to start", |s| {
        s.job(sleeper)["state"] == "running"
    });
    let pid = node.id().to_string();
    let interrupt = || {
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
    };
    interrupt();
    // The first interrupt starts a graceful stop, which waits for the running attempt (up
    // to the 60 s grace)...
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .expect("the node said nothing of the interrupt");
        if line.contains("a second Ctrl-C exits at once") {
            break;
        }
    }
    assert!(
        node.try_wait().unwrap().is_none(),
        "the node left without waiting"
    );
    // ...the second exits at once.
    let asked = std::time::Instant::now();
    interrupt();
    let status = node.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
}

fn cancelling_a_running_job_interrupts_its_attempt(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let mut node = sluice.spawn_run(&[]);
    let sleeper = sluice.enqueue(&["hello", "sleep", r#"{"ms":60000}"#]);
    sluice.wait_until(Duration::from_secs(20), "the attempt to start", |s| {
        s.job(sleeper)["state"] == "running"
    });
    let asked = std::time::Instant::now();
    let said = sluice.ok(&["job", "cancel", &sleeper.to_string()]);
    assert!(said.contains("cancel requested"), "{said}");
    sluice.wait_until(Duration::from_secs(20), "the job to be cancelled", |s| {
        s.job(sleeper)["state"] == "cancelled"
    });
    let took = asked.elapsed();
    let job = sluice.job(sleeper);
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["outcome"], "cancelled");
    // Interrupted within the second the node's poll takes (PostgreSQL also notifies): far
    // less than the minute the job would sleep. The bound is wide for a loaded machine.
    assert!(took < Duration::from_secs(10), "cancelled after {took:?}");
    println!("a running job was cancelled {took:?} after the request");
    // The node goes on.
    let next = sluice.enqueue(&["hello", "greet", r#"{"name":"next"}"#]);
    sluice.wait_until(Duration::from_secs(20), "the next job", |s| {
        s.job(next)["state"] == "completed"
    });
    node.kill().unwrap();
    node.wait().unwrap();
}

fn a_closed_stdout_ends_a_command_quietly(sluice: Sluice) {
    use std::io::Read;
    sluice.ok(&["upload", guests::HELLO]);
    let batch = temp_dir("pipe").join("args.jsonl");
    std::fs::write(&batch, "null\n".repeat(5000)).unwrap();
    sluice.ok(&[
        "enqueue",
        "hello",
        "noop",
        "--batch",
        batch.to_str().unwrap(),
    ]);
    // `sluice jobs | head -c 10`: the reader goes away after a few bytes.
    let mut child = sluice
        .command(&["jobs", "--limit", "5000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // Dropping the pipe's read end closes it.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn the_seed_scenario_runs_to_its_final_states(sluice: Sluice) {
    let upload = sluice.json(&["upload", guests::HELLO]);
    assert_eq!(
        (upload["name"].as_str(), upload["version"].as_i64()),
        (Some("hello"), Some(1))
    );
    let names = [
        "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger",
        "Radia",
    ];
    let greetings: Vec<i64> = names
        .iter()
        .map(|name| sluice.enqueue(&["hello", "greet", &format!(r#"{{"name":"{name}"}}"#)]))
        .collect();
    let failing = sluice.enqueue(&["hello", "fail", "--max-attempts", "3"]);
    let heavy = sluice.enqueue(&["hello", "heavy", r#"{"ms":100}"#]);
    let enqueued_at = Utc::now();
    let later = sluice.enqueue(&["hello", "greet", r#"{"name":"later"}"#, "--in", "3s"]);
    assert_eq!(sluice.job(later)["state"], "scheduled");

    let run = sluice.output(&[
        "run",
        "--exit-when-idle",
        "--backoff-base",
        "300ms",
        "--maintenance-interval",
        "100ms",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    for (id, name) in greetings.iter().zip(names) {
        let job = sluice.job(*id);
        assert_eq!(job["state"], "completed");
        assert_eq!(job["output"], format!("Hello, {name}!"));
        assert_eq!(job["attempt"], 1);
        assert_eq!(job["attempts"][0]["outcome"], "completed");
        assert_eq!(job["attempts"][0]["module_version"], 1);
    }
    let heavy = sluice.job(heavy);
    assert_eq!(heavy["state"], "completed");
    assert_eq!(heavy["output"]["primes"], 2262);

    // Retried with growing backoff, then dead-lettered with its whole history.
    let failing = sluice.job(failing);
    assert_eq!(
        (failing["state"].as_str(), failing["attempt"].as_i64()),
        (Some("discarded"), Some(3))
    );
    let attempts = failing["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for attempt in attempts {
        assert_eq!(attempt["outcome"], "guest_error");
        assert_eq!(attempt["message"], "this job always fails");
    }
    let gap = |a: usize| time(&attempts[a + 1]["started_at"]) - time(&attempts[a]["finished_at"]);
    // Backoff 300ms then 600ms, each within ±10% jitter.
    assert!(
        gap(0) >= chrono::Duration::milliseconds(270),
        "first retry after {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= chrono::Duration::milliseconds(540),
        "second retry after {:?}",
        gap(1)
    );

    // `--exit-when-idle` does not wait for jobs scheduled later; a node that stays up runs
    // the job once its time has come, and not before.
    assert_eq!(sluice.job(later)["state"], "scheduled");
    let mut node = sluice.spawn_run(&["--maintenance-interval", "100ms"]);
    sluice.wait_until(Duration::from_secs(20), "the scheduled job", |s| {
        s.job(later)["state"] == "completed"
    });
    node.kill().unwrap();
    node.wait().unwrap();
    let later = sluice.job(later);
    assert_eq!(later["state"], "completed");
    let started = time(&later["attempts"][0]["started_at"]);
    assert!(
        started >= enqueued_at + chrono::Duration::seconds(3),
        "ran at {started}, enqueued {enqueued_at}"
    );

    sluice.ok(&["queue", "pause", "default"]);
    let queues = sluice.json(&["queues"]);
    assert_eq!(queues[0]["paused"], true);
    assert_eq!(queues[0]["counts"]["completed"], 12);
    assert_eq!(queues[0]["counts"]["discarded"], 1);
}

/// The same component with a custom section appended: same behaviour, different bytes.
fn second_version_of_hello() -> std::path::PathBuf {
    let mut wasm = std::fs::read(guests::HELLO).unwrap();
    let name = b"sluice-test-version";
    let payload = b"2";
    wasm.push(0); // custom section
    wasm.push((1 + name.len() + payload.len()) as u8);
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(payload);
    let path = temp_dir("hello-v2").join("hello.wasm");
    std::fs::write(&path, wasm).unwrap();
    path
}

fn a_new_version_is_used_by_the_next_attempts(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let mut node = sluice.spawn_run(&["--maintenance-interval", "100ms"]);
    let before = sluice.enqueue(&["hello", "greet", r#"{"name":"v1"}"#]);
    sluice.wait_until(Duration::from_secs(20), "the first job", |s| {
        s.job(before)["state"] == "completed"
    });

    let v2 = second_version_of_hello();
    let upload = sluice.json(&["upload", v2.to_str().unwrap()]);
    assert_eq!(upload["version"], 2);
    // Scheduled past the node's one-second cache of the latest version.
    let after = sluice.enqueue(&["hello", "greet", r#"{"name":"v2"}"#, "--in", "1500ms"]);
    sluice.wait_until(Duration::from_secs(20), "the second job", |s| {
        s.job(after)["state"] == "completed"
    });
    node.kill().unwrap();
    node.wait().unwrap();

    assert_eq!(sluice.job(before)["attempts"][0]["module_version"], 1);
    let after = sluice.job(after);
    assert_eq!(after["attempts"][0]["module_version"], 2);
    assert_eq!(after["output"], "Hello, v2!");
}

fn kill_9_with_attempts_in_flight_loses_nothing(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let ids: Vec<i64> = (0..12)
        .map(|_| sluice.enqueue(&["hello", "sleep", r#"{"ms":1500}"#]))
        .collect();
    let mut doomed = sluice.spawn_run(&[
        "--queue",
        "default=4",
        "--lease",
        "1s",
        "--maintenance-interval",
        "100ms",
    ]);
    sluice.wait_until(Duration::from_secs(20), "attempts in flight", |s| {
        s.count("running") > 0
    });
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    let in_flight = sluice.count("running");
    assert!(in_flight > 0);

    let rescuer = sluice.output(&[
        "run",
        "--exit-when-idle",
        "--lease",
        "1s",
        "--maintenance-interval",
        "100ms",
    ]);
    assert!(
        rescuer.status.success(),
        "{}",
        String::from_utf8_lossy(&rescuer.stderr)
    );
    let mut rescued = 0;
    for id in ids {
        let job = sluice.job(id);
        assert_eq!(job["state"], "completed", "job {id}: {job}");
        let outcomes: Vec<&str> = job["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        match outcomes.as_slice() {
            ["completed"] => {}
            ["lease_expired", "completed"] => rescued += 1,
            other => panic!("job {id} has attempts {other:?}"),
        }
    }
    assert_eq!(
        rescued, in_flight,
        "exactly the jobs in flight on the killed node ran twice"
    );
}

fn sigterm_finishes_or_hands_back_running_attempts(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    let short = sluice.enqueue(&["hello", "sleep", r#"{"ms":400}"#]);
    let long = sluice.enqueue(&["hello", "sleep", r#"{"ms":60000}"#, "--timeout", "120s"]);
    let node = sluice.spawn_run(&["--grace", "1500ms"]);
    sluice.wait_until(Duration::from_secs(20), "both attempts running", |s| {
        s.count("running") == 2
    });
    let pid = node.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = node.wait_with_output().unwrap();
    assert!(exit.status.success(), "the node did not shut down cleanly");

    assert_eq!(
        sluice.job(short)["state"],
        "completed",
        "finished within the grace period"
    );
    let long = sluice.job(long);
    assert_eq!(long["state"], "available", "handed back: {long}");
    assert_eq!(long["attempt"], 0, "a handed-back attempt does not count");
}

fn bad_input_is_refused_and_nothing_is_stored(sluice: Sluice) {
    let not_wasm = temp_dir("bad").join("notes.wasm");
    std::fs::write(&not_wasm, b"these are not the bytes you are looking for").unwrap();
    assert!(
        sluice
            .fails(&["upload", not_wasm.to_str().unwrap()])
            .contains("not WebAssembly")
    );
    let empty = temp_dir("bad").join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        sluice
            .fails(&["upload", empty.to_str().unwrap()])
            .contains("empty")
    );
    let core = temp_dir("bad").join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert!(
        sluice
            .fails(&["upload", core.to_str().unwrap()])
            .contains("core WebAssembly module, not a component")
    );
    assert!(
        sluice
            .fails(&["upload", guests::WRONG_WORLD])
            .contains("does not implement the Sluice job world")
    );
    assert!(
        sluice
            .fails(&["upload", "/nonexistent.wasm"])
            .contains("cannot read /nonexistent.wasm")
    );
    assert_eq!(sluice.json(&["modules"]), serde_json::json!([]));

    sluice.ok(&["upload", guests::HELLO]);
    assert!(
        sluice
            .fails(&["enqueue", "nope", "greet"])
            .contains("no module named `nope`")
    );
    assert!(
        sluice
            .fails(&["enqueue", "hello", "nope"])
            .contains("exports no function `nope`")
    );
    assert!(
        sluice
            .fails(&["enqueue", "hello", "greet", "{not json"])
            .contains("not valid JSON")
    );
    // Too large for a command-line argument: bulk enqueue reads it from a file.
    let huge = temp_dir("bad").join("huge.jsonl");
    let line = format!(
        "{{\"name\":\"{}\"}}",
        "x".repeat(sluice::store::DEFAULT_MAX_ARGS_BYTES)
    );
    std::fs::write(&huge, format!("{{\"name\":\"small\"}}\n{line}\n")).unwrap();
    let error = sluice.fails(&[
        "enqueue",
        "hello",
        "greet",
        "--batch",
        huge.to_str().unwrap(),
    ]);
    assert!(error.contains("the limit is 1048576 bytes"), "{error}");
    for (flags, message) in [
        (&["--timeout", "0s"][..], "--timeout must be longer than 0s"),
        (
            &["--timeout", "1000d"],
            "--timeout must be longer than 0s and at most 24h",
        ),
        (&["--fuel", "0"], "--fuel must be at least 1"),
        (
            &["--memory", "100"],
            "--memory must be at least 65536 bytes",
        ),
    ] {
        let mut args = vec!["enqueue", "hello", "greet", r#"{"name":"x"}"#];
        args.extend_from_slice(flags);
        let error = sluice.fails(&args);
        assert!(error.contains(message), "{flags:?}: {error}");
    }
    assert_eq!(sluice.json(&["jobs"]), serde_json::json!([]));

    // Settings no node could run with are refused at start, naming the flag, never a panic.
    for (flags, message) in [
        (
            &["--maintenance-interval", "0s"][..],
            "--maintenance-interval must be longer than 0s",
        ),
        (&["--poll", "0s"], "--poll must be longer than 0s"),
        (
            &["--backoff-base", "0s"],
            "--backoff-base must be longer than 0s",
        ),
        (
            &["--backoff-base", "2h", "--backoff-max", "1h"],
            "must not be shorter than --backoff-base",
        ),
        (
            &["--queue", "default=0"],
            "needs a concurrency of at least 1",
        ),
        (
            &["--queue", "default=5000"],
            "the queues' concurrency adds up to 5000",
        ),
        (&["--lease", "1ms"], "the lease must be at least 300ms"),
    ] {
        let mut args = vec!["run", "--exit-when-idle"];
        args.extend_from_slice(flags);
        let error = sluice.fails(&args);
        assert!(error.contains(message), "{flags:?}: {error}");
        assert!(!error.contains("panicked"), "{flags:?}: {error}");
    }

    // Native code is never loaded from a directory other users could write to.
    let open = temp_dir("open-cache");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let error = sluice.fails(&[
        "run",
        "--exit-when-idle",
        "--cache-dir",
        open.to_str().unwrap(),
    ]);
    assert!(error.contains("writable by other users"), "{error}");

    // A module over the size cap is refused before it is read whole.
    let error = sluice.fails(&["upload", guests::HELLO, "--max-module-size", "1000"]);
    assert!(
        error.contains("more than the 1000 bytes a module may have"),
        "{error}"
    );

    // Args that are JSON but do not fit the function are accepted, and fail at run time
    // without retries: retrying cannot fix them.
    let misfit = sluice.enqueue(&["hello", "greet", r#"{"nom":"Ada"}"#]);
    sluice.ok(&["run", "--exit-when-idle"]);
    let job = sluice.job(misfit);
    assert_eq!(
        (job["state"].as_str(), job["attempt"].as_i64()),
        (Some("discarded"), Some(1))
    );
    assert_eq!(job["attempts"][0]["outcome"], "bad_args");
    assert!(
        job["attempts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `name`")
    );
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--database-url", url, "jobs"])
            .output()
            .unwrap()
    };
    let output = run("mysql://localhost/x");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported database URL"));
    let output = run("postgres://nobody:secret@127.0.0.1:1/x");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the database is unavailable"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_enqueue_drain_and_latency() {
    let sluice = Sluice::sqlite().await;
    let args = [
        "bench",
        "--jobs",
        "300",
        "--samples",
        "5",
        "--module",
        guests::HELLO,
    ];
    let report = sluice.json(&args);
    assert_eq!(report["store"], "sqlite");
    for measure in ["enqueue", "drain"] {
        assert_eq!(report[measure]["jobs"], 300);
        assert!(
            report[measure]["jobs_per_second"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    let latency = &report["latency_ms"];
    assert_eq!(latency["samples"], 5);
    let p50 = latency["p50"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && p50 <= latency["max"].as_f64().unwrap(),
        "{report}"
    );
    // The benchmark's own jobs all completed, on a queue of their own.
    let queues = sluice.json(&["queues"]);
    assert_eq!(queues[0]["counts"]["completed"], 305);
    assert!(queues[0]["name"].as_str().unwrap().starts_with("bench-"));
}

/// `sluice.toml`, then `SLUICE_*` variables, then flags: each over the one before, each value
/// reported with where it came from, and a bad file refused with its path, key and reason
/// before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_layer_file_env_and_flags() {
    let sluice = Sluice::sqlite().await;
    let file = temp_dir("settings").join("sluice.toml");
    std::fs::write(
        &file,
        "[jobs]\nmax_attempts = 7\n\n[node]\nlease = \"12s\"\n\n[queues]\nmail = 3\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let setting = |explained: &serde_json::Value, key: &str| {
        explained
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no setting {key} in {explained}"))
    };

    let explained = sluice.json(&["--config", config, "config"]);
    let attempts = setting(&explained, "jobs.max_attempts");
    assert_eq!(attempts["value"], 7);
    assert_eq!(attempts["source"], format!("file {config}"));
    assert_eq!(setting(&explained, "node.lease")["value"], "12s");
    assert_eq!(setting(&explained, "node.grace")["source"], "default");
    assert_eq!(
        setting(&explained, "database_url")["source"],
        "env SLUICE_DATABASE_URL"
    );
    // The file's queues replace the default queue.
    assert_eq!(setting(&explained, "queues.mail")["value"], 3);
    assert!(!explained.to_string().contains("queues.default"));

    let output = sluice
        .command(&["--config", config, "config", "--json"])
        .env("SLUICE_JOBS__MAX_ATTEMPTS", "5")
        .output()
        .unwrap();
    let explained: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let attempts = setting(&explained, "jobs.max_attempts");
    assert_eq!(attempts["value"], 5);
    assert_eq!(attempts["source"], "env SLUICE_JOBS__MAX_ATTEMPTS");

    // What the settings say is what a command does; a flag wins.
    sluice.ok(&["upload", guests::HELLO]);
    let from_file = sluice.enqueue(&["--config", config, "hello", "noop"]);
    assert_eq!(sluice.job(from_file)["max_attempts"], 7);
    let from_flag = sluice.enqueue(&["--config", config, "hello", "noop", "--max-attempts", "2"]);
    assert_eq!(sluice.job(from_flag)["max_attempts"], 2);

    // Refused with the file, the key and the reason; nothing stored.
    let stored = sluice.count("available");
    for (text, key, reason) in [
        ("[node]\nleese = \"1s\"\n", "node.leese", "unknown field"),
        (
            "[node]\nlease = \"soon\"\n",
            "node.lease",
            "expected a duration",
        ),
        ("[queues]\nmail = 0\n", "queues.mail", "at least 1"),
        (
            "[jobs]\nmax_attempts = \"x\"\n",
            "jobs.max_attempts",
            "expected i32",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let error = sluice.fails(&["--config", config, "enqueue", "hello", "noop"]);
        assert!(error.contains(key), "{error}");
        assert!(error.contains(reason), "{error}");
    }
    let error = sluice.fails(&["--config", "/nonexistent/sluice.toml", "jobs"]);
    assert!(
        error.contains("/nonexistent/sluice.toml does not exist"),
        "{error}"
    );
    assert_eq!(sluice.count("available"), stored);
}

fn queue_limits_from_flags_and_the_config_file(sluice: Sluice) {
    sluice.ok(&["upload", guests::HELLO]);
    sluice.ok(&[
        "enqueue",
        "hello",
        "greet",
        r#"{"name":"Ada"}"#,
        "--queue",
        "mail",
    ]);
    let set = sluice.json(&[
        "queue",
        "limits",
        "mail",
        "--global",
        "8",
        "--rate",
        "50/1s",
        "--burst",
        "5",
        "--partition-by",
        "args.name",
        "--partition-concurrency",
        "1",
    ]);
    assert_eq!(
        set["limits"],
        serde_json::json!({
            "global_concurrency": 8,
            "rate": {"starts": 50, "period_ms": 1000, "burst": 5},
            "partition": {"by": "args.name", "concurrency": 1}
        })
    );
    let table = sluice.ok(&["queues"]);
    assert!(
        table.contains("global 8, rate 50/1s+5, by args.name: 1 at once"),
        "{table}"
    );
    // The job waiting when the queue gained partitions has its key.
    let jobs = sluice.json(&["jobs", "--queue", "mail"]);
    assert_eq!(jobs[0]["partition_key"], "Ada", "{jobs}");

    // Refused in words, and the stored limits stay.
    for (args, words) in [
        (vec!["--rate", "50"], "is not a rate"),
        (vec!["--rate", "0/1s"], "1 to 1000000 starts"),
        (vec!["--partition-by", "colour"], "args.FIELD"),
        (vec!["--global", "0"], "1 to 1000000"),
    ] {
        let mut full = vec!["queue", "limits", "mail"];
        full.extend(args);
        let error = sluice.fails(&full);
        assert!(error.contains(words), "{full:?}: {error}");
    }
    let queues = sluice.json(&["queues"]);
    let mail = |queues: &serde_json::Value| {
        queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "mail")
            .unwrap()["limits"]
            .clone()
    };
    assert_eq!(mail(&queues)["global_concurrency"], 8);

    // The config file's limits replace them with `config apply`; no flag lifts them.
    let file = temp_dir("limits-config").join("sluice.toml");
    std::fs::write(
        &file,
        "[limits.mail]\nglobal_concurrency = 3\nrate = { starts = 10, period_ms = 60000 }\n\
         [autoscale.mail]\nmin = 1\nmax = 4\n\
         [breakers.\"hello.greet\"]\nmin_calls = 7\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    sluice.ok(&["--config", config, "config", "apply"]);
    assert_eq!(
        mail(&sluice.json(&["queues"])),
        serde_json::json!({
            "global_concurrency": 3,
            "rate": {"starts": 10, "period_ms": 60000, "burst": 0}
        })
    );
    let breakers = sluice.json(&["breaker", "list"]);
    assert_eq!(breakers[0]["function"], "greet", "{breakers}");
    assert_eq!(breakers[0]["policy"]["min_calls"], 7, "{breakers}");
    let queues = sluice.json(&["queues"]);
    assert_eq!(queues[0]["autoscale"]["max"], 4, "{queues}");
    sluice.ok(&["queue", "autoscale", "mail", "--off"]);
    sluice.ok(&["queue", "limits", "mail"]);
    assert!(mail(&sluice.json(&["queues"])).is_null());

    // Autoscaling is set apart from the limits, shown, refused in words, and stopped.
    sluice.ok(&["queue", "autoscale", "mail", "--min", "2", "--max", "8"]);
    assert!(sluice.ok(&["queues"]).contains("auto 2..8"));
    let error = sluice.fails(&["queue", "autoscale", "mail", "--min", "5", "--max", "2"]);
    assert!(error.contains("1 <= min <= max"), "{error}");
    let queues = sluice.json(&["queues"]);
    let autoscale = &queues.as_array().unwrap()[0]["autoscale"];
    assert_eq!(
        (autoscale["min"].as_u64(), autoscale["max"].as_u64()),
        (Some(2), Some(8))
    );
    sluice.ok(&["queue", "autoscale", "mail", "--off"]);
    assert!(sluice.json(&["queues"])[0]["autoscale"].is_null());
}

fn retention_is_stored_seeded_set_and_applied(sluice: Sluice) {
    assert!(
        sluice
            .ok(&["retention"])
            .contains("no retention stored yet")
    );
    // The first node to start stores its own; a later node's differs and is warned about.
    sluice.ok(&["run", "--exit-when-idle", "--retention", "3d"]);
    let stored = sluice.json(&["retention"]);
    assert_eq!(
        stored,
        serde_json::json!({"completed_secs": 259_200, "discarded_secs": 259_200, "cancelled_secs": 259_200})
    );
    let output = sluice.output(&["run", "--exit-when-idle", "--retention", "1d"]);
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the store's retention wins"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sluice.json(&["retention"])["completed_secs"], 259_200);

    // Set one state; the others keep theirs. Out of range is refused in words.
    let set = sluice.json(&["retention", "set", "--discarded", "30d"]);
    assert_eq!(set["discarded_secs"], 2_592_000);
    assert_eq!(set["completed_secs"], 259_200);
    let error = sluice.fails(&["retention", "set", "--completed", "1s"]);
    assert!(error.contains("a minute to ten years"), "{error}");
    assert_eq!(sluice.json(&["retention"])["completed_secs"], 259_200);

    // `config apply` pushes the file's.
    let file = temp_dir("retention-config").join("sluice.toml");
    std::fs::write(
        &file,
        "[node]\nretention = \"2d\"\nretention_discarded = \"14d\"\n",
    )
    .unwrap();
    sluice.ok(&["--config", file.to_str().unwrap(), "config", "apply"]);
    assert_eq!(
        sluice.json(&["retention"]),
        serde_json::json!({"completed_secs": 172_800, "discarded_secs": 1_209_600, "cancelled_secs": 172_800})
    );
}
