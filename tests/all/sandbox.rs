//! The sandbox runs real components: outputs, logs and errors come back intact, every way a
//! guest can misbehave is classified, and a hostile guest fails only its own attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice::model::{AttemptReport, Codec, FailureKind, LimitOverrides, LogStream};
use sluice::sandbox::{Limits, ModuleError, PreparedModule, Sandbox, SandboxConfig};
use sluice_test_artifacts as guests;

use crate::support::{read_guest, sandbox, temp_dir};

async fn prepare(path: &str) -> Arc<PreparedModule> {
    sandbox().prepare(&read_guest(path)).await.unwrap()
}

async fn run_json(module: &PreparedModule, function: &str, args: &str) -> AttemptReport {
    run_with(module, function, args, LimitOverrides::default()).await
}

async fn run_with(
    module: &PreparedModule,
    function: &str,
    args: &str,
    overrides: LimitOverrides,
) -> AttemptReport {
    sandbox()
        .run(module, function, args.as_bytes(), Codec::Json, &overrides)
        .await
        .expect("the node has room for the attempt")
}

fn output_json(report: &AttemptReport) -> serde_json::Value {
    let output = report
        .output()
        .unwrap_or_else(|| panic!("attempt failed: {:?}", report.failure()));
    serde_json::from_slice(output).unwrap()
}

fn failure_kind(report: &AttemptReport) -> FailureKind {
    report
        .failure()
        .unwrap_or_else(|| panic!("attempt succeeded: {:?}", report.outcome))
        .kind
}

#[tokio::test]
async fn hello_greet_returns_output_and_logs() {
    let hello = prepare(guests::HELLO).await;
    let report = run_json(&hello, "greet", r#"{"name":"Ada"}"#).await;
    assert_eq!(output_json(&report), "Hello, Ada!");
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].stream, LogStream::Info);
    assert_eq!(report.logs[0].text, "greeting Ada");
    assert!(report.fuel_consumed > 0);
    assert!(report.peak_memory_bytes > 0);
}

#[tokio::test]
async fn hello_takes_postcard_args() {
    #[derive(Serialize)]
    struct Echo {
        text: String,
        times: u32,
    }
    let hello = prepare(guests::HELLO).await;
    let args = postcard::to_allocvec(&Echo {
        text: "binary ✓".into(),
        times: 3,
    })
    .unwrap();
    let report = sandbox()
        .run(
            &hello,
            "echo",
            &args,
            Codec::Postcard,
            &LimitOverrides::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        output_json(&report),
        serde_json::json!({"text": "binary ✓", "times": 3})
    );
}

