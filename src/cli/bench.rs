//! `sluice bench`: bulk enqueue rate, drain throughput and enqueue-to-start latency, measured
//! on the store that `--database-url` names, with the `hello` module's no-op job; with
//! `--beside hostile`, the drain rate the no-op stream keeps beside misbehaving guests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use sluice::config::{EngineConfig, QueueConfig};
use sluice::engine::Metrics;
use sluice::model::{JobState, NewJob};
use sluice::store::ModuleUpload;

use super::Context;

/// The module name the benchmark uploads `hello` under, apart from the user's modules.
const MODULE: &str = "sluice_bench_hello";
/// Jobs per bulk insert call.
const ENQUEUE_BATCH: usize = 10_000;
/// Batches inserted at once.
const ENQUEUE_IN_FLIGHT: usize = 2;

#[derive(clap::Args)]
pub struct Args {
    /// Jobs to enqueue in bulk and then drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Attempts the draining node runs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Single jobs timed from enqueue to start, one at a time on an idle node.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The `hello` module, built with `cargo build --release --target wasm32-wasip2
    /// --manifest-path jobs-wasm/Cargo.toml -p hello`.
    #[arg(
        long,
        default_value = "jobs-wasm/target/wasm32-wasip2/release/hello.wasm"
    )]
    module: PathBuf,
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Instead of the three measures, compare the drain alone with the drain beside one job of
    /// each misbehaving kind, in alternating rounds.
    #[arg(long, value_enum)]
    beside: Option<Beside>,
    /// Rounds of each side when comparing; the best of each side is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The `hostile` test module (built beside `hello`), for `--beside hostile`.
    #[arg(
        long,
        default_value = "jobs-wasm/target/wasm32-wasip2/release/hostile.wasm"
    )]
    hostile_module: PathBuf,
}

/// What the no-op stream runs beside.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Beside {
    /// One job of each misbehaving kind (`jobs-wasm/hostile`), enqueued ahead of the stream.
    Hostile,
}

/// The module name the hostile guests are uploaded under.
const HOSTILE_MODULE: &str = "sluice_bench_hostile";

