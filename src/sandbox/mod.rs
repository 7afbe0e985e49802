//! The sandbox: the only module that knows wasmtime. It validates uploaded modules, compiles
//! and caches them, and runs each attempt in a fresh instance under fuel, memory, time and
//! output limits, returning a classified report instead of an error.

mod attempt;
mod bindings;
mod budget;
mod capture;
mod composer;
mod deadline;
mod engine;
mod limits;
mod module;
mod text;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use self::attempt::NodeFault;
use self::bindings::{AttemptState, v0_1, v0_2};
pub use self::budget::MemoryBudget;
use self::composer::Composer;
pub use self::composer::Surroundings;
pub use self::limits::Limits;
use self::module::ModuleCache;
pub use self::module::{ModuleError, PreparedModule, digest_of};
use crate::compose::JobContext;
use crate::model::{AttemptReport, Codec, JobFunction, LimitOverrides};

/// What an attempt's guest may compose with: its job as it may ask about it, and the node's
/// answers to its requests. Without it (a bare `Sandbox::run`), composing is refused.
pub struct Composing {
    pub context: JobContext,
    pub surroundings: Arc<dyn Surroundings>,
}

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
    /// Fuel a guest burns between two yields to tokio (4 million: about 0.7 ms of CPU): the
    /// granularity of fairness between attempts and of deadlines while a guest computes.
    /// Each yield costs a switch, and on a lane of several threads an idle one is woken to
    /// take the attempt: one CPU-bound job alone took 2.05 s with 200,000, 1.56 s with a
    /// million and 1.40 s with 4 million (BENCHMARKS.md).
    pub fuel_yield_interval: u64,
    /// Limits of an attempt whose job overrides none.
    pub default_limits: Limits,
    /// The largest module an upload accepts: compiling costs time and memory in proportion.
    pub max_module_bytes: usize,
    /// Bytes of memory all attempts of this node may hold together (`budget.rs`).
    pub memory_budget_bytes: u64,
    /// Check the deadline at every host call and return (`deadline.rs`). Always on in a
    /// node; off only to measure what the check costs (`cargo bench --bench sandbox`):
    /// without it a guest looping through host calls outlives its deadline.
    pub watch_host_calls: bool,
}

/// The default cap on an uploaded module's size; a job module is typically well under 5 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: usize = 32 << 20;
/// The most job functions one module may export.
pub const MAX_FUNCTIONS: usize = 1000;
/// The longest job function name: names are what jobs call, so they are refused, not cut.
pub const MAX_FUNCTION_NAME_BYTES: usize = 128;

impl SandboxConfig {
    /// The settings a node uses unless told otherwise, caching under `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> SandboxConfig {
        SandboxConfig {
            cache_dir,
            max_instances: 256,
            memory_ceiling: 1 << 30,
            keep_resident_bytes: 1 << 20,
            max_wasm_stack: 512 << 10,
            fuel_yield_interval: 4_000_000,
            default_limits: Limits::default(),
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            watch_host_calls: true,
            memory_budget_bytes: MemoryBudget::default_bytes(),
        }
    }
}

/// Refuses a catalogue that jobs could not call by name, or that would bloat every listing.
pub fn check_catalogue(functions: &[JobFunction]) -> Result<(), ModuleError> {
    if functions.len() > MAX_FUNCTIONS {
        return Err(ModuleError::Catalogue(format!(
            "the module lists {} job functions; a module may export at most {MAX_FUNCTIONS}",
            functions.len()
        )));
    }
    let mut names = std::collections::HashSet::new();
    for function in functions {
        let name = &function.name;
        if name.is_empty() || name.len() > MAX_FUNCTION_NAME_BYTES {
            let shown: String = name.chars().take(40).collect();
            return Err(ModuleError::Catalogue(format!(
                "a job function name must be 1 to {MAX_FUNCTION_NAME_BYTES} bytes; `{shown}…` is {} bytes",
                name.len()
            )));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ModuleError::Catalogue(format!(
                "the job function name {name:?} contains whitespace or control characters"
            )));
        }
        if !names.insert(name.as_str()) {
            return Err(ModuleError::Catalogue(format!(
                "the job function `{name}` is listed twice"
            )));
        }
    }
    Ok(())
}

