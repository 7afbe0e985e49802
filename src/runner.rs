//! The engine's `Runner`, made of the store and the sandbox: resolves which module version a
//! job runs, loads it once per node, and runs the attempt.
//!
//! A job without a pinned version runs the module's latest version, looked up at most once
//! per `LATEST_TTL`: an upload takes effect for the next attempts without a restart, while
//! attempts already running finish on the version they started with.
//!
//! The store being unreachable is never the job's fault: a lookup that fails that way falls
//! back to the version this node last saw, and when there is none the attempt does not start
//! (`NotStarted`) instead of failing as a module error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::compose::{CallSpec, ChildJob, JobContext};
use crate::engine::{AttemptStart, NotStarted, RunResult, Runner};
use crate::model::{AttemptOutcome, AttemptReport, Failure, FailureKind, Job, JobId, ModuleInfo};
use crate::sandbox::{Composing, ModuleError, PreparedModule, Sandbox, Surroundings};
use crate::store::{ModuleGet, Store, StoreError};

/// How long a node trusts its idea of a module's latest version.
pub const LATEST_TTL: Duration = Duration::from_secs(1);
/// A module version, once loaded; empty while (or if) its load has not succeeded.
type Loaded = Arc<OnceCell<Arc<PreparedModule>>>;

/// How long a job waits after a node could not start it for the node's own reasons (no free
/// instance slot, memory held by other attempts): long enough not to be claimed straight
/// back into the same shortage.
const NODE_FAULT_WAIT: Duration = Duration::from_secs(1);

pub struct SandboxRunner {
    store: Arc<dyn Store>,
    sandbox: Sandbox,
    latest_ttl: Duration,
    /// Module name → (latest version, when looked up).
    latest: Mutex<HashMap<String, (i32, Instant)>>,
    /// (name, version) → compiled module, loaded once: the attempts that need a module
    /// while it loads wait for that one load (a node starting on a backlog otherwise
    /// fetched and loaded it once per slot).
    prepared: Mutex<HashMap<(String, i32), Loaded>>,
    /// What composing guests ask of the store.
    surroundings: Arc<StoreSurroundings>,
}

/// Why a module could not be loaded: the store did not answer, or the module is bad.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

impl LoadError {
    fn is_store_unavailable(&self) -> bool {
        matches!(self, LoadError::Store(error) if error.is_retryable())
    }
}

impl SandboxRunner {
    pub fn new(store: Arc<dyn Store>, sandbox: Sandbox) -> SandboxRunner {
        SandboxRunner::with_latest_ttl(store, sandbox, LATEST_TTL)
    }

    /// A runner that trusts a looked-up latest version for `latest_ttl`.
    pub fn with_latest_ttl(
        store: Arc<dyn Store>,
        sandbox: Sandbox,
        latest_ttl: Duration,
    ) -> SandboxRunner {
        SandboxRunner {
            surroundings: Arc::new(StoreSurroundings {
                store: store.clone(),
                ttl: latest_ttl,
                catalogue: Mutex::default(),
            }),
            store,
            sandbox,
            latest_ttl,
            latest: Mutex::default(),
            prepared: Mutex::default(),
        }
    }

    async fn version_for(&self, job: &Job) -> Result<i32, StoreError> {
        if let Some(pinned) = job.module_version {
            return Ok(pinned);
        }
        let known = self.latest.lock().unwrap().get(&job.module).copied();
        if let Some((version, at)) = known
            && at.elapsed() < self.latest_ttl
        {
            return Ok(version);
        }
        let looked_up = self
            .store
            .module_get(ModuleGet {
                name: job.module.clone(),
                version: None,
            })
            .await;
        match (looked_up, known) {
            (Ok(module), _) => {
                self.latest
                    .lock()
                    .unwrap()
                    .insert(job.module.clone(), (module.version, Instant::now()));
                Ok(module.version)
            }
            // A newer upload can wait for the store to come back; the job need not.
            (Err(error), Some((version, _))) if error.is_retryable() => Ok(version),
            (Err(error), _) => Err(error),
        }
    }

    async fn module(&self, name: &str, version: i32) -> Result<Arc<PreparedModule>, LoadError> {
        let key = (name.to_string(), version);
        let cell = self
            .prepared
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .clone();
        // A load that fails leaves the cell empty: the next attempt tries again.
        let module = cell
            .get_or_try_init(|| async {
                let wasm = self.store.module_wasm(name, version).await?;
                Ok::<_, LoadError>(self.sandbox.prepare(&wasm).await?)
            })
            .await?;
        Ok(module.clone())
    }
}

impl SandboxRunner {
    /// What the job's guest may compose with: its context (with the outputs of the jobs it
    /// waited for, read only for a job that waited) and this runner's answers.
    async fn composing(&self, job: &Job) -> Result<Composing, StoreError> {
        let dependencies = if job.waits_for > 0 {
            let mut found = self.store.dependency_results(job.id).await?;
            crate::compose::inline_outputs(&mut found);
            found
        } else {
            Vec::new()
        };
        Ok(Composing {
            context: JobContext {
                id: job.id,
                attempt: job.attempt,
                parent: job.parent_id,
                batch: job.batch_id,
                dependencies,
            },
            surroundings: self.surroundings.clone(),
        })
    }
}

