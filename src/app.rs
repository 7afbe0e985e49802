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

/// What a node's sandbox is told beyond the sandbox's defaults.
#[derive(Debug, Clone, Default)]
pub struct NodeSandbox {
    /// Where compiled modules are cached (the user's cache directory when `None`).
    pub cache_dir: Option<PathBuf>,
    /// Bytes all attempts may hold together (half of physical memory when `None`).
    pub memory_budget: Option<u64>,
    /// The largest module an upload accepts.
    pub max_module_bytes: Option<usize>,
    /// Limits of attempts whose job sets none.
    pub default_limits: Option<crate::sandbox::Limits>,
}

impl App {
    /// Connects to the store the URL names and applies pending migrations.
    pub async fn open(database_url: &str) -> anyhow::Result<App> {
        App::open_with(database_url, &crate::store::StoreOptions::default()).await
    }

    /// Connects with `options` and applies pending migrations.
    pub async fn open_with(
        database_url: &str,
        options: &crate::store::StoreOptions,
    ) -> anyhow::Result<App> {
        let store = crate::store::connect_with(database_url, options)
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
    pub fn sandbox_for_node(config: &EngineConfig, node: NodeSandbox) -> anyhow::Result<Sandbox> {
        let instances = crate::engine::attempts_at_once(config)?;
        if let Some(bytes) = node.memory_budget
            && bytes < crate::sandbox::MemoryBudget::MIN_BYTES
        {
            anyhow::bail!(
                "--memory-budget (node.memory_budget) must be at least {} bytes (one attempt's start)",
                crate::sandbox::MemoryBudget::MIN_BYTES
            );
        }
        App::sandbox_with(node.cache_dir, |sandbox| {
            sandbox.max_instances = instances;
            if let Some(bytes) = node.memory_budget {
                sandbox.memory_budget_bytes = bytes;
            }
            if let Some(bytes) = node.max_module_bytes {
                sandbox.max_module_bytes = bytes;
            }
            if let Some(limits) = node.default_limits {
                sandbox.default_limits = limits;
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
