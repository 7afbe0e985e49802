//! `sluice run`: the engine, until SIGINT/SIGTERM (or until idle with `--exit-when-idle`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice::config::{EngineConfig, QueueConfig};
use sluice::engine::Metrics;
use sluice::model::{AttemptClass, FailureKind};

use super::Context;

/// Every setting but `--queue` and `--exit-when-idle` may also come from the config file
/// (`[node]`, `[queues]`, `[jobs]`, `[api]`) or a `SLUICE_*` variable; a flag wins over both.
#[derive(clap::Args)]
pub struct Args {
    /// A queue to serve as NAME=CONCURRENCY; repeat for more. Replaces the file's [queues].
    /// Default: default=16.
    #[arg(long = "queue", value_parser = QueueConfig::parse)]
    queues: Vec<QueueConfig>,
    /// Exit once no job of these queues is available, running or waiting to retry.
    #[arg(long)]
    exit_when_idle: bool,
    /// How long a claim survives without a heartbeat; a dead node's jobs return after it
    /// (default 30s).
    #[arg(long, value_parser = super::parse_duration)]
    lease: Option<Duration>,
    /// How often to look for jobs when no notification arrives (default 1s on PostgreSQL,
    /// 200ms on SQLite).
    #[arg(long, value_parser = super::parse_duration)]
    poll: Option<Duration>,
    /// How long running attempts may finish after SIGINT/SIGTERM before being handed back
    /// (default 10s).
    #[arg(long, value_parser = super::parse_duration)]
    grace: Option<Duration>,
    /// First retry delay; later ones double (with jitter) up to --backoff-max (default 1s).
    #[arg(long, value_parser = super::parse_duration)]
    backoff_base: Option<Duration>,
    /// The longest retry delay (default 1h).
    #[arg(long, value_parser = super::parse_duration)]
    backoff_max: Option<Duration>,
    /// How often the leader stages due jobs and rescues expired leases (default 1s).
    #[arg(long, value_parser = super::parse_duration)]
    maintenance_interval: Option<Duration>,
    /// Finished jobs older than this are pruned by the leader (default 7days).
    #[arg(long, value_parser = super::parse_duration)]
    retention: Option<Duration>,
    /// Attempts of one job lost with their node in a row (rescued after the lease expired)
    /// after which the job is dead-lettered as `poisoned` instead of run again (default 3).
    #[arg(long)]
    poison_limit: Option<i32>,
    /// Bytes of memory all attempts of this node may hold together; attempts wait for room.
    /// Default: half of physical memory.
    #[arg(long)]
    memory_budget: Option<u64>,
    /// This node's id; generated when omitted.
    #[arg(long)]
    node_id: Option<String>,
    /// Where this node caches compiled modules.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    api: super::serve::ListenArgs,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let layers = args
        .api
        .over(context.layers.clone())
        .duration_flag("node.lease", "--lease", args.lease)
        .duration_flag("node.poll", "--poll", args.poll)
        .duration_flag("node.grace", "--grace", args.grace)
        .duration_flag("node.backoff_base", "--backoff-base", args.backoff_base)
        .duration_flag("node.backoff_max", "--backoff-max", args.backoff_max)
        .duration_flag(
            "node.maintenance_interval",
            "--maintenance-interval",
            args.maintenance_interval,
        )
        .duration_flag("node.retention", "--retention", args.retention)
        .flag("node.poison_limit", "--poison-limit", args.poison_limit)
        .flag("node.memory_budget", "--memory-budget", args.memory_budget)
        .flag("node.id", "--node-id", args.node_id)
        .flag("node.cache_dir", "--cache-dir", args.cache_dir);
    let settings = layers.settings()?;
    let node = &settings.node;
    let queues = if args.queues.is_empty() {
        settings
            .queues
            .iter()
            .map(|(name, concurrency)| QueueConfig {
                name: name.clone(),
                concurrency: *concurrency,
            })
            .collect()
    } else {
        args.queues
    };
    let node_id = node
        .id
        .clone()
        .unwrap_or_else(EngineConfig::generate_node_id);
    let mut config = EngineConfig::new(node_id, queues);
    config.lease = node.lease;
    config.grace_period = node.grace;
    config.backoff_base = node.backoff_base;
    config.backoff_max = node.backoff_max;
    config.maintenance_interval = node.maintenance_interval;
    config.retention = node.retention_by_state();
    config.poison_limit = node.poison_limit;
    config.max_fetch = node.fetch_size;
    config.max_completion_batch = node.completion_batch;
    config.exit_when_idle = args.exit_when_idle;
    // Without cross-process notifications (SQLite), polling is how jobs enqueued by another
    // process are found: poll more often.
    config.poll_interval = node.poll.unwrap_or(
        if context.app()?.store.capabilities().cross_process_notify {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(200)
        },
    );

    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    seed_cron(context, &settings).await?;
    seed_limits(context, &settings).await?;
    seed_breakers_and_autoscale(context, &settings).await?;
    let store = context.app()?.store.clone();
    let retention = sluice::ops::seed_retention(store.as_ref(), config.retention)
        .await
        .map_err(|error| anyhow::anyhow!("the retention of this node's settings: {error}"))?;
    if retention != config.retention {
        tracing::warn!(
            stored = ?sluice::ops::RetentionSecs::from(retention),
            this_node = ?sluice::ops::RetentionSecs::from(config.retention),
            "the store's retention wins over this node's; `sluice retention set` or `sluice config apply` changes it"
        );
    }
    let limits = sluice::sandbox::Limits {
        fuel: settings.jobs.fuel,
        timeout: settings.jobs.timeout,
        memory_bytes: settings.jobs.memory,
        ..Default::default()
    };
    let sandbox = sluice::app::App::sandbox_for_node(
        &config,
        sluice::app::NodeSandbox {
            cache_dir: node.cache_dir.clone(),
            memory_budget: node.memory_budget,
            max_module_bytes: Some(settings.api.max_module_size),
            default_limits: Some(limits),
        },
    )?;
    let exported = Arc::new(sluice::metrics::NodeMetrics::new());
    let stop_api = tokio_util::sync::CancellationToken::new();
    let api = super::serve::start(
        context,
        &settings,
        sandbox.clone(),
        exported.clone(),
        stop_api.clone(),
    )
    .await?;
    let metrics = Arc::new(Metrics::exporting(exported));
    // Draining a backlog on a terminal: a bar of the jobs there were to run at the start
    // (counted once, and only where someone sees the bar).
    let backlog = if args.exit_when_idle && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Some(backlog(context, &config).await?)
    } else {
        None
    };
    let progress = show_progress(metrics.clone(), backlog);
    let ran = context
        .app()?
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