/// The runner's answers to a composing guest, from the store: a module's catalogue (cached
/// like the latest versions, so a fan-out of thousands asks once) and dependencies' outputs.
struct StoreSurroundings {
    store: Arc<dyn Store>,
    ttl: Duration,
    catalogue: Mutex<HashMap<String, (Arc<ModuleInfo>, Instant)>>,
}

impl StoreSurroundings {
    async fn module(&self, name: &str) -> Result<Arc<ModuleInfo>, StoreError> {
        if let Some((module, at)) = self.catalogue.lock().unwrap().get(name)
            && at.elapsed() < self.ttl
        {
            return Ok(module.clone());
        }
        let module = Arc::new(
            self.store
                .module_get(ModuleGet {
                    name: name.to_string(),
                    version: None,
                })
                .await?,
        );
        self.catalogue
            .lock()
            .unwrap()
            .insert(name.to_string(), (module.clone(), Instant::now()));
        Ok(module)
    }
}

#[async_trait::async_trait]
impl Surroundings for StoreSurroundings {
    async fn check_call(&self, call: &CallSpec, child: Option<&ChildJob>) -> Result<(), String> {
        crate::compose::check_args(&call.args, call.codec)?;
        let job = match child {
            Some(child) => child.new_job(chrono::Utc::now()),
            None => crate::model::NewJob {
                module: call.module.clone(),
                function: call.function.clone(),
                ..crate::model::NewJob::json("m", "f", &serde_json::Value::Null)
            },
        };
        crate::ops::check_job_options(&job).map_err(|e| e.to_string())?;
        let module = self.module(&call.module).await.map_err(|e| e.to_string())?;
        module
            .check_exports(&call.function)
            .map_err(|e| e.to_string())
    }

    async fn output_of(&self, job: JobId) -> Result<Vec<u8>, String> {
        match self.store.job_output(job).await {
            Ok(Some(output)) => Ok(output),
            Ok(None) => Err(format!("job {job} has no output")),
            Err(error) => Err(format!("cannot read the output of job {job}: {error}")),
        }
    }
}

/// Modules a node loads before it claims work: the most recently uploaded ones.
const WARM_UP_MODULES: usize = 8;

#[async_trait::async_trait]
impl Runner for SandboxRunner {
    /// Loads the latest version of the most recently uploaded modules, so the node's first
    /// claims do not wait for them (a drain of 1,000 jobs spent a fifth of its time on the
    /// first load). A module that cannot be loaded now is loaded by its first attempt.
    async fn warm_up(&self) {
        let Ok(mut modules) = self.store.module_list().await else {
            return;
        };
        modules.sort_by(|a, b| (&a.name, b.version).cmp(&(&b.name, a.version)));
        modules.dedup_by(|later, first| later.name == first.name);
        modules.sort_by_key(|module| std::cmp::Reverse(module.uploaded_at));
        for module in modules.into_iter().take(WARM_UP_MODULES) {
            let looked_up = (module.version, Instant::now());
            self.latest
                .lock()
                .unwrap()
                .insert(module.name.clone(), looked_up);
            if let Err(error) = self.module(&module.name, module.version).await {
                tracing::debug!(module = %module.name, %error, "not loaded ahead");
            }
        }
    }

    async fn run(&self, job: &Job, started: AttemptStart) -> Result<RunResult, NotStarted> {
        let version = match self.version_for(job).await {
            Ok(version) => version,
            Err(error) => {
                let message = format!("cannot resolve module {}: {error}", job.module);
                if error.is_retryable() {
                    return Err(NotStarted::now(message));
                }
                return Ok(module_failure(None, message));
            }
        };
        let module = match self.module(&job.module, version).await {
            Ok(module) => module,
            Err(error) => {
                let message = format!("cannot load {} v{version}: {error}", job.module);
                if error.is_store_unavailable() {
                    return Err(NotStarted::now(message));
                }
                return Ok(module_failure(Some(version), message));
            }
        };
        let composing = match self.composing(job).await {
            Ok(composing) => composing,
            Err(error) => {
                let message = format!("cannot read the jobs job {} waited for: {error}", job.id);
                return Err(NotStarted::now(message));
            }
        };
        let on_start = |timeout| started.now(timeout);
        let report = self
            .sandbox
            .run_observed(
                &module,
                &job.function,
                &job.args,
                job.codec,
                &job.limits,
                Some(composing),
                on_start,
            )
            .await
            .map_err(|fault| NotStarted {
                reason: fault.to_string(),
                retry_after: NODE_FAULT_WAIT,
            })?;
        Ok(RunResult {
            module_version: Some(version),
            report,
        })
    }
}

fn module_failure(version: Option<i32>, message: String) -> RunResult {
    RunResult {
        module_version: version,
        report: AttemptReport {
            outcome: AttemptOutcome::Failed(Failure::new(FailureKind::ModuleError, message)),
            fuel_consumed: 0,
            wall_time: Duration::ZERO,
            peak_memory_bytes: 0,
            logs: Vec::new(),
            logs_dropped_bytes: 0,
            composed: Default::default(),
        },
    }
}
