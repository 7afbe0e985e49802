//! The modules a node's API checked calls against lately, so that single enqueues (many a
//! second) do not each read the module from the store. A pinned version never changes and is
//! kept; "the latest version" is trusted for a second (as the engine trusts it), and at once
//! forgotten when a new version is uploaded through this node. A module not found is never
//! kept: an upload is seen by the next enqueue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::ModuleInfo;
use crate::store::{ModuleGet, Store};

use super::OpResult;

/// How long the latest version of a module is trusted without asking the store.
const LATEST_FOR: Duration = Duration::from_secs(1);

/// The most modules kept; past it, all are forgotten (a node sees few modules: this only
/// bounds a client naming versions at random).
const MAX_KEPT: usize = 1024;

/// A module's name, and its pinned version or none for the latest.
type Key = (String, Option<i32>);

/// Module versions by key, with when each was read.
type Kept = HashMap<Key, (Arc<ModuleInfo>, Instant)>;

#[derive(Default)]
pub struct RecentModules {
    kept: Mutex<Kept>,
}

impl RecentModules {
    /// The module `name` at `version` (or its latest), from memory when it may be trusted.
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
        version: Option<i32>,
    ) -> OpResult<Arc<ModuleInfo>> {
        let key: Key = (name.to_string(), version);
        if let Some((module, read_at)) = self.kept().get(&key)
            && (version.is_some() || read_at.elapsed() < LATEST_FOR)
        {
            return Ok(module.clone());
        }
        let module = Arc::new(
            store
                .module_get(ModuleGet {
                    name: key.0.clone(),
                    version,
                })
                .await?,
        );
        let mut kept = self.kept();
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(key, (module.clone(), Instant::now()));
        Ok(module)
    }

    /// Forgets what "the latest version" of `name` was: a new one was just uploaded.
    pub fn uploaded(&self, name: &str) {
        self.kept().remove(&(name.to_string(), None));
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The map is only ever left whole: a panic elsewhere cannot have broken it.
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
