//! Loading uploaded modules: validation with clear errors, compilation, and the node-local cache.
//!
//! Compiled native code is cached on this node's disk, keyed by the module's digest and the
//! engine's compatibility hash, and in memory as a ready-to-instantiate `JobPre`. Native code
//! is only ever deserialized from this node's own cache directory (created 0700), never from
//! the database: `Component::deserialize` trusts its input completely.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::{AttemptState, v0_1, v0_2};
use crate::model::JobFunction;

/// Why a module cannot be loaded. Each message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("the file is empty; expected a WebAssembly component built for wasm32-wasip2")]
    Empty,
    #[error(
        "the module is {size} bytes, more than the {max} bytes a module may have; build it with `--release` (and `strip`), or raise the cap with --max-module-size"
    )]
    TooLarge { size: usize, max: usize },
    #[error(
        "the file is not WebAssembly (it does not start with \\0asm); expected a component built with `cargo build --target wasm32-wasip2`"
    )]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target (`cargo build --target wasm32-wasip2`), or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("the component is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error(
        "the component does not implement the Sluice job world: it exports [{exports}] but not `sluice:job/guest` (0.2.0 or 0.1.0); write the module with sluice-guest-sdk and its `export_jobs!` macro"
    )]
    WrongWorld { exports: String },
    #[error(
        "the component's `sluice:job/guest` export does not match the contract sluice:job@{version}: {reason}; rebuild it against a released sluice-guest-sdk (this node serves sluice:job 0.1.0 and 0.2.0)"
    )]
    ExportMismatch { version: String, reason: String },
    #[error(
        "the component imports something Sluice does not provide: {0}; a job module may import only sluice:job/host and sluice:job/compose (0.1.0 or 0.2.0) and WASI 0.2 (cli, io, clocks, random, filesystem and sockets, the last two with nothing granted)"
    )]
    UnsupportedImport(String),
    #[error("listing the module's job functions failed: {0}")]
    Catalogue(String),
    #[error("the module exports no job functions; list them in `export_jobs!`")]
    NoFunctions,
    #[error("the component cache at {path} is unusable: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The version of the `sluice:job` contract a module was built against, with its
/// instantiation ready.
pub(crate) enum Contract {
    V0_1(v0_1::JobPre<AttemptState>),
    V0_2(v0_2::JobPre<AttemptState>),
}

/// A module compiled for this node, ready to instantiate once per attempt.
pub struct PreparedModule {
    /// SHA-256 of the wasm bytes, hex.
    pub digest: String,
    pub(crate) contract: Contract,
    /// Filled by validation; attempts do not need it.
    pub(crate) functions: OnceCell<Vec<JobFunction>>,
}

/// The hex SHA-256 of a module's bytes: its identity in caches and in the store.
pub fn digest_of(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Checks the header before handing bytes to the compiler, so the common mistakes get a
/// message that names them.
pub(crate) fn check_header(wasm: &[u8]) -> Result<(), ModuleError> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.is_empty() {
        return Err(ModuleError::Empty);
    }
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(ModuleError::NotWasm);
    }
    // Bytes 6..8 are the layer: 0 for core modules, 1 for components.
    if wasm[6..8] == [0, 0] {
        return Err(ModuleError::CoreModule);
    }
    Ok(())
}

/// Compiled modules of this node: on disk across restarts, in memory for this process.
pub(crate) struct ModuleCache {
    dir: PathBuf,
    /// Distinguishes artifacts of different wasmtime versions and settings in one directory.
    engine_tag: String,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<PreparedModule>>>>>,
    /// One compile at a time per node: a huge module then takes one blocking thread (and
    /// the compiler's own workers) while heartbeats, fetches and attempts go on.
    compiling: tokio::sync::Semaphore,
}

