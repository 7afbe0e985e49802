//! The engine's `Runner`, made of the store and the sandbox: resolves which module version a
//! job runs, loads it once per node, and runs the attempt.
//!
//! A job without a pinned version runs the module's latest version, looked up at most once
//! per `LATEST_TTL`: an upload takes effect for the next attempts without a restart, while
//! attempts already running finish on the version they started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{RunResult, Runner};
use crate::model::{AttemptOutcome, AttemptReport, Failure, FailureKind, Job};
use crate::sandbox::{PreparedModule, Sandbox};
use crate::store::{ModuleGet, Store, StoreError};

/// How long a node trusts its idea of a module's latest version.
pub const LATEST_TTL: Duration = Duration::from_secs(1);

pub struct SandboxRunner {
    store: Arc<dyn Store>,
    sandbox: Sandbox,
    /// Module name → (latest version, when looked up).
    latest: Mutex<HashMap<String, (i32, Instant)>>,
    /// (name, version) → compiled module.
    prepared: Mutex<HashMap<(String, i32), Arc<PreparedModule>>>,
}

impl SandboxRunner {
    pub fn new(store: Arc<dyn Store>, sandbox: Sandbox) -> SandboxRunner {
        SandboxRunner {
            store,
            sandbox,
            latest: Mutex::default(),
            prepared: Mutex::default(),
        }
    }

    async fn version_for(&self, job: &Job) -> Result<i32, StoreError> {
        if let Some(pinned) = job.module_version {
            return Ok(pinned);
        }
        if let Some((version, at)) = self.latest.lock().unwrap().get(&job.module)
            && at.elapsed() < LATEST_TTL
        {
            return Ok(*version);
        }
        let module = self
            .store
            .module_get(ModuleGet {
                name: job.module.clone(),
                version: None,
            })
            .await?;
        self.latest
            .lock()
            .unwrap()
            .insert(job.module.clone(), (module.version, Instant::now()));
        Ok(module.version)
    }

    async fn module(&self, name: &str, version: i32) -> Result<Arc<PreparedModule>, String> {
        let key = (name.to_string(), version);
        if let Some(module) = self.prepared.lock().unwrap().get(&key) {
            return Ok(module.clone());
        }
        let wasm = self
            .store
            .module_wasm(name, version)
            .await
            .map_err(|e| e.to_string())?;
        let module = self
            .sandbox
            .prepare(&wasm)
            .await
            .map_err(|e| e.to_string())?;
        self.prepared.lock().unwrap().insert(key, module.clone());
        Ok(module)
    }
}

#[async_trait::async_trait]
impl Runner for SandboxRunner {
    async fn run(&self, job: &Job) -> RunResult {
        let version = match self.version_for(job).await {
            Ok(version) => version,
            Err(error) => {
                return module_failure(
                    None,
                    format!("cannot resolve module {}: {error}", job.module),
                );
            }
        };
        let module = match self.module(&job.module, version).await {
            Ok(module) => module,
            Err(error) => {
                return module_failure(
                    Some(version),
                    format!("cannot load {} v{version}: {error}", job.module),
                );
            }
        };
        let report = self
            .sandbox
            .run(&module, &job.function, &job.args, job.codec, &job.limits)
            .await;
        RunResult {
            module_version: Some(version),
            report,
        }
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
        },
    }
}