/// One call of each way a guest can misbehave, as `--beside hostile` enqueues them: function
/// and JSON args. Each runs under a 10 s deadline, so a round ends soon after the stream.
const HOSTILE_JOBS: &[(&str, &str)] = &[
    ("infinite_loop", "null"),
    ("allocate_forever", "null"),
    ("recurse_forever", "null"),
    ("panic", "null"),
    ("unreachable", "null"),
    ("huge_output", r#"{"mb":4}"#),
    ("huge_output", r#"{"mb":300}"#),
    ("log_flood", r#"{"lines":20000}"#),
    ("log_loop", r#"{"kib":256}"#),
    ("stdout_loop", r#"{"kib":256}"#),
    ("random_loop", r#"{"kib":512}"#),
    ("poll_loop", "null"),
    ("sleep_forever", "null"),
    ("exit", r#"{"status":3}"#),
    ("handle_flood", "null"),
    ("huge_error", r#"{"mb":16}"#),
    ("read_file", r#"{"path":"/etc/passwd"}"#),
    ("read_env", r#"{"name":"PATH"}"#),
    ("open_socket", r#"{"addr":"127.0.0.1:5432"}"#),
];

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    if args.jobs == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--jobs, --concurrency and --rounds must be at least 1");
    }
    let sandbox = sluice::app::App::sandbox_for_node(
        args.cache_dir.clone(),
        &node_config("bench", args.concurrency),
        None,
    )?;
    upload(context, &sandbox, &args.module, MODULE, "hello").await?;
    // A queue of its own, so the figures count only the benchmark's jobs.
    let queue = format!("bench-{:08x}", fastrand::u32(..));
    let noop = || {
        let mut job = NewJob::json(MODULE, "noop", &serde_json::Value::Null);
        job.queue = queue.clone();
        job
    };
    if let Some(Beside::Hostile) = args.beside {
        let path = &args.hostile_module;
        upload(context, &sandbox, path, HOSTILE_MODULE, "hostile").await?;
        return compare_beside_hostile(context, &sandbox, &args, &queue, &noop).await;
    }

    // 1. Bulk enqueue.
    let enqueue = enqueue_noops(context, args.jobs, &noop).await?;

    // 2. Drain by one node.
    let metrics = drain(
        context,
        &sandbox,
        &queue,
        args.concurrency,
        args.jobs as u64,
    )
    .await?;
    let completed = metrics.count(sluice::model::AttemptClass::Completed);
    if completed != args.jobs as u64 {
        bail!(
            "the drain completed {completed} of {} jobs: {:?}",
            args.jobs,
            metrics.snapshot()
        );
    }
    let drain = metrics.busy_span().context("the drain wrote no outcome")?;

    // 3. Enqueue-to-start latency on an idle node.
    let latencies = measure_latency(
        context,
        &sandbox,
        &queue,
        args.concurrency,
        args.samples,
        &noop,
    )
    .await?;

    report(context, &args, enqueue, drain, &latencies);
    Ok(())
}

/// Validates and stores the module at `path` as `name` (identical bytes are not stored twice).
async fn upload(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    path: &std::path::Path,
    name: &str,
    package: &str,
) -> anyhow::Result<()> {
    let wasm = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}; build it first with `cargo build --release --target wasm32-wasip2 --manifest-path jobs-wasm/Cargo.toml -p {package}`",
            path.display()
        )
    })?;
    let functions = sandbox.validate(&wasm).await?;
    let digest = sluice::sandbox::digest_of(&wasm);
    let upload = ModuleUpload {
        name: name.into(),
        digest,
        wasm,
        functions,
    };
    context.app.store.module_upload(upload).await?;
    Ok(())
}

/// Inserts `count` no-op jobs in bulk; returns how long it took.
async fn enqueue_noops(
    context: &Context,
    count: usize,
    noop: &dyn Fn() -> NewJob,
) -> anyhow::Result<Duration> {
    let store = &context.app.store;
    let bar = progress(count as u64, "enqueue");
    let started = Instant::now();
    // Two batches in flight: one is built and sent while the database stores the other.
    let batches = (0..count)
        .step_by(ENQUEUE_BATCH)
        .map(|start| (count - start).min(ENQUEUE_BATCH));
    let mut inserts = futures::stream::iter(batches)
        .map(|batch| {
            let jobs: Vec<NewJob> = (0..batch).map(|_| noop()).collect();
            let store = store.clone();
            async move { store.job_insert_many(jobs).await.map(|_| batch) }
        })
        .buffer_unordered(ENQUEUE_IN_FLIGHT);
    while let Some(inserted) = inserts.next().await {
        bar.inc(inserted? as u64);
    }
    bar.finish_and_clear();
    Ok(started.elapsed())
}

/// Runs one node on `queue` until it is idle; returns its counters.
async fn drain(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    queue: &str,
    concurrency: u32,
    expected: u64,
) -> anyhow::Result<Arc<Metrics>> {
    let metrics = Arc::new(Metrics::default());
    let bar = progress(expected, "drain");
    let ticker = {
        let (metrics, bar) = (metrics.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(metrics.total());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut config = node_config(queue, concurrency);
    config.exit_when_idle = true;
    let drained = context
        .app
        .run_node(
            sandbox.clone(),
            config,
            metrics.clone(),
            std::future::pending(),
        )
        .await;
    ticker.abort();
    bar.finish_and_clear();
    drained?;
    Ok(metrics)
}

/// Alternates rounds of the no-op stream alone and beside one of each hostile job (enqueued
/// ahead of it, in the same queue); each round's rate is the stream's jobs over the span from
/// its first start to its last finish, as the store recorded them. Keeps each side's best,
/// since the machine is shared and one slow round says little.
async fn compare_beside_hostile(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    args: &Args,
    queue: &str,
    noop: &dyn Fn() -> NewJob,
) -> anyhow::Result<()> {
    let store = &context.app.store;
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for attack in [false, true] {
            if attack {
                for (function, json) in HOSTILE_JOBS {
                    let args: serde_json::Value = serde_json::from_str(json)?;
                    let mut job = NewJob::json(HOSTILE_MODULE, function, &args);
                    job.queue = queue.to_string();
                    job.max_attempts = 1;
                    job.limits.timeout = Some(Duration::from_secs(10));
                    store.job_insert(job).await?;
                }
            }
            enqueue_noops(context, args.jobs, noop).await?;
            let expected = args.jobs as u64 + if attack { HOSTILE_JOBS.len() as u64 } else { 0 };
            drain(context, sandbox, queue, args.concurrency, expected).await?;
            let rate = stream_rate(context, queue, args.jobs).await?;
            if attack { &mut beside } else { &mut alone }.push(rate);
        }
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let ratio = best(&beside) / best(&alone);
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if context.json {
        super::print_json(&serde_json::json!({
            "jobs": args.jobs,
            "concurrency": args.concurrency,
            "hostile_jobs": HOSTILE_JOBS.len(),
            "alone_jobs_per_second": alone,
            "beside_hostile_jobs_per_second": beside,
            "ratio_of_best": ratio,
        }));
        return Ok(());
    }
    let rows = vec![
        vec![
            "no-op stream alone".into(),
            format!("{} jobs, {} rounds", args.jobs, args.rounds),
            format!("{} jobs/s", list(&alone)),
        ],
        vec![
            format!("beside {} hostile jobs", HOSTILE_JOBS.len()),
            format!("{} jobs, {} rounds", args.jobs, args.rounds),
            format!("{} jobs/s", list(&beside)),
        ],
        vec![
            "ratio of the best rounds".into(),
            "goal: at least 0.80".into(),
            format!("{ratio:.2}"),
        ],
    ];
    super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
    Ok(())
}

/// The latest `count` no-op jobs of `queue`: how many completed per second between the first
/// attempt's start and the last one's finish.
async fn stream_rate(context: &Context, queue: &str, count: usize) -> anyhow::Result<f64> {
    let jobs = context
        .app
        .store
        .job_list(sluice::store::JobList {
            state: None,
            queue: Some(queue.to_string()),
            module: Some(MODULE.to_string()),
            limit: count as u32,
            before_id: None,
        })
        .await?;
    if jobs.len() != count || jobs.iter().any(|job| job.state != JobState::Completed) {
        bail!("not every no-op job of the round completed");
    }
    let first = jobs.iter().filter_map(|job| job.attempted_at).min();
    let last = jobs.iter().filter_map(|job| job.finalized_at).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("the round's jobs have no attempt times");
    };
    let span = (last - first).to_std().unwrap_or_default().as_secs_f64();
    Ok(count as f64 / span.max(1e-6))
}

fn node_config(queue: &str, concurrency: u32) -> EngineConfig {
    let queues = vec![QueueConfig {
        name: queue.to_string(),
        concurrency,
    }];
    EngineConfig::new(EngineConfig::generate_node_id(), queues)
}

/// Starts a node, then enqueues one job at a time and waits for it to finish; the latency of
/// each is its attempt's start minus its insertion, both as the store recorded them.
async fn measure_latency(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    queue: &str,
    concurrency: u32,
    samples: usize,
    noop: &dyn Fn() -> NewJob,
) -> anyhow::Result<Vec<Duration>> {
    let store = context.app.store.clone();
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = {
        let (store, sandbox, metrics) = (store.clone(), sandbox.clone(), metrics.clone());
        let config = node_config(queue, concurrency);
        tokio::spawn(async move {
            let app = sluice::app::App { store };
            app.run_node(sandbox, config, metrics, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let bar = progress(samples as u64, "latency");
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = store.job_insert(noop()).await?.id;
        let deadline = Instant::now() + Duration::from_secs(30);
        let job = loop {
            let job = store.job_get(id).await?.job;
            if job.state == JobState::Completed {
                break job;
            }
            if Instant::now() > deadline {
                bail!(
                    "job {id} did not complete within 30 s (state {})",
                    job.state
                );
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        let started = job.attempted_at.context("a completed job has an attempt")?;
        latencies.push((started - job.inserted_at).to_std().unwrap_or_default());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = stop.send(());
    node.await??;
    latencies.sort();
    Ok(latencies)
}

fn report(
    context: &Context,
    args: &Args,
    enqueue: Duration,
    drain: Duration,
    latencies: &[Duration],
) {
    let rate = |seconds: f64| args.jobs as f64 / seconds;
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    let store = context.app.store.capabilities();
    let store = if store.multi_node {
        "postgres"
    } else {
        "sqlite"
    };
    if context.json {
        super::print_json(&serde_json::json!({
            "store": store,
            "enqueue": { "jobs": args.jobs, "seconds": enqueue.as_secs_f64(), "jobs_per_second": rate(enqueue.as_secs_f64()) },
            "drain": { "jobs": args.jobs, "concurrency": args.concurrency, "seconds": drain.as_secs_f64(), "jobs_per_second": rate(drain.as_secs_f64()) },
            "latency_ms": { "samples": latencies.len(), "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99), "max": percentile(1.0) },
        }));
        return;
    }
    let rows = vec![
        vec![
            "bulk enqueue".into(),
            format!(
                "{} jobs in {:.0} ms",
                args.jobs,
                enqueue.as_secs_f64() * 1e3
            ),
            format!("{:.0} jobs/s", rate(enqueue.as_secs_f64())),
        ],
        vec![
            format!("drain (concurrency {})", args.concurrency),
            format!("{} jobs in {:.0} ms", args.jobs, drain.as_secs_f64() * 1e3),
            format!("{:.0} jobs/s", rate(drain.as_secs_f64())),
        ],
        vec![
            "enqueue-to-start latency".into(),
            format!("{} single jobs, idle node", latencies.len()),
            format!(
                "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                percentile(0.5),
                percentile(0.9),
                percentile(0.99),
                percentile(1.0)
            ),
        ],
    ];
    out!("store: {store}");
    super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
}

/// A progress bar on a terminal; hidden when stderr is piped.
fn progress(length: u64, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}
