//! `sluice bench`: bulk enqueue rate, drain throughput and enqueue-to-start latency, measured
//! on the store that `--database-url` names, with the `hello` module's no-op job; other
//! workloads (`--workload`) measure CPU-bound jobs, the no-op stream beside heavy and hostile
//! jobs, and many sleeping attempts at once.

mod compose;
mod cpu;
mod cycles;
mod mixed;
mod sleep;

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
    /// What to measure: `noop` (enqueue, drain, latency), `cpu` (the parallel efficiency of
    /// CPU-bound jobs), `mixed` (the no-op stream alone, beside CPU-bound jobs and beside
    /// hostile guests, in alternating rounds), `sleep` (`--jobs` attempts sleeping at once),
    /// `cycles` (`--rounds` cycles of enqueue, drain and prune: the tables' sizes), `compose`
    /// (jobs enqueuing a child against plain jobs, and a fan-out and its fan-in; uploads the
    /// `composer` test module as `composer`, so use a store of its own).
    #[arg(long, value_enum, default_value = "noop")]
    workload: Workload,
    /// Compare the drain alone with the drain beside one job of each misbehaving kind (and
    /// one infinite loop per core), in alternating rounds: `--workload mixed` without the
    /// CPU-bound side.
    #[arg(long, value_enum)]
    beside: Option<Beside>,
    /// Rounds of each side when comparing; the best of each side is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The size of each CPU-bound job, in rounds of the `crunch` kernel (the primes below
    /// 20,000; about 60 µs each).
    #[arg(long, default_value_t = 10_000)]
    heavy_rounds: u32,
    /// CPU-bound jobs: for `cpu`, four per core; for `mixed`, one per core.
    #[arg(long)]
    heavy_jobs: Option<usize>,
    /// How long each job of `--workload sleep` sleeps, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    sleep_ms: u64,
    /// The `hostile` test module (built beside `hello`), for `--beside hostile`.
    #[arg(
        long,
        default_value = "jobs-wasm/target/wasm32-wasip2/release/hostile.wasm"
    )]
    hostile_module: PathBuf,
    /// The `composer` test module (built beside `hello`), for `--workload compose`.
    #[arg(
        long,
        default_value = "jobs-wasm/target/wasm32-wasip2/release/composer.wasm"
    )]
    composer_module: PathBuf,
    /// How many children the fan-out of `--workload compose` enqueues.
    #[arg(long, default_value_t = 10_000)]
    fan_out: usize,
    /// Limits for the benchmark's queue, as the API takes them (JSON), to measure what a
    /// limited claim costs: like `{"global_concurrency":10000}`.
    #[arg(long, value_parser = parse_limits)]
    limits: Option<sluice::limits::QueueLimits>,
    /// Give the jobs this many partition keys in turn (the client's key), for limits that
    /// partition `by` `key`.
    #[arg(long)]
    partition_keys: Option<usize>,
}

fn parse_limits(text: &str) -> Result<sluice::limits::QueueLimits, String> {
    let limits: sluice::limits::QueueLimits =
        serde_json::from_str(text).map_err(|error| format!("not queue limits: {error}"))?;
    limits.check()?;
    Ok(limits)
}

/// What `sluice bench` measures.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Noop,
    Cpu,
    Mixed,
    Sleep,
    Cycles,
    Compose,
}

