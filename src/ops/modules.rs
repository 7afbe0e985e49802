//! Uploading a module: the name checked, the component validated (compiled once, off the
//! async workers, by the sandbox), then stored as a new version.

use crate::sandbox::Sandbox;
use crate::store::{ModuleUpload, Store, Uploaded};

use super::{OpError, OpResult};

/// Whether `name` can name a module: letters, digits, `_` and `-`.
pub fn valid_module_name(name: &str) -> OpResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(OpError::BadModuleName(name.to_string()))
    }
}

/// Validates `wasm` as a Sluice job module and stores it as `name`'s next version (or
/// returns the version that already holds these bytes), recording that `actor` did.
pub async fn upload(
    store: &dyn Store,
    sandbox: &Sandbox,
    name: String,
    wasm: Vec<u8>,
    actor: &str,
) -> OpResult<Uploaded> {
    valid_module_name(&name)?;
    let functions = sandbox.validate(&wasm).await?;
    let upload = ModuleUpload {
        name,
        digest: crate::sandbox::digest_of(&wasm),
        wasm,
        functions,
    };
    let uploaded = store.module_upload(upload).await?;
    let target = format!("{} v{}", uploaded.module.name, uploaded.module.version);
    super::tokens::record_action(store, actor, "module.upload", &target).await;
    Ok(uploaded)
}