#[tokio::test]
async fn hello_fail_bad_args_and_unknown_function_are_classified() {
    let hello = prepare(guests::HELLO).await;

    let report = run_json(&hello, "fail", "null").await;
    let failure = report.failure().unwrap();
    assert_eq!(failure.kind, FailureKind::GuestError);
    assert_eq!(failure.message, "this job always fails");

    let report = run_json(&hello, "greet", r#"{"nom":"Ada"}"#).await;
    assert_eq!(failure_kind(&report), FailureKind::BadArgs);
    assert!(
        report
            .failure()
            .unwrap()
            .message
            .contains("missing field `name`")
    );

    let report = run_json(&hello, "greet", "not json").await;
    assert_eq!(failure_kind(&report), FailureKind::BadArgs);

    let report = run_json(&hello, "no_such_job", "null").await;
    assert_eq!(failure_kind(&report), FailureKind::UnknownFunction);
    assert!(report.failure().unwrap().message.contains("no_such_job"));
}

#[tokio::test]
async fn hello_heavy_burns_fuel_and_sleep_does_not() {
    let hello = prepare(guests::HELLO).await;
    let heavy = run_json(&hello, "heavy", r#"{"ms":50}"#).await;
    assert!(output_json(&heavy)["rounds"].as_u64().unwrap() > 0);
    assert_eq!(output_json(&heavy)["primes"], 2262);
    assert!(heavy.wall_time >= Duration::from_millis(50));

    let sleep = run_json(&hello, "sleep", r#"{"ms":50}"#).await;
    assert_eq!(output_json(&sleep), 50);
    assert!(sleep.wall_time >= Duration::from_millis(50));
    assert!(
        sleep.fuel_consumed * 10 < heavy.fuel_consumed,
        "sleeping burned {} fuel, computing {}",
        sleep.fuel_consumed,
        heavy.fuel_consumed
    );
}

#[tokio::test]
async fn hello_noop_count_primes_and_crunch_run() {
    let hello = prepare(guests::HELLO).await;
    let one = run_json(&hello, "crunch", r#"{"rounds":1}"#).await;
    let three = run_json(&hello, "crunch", r#"{"rounds":3}"#).await;
    assert_eq!(output_json(&three), 2262, "the primes below 20,000");
    // Fixed work: three rounds burn about three times one round's fuel.
    let ratio = three.fuel_consumed as f64 / one.fuel_consumed as f64;
    assert!((2.5..3.5).contains(&ratio), "fuel ratio {ratio}");
    assert_eq!(
        output_json(&run_json(&hello, "noop", "null").await),
        serde_json::Value::Null
    );
    assert_eq!(
        output_json(&run_json(&hello, "count_primes", r#"{"limit":100}"#).await),
        25
    );
}

#[tokio::test]
async fn hello_sleeping_past_the_deadline_times_out() {
    let hello = prepare(guests::HELLO).await;
    let overrides = LimitOverrides {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let report = run_with(&hello, "sleep", r#"{"ms":60000}"#, overrides).await;
    assert_eq!(failure_kind(&report), FailureKind::Timeout);
    assert!(report.wall_time < Duration::from_secs(5));
}

#[tokio::test]
async fn hello_functions_are_listed_with_descriptions() {
    let functions = sandbox()
        .validate(&read_guest(guests::HELLO))
        .await
        .unwrap();
    let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "greet",
            "fail",
            "heavy",
            "sleep",
            "noop",
            "count_primes",
            "crunch",
            "echo"
        ]
    );
    assert_eq!(
        functions[0].description,
        r#"Returns "Hello, NAME!" for args {"name": NAME}."#
    );
}

/// What one hostile function must do to its attempt.
struct Hostile {
    function: &'static str,
    args: &'static str,
    overrides: LimitOverrides,
    /// The failure it must end in; `None` when it must complete.
    expect: Option<FailureKind>,
    check: fn(&AttemptReport),
}

/// The deadline of the cases that must be stopped by it, whatever they are doing.
const DEADLINE: Duration = Duration::from_secs(1);

/// A guest that loops until its deadline: it must end `timeout` within the deadline plus one
/// second (measured: a few milliseconds past it; the bound is the promise, not the figure).
fn until_the_deadline(function: &'static str, args: &'static str) -> Hostile {
    Hostile {
        function,
        args,
        overrides: LimitOverrides {
            fuel: Some(u64::MAX / 2),
            timeout: Some(DEADLINE),
            ..Default::default()
        },
        expect: Some(FailureKind::Timeout),
        check: |r| {
            assert!(r.wall_time >= DEADLINE, "ended early: {:?}", r.wall_time);
            assert!(
                r.wall_time < DEADLINE + Duration::from_secs(1),
                "ended {:?} past its deadline",
                r.wall_time - DEADLINE
            );
        },
    }
}

fn hostile_cases() -> Vec<Hostile> {
    let none = LimitOverrides::default();
    let short = LimitOverrides {
        timeout: Some(Duration::from_millis(300)),
        ..none
    };
    vec![
        Hostile {
            function: "hold_memory",
            args: r#"{"mb":8,"ms":1}"#,
            overrides: none,
            expect: None,
            check: |r| {
                assert_eq!(output_json(r), 8);
                assert!(
                    r.peak_memory_bytes >= 8 << 20,
                    "peak {}",
                    r.peak_memory_bytes
                );
            },
        },
        until_the_deadline("log_loop", r#"{"kib":256}"#),
        until_the_deadline("report_panic_loop", r#"{"kib":256}"#),
        until_the_deadline("stdout_loop", r#"{"kib":256}"#),
        until_the_deadline("clock_loop", "null"),
        until_the_deadline("random_loop", r#"{"kib":512}"#),
        until_the_deadline("poll_loop", "null"),
        until_the_deadline("sleep_forever", "null"),
        Hostile {
            function: "random_loop",
            args: r#"{"kib":4096}"#,
            overrides: none,
            expect: Some(FailureKind::ResourceLimit),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.contains("exceeds limit"), "{message}");
            },
        },
        Hostile {
            function: "exit",
            args: r#"{"status":0}"#,
            overrides: none,
            expect: Some(FailureKind::Exit),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.contains("a success status (0)"), "{message}");
            },
        },
        Hostile {
            function: "exit",
            args: r#"{"status":3}"#,
            overrides: none,
            expect: Some(FailureKind::Exit),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.contains("a failure status"), "{message}");
            },
        },
        Hostile {
            function: "handle_flood",
            args: "null",
            overrides: none,
            expect: Some(FailureKind::ResourceLimit),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.contains("10000 WASI handles"), "{message}");
            },
        },
        Hostile {
            function: "huge_error",
            args: r#"{"mb":16}"#,
            overrides: none,
            expect: Some(FailureKind::GuestError),
            check: |r| assert_capped(&r.failure().unwrap().message, 16 << 20),
        },
        Hostile {
            function: "huge_panic",
            args: r#"{"mb":16}"#,
            overrides: none,
            expect: Some(FailureKind::Panic),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.starts_with("ppp"), "{}", &message[..20]);
                assert!(message.len() < 10 << 10, "kept {} bytes", message.len());
                assert!(message.contains("[truncated: "), "no note of the cut");
            },
        },
        Hostile {
            function: "infinite_loop",
            args: "null",
            overrides: LimitOverrides {
                fuel: Some(20_000_000),
                ..none
            },
            expect: Some(FailureKind::OutOfFuel),
            check: |r| assert_eq!(r.fuel_consumed, 20_000_000),
        },
        Hostile {
            function: "infinite_loop",
            args: "null",
            overrides: LimitOverrides {
                fuel: Some(u64::MAX / 2),
                ..short
            },
            expect: Some(FailureKind::Timeout),
            check: |r| assert!(r.wall_time >= Duration::from_millis(300)),
        },
        Hostile {
            function: "allocate_forever",
            args: "null",
            overrides: LimitOverrides {
                memory_bytes: Some(32 << 20),
                ..none
            },
            expect: Some(FailureKind::MemoryLimit),
            check: |r| {
                assert!(
                    r.peak_memory_bytes <= 32 << 20,
                    "peak {}",
                    r.peak_memory_bytes
                )
            },
        },
        Hostile {
            function: "recurse_forever",
            args: "null",
            overrides: none,
            expect: Some(FailureKind::Trap),
            check: |r| {
                let failure = r.failure().unwrap();
                assert_eq!(failure.trap_code.as_deref(), Some("stack_overflow"));
                let backtrace = failure.backtrace.as_deref().unwrap();
                assert!(backtrace.contains("descend"), "{backtrace}");
            },
        },
        Hostile {
            function: "panic",
            args: "null",
            overrides: none,
            expect: Some(FailureKind::Panic),
            check: |r| {
                let failure = r.failure().unwrap();
                assert!(
                    failure
                        .message
                        .starts_with("the guest panicked on purpose (at "),
                    "{}",
                    failure.message
                );
                assert_eq!(
                    failure.trap_code.as_deref(),
                    Some("unreachable_code_reached")
                );
            },
        },
        Hostile {
            function: "unreachable",
            args: "null",
            overrides: none,
            expect: Some(FailureKind::Trap),
            check: |r| {
                let failure = r.failure().unwrap();
                assert_eq!(
                    failure.trap_code.as_deref(),
                    Some("unreachable_code_reached")
                );
                let backtrace = failure.backtrace.as_deref().unwrap();
                // The guest function is inlined into the export's adapter; the frame names it (the
                // hostile guest is built on the current SDK, sluice:job@0.2.0).
                assert!(
                    backtrace.contains("sluice:job/guest@0.2.0#run"),
                    "{backtrace}"
                );
            },
        },
        Hostile {
            function: "huge_output",
            args: r#"{"mb":300}"#,
            overrides: none,
            expect: Some(FailureKind::MemoryLimit),
            check: |_| {},
        },
        Hostile {
            function: "huge_output",
            args: r#"{"mb":4}"#,
            overrides: none,
            expect: Some(FailureKind::OutputTooLarge),
            check: |r| {
                assert!(
                    r.failure()
                        .unwrap()
                        .message
                        .contains("the limit is 1048576 bytes")
                )
            },
        },
        Hostile {
            function: "log_flood",
            args: r#"{"lines":20000}"#,
            overrides: none,
            expect: None,
            check: assert_log_flood_is_bounded,
        },
        Hostile {
            function: "read_file",
            args: r#"{"path":"/etc/passwd"}"#,
            overrides: none,
            expect: Some(FailureKind::GuestError),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.starts_with("cannot read /etc/passwd"), "{message}");
                assert!(!message.contains("root:"));
            },
        },
        Hostile {
            function: "read_env",
            args: r#"{"name":"PATH"}"#,
            overrides: none,
            expect: Some(FailureKind::GuestError),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(message.contains("(0 variables visible)"), "{message}");
            },
        },
        Hostile {
            function: "open_socket",
            args: r#"{"addr":"127.0.0.1:5432"}"#,
            overrides: none,
            expect: Some(FailureKind::GuestError),
            check: |r| {
                let message = &r.failure().unwrap().message;
                assert!(
                    message.starts_with("cannot connect to 127.0.0.1:5432"),
                    "{message}"
                );
            },
        },
    ]
}

