//! `/v1/cron`: periodic jobs, listed, set and removed; the leader inserts their slots' jobs.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem};
use crate::ops::CronSpec;
use crate::store::CronEntry;

/// A cron entry: the call it enqueues, on which schedule, and where it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CronView {
    pub name: String,
    /// Five fields (minute hour day month weekday), or six with seconds first.
    pub schedule: String,
    /// The IANA time zone the schedule is read in.
    pub timezone: String,
    /// What happens to slots missed while no node ran: `skip` or `run_once`.
    pub misfire: String,
    pub queue: String,
    pub module: String,
    pub function: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub priority: i16,
    pub max_attempts: i32,
    /// The newest slot handled (a job inserted, or skipped).
    pub last_slot: DateTime<Utc>,
    /// When the next job is due; null if the schedule has no more slots.
    pub next_slot: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<&CronEntry> for CronView {
    fn from(entry: &CronEntry) -> CronView {
        CronView {
            name: entry.name.clone(),
            schedule: entry.schedule.clone(),
            timezone: entry.timezone.clone(),
            misfire: entry.misfire.as_str().to_string(),
            queue: entry.queue.clone(),
            module: entry.module.clone(),
            function: entry.function.clone(),
            args: serde_json::from_str(&entry.args).unwrap_or(serde_json::Value::Null),
            priority: entry.priority,
            max_attempts: entry.max_attempts,
            last_slot: entry.last_slot,
            next_slot: crate::ops::next_slot(entry),
            updated_at: entry.updated_at,
        }
    }
}

/// A cron entry as set: only `schedule`, `module` and `function` are required.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronBody {
    pub schedule: String,
    pub module: String,
    pub function: String,
    /// The call's args; null when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    /// `default` when absent.
    #[serde(default)]
    pub queue: Option<String>,
    /// `UTC` when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `skip` (the default) or `run_once`.
    #[serde(default)]
    pub misfire: Option<String>,
    #[serde(default)]
    pub priority: Option<i16>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

/// Every cron entry, by name.
#[utoipa::path(
    get, path = "/v1/cron", tag = "cron",
    responses(
        (status = 200, body = Vec<CronView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<CronView>>> {
    let entries = state.store.cron_list().await?;
    Ok(Json(entries.iter().map(CronView::from).collect()))
}

/// Set a cron entry (replacing one of that name). An entry whose schedule or time zone
/// changed starts from now; the leader inserts a job per slot from then on.
#[utoipa::path(
    put, path = "/v1/cron/{name}", tag = "cron",
    params(("name" = String, Path, description = "The entry's name")),
    request_body = CronBody,
    responses(
        (status = 200, body = CronView),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such module, or module version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The args are over the cap", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a name, schedule, time zone, policy or function of the module", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<CronBody>,
) -> ApiResult<Json<CronView>> {
    let spec = CronSpec {
        schedule: body.schedule,
        module: body.module,
        function: body.function,
        args: body.args.map(|args| args.to_string()),
        queue: body.queue,
        timezone: body.timezone,
        misfire: body.misfire,
        priority: body.priority,
        max_attempts: body.max_attempts,
    };
    let entry = crate::ops::put_cron(state.store.as_ref(), &name, spec, &caller.name).await?;
    Ok(Json(CronView::from(&entry)))
}

/// Remove a cron entry; the jobs it inserted stay.
#[utoipa::path(
    delete, path = "/v1/cron/{name}", tag = "cron",
    params(("name" = String, Path, description = "The entry's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Text no name could hold (a NUL character)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    crate::ops::remove_cron(state.store.as_ref(), &name, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}