/// Errors of the sandbox itself (as opposed to a guest's failure, which is a report).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

/// A moment's use of a sandbox's fixed resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUsage {
    pub instance_slots: u64,
    pub instance_slots_in_use: u64,
    pub memory_budget_bytes: u64,
    pub memory_budget_used_bytes: u64,
}

/// One process-wide wasm engine and everything compiled for it.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// WASI plus `sluice:job` 0.1.0 and 0.2.0: everything a guest can import.
    linker: Linker<AttemptState>,
    modules: ModuleCache,
    budget: MemoryBudget,
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
            .and_then(|()| v0_1::Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state))
            .and_then(|()| v0_2::Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state))
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let modules = ModuleCache::new(&engine, config.cache_dir.clone())?;
        let budget = MemoryBudget::new(config.memory_budget_bytes);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                modules,
                budget,
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
        let max = self.inner.config.max_module_bytes;
        if wasm.len() > max {
            return Err(ModuleError::TooLarge {
                size: wasm.len(),
                max,
            });
        }
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
        let holding = self.inner.budget.admit().await;
        let engine = &self.inner.engine;
        let functions =
            attempt::list_functions(engine, module, CATALOGUE_LIMITS, yield_interval, holding)
                .await
                .map_err(ModuleError::Catalogue)?;
        if functions.is_empty() {
            return Err(ModuleError::NoFunctions);
        }
        check_catalogue(&functions)?;
        Ok(functions)
    }

    /// The limits an attempt with these overrides runs under. Memory never exceeds a pool
    /// slot nor the node's whole budget: a job asking for more than the node could ever give
    /// meets its cap there, rather than waiting forever.
    pub fn limits_for(&self, overrides: &LimitOverrides) -> Limits {
        let config = &self.inner.config;
        let ceiling = config.memory_ceiling.min(self.inner.budget.total_bytes());
        config.default_limits.with_overrides(overrides, ceiling)
    }

    /// The node's memory budget, as attempts hold it now.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// How much of its instance pool and memory budget the sandbox uses now.
    pub fn usage(&self) -> SandboxUsage {
        let budget = &self.inner.budget;
        let in_use = self
            .inner
            .engine
            .pooling_allocator_metrics()
            .map_or(0, |pool| pool.component_instances());
        SandboxUsage {
            instance_slots: self.inner.config.max_instances as u64,
            instance_slots_in_use: in_use,
            memory_budget_bytes: budget.total_bytes(),
            memory_budget_used_bytes: budget.total_bytes() - budget.available_bytes(),
        }
    }

    /// Runs one attempt of `function` in a fresh instance of `module`, once the node's memory
    /// budget can hold it; `on_start` is told the attempt's deadline as its instance starts.
    /// Whatever the guest does comes back as a classified report; the only error is the
    /// node's own (no instance slot, memory held by other attempts), and then the attempt
    /// did not count. What the guest composed is in the report if it completed.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_observed(
        &self,
        module: &PreparedModule,
        function: &str,
        args: &[u8],
        codec: Codec,
        overrides: &LimitOverrides,
        composing: Option<Composing>,
        on_start: impl FnOnce(Duration),
    ) -> Result<AttemptReport, NodeFault> {
        let config = &self.inner.config;
        let limits = self.limits_for(overrides);
        let call = attempt::Call {
            module,
            function,
            args,
            codec,
            limits,
            yield_interval: config.fuel_yield_interval,
            watch_host_calls: config.watch_host_calls,
            composer: match composing {
                Some(composing) => Composer::new(composing.context, Some(composing.surroundings)),
                None => Composer::default(),
            },
        };
        let holding = self.inner.budget.admit().await;
        on_start(limits.timeout);
        attempt::run(&self.inner.engine, call, holding).await
    }

    /// `run_observed` for a caller that does not need the start.
    pub async fn run(
        &self,
        module: &PreparedModule,
        function: &str,
        args: &[u8],
        codec: Codec,
        overrides: &LimitOverrides,
    ) -> Result<AttemptReport, NodeFault> {
        self.run_observed(module, function, args, codec, overrides, None, |_| {})
            .await
    }
}