#[tokio::test]
async fn every_hostile_function_fails_alone() {
    let hostile = prepare(guests::HOSTILE).await;
    let hello = prepare(guests::HELLO).await;
    let cases = hostile_cases();

    let exported = sandbox()
        .validate(&read_guest(guests::HOSTILE))
        .await
        .unwrap();
    for function in &exported {
        assert!(
            cases.iter().any(|case| case.function == function.name),
            "hostile::{} has no case in this test",
            function.name
        );
    }

    for case in cases {
        let report = run_with(&hostile, case.function, case.args, case.overrides).await;
        let kind = report.failure().map(|failure| failure.kind);
        assert_eq!(
            kind,
            case.expect,
            "{}: {:?}",
            case.function,
            report.failure()
        );
        println!(
            "hostile::{}({}): {} after {:?}",
            case.function,
            case.args,
            kind.map_or("completed", FailureKind::as_str),
            report.wall_time
        );
        (case.check)(&report);
        // The node is unharmed: the next attempt runs normally.
        let greeting = run_json(&hello, "greet", r#"{"name":"after"}"#).await;
        assert_eq!(
            output_json(&greeting),
            "Hello, after!",
            "after {}",
            case.function
        );
    }
}

/// A guest's message of `full` bytes is kept to a few KiB, with a note of its size.
fn assert_capped(message: &str, full: usize) {
    assert!(message.len() < 10 << 10, "kept {} bytes", message.len());
    assert!(
        message.ends_with(&format!("[truncated: {full} bytes in all]")),
        "{}",
        &message[message.len() - 60..]
    );
}

fn assert_log_flood_is_bounded(report: &AttemptReport) {
    assert_eq!(output_json(report), 20000);
    let kept: usize = report.logs.iter().map(|line| line.text.len()).sum();
    assert!(
        kept <= Limits::default().log_bytes,
        "kept {kept} bytes of logs"
    );
    assert!(
        report.logs_dropped_bytes > 1_000_000,
        "dropped {}",
        report.logs_dropped_bytes
    );
    for stream in [LogStream::Info, LogStream::Stdout, LogStream::Stderr] {
        assert!(
            report.logs.iter().any(|line| line.stream == stream),
            "no {stream:?} line kept"
        );
    }
    assert_eq!(report.logs[0].text, "log line 0 of a flood");
}

#[tokio::test]
async fn a_socket_attempt_never_reaches_a_listening_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let hostile = prepare(guests::HOSTILE).await;
    let args = format!(r#"{{"addr":"{addr}"}}"#);
    let report = run_json(&hostile, "open_socket", &args).await;
    assert_eq!(failure_kind(&report), FailureKind::GuestError);
    // connect() returns only after the handshake, so a connection would be queued by now.
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the guest reached the listener: {accepted:?}"
    );
}