/// The jobs of `config`'s queues there are to run, now or later.
async fn backlog(context: &Context, config: &EngineConfig) -> anyhow::Result<u64> {
    use sluice::model::JobState;
    let queues = context.app()?.store.queue_list(None).await?;
    Ok(queues
        .iter()
        .filter(|queue| config.queues.iter().any(|q| q.name == queue.name))
        .map(|queue| {
            [
                JobState::Available,
                JobState::Scheduled,
                JobState::Retryable,
                JobState::Running,
            ]
            .iter()
            .map(|state| queue.count(*state))
            .sum::<u64>()
        })
        .sum())
}

/// A live line of counts on a terminal, over a bar of `backlog` when draining one; nothing
/// when stderr is piped.
fn show_progress(metrics: Arc<Metrics>, backlog: Option<u64>) -> tokio::task::JoinHandle<()> {
    let bar = match backlog {
        Some(jobs) => super::progress::bar(jobs, "drained"),
        None => indicatif::ProgressBar::new_spinner(),
    };
    tokio::spawn(async move {
        loop {
            let completed = metrics.count(AttemptClass::Completed);
            let failed: u64 = FailureKind::ALL
                .iter()
                .map(|kind| metrics.count(AttemptClass::Failed(*kind)))
                .sum();
            if backlog.is_some() {
                // A retried job counts once per attempt: the bar may fill before the end.
                bar.set_position(completed + failed);
                bar.set_message(format!("drained, {failed} failed"));
            } else {
                bar.set_message(format!("attempts: {completed} completed, {failed} failed"));
                bar.tick();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Stores the config file's queue limits for queues that have none in the store; a mistake
/// in them stops the node, as a bad setting does.
async fn seed_limits(
    context: &Context,
    settings: &sluice::settings::Settings,
) -> anyhow::Result<()> {
    let store = context.app()?.store.clone();
    for (name, limits) in &settings.limits {
        if sluice::ops::seed_queue_limits(store.as_ref(), name, limits)
            .await
            .map_err(|error| {
                anyhow::anyhow!("limits of queue {name} in the config file: {error}")
            })?
        {
            tracing::info!(queue = %name, %limits, "queue limits stored from the config file");
        }
    }
    Ok(())
}

/// Stores the config file's breaker policies and queue autoscaling where the store has none.
async fn seed_breakers_and_autoscale(
    context: &Context,
    settings: &sluice::settings::Settings,
) -> anyhow::Result<()> {
    let store = context.app()?.store.clone();
    if !settings.breakers.is_empty() {
        let rows = store.breaker_list().await?;
        for (key, policy) in &settings.breakers {
            let (module, function) = breaker_key(key)?;
            let present = rows.iter().any(|row| {
                row.module == module && row.function == function && row.policy.is_some()
            });
            if !present {
                sluice::ops::set_breaker_policy(
                    store.as_ref(),
                    module,
                    function,
                    Some(policy.clone()),
                    "config",
                )
                .await
                .map_err(|error| anyhow::anyhow!("breaker {key} in the config file: {error}"))?;
            }
        }
    }
    if !settings.autoscale.is_empty() {
        let queues = store.queue_settings().await?;
        for (name, autoscale) in &settings.autoscale {
            let present = queues
                .iter()
                .any(|queue| &queue.name == name && queue.autoscale.is_some());
            if !present {
                sluice::ops::set_queue_autoscale(
                    store.as_ref(),
                    name,
                    Some(autoscale.clone()),
                    "config",
                )
                .await
                .map_err(|error| {
                    anyhow::anyhow!("autoscale of queue {name} in the config file: {error}")
                })?;
            }
        }
    }
    Ok(())
}

/// `module.function` (or `module.*`), as the config file names a breaker.
pub(super) fn breaker_key(key: &str) -> anyhow::Result<(&str, &str)> {
    key.split_once('.')
        .filter(|(module, function)| !module.is_empty() && !function.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "breaker `{key}` in the config file: name it module.function or module.*"
            )
        })
}

/// Stores the config file's cron entries that the store lacks. An entry naming a module or
/// function not uploaded yet waits for a later start (with a warning); any other mistake in
/// it stops the node, as a bad setting does.
async fn seed_cron(context: &Context, settings: &sluice::settings::Settings) -> anyhow::Result<()> {
    let store = context.app()?.store.clone();
    for (name, spec) in &settings.cron {
        match sluice::ops::seed_cron(store.as_ref(), name, spec.clone()).await {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.code(),
                    "module_not_found" | "module_version_not_found" | "unknown_function"
                ) =>
            {
                tracing::warn!(entry = %name, %error, "cron entry of the config file not stored yet");
            }
            Err(error) => anyhow::bail!("cron entry {name} of the config file: {error}"),
        }
    }
    Ok(())
}
