//! Enqueueing inside the application's own transaction (River's `InsertTx`): the jobs are
//! checked and inserted on the application's connection, so they exist if and only if its
//! transaction commits. On PostgreSQL nodes wake at the commit (NOTIFY is transactional);
//! on SQLite at their next poll.

use std::collections::HashSet;

use super::{Call, ClientError, Enqueued};
use crate::model::NewJob;
use crate::store::{ModuleGet, PgConnection, SqliteConnection, transactional};

/// Checks and inserts `calls` in the transaction `conn` is in.
pub async fn enqueue_in_postgres(
    conn: &mut PgConnection,
    calls: &[Call],
) -> Result<Vec<Enqueued>, ClientError> {
    let jobs = jobs_of(calls)?;
    transactional::schema_postgres(&mut *conn).await?;
    let mut checked = HashSet::new();
    for job in &jobs {
        if checked.insert((job.module.clone(), job.module_version)) {
            let module = transactional::module_postgres(&mut *conn, lookup(job)).await?;
            check_functions(&module, job.module_version, &jobs)?;
        }
    }
    Ok(transactional::enqueue_postgres(conn, jobs).await?)
}

/// Checks and inserts `calls` in the transaction `conn` is in (SQLite: nodes find them at
/// their next poll).
pub async fn enqueue_in_sqlite(
    conn: &mut SqliteConnection,
    calls: &[Call],
) -> Result<Vec<Enqueued>, ClientError> {
    let jobs = jobs_of(calls)?;
    transactional::schema_sqlite(&mut *conn).await?;
    let mut checked = HashSet::new();
    for job in &jobs {
        if checked.insert((job.module.clone(), job.module_version)) {
            let module = transactional::module_sqlite(&mut *conn, lookup(job)).await?;
            check_functions(&module, job.module_version, &jobs)?;
        }
    }
    Ok(transactional::enqueue_sqlite(conn, jobs).await?)
}

fn jobs_of(calls: &[Call]) -> Result<Vec<NewJob>, ClientError> {
    calls.iter().map(Call::new_job).collect()
}

fn lookup(job: &NewJob) -> ModuleGet {
    ModuleGet {
        name: job.module.clone(),
        version: job.module_version,
    }
}

/// Every job that names `module` as `version` names it (a pinned version, or `None`: the
/// latest) must call a function that version exports.
fn check_functions(
    module: &crate::model::ModuleInfo,
    version: Option<i32>,
    jobs: &[NewJob],
) -> Result<(), ClientError> {
    for job in jobs {
        if job.module == module.name && job.module_version == version {
            module.check_exports(&job.function)?;
        }
    }
    Ok(())
}
