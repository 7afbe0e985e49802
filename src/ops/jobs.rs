//! Enqueueing: a call is refused before anything is stored unless its module exists, exports
//! the function, and its attempt limits are ones an attempt could run under.

use std::collections::HashSet;

use crate::model::{JobState, NewJob, UniqueKey};
use crate::store::{Enqueued, ModuleGet, Store};

use super::{OpError, OpResult};

/// Checks one job and stores it; returns its id (or that of the job holding its key).
pub async fn enqueue(store: &dyn Store, job: NewJob) -> OpResult<Enqueued> {
    let mut enqueued = enqueue_many(store, vec![job]).await?;
    Ok(enqueued.remove(0))
}

/// Checks every job (each module and function looked up once) and stores them all in one
/// transaction, or none. Returns their ids in order, each saying whether the job already
/// existed (it held the unique key the call named).
pub async fn enqueue_many(store: &dyn Store, jobs: Vec<NewJob>) -> OpResult<Vec<Enqueued>> {
    let mut checked = HashSet::new();
    for job in &jobs {
        check_job_options(job)?;
        let key = (job.module.clone(), job.module_version, job.function.clone());
        if checked.insert(key) {
            check_call(store, job).await?;
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store.job_enqueue(jobs).await?)
}

/// Checks one job as `enqueue_many` does, without storing it, against `modules` read lately.
pub(super) async fn check_with(
    store: &dyn Store,
    modules: &super::RecentModules,
    job: &NewJob,
) -> OpResult<()> {
    check_job_options(job)?;
    let module = modules.get(store, &job.module, job.module_version).await?;
    Ok(module.check_exports(&job.function)?)
}

pub use crate::model::DEFAULT_IDEMPOTENCY_PERIOD;

/// An idempotency key, checked, held for `period` from now.
pub fn idempotency_key(key: &str, period: std::time::Duration) -> OpResult<UniqueKey> {
    UniqueKey::idempotency(key, period).map_err(OpError::Invalid)
}

/// Whether `name` can name a queue: 1 to 128 characters, none of them control characters.
pub fn queue_name(name: &str) -> OpResult<()> {
    crate::model::check_queue_name(name).map_err(OpError::Invalid)
}

/// A job state by name.
pub fn parse_state(text: &str) -> OpResult<JobState> {
    JobState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        OpError::Invalid(format!(
            "`{text}` is not a job state; one of: {}",
            names.join(", ")
        ))
    })
}

/// Validates JSON args and stores them compactly.
pub fn json_args(text: &str) -> OpResult<Vec<u8>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| OpError::BadArgs(format!("{e}: {text}")))?;
    Ok(serde_json::to_vec(&value).expect("a JSON value always serializes"))
}

/// The job's options, and names that could be a module's and a function's: a name no
/// module could have is refused here, before any lookup (PostgreSQL refuses a NUL in text,
/// which made such a lookup a 500).
pub fn check_job_options(job: &NewJob) -> OpResult<()> {
    super::valid_module_name(&job.module)?;
    if job.function.is_empty()
        || job.function.chars().count() > 128
        || job.function.chars().any(char::is_control)
    {
        return Err(OpError::Invalid(format!(
            "`{}` is not a function name: use 1 to 128 printable characters",
            job.function.escape_debug()
        )));
    }
    crate::model::check_options(job).map_err(OpError::Invalid)
}

pub(crate) async fn check_call(store: &dyn Store, job: &NewJob) -> OpResult<()> {
    let module = store
        .module_get(ModuleGet {
            name: job.module.clone(),
            version: job.module_version,
        })
        .await?;
    Ok(module.check_exports(&job.function)?)
}
