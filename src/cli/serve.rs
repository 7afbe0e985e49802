//! `sluice serve`: the HTTP API without running jobs, for an API tier apart from the workers.
//! Also how `sluice run` serves it beside the engine (`start`).

use std::path::PathBuf;
use std::sync::Arc;

use sluice::api::{ApiState, Listen};
use sluice::metrics::NodeMetrics;
use sluice::sandbox::Sandbox;
use sluice::settings::{Layers, Settings};
use tokio_util::sync::CancellationToken;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Where this node caches compiled modules.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Where the API listens, shared by `serve` and `run`; also `[api]` in the config file.
#[derive(clap::Args)]
pub struct ListenArgs {
    /// The API's address (IP:PORT; port 0 picks a free one), or `none` for no API (default
    /// 127.0.0.1:7700; also SLUICE_LISTEN). Beyond loopback only once the store has a token
    /// (`sluice token create`).
    #[arg(long, value_parser = Listen::parse)]
    pub listen: Option<Listen>,
    /// The largest module an upload may carry, in bytes (default 32 MiB).
    #[arg(long)]
    pub max_module_size: Option<usize>,
    /// The path the dashboard and API are reached under behind a reverse proxy (like
    /// /sluice); served there and at the root alike.
    #[arg(long)]
    pub base_path: Option<String>,
}

impl ListenArgs {
    /// These flags over `layers`.
    pub fn over(&self, layers: Layers) -> Layers {
        layers
            .flag("api.listen", "--listen", self.listen.map(|l| l.to_string()))
            .flag(
                "api.max_module_size",
                "--max-module-size",
                self.max_module_size,
            )
            .flag("api.base_path", "--base-path", self.base_path.clone())
    }
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let settings = args
        .listen
        .over(context.layers.clone())
        .flag("node.cache_dir", "--cache-dir", args.cache_dir)
        .settings()?;
    if listen_of(&settings) == Listen::Off {
        anyhow::bail!("`sluice serve` serves the API: give --listen an address, not none");
    }
    let sandbox = sluice::app::App::sandbox_with(settings.node.cache_dir.clone(), |config| {
        config.max_module_bytes = settings.api.max_module_size;
    })?;
    let stop = CancellationToken::new();
    let metrics = Arc::new(NodeMetrics::new());
    let server = start(context, &settings, sandbox, metrics, stop.clone()).await?;
    super::run::shutdown_signal().await;
    stop.cancel();
    if let Some(server) = server {
        server.await??;
    }
    Ok(())
}

fn listen_of(settings: &Settings) -> Listen {
    Listen::parse(&settings.api.listen).expect("checked with the settings")
}

/// Binds the API's address and serves it until `stop` is cancelled; `None` with `--listen
/// none`. Binding happens before this returns, so a taken port fails the command at once.
pub async fn start(
    context: &Context,
    settings: &Settings,
    sandbox: Sandbox,
    metrics: Arc<NodeMetrics>,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Listen::On(addr) = listen_of(settings) else {
        return Ok(None);
    };
    let bound = sluice::api::bind(addr, context.app()?.store.as_ref()).await?;
    tracing::info!("API listening on http://{}", bound.addr);
    let mut state = ApiState::new(
        context.app()?.store.clone(),
        sandbox,
        settings.api.max_module_size,
        metrics,
    );
    state.default_max_attempts = settings.jobs.max_attempts;
    state.idempotency_period = settings.jobs.idempotency_period;
    state.base_path =
        sluice::api::base_path(&settings.api.base_path).map_err(anyhow::Error::msg)?;
    tracing::info!("dashboard at http://{}{}/", bound.addr, state.base_path);
    Ok(Some(tokio::spawn(sluice::api::serve(
        bound,
        state,
        stop.cancelled_owned(),
    ))))
}