/// On a single-threaded runtime, an infinite loop still cannot stop normal attempts: the
/// guest yields every `fuel_yield_interval` units of fuel. Prints how many normal attempts finished meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn an_infinite_loop_does_not_starve_concurrent_attempts() {
    let hostile = prepare(guests::HOSTILE).await;
    let hello = prepare(guests::HELLO).await;
    let budget = Duration::from_secs(2);
    let overrides = LimitOverrides {
        fuel: Some(u64::MAX / 2),
        timeout: Some(budget),
        ..Default::default()
    };
    let looping = tokio::spawn(async move {
        sandbox()
            .run(&hostile, "infinite_loop", b"null", Codec::Json, &overrides)
            .await
            .unwrap()
    });

    let started = Instant::now();
    let mut completed = 0;
    while !looping.is_finished() {
        let report = run_json(&hello, "greet", r#"{"name":"neighbour"}"#).await;
        assert_eq!(output_json(&report), "Hello, neighbour!");
        completed += 1;
        // A short attempt finishes before its first fuel yield; let the scheduler run.
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed();
    let report = looping.await.unwrap();
    assert_eq!(failure_kind(&report), FailureKind::Timeout);
    println!("{completed} normal attempts completed in {elapsed:?} beside an infinite loop");
    assert!(
        completed >= 20,
        "only {completed} normal attempts completed beside the loop"
    );
}

#[tokio::test]
async fn upload_rejects_files_that_are_not_components() {
    let sandbox = sandbox();
    assert!(matches!(
        sandbox.validate(b"").await,
        Err(ModuleError::Empty)
    ));
    assert!(matches!(
        sandbox.validate(b"hello world!").await,
        Err(ModuleError::NotWasm)
    ));
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let error = sandbox.validate(&core).await.unwrap_err();
    assert!(matches!(error, ModuleError::CoreModule));
    assert!(error.to_string().contains("wasm32-wasip2"));
    let mut truncated = read_guest(guests::HELLO);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        sandbox.validate(&truncated).await,
        Err(ModuleError::Invalid(_))
    ));
}

