//! `/v1/queues`: queues with their counts by state; pause, resume, concurrency and limits.

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem};
use super::views::QueueView;
use crate::limits::{Autoscale, QueueLimits};

/// Every queue that has jobs or settings, with its job counts by state.
#[utoipa::path(
    get, path = "/v1/queues", tag = "queues",
    responses(
        (status = 200, body = Vec<QueueView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<QueueView>>> {
    let queues = state
        .store
        .queue_list(Some(crate::store::QUEUE_COUNT_CAP))
        .await?;
    Ok(Json(queues.iter().map(QueueView::from).collect()))
}

/// Whether a queue is paused.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    pub name: String,
    pub paused: bool,
}

/// No node claims jobs of this queue until it is resumed; running attempts finish.
#[utoipa::path(
    post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, body = Paused),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Paused>> {
    set_paused(state, caller, name, true).await
}

/// Let nodes claim jobs of this queue again.
#[utoipa::path(
    post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, body = Paused),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Paused>> {
    set_paused(state, caller, name, false).await
}

async fn set_paused(
    state: ApiState,
    caller: Caller,
    name: String,
    paused: bool,
) -> ApiResult<Json<Paused>> {
    crate::ops::set_queue_paused(state.store.as_ref(), &name, paused, &caller.name).await?;
    Ok(Json(Paused { name, paused }))
}

/// A queue's per-node concurrency, as set or cleared.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// How many of the queue's jobs each node runs at once (clamped to each node's ceiling:
    /// the slots its pool was sized for); null gives each node back its own setting.
    pub concurrency: Option<u32>,
}

/// Set how many of this queue's jobs each node runs at once; running nodes follow within
/// a few seconds.
#[utoipa::path(
    put, path = "/v1/queues/{name}/concurrency", tag = "queues",
    params(("name" = String, Path, description = "The queue's name")),
    request_body = Concurrency,
    responses(
        (status = 200, body = Concurrency),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name, or not a concurrency", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_concurrency(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Concurrency>,
) -> ApiResult<Json<Concurrency>> {
    crate::ops::set_queue_concurrency(state.store.as_ref(), &name, body.concurrency, &caller.name)
        .await?;
    Ok(Json(body))
}

/// A queue's autoscaling, as set or stopped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleBody {
    /// The bounds and pace of each node's concurrency for the queue; null stops it (each
    /// node goes back to the queue's set concurrency, or its own).
    pub autoscale: Option<Autoscale>,
}

/// Scale this queue's concurrency on each node between a min and a max, from its backlog,
/// its jobs' wait to start and the node's memory and CPU; nodes follow within seconds, and
/// log each change.
#[utoipa::path(
    put, path = "/v1/queues/{name}/autoscale", tag = "queues",
    params(("name" = String, Path, description = "The queue's name")),
    request_body = AutoscaleBody,
    responses(
        (status = 200, body = AutoscaleBody),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name, or bounds that do not hold", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_autoscale(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<AutoscaleBody>,
) -> ApiResult<Json<AutoscaleBody>> {
    crate::ops::set_queue_autoscale(
        state.store.as_ref(),
        &name,
        body.autoscale.clone(),
        &caller.name,
    )
    .await?;
    Ok(Json(body))
}

/// Set the limits every node obeys for this queue: a global concurrency, a rate of starts,
/// partitions with their own concurrency and rate. `{}` lifts them all. Claims follow at
/// once; waiting jobs without a partition key get one when the queue gains partitions.
#[utoipa::path(
    put, path = "/v1/queues/{name}/limits", tag = "queues",
    params(("name" = String, Path, description = "The queue's name")),
    request_body = QueueLimits,
    responses(
        (status = 200, body = QueueLimits),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a queue name, or limits that could never let a job start", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_limits(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<QueueLimits>,
) -> ApiResult<Json<QueueLimits>> {
    crate::ops::set_queue_limits(
        state.store.as_ref(),
        &name,
        Some(body.clone()),
        &caller.name,
    )
    .await?;
    Ok(Json(body))
}