/// What the no-op stream runs beside.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Beside {
    /// One job of each misbehaving kind (`jobs-wasm/hostile`), enqueued ahead of the stream.
    Hostile,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    if args.jobs == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--jobs, --concurrency and --rounds must be at least 1");
    }
    let workload = match args.beside {
        Some(Beside::Hostile) => Workload::Mixed,
        None => args.workload,
    };
    // Every sleeping job runs at once, so the instance pool must hold them all.
    let concurrency = match workload {
        Workload::Sleep => u32::try_from(args.jobs)?,
        _ => args.concurrency,
    };
    let sandbox = sluice::app::App::sandbox_for_node(
        &node_config("bench", concurrency),
        sluice::app::NodeSandbox {
            cache_dir: args.cache_dir.clone(),
            ..Default::default()
        },
    )?;
    upload(context, &sandbox, &args.module, MODULE, "hello").await?;
    // A queue of its own, so the figures count only the benchmark's jobs.
    let queue = format!("bench-{:08x}", fastrand::u32(..));
    if let Some(limits) = &args.limits {
        let store = context.app()?.store.clone();
        sluice::ops::set_queue_limits(store.as_ref(), &queue, Some(limits.clone()), "bench")
            .await?;
    }
    let made = std::sync::atomic::AtomicUsize::new(0);
    let noop = || {
        let mut job = NewJob::json(MODULE, "noop", &serde_json::Value::Null);
        job.queue = queue.clone();
        if let Some(keys) = args.partition_keys {
            let n = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            job.partition_key = Some(format!("k{}", n % keys.max(1)));
        }
        job
    };
    match workload {
        Workload::Noop => {}
        Workload::Cpu => return cpu::run(context, &sandbox, &args, &queue).await,
        Workload::Mixed => {
            let path = &args.hostile_module;
            upload(context, &sandbox, path, mixed::HOSTILE_MODULE, "hostile").await?;
            let heavy = args.beside.is_none();
            return mixed::run(context, &sandbox, &args, &queue, &noop, heavy).await;
        }
        Workload::Sleep => return sleep::run(context, &sandbox, &args, &queue).await,
        Workload::Cycles => return cycles::run(context, &sandbox, &args, &queue, &noop).await,
        Workload::Compose => {
            let path = &args.composer_module;
            upload(
                context,
                &sandbox,
                path,
                compose::COMPOSER_MODULE,
                "composer",
            )
            .await?;
            return compose::run(context, &sandbox, &args, &queue).await;
        }
    }

    // 1. Bulk enqueue.
    let enqueue = enqueue_noops(context, args.jobs, &noop).await?;

    // 2. Drain by one node.
    let drain = drain_every_job(context, &sandbox, &queue, args.concurrency, args.jobs).await?;

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

    report(context, &args, enqueue, drain, &latencies)
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
    context.app()?.store.module_upload(upload).await?;
    Ok(())
}

/// Inserts `count` no-op jobs in bulk; returns how long it took.
pub(super) async fn enqueue_noops(
    context: &Context,
    count: usize,
    noop: &dyn Fn() -> NewJob,
) -> anyhow::Result<Duration> {
    let store = &context.app()?.store;
    let bar = super::progress::bar(count as u64, "enqueue");
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
pub(super) async fn drain(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    queue: &str,
    concurrency: u32,
    expected: u64,
) -> anyhow::Result<Arc<Metrics>> {
    let metrics = Arc::new(Metrics::default());
    let bar = super::progress::bar(expected, "drain");
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
        .app()?
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

/// Drains `queue` with one node, checks that every one of its `jobs` completed, and returns
/// the node's busy span (first claim to last outcome written).
pub(super) async fn drain_every_job(
    context: &Context,
    sandbox: &sluice::sandbox::Sandbox,
    queue: &str,
    concurrency: u32,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let metrics = drain(context, sandbox, queue, concurrency, jobs as u64).await?;
    let completed = metrics.count(sluice::model::AttemptClass::Completed);
    if completed != jobs as u64 {
        bail!(
            "the drain completed {completed} of {jobs} jobs: {:?}",
            metrics.snapshot()
        );
    }
    metrics.busy_span().context("the drain wrote no outcome")
}

pub(super) fn node_config(queue: &str, concurrency: u32) -> EngineConfig {
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
    let store = context.app()?.store.clone();
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
    let bar = super::progress::bar(samples as u64, "latency");
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
) -> anyhow::Result<()> {
    let rate = |seconds: f64| args.jobs as f64 / seconds;
    // With `--samples 0` (a drain alone, as the backlog sweep runs it), zero.
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    let store = context.app()?.store.capabilities();
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
        return Ok(());
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
    Ok(())
}