#[tokio::test]
async fn upload_rejects_a_component_of_another_world() {
    let error = sandbox()
        .validate(&read_guest(guests::WRONG_WORLD))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ModuleError::WrongWorld { .. }), "{message}");
    assert!(message.contains("wasi:cli/run@0.2"), "{message}");
    assert!(message.contains("sluice-guest-sdk"), "{message}");
}

#[tokio::test]
async fn upload_rejects_a_component_importing_what_sluice_does_not_provide() {
    let component = wat::parse_str(
        r#"(component
             (import "acme:payments/charge@1.0.0" (instance (export "charge" (func))))
           )"#,
    )
    .unwrap();
    let error = sandbox().validate(&component).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ModuleError::UnsupportedImport(_)),
        "{message}"
    );
    assert!(message.contains("acme:payments/charge@1.0.0"), "{message}");
}

#[tokio::test]
async fn compiled_modules_are_cached_on_disk_and_reloaded() {
    let dir = temp_dir("cache");
    let wasm = read_guest(guests::HELLO);
    let first = Sandbox::new(SandboxConfig::new(dir.clone())).unwrap();
    first.prepare(&wasm).await.unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(artifacts.len(), 1);
    let name = artifacts[0].file_name().into_string().unwrap();
    assert!(name.starts_with(&sluice::sandbox::digest_of(&wasm)) && name.ends_with(".cwasm"));

    // A fresh node process loads the artifact instead of compiling, and it still runs.
    let second = Sandbox::new(SandboxConfig::new(dir.clone())).unwrap();
    let module = second.prepare(&wasm).await.unwrap();
    let report = second
        .run(
            &module,
            "greet",
            br#"{"name":"cache"}"#,
            Codec::Json,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(output_json(&report), "Hello, cache!");

    // A corrupt artifact is ignored and recompiled, never trusted.
    std::fs::write(artifacts[0].path(), b"garbage").unwrap();
    let third = Sandbox::new(SandboxConfig::new(dir)).unwrap();
    let module = third.prepare(&wasm).await.unwrap();
    let report = third
        .run(&module, "noop", b"null", Codec::Json, &Default::default())
        .await
        .unwrap();
    assert!(report.output().is_some());
}

/// A component whose one core module takes seconds to compile: `functions` functions of a
/// few thousand instructions each. It is of no Sluice world, so it is refused after compiling.
fn compile_bomb(functions: usize) -> Vec<u8> {
    let body = " i64.const 3 i64.mul i64.const 7 i64.add".repeat(1000);
    let mut wat = String::from("(component (core module");
    for i in 0..functions {
        wat += &format!(" (func (export \"f{i}\") (param i64) (result i64) local.get 0{body})");
    }
    wat += "))";
    wat::parse_str(&wat).unwrap()
}

/// Compiling runs off the async workers: on a single-threaded runtime, attempts go on while
/// a module compiles for seconds (were the compile on the runtime's thread, none would run).
#[tokio::test(flavor = "current_thread")]
async fn attempts_go_on_while_a_huge_module_compiles() {
    let hello = prepare(guests::HELLO).await;
    let bomb = compile_bomb(400);
    let fresh = Sandbox::new(SandboxConfig::new(temp_dir("bomb-cache"))).unwrap();
    let started = Instant::now();
    let compiling = tokio::spawn(async move { fresh.validate(&bomb).await });
    let mut ran = 0;
    while !compiling.is_finished() {
        let report = run_json(&hello, "greet", r#"{"name":"beside"}"#).await;
        assert_eq!(output_json(&report), "Hello, beside!");
        ran += 1;
        tokio::task::yield_now().await;
    }
    let compiled_in = started.elapsed();
    let refused = compiling.await.unwrap().unwrap_err();
    assert!(
        matches!(refused, ModuleError::WrongWorld { .. }),
        "{refused}"
    );
    println!("{ran} attempts ran while a module compiled for {compiled_in:?}");
    assert!(
        ran >= 3,
        "only {ran} attempts ran during a {compiled_in:?} compile"
    );
}

/// A real module listing 1,001 functions is refused at upload, naming the cap.
#[tokio::test]
async fn upload_refuses_a_catalogue_over_the_cap() {
    let error = sandbox()
        .validate(&read_guest(guests::CATALOGUE_BOMB))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ModuleError::Catalogue(_)), "{message}");
    assert!(
        message.contains("the module lists 1001 job functions; a module may export at most 1000"),
        "{message}"
    );
}

