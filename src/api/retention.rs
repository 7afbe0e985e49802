//! `/v1/retention`: how long the leader keeps finished jobs of each state.

use axum::Extension;
use axum::extract::State;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Problem};
use crate::ops::RetentionSecs;

/// The retention every leader prunes by; null until a node or a user stores one.
#[utoipa::path(
    get, path = "/v1/retention", tag = "retention",
    responses(
        (status = 200, body = Option<RetentionSecs>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(state): State<ApiState>) -> ApiResult<Json<Option<RetentionSecs>>> {
    let stored = crate::ops::stored_retention(state.store.as_ref()).await?;
    Ok(Json(stored.map(RetentionSecs::from)))
}

/// Set how long finished jobs of each state are kept (a minute to ten years each).
#[utoipa::path(
    put, path = "/v1/retention", tag = "retention",
    request_body = RetentionSecs,
    responses(
        (status = 200, body = RetentionSecs),
        (status = 400, description = "A malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A retention out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RetentionSecs>,
) -> ApiResult<Json<RetentionSecs>> {
    crate::ops::set_retention(state.store.as_ref(), body, &caller.name).await?;
    Ok(Json(body))
}
