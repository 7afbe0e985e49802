//! The sandbox: the only module that knows wasmtime. It validates uploaded modules, compiles
//! and caches them, and runs each attempt in a fresh instance under fuel, memory, time and
//! output limits, returning a classified report instead of an error.

mod attempt;
mod bindings;
mod capture;
mod engine;
mod limits;
mod module;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use self::bindings::{AttemptState, Job};
pub use self::limits::Limits;
use self::module::ModuleCache;
pub use self::module::{ModuleError, PreparedModule, digest_of};
use crate::model::{AttemptReport, Codec, JobFunction, LimitOverrides};

/// Settings of the sandbox, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled modules are cached on this node.
    pub cache_dir: PathBuf,
    /// Instances that may exist at once: the size of the instance pool.
    pub max_instances: u32,
    /// The largest memory any job may be granted: the size of a pool slot.
    pub memory_ceiling: u64,
    /// Bytes at the start of each pool slot kept resident between attempts (capped at 64 KiB
    /// where the kernel lacks PAGEMAP_SCAN, since all of it is then zeroed every time).
    pub keep_resident_bytes: usize,
    /// The wasm stack limit, in bytes; deeper recursion traps with `stack_overflow`.
    pub max_wasm_stack: usize,
    /// Fuel a guest burns between two yields to tokio (about a millisecond of CPU or less): the
    /// granularity of fairness between attempts and of deadlines while a guest computes.
    pub fuel_yield_interval: u64,
    /// Limits of an attempt whose job overrides none.
    pub default_limits: Limits,
}

impl SandboxConfig {
    /// The settings a node uses unless told otherwise, caching under `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> SandboxConfig {
        SandboxConfig {
            cache_dir,
            max_instances: 256,
            memory_ceiling: 1 << 30,
            keep_resident_bytes: 1 << 20,
            max_wasm_stack: 512 << 10,
            fuel_yield_interval: 200_000,
            default_limits: Limits::default(),
        }
    }
}

/// Errors of the sandbox itself (as opposed to a guest's failure, which is a report).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

/// One process-wide wasm engine and everything compiled for it.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// WASI plus `sluice:job/host`: everything a guest can import.
    linker: Linker<AttemptState>,
    modules: ModuleCache,
    config: SandboxConfig,
}

/// Limits used while listing a module's functions at upload: listing must be cheap.
const CATALOGUE_LIMITS: Limits = Limits {
    fuel: 100_000_000,
    memory_bytes: 64 << 20,
    timeout: Duration::from_secs(5),
    output_bytes: 1 << 20,
    log_bytes: 4096,
};

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let engine = engine::build(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state))
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let modules = ModuleCache::new(&engine, config.cache_dir.clone())?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                modules,
                config,
            }),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Compiles (or loads from this node's cache) a module, ready for attempts.
    pub async fn prepare(&self, wasm: &[u8]) -> Result<Arc<PreparedModule>, ModuleError> {
        let inner = &self.inner;
        inner
            .modules
            .prepare(&inner.engine, &inner.linker, wasm)
            .await
    }

    /// Checks an upload: a component of the Sluice world that imports only what Sluice
    /// provides and lists at least one job function. Returns those functions.
    pub async fn validate(&self, wasm: &[u8]) -> Result<Vec<JobFunction>, ModuleError> {
        let module = self.prepare(wasm).await?;
        let functions = module
            .functions
            .get_or_try_init(|| self.list_functions(&module))
            .await
            .inspect_err(|_| self.inner.modules.forget(&module.digest))?;
        Ok(functions.clone())
    }

    async fn list_functions(
        &self,
        module: &PreparedModule,
    ) -> Result<Vec<JobFunction>, ModuleError> {
        let yield_interval = self.inner.config.fuel_yield_interval;
        let functions =
            attempt::list_functions(&self.inner.engine, module, CATALOGUE_LIMITS, yield_interval)
                .await
                .map_err(ModuleError::Catalogue)?;
        if functions.is_empty() {
            return Err(ModuleError::NoFunctions);
        }
        Ok(functions)
    }

    /// Runs one attempt of `function` in a fresh instance of `module`. Never fails: whatever
    /// the guest does comes back as a classified report.
    pub async fn run(
        &self,
        module: &PreparedModule,
        function: &str,
        args: &[u8],
        codec: Codec,
        overrides: &LimitOverrides,
    ) -> AttemptReport {
        let config = &self.inner.config;
        let limits = config
            .default_limits
            .with_overrides(overrides, config.memory_ceiling);
        let call = attempt::Call {
            module,
            function,
            args,
            codec,
            limits,
            yield_interval: config.fuel_yield_interval,
        };
        attempt::run(&self.inner.engine, call).await
    }
}
