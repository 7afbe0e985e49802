//! Sandbox benchmark: the cost of one attempt of a no-op job (fresh instance, call, teardown)
//! on one core, and a CPU-bound guest with fuel metering against the same Rust built natively.
//!
//! `cargo bench --bench sandbox`. Figures are printed, not asserted: machines are noisy, so
//! compare the ratio measured within one run.

use std::time::{Duration, Instant};

use sluice::model::{Codec, LimitOverrides};
use sluice::sandbox::{Sandbox, SandboxConfig};

#[path = "../jobs-wasm/hello/src/kernel.rs"]
mod kernel;

const WARMUP: usize = 2_000;
const ATTEMPTS: usize = 20_000;
const PRIME_LIMIT: u32 = 5_000_000;
const KERNEL_RUNS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    // With and without the host-crossing deadline check, alternating in the same run (the
    // first round also warms the pool), to show its cost.
    for watch_host_calls in [false, true, false, true] {
        let label = if watch_host_calls {
            "deadline checked at host crossings"
        } else {
            "no host-crossing check (round 1)"
        };
        println!("{label}:");
        bench_with(watch_host_calls).await;
    }
}

async fn bench_with(watch_host_calls: bool) {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
    let mut config = SandboxConfig::new(cache);
    config.watch_host_calls = watch_host_calls;
    let sandbox = Sandbox::new(config).unwrap();
    let wasm = std::fs::read(sluice_test_artifacts::HELLO).unwrap();
    let hello = sandbox.prepare(&wasm).await.unwrap();
    let defaults = LimitOverrides::default();

    for _ in 0..WARMUP {
        assert!(
            sandbox
                .run(&hello, "noop", b"null", Codec::Json, &defaults)
                .await
                .unwrap()
                .output()
                .is_some()
        );
    }
    let started = Instant::now();
    for _ in 0..ATTEMPTS {
        let report = sandbox
            .run(&hello, "noop", b"null", Codec::Json, &defaults)
            .await
            .unwrap();
        assert!(report.output().is_some());
    }
    let per_attempt = started.elapsed() / ATTEMPTS as u32;
    println!(
        "  attempt of hello.noop (fresh instance + call + teardown), one core: {:.1} µs mean over {ATTEMPTS}",
        per_attempt.as_secs_f64() * 1e6
    );

    let args = format!(r#"{{"limit":{PRIME_LIMIT}}}"#);
    let big = LimitOverrides {
        fuel: Some(u64::MAX / 2),
        memory_bytes: Some(256 << 20),
        timeout: Some(Duration::from_secs(120)),
    };
    let expected = kernel::count_primes(PRIME_LIMIT);
    let native = median(KERNEL_RUNS, || {
        let started = Instant::now();
        assert_eq!(
            std::hint::black_box(kernel::count_primes(std::hint::black_box(PRIME_LIMIT))),
            expected
        );
        started.elapsed()
    });
    let mut wasm_runs = Vec::new();
    let mut fuel = 0;
    for _ in 0..KERNEL_RUNS {
        let report = sandbox
            .run(&hello, "count_primes", args.as_bytes(), Codec::Json, &big)
            .await
            .unwrap();
        let output: u32 =
            serde_json::from_slice(report.output().expect("count_primes failed")).unwrap();
        assert_eq!(output, expected);
        fuel = report.fuel_consumed;
        wasm_runs.push(report.wall_time);
    }
    wasm_runs.sort();
    let wasm_median = wasm_runs[KERNEL_RUNS / 2];

    // A guest that spends its time in host calls: every crossing is checked.
    let hostile = std::fs::read(sluice_test_artifacts::HOSTILE).unwrap();
    let hostile = sandbox.prepare(&hostile).await.unwrap();
    let mut flood_runs = Vec::new();
    for _ in 0..5 {
        let report = sandbox
            .run(
                &hostile,
                "log_flood",
                br#"{"lines":20000}"#,
                Codec::Json,
                &big,
            )
            .await
            .unwrap();
        assert!(report.output().is_some(), "{:?}", report.failure());
        flood_runs.push(report.wall_time);
    }
    flood_runs.sort();
    println!(
        "  hostile.log_flood(20000 lines to log, stdout and stderr) median of 5: {:.1} ms",
        flood_runs[2].as_secs_f64() * 1e3
    );
    let wasm = wasm_median;
    println!(
        "  count_primes({PRIME_LIMIT}) median of {KERNEL_RUNS}: native {:.2} ms, wasm with fuel {:.2} ms ({fuel} fuel), ratio {:.2}x",
        native.as_secs_f64() * 1e3,
        wasm.as_secs_f64() * 1e3,
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}

fn median(runs: usize, mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| run()).collect();
    times.sort();
    times[runs / 2]
}
