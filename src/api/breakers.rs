//! `/v1/breakers`: circuit breakers per module and function, their policies, states and
//! windows; a policy set or removed, a breaker reset.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem};
use crate::breakers::{BreakerPolicy, BreakerState};
use crate::ops::BreakerInfo;

/// A breaker: the policy it follows, where it stands, and its window's calls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BreakerView {
    pub module: String,
    /// A function, or `*` for a module's policy.
    pub function: String,
    /// Its own policy or its module's; null once none applies.
    pub policy: Option<BreakerPolicy>,
    pub state: BreakerState,
    /// Trips in a row; each doubles the cooldown.
    pub trips: u32,
    /// When an open breaker lets its probes run.
    pub reopen_at: Option<DateTime<Utc>>,
    /// Calls and failures counted in its window since it last closed.
    pub calls: u64,
    pub failures: u64,
}

impl From<&BreakerInfo> for BreakerView {
    fn from(info: &BreakerInfo) -> BreakerView {
        BreakerView {
            module: info.module.clone(),
            function: info.function.clone(),
            policy: info.policy.clone(),
            state: info.status.state,
            trips: info.status.trips,
            reopen_at: info
                .status
                .reopen_at
                .and_then(DateTime::from_timestamp_micros),
            calls: info.calls,
            failures: info.failures,
        }
    }
}

/// Every breaker: policies, and the state of each function that has run under one.
#[utoipa::path(
    get, path = "/v1/breakers", tag = "breakers",
    responses(
        (status = 200, body = Vec<BreakerView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<BreakerView>>> {
    let breakers = crate::ops::list_breakers(state.store.as_ref()).await?;
    Ok(Json(breakers.iter().map(BreakerView::from).collect()))
}

/// Set the breaker policy of a function (`*`: every function of the module without one of
/// its own). Omitted fields take their defaults.
#[utoipa::path(
    put, path = "/v1/breakers/{module}/{function}", tag = "breakers",
    params(
        ("module" = String, Path, description = "The module's name"),
        ("function" = String, Path, description = "A function, or `*`"),
    ),
    request_body = BreakerPolicy,
    responses(
        (status = 200, body = BreakerPolicy),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a module name, or not a policy", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((module, function)): Path<(String, String)>,
    Json(policy): Json<BreakerPolicy>,
) -> ApiResult<Json<BreakerPolicy>> {
    crate::ops::set_breaker_policy(
        state.store.as_ref(),
        &module,
        &function,
        Some(policy.clone()),
        &caller.name,
    )
    .await?;
    Ok(Json(policy))
}

/// Remove a function's (or a module's) breaker policy; its jobs run unguarded.
#[utoipa::path(
    delete, path = "/v1/breakers/{module}/{function}", tag = "breakers",
    params(
        ("module" = String, Path, description = "The module's name"),
        ("function" = String, Path, description = "A function, or `*`"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a module name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    crate::ops::set_breaker_policy(state.store.as_ref(), &module, &function, None, &caller.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close a breaker now; its window starts afresh.
#[utoipa::path(
    post, path = "/v1/breakers/{module}/{function}/reset", tag = "breakers",
    params(
        ("module" = String, Path, description = "The module's name"),
        ("function" = String, Path, description = "The function"),
    ),
    responses(
        (status = 204, description = "Closed"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No breaker for that function", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Text no name could hold (a NUL character)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reset(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    crate::ops::reset_breaker(state.store.as_ref(), &module, &function, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}
