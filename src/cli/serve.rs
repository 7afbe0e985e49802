//! `sluice serve`: the HTTP API without running jobs, for an API tier apart from the workers.
//! Also how `sluice run` serves it beside the engine (`start`).

use std::path::PathBuf;

use sluice::api::{ApiState, Listen};
use sluice::sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Where this node caches compiled modules.
    #[arg(long, env = "SLUICE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

/// Where the API listens, shared by `serve` and `run`.
#[derive(clap::Args)]
pub struct ListenArgs {
    /// The API's address (IP:PORT; port 0 picks a free one), or `none` for no API.
    /// Beyond loopback only once the store has a token (`sluice token create`).
    #[arg(long, env = "SLUICE_LISTEN", value_parser = Listen::parse, default_value = sluice::api::DEFAULT_LISTEN)]
    pub listen: Listen,
    /// The largest module an upload may carry, in bytes.
    #[arg(long, default_value_t = sluice::sandbox::DEFAULT_MAX_MODULE_BYTES)]
    pub max_module_size: usize,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    if args.listen.listen == Listen::Off {
        anyhow::bail!("`sluice serve` serves the API: give --listen an address, not none");
    }
    let sandbox = sluice::app::App::sandbox_with(args.cache_dir, |config| {
        config.max_module_bytes = args.listen.max_module_size;
    })?;
    let stop = CancellationToken::new();
    let server = start(context, &args.listen, sandbox, stop.clone()).await?;
    super::run::shutdown_signal().await;
    stop.cancel();
    if let Some(server) = server {
        server.await??;
    }
    Ok(())
}

/// Binds the API's address and serves it until `stop` is cancelled; `None` with `--listen
/// none`. Binding happens before this returns, so a taken port fails the command at once.
pub async fn start(
    context: &Context,
    listen: &ListenArgs,
    sandbox: Sandbox,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Listen::On(addr) = listen.listen else {
        return Ok(None);
    };
    let bound = sluice::api::bind(addr, context.app.store.as_ref()).await?;
    tracing::info!("API listening on http://{}", bound.addr);
    let state = ApiState {
        store: context.app.store.clone(),
        sandbox,
        max_module_bytes: listen.max_module_size,
    };
    Ok(Some(tokio::spawn(sluice::api::serve(
        bound,
        state,
        stop.cancelled_owned(),
    ))))
}