/// A catalogue no job could call by name is refused at upload, never cut.
#[tokio::test]
async fn a_catalogue_with_unusable_names_is_refused() {
    let long = "f".repeat(sluice::sandbox::MAX_FUNCTION_NAME_BYTES + 1);
    for (names, message) in [
        (vec![long.as_str()], "must be 1 to 128 bytes"),
        (vec!["a b"], "contains whitespace or control characters"),
        (vec!["twice", "twice"], "is listed twice"),
    ] {
        let functions: Vec<sluice::model::JobFunction> = names
            .iter()
            .map(|name| sluice::model::JobFunction {
                name: name.to_string(),
                description: String::new(),
            })
            .collect();
        let error = sluice::sandbox::check_catalogue(&functions).unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
    }
    let many: Vec<sluice::model::JobFunction> = (0..=sluice::sandbox::MAX_FUNCTIONS)
        .map(|i| sluice::model::JobFunction {
            name: format!("f{i}"),
            description: String::new(),
        })
        .collect();
    let error = sluice::sandbox::check_catalogue(&many).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a module may export at most 1000"),
        "{error}"
    );
}

/// Native code is loaded only from a directory of this user's that nobody else can write.
#[tokio::test]
async fn a_cache_directory_others_could_write_or_own_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let open = temp_dir("open-cache");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = Sandbox::new(SandboxConfig::new(open)).err().unwrap();
    assert!(
        error.to_string().contains("writable by other users"),
        "{error}"
    );

    // Owned by someone else (this machine kind runs the tests as root, which may give it away).
    let theirs = temp_dir("their-cache");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let error = Sandbox::new(SandboxConfig::new(theirs)).err().unwrap();
    assert!(
        error.to_string().contains("belongs to user 65534"),
        "{error}"
    );
}

/// No instance slot free is the node's fault, not the job's: the attempt does not start.
#[tokio::test]
async fn a_full_instance_pool_is_a_node_fault() {
    let mut config = SandboxConfig::new(crate::support::shared_cache_dir());
    config.max_instances = 1;
    let small = Sandbox::new(config).unwrap();
    let hello = small.prepare(&read_guest(guests::HELLO)).await.unwrap();
    let (sleeping, started) = tokio::sync::oneshot::channel();
    let holder = {
        let (small, hello) = (small.clone(), hello.clone());
        tokio::spawn(async move {
            small
                .run_observed(
                    &hello,
                    "sleep",
                    br#"{"ms":2000}"#,
                    Codec::Json,
                    &Default::default(),
                    None,
                    |_| {
                        let _ = sleeping.send(());
                    },
                )
                .await
        })
    };
    started.await.unwrap();
    // The one slot is taken (the sleeper instantiates right after its start signal).
    let mut fault = None;
    for _ in 0..200 {
        match small
            .run(&hello, "noop", b"null", Codec::Json, &Default::default())
            .await
        {
            Err(node_fault) => {
                fault = Some(node_fault);
                break;
            }
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    let fault = fault.expect("a second attempt found a slot in a pool of one");
    assert!(
        fault.to_string().contains("no instance slot free"),
        "{fault}"
    );
    holder.abort();
}
