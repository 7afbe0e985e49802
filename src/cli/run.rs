//! `sluice run`: the engine, until SIGINT/SIGTERM (or until idle with `--exit-when-idle`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice::config::{EngineConfig, QueueConfig};
use sluice::engine::Metrics;
use sluice::model::{AttemptClass, FailureKind};

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// A queue to serve as NAME=CONCURRENCY; repeat for more. Default: default=16.
    #[arg(long = "queue", value_parser = QueueConfig::parse)]
    queues: Vec<QueueConfig>,
    /// Exit once no job of these queues is available, running or waiting to retry.
    #[arg(long)]
    exit_when_idle: bool,
    /// How long a claim survives without a heartbeat; a dead node's jobs return after it.
    #[arg(long, value_parser = super::parse_duration, default_value = "30s")]
    lease: Duration,
    /// How often to look for jobs when no notification arrives.
    #[arg(long, value_parser = super::parse_duration)]
    poll: Option<Duration>,
    /// How long running attempts may finish after SIGINT/SIGTERM before being handed back.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    grace: Duration,
    /// First retry delay; later ones double (with jitter) up to --backoff-max.
    #[arg(long, value_parser = super::parse_duration, default_value = "1s")]
    backoff_base: Duration,
    #[arg(long, value_parser = super::parse_duration, default_value = "1h")]
    backoff_max: Duration,
    /// How often the leader stages due jobs and rescues expired leases.
    #[arg(long, value_parser = super::parse_duration, default_value = "1s")]
    maintenance_interval: Duration,
    /// Attempts of one job lost with their node in a row (rescued after the lease expired)
    /// after which the job is dead-lettered as `poisoned` instead of run again.
    #[arg(long, default_value_t = EngineConfig::DEFAULT_POISON_LIMIT)]
    poison_limit: i32,
    /// Bytes of memory all attempts of this node may hold together; attempts wait for room.
    /// Default: half of physical memory.
    #[arg(long)]
    memory_budget: Option<u64>,
    /// This node's id; generated when omitted.
    #[arg(long)]
    node_id: Option<String>,
    /// Where this node caches compiled modules.
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    api: super::serve::ListenArgs,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let queues = if args.queues.is_empty() {
        vec![QueueConfig {
            name: "default".into(),
            concurrency: EngineConfig::DEFAULT_CONCURRENCY,
        }]
    } else {
        args.queues
    };
    let node_id = args.node_id.unwrap_or_else(EngineConfig::generate_node_id);
    let mut config = EngineConfig::new(node_id, queues);
    config.lease = args.lease;
    config.grace_period = args.grace;
    config.backoff_base = args.backoff_base;
    config.backoff_max = args.backoff_max;
    config.maintenance_interval = args.maintenance_interval;
    config.exit_when_idle = args.exit_when_idle;
    config.poison_limit = args.poison_limit;
    // Without cross-process notifications (SQLite), polling is how jobs enqueued by another
    // process are found: poll more often.
    config.poll_interval =
        args.poll
            .unwrap_or(if context.app.store.capabilities().cross_process_notify {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            });

    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let sandbox = sluice::app::App::sandbox_for_node(
        args.cache_dir,
        &config,
        args.memory_budget,
        Some(args.api.max_module_size),
    )?;
    let stop_api = tokio_util::sync::CancellationToken::new();
    let api = super::serve::start(context, &args.api, sandbox.clone(), stop_api.clone()).await?;
    let metrics = Arc::new(Metrics::default());
    let progress = show_progress(metrics.clone());
    let ran = context
        .app
        .run_node(sandbox, config, metrics.clone(), shutdown_signal())
        .await;
    progress.abort();
    stop_api.cancel();
    if let Some(api) = api {
        // Requests in flight get a moment; an idle keep-alive client does not hold the exit.
        if let Ok(served) = tokio::time::timeout(Duration::from_secs(2), api).await {
            served??;
        }
    }
    ran?;
    if context.json {
        super::print_json(&serde_json::json!({
            "attempts": metrics.snapshot(),
            "handed_back": metrics.handed_back.load(std::sync::atomic::Ordering::Relaxed),
            "waits_for_the_node": metrics.node_waits.load(std::sync::atomic::Ordering::Relaxed),
        }));
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. From then on a second signal exits at once, without
/// waiting for the grace period or for a store that is not answering. The listeners exist
/// from the start, so a second signal that comes at once is not missed.
pub async fn shutdown_signal() {
    let mut signals = StopSignals::new();
    signals.next().await;
    tracing::info!("stopping; a second Ctrl-C exits at once");
    tokio::spawn(async move {
        signals.next().await;
        eprintln!(
            "second interrupt: exiting now; jobs still held come back once their leases expire"
        );
        std::process::exit(130);
    });
}

/// SIGINT and SIGTERM, each a stream that keeps what arrives between two waits.
struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> StopSignals {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}");
                None
            }
        };
        StopSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// Waits for the next SIGINT or SIGTERM (forever if neither can be listened for).
    async fn next(&mut self) {
        async fn on(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = on(&mut self.interrupt) => {}
            () = on(&mut self.terminate) => {}
        }
    }
}

/// A live line of counts on a terminal; nothing when stderr is piped.
fn show_progress(metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    tokio::spawn(async move {
        loop {
            let completed = metrics.count(AttemptClass::Completed);
            let failed: u64 = FailureKind::ALL
                .iter()
                .map(|kind| metrics.count(AttemptClass::Failed(*kind)))
                .sum();
            bar.set_message(format!("attempts: {completed} completed, {failed} failed"));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