impl ModuleCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> Result<ModuleCache, ModuleError> {
        create_private_dir(&dir).map_err(|source| ModuleError::Cache {
            path: dir.clone(),
            source,
        })?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_tag = format!("{:016x}", hasher.finish());
        Ok(ModuleCache {
            dir,
            engine_tag,
            loaded: Mutex::new(HashMap::new()),
            compiling: tokio::sync::Semaphore::new(1),
        })
    }

    /// The prepared module for these bytes, compiling (or loading from disk) at most once even
    /// when many attempts ask at the same time.
    pub async fn prepare(
        &self,
        engine: &Engine,
        linker: &Linker<AttemptState>,
        wasm: &[u8],
    ) -> Result<Arc<PreparedModule>, ModuleError> {
        check_header(wasm)?;
        let digest = digest_of(wasm);
        let cell = {
            let mut loaded = self.loaded.lock().unwrap();
            loaded.entry(digest.clone()).or_default().clone()
        };
        let prepared = cell
            .get_or_try_init(|| async {
                let engine = engine.clone();
                let linker = linker.clone();
                let path = self.artifact_path(&digest);
                let wasm = wasm.to_vec();
                let digest = digest.clone();
                let _turn = self.compiling.acquire().await.expect("never closed");
                tokio::task::spawn_blocking(move || load(&engine, &linker, &path, &wasm, digest))
                    .await
                    .map_err(|e| ModuleError::Invalid(format!("the compiler task failed: {e}")))?
            })
            .await?;
        Ok(prepared.clone())
    }

    /// Drops a module from memory (its disk artifact stays), so a failed load can be retried.
    pub fn forget(&self, digest: &str) {
        self.loaded.lock().unwrap().remove(digest);
    }

    fn artifact_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_tag))
    }
}

fn load(
    engine: &Engine,
    linker: &Linker<AttemptState>,
    artifact: &Path,
    wasm: &[u8],
    digest: String,
) -> Result<Arc<PreparedModule>, ModuleError> {
    let component = match load_artifact(engine, artifact) {
        Some(component) => component,
        None => {
            let component =
                Component::new(engine, wasm).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
            store_artifact(&component, artifact);
            component
        }
    };
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| ModuleError::UnsupportedImport(format!("{e:#}")))?;
    let version = contract_version(engine, &component)?;
    let mismatch = |e: wasmtime::Error| ModuleError::ExportMismatch {
        version: version.to_string(),
        reason: format!("{e:#}"),
    };
    let contract = match version {
        "0.1.0" => Contract::V0_1(v0_1::JobPre::new(instance_pre).map_err(mismatch)?),
        _ => Contract::V0_2(v0_2::JobPre::new(instance_pre).map_err(mismatch)?),
    };
    Ok(Arc::new(PreparedModule {
        digest,
        contract,
        functions: OnceCell::new(),
    }))
}

/// The contract version whose `guest` interface the component exports: the newest this
/// node serves that it has. A module exporting only a version this node does not know is
/// refused by name.
fn contract_version(engine: &Engine, component: &Component) -> Result<&'static str, ModuleError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    for version in ["0.2.0", "0.1.0"] {
        let wanted = format!("sluice:job/guest@{version}");
        if exports.contains(&wanted) {
            return Ok(version);
        }
    }
    if let Some(other) = exports
        .iter()
        .find_map(|name| name.strip_prefix("sluice:job/guest@"))
    {
        return Err(ModuleError::ExportMismatch {
            version: other.to_string(),
            reason: "this node does not know that version".into(),
        });
    }
    Err(ModuleError::WrongWorld {
        exports: exports.join(", "),
    })
}

/// A component this node compiled earlier, if its artifact is present and loads.
fn load_artifact(engine: &Engine, artifact: &Path) -> Option<Component> {
    // Read into memory rather than mapped: a mapped file truncated under us would crash the
    // process (SIGBUS) instead of failing one load.
    let bytes = std::fs::read(artifact).ok()?;
    // SAFETY: the artifact was written by `store_artifact` on this node into a directory only
    // this user can write (see `create_private_dir`); it never comes from the shared database.
    // A file that fails to load (truncated, other engine) is recompiled and overwritten.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::warn!(path = %artifact.display(), %error, "ignoring an unusable cached component");
            None
        }
    }
}

/// Writes a compiled artifact atomically; a failure only costs a recompile next time.
fn store_artifact(component: &Component, artifact: &Path) {
    let write = || -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let temporary = artifact.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, artifact)
    };
    if let Err(error) = write() {
        tracing::warn!(path = %artifact.display(), %error, "cannot cache a compiled component");
    }
}

/// Creates the cache directory (0700) or checks the one that exists: native code is loaded
/// from it without further checks, so it must be a directory of this user's that nobody else
/// can write to.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let metadata = std::fs::metadata(dir)?;
    if !metadata.is_dir() {
        return Err(std::io::Error::other("it is not a directory"));
    }
    let me = crate::os::effective_user();
    if metadata.uid() != me {
        return Err(std::io::Error::other(format!(
            "the directory belongs to user {}, not to this user ({me}); cached native code must be your own: use a directory of yours (--cache-dir or SLUICE_CACHE_DIR)",
            metadata.uid()
        )));
    }
    if metadata.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(
            "the directory is writable by other users; cached native code must be private (chmod 700)",
        ));
    }
    Ok(())
}
