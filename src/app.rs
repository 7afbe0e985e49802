//! The composition root: opens the store, builds the sandbox and wires them into a node.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::EngineConfig;
use crate::engine::Metrics;
use crate::runner::SandboxRunner;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::Store;

pub struct App {
    pub store: Arc<dyn Store>,
}

impl App {
    /// Connects to the store the URL names and applies pending migrations.
    pub async fn open(database_url: &str) -> anyhow::Result<App> {
        let store = crate::store::connect(database_url)
            .await
            .with_context(|| format!("cannot open the database {}", redact(database_url)))?;
        Ok(App { store })
    }

    /// The sandbox, caching compiled modules under `cache_dir` (or the user's cache directory).
    pub fn sandbox(cache_dir: Option<PathBuf>) -> anyhow::Result<Sandbox> {
        App::sandbox_with(cache_dir, |_| {})
    }

    /// The sandbox with the defaults changed by `adjust`.
    pub fn sandbox_with(
        cache_dir: Option<PathBuf>,
        adjust: impl FnOnce(&mut SandboxConfig),
    ) -> anyhow::Result<Sandbox> {
        let dir = cache_dir.unwrap_or_else(default_cache_dir);
        let mut config = SandboxConfig::new(dir);
        adjust(&mut config);
        Sandbox::new(config).context("cannot start the wasm sandbox")
    }

    /// The sandbox for a node with `config`: its instance pool holds every attempt the node
    /// can run at once, so a full pool is never why a job fails.
    /// `memory_budget` replaces the default budget (half of physical memory), and
    /// `max_module_bytes` the largest module it accepts for upload.
    pub fn sandbox_for_node(
        cache_dir: Option<PathBuf>,
        config: &EngineConfig,
        memory_budget: Option<u64>,
        max_module_bytes: Option<usize>,
    ) -> anyhow::Result<Sandbox> {
        let instances = crate::engine::attempts_at_once(config)?;
        if let Some(bytes) = memory_budget
            && bytes < crate::sandbox::MemoryBudget::MIN_BYTES
        {
            anyhow::bail!(
                "--memory-budget must be at least {} bytes (one attempt's start)",
                crate::sandbox::MemoryBudget::MIN_BYTES
            );
        }
        App::sandbox_with(cache_dir, |sandbox| {
            sandbox.max_instances = instances;
            if let Some(bytes) = memory_budget {
                sandbox.memory_budget_bytes = bytes;
            }
            if let Some(bytes) = max_module_bytes {
                sandbox.max_module_bytes = bytes;
            }
        })
    }

    /// Runs a node until `shutdown` resolves (or it runs out of work, if so configured).
    pub async fn run_node(
        &self,
        sandbox: Sandbox,
        config: EngineConfig,
        metrics: Arc<Metrics>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let runner = Arc::new(SandboxRunner::new(self.store.clone(), sandbox));
        crate::engine::run_node(self.store.clone(), runner, config, metrics, shutdown).await?;
        Ok(())
    }
}

/// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/components`, else
/// `~/.cache/sluice/components`; never a shared temporary directory, where another user
/// could plant native code. With none of those set, `./.sluice-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        });
    match base {
        Some(base) => base.join("sluice").join("components"),
        None => PathBuf::from(".sluice-cache"),
    }
}

/// A database URL fit for messages: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
