//! `/v1/nodes`: the registry of nodes and their heartbeats.

use axum::extract::State;

use super::ApiState;
use super::problem::{ApiResult, Json, Problem};
use super::views::NodeView;

/// Every registered node, with its queues, its last heartbeat and its health (a node killed
/// without stopping is shown `dead` for an hour, then forgotten by the leader).
#[utoipa::path(
    get, path = "/v1/nodes", tag = "nodes",
    responses(
        (status = 200, body = Vec<NodeView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<NodeView>>> {
    let nodes = state.store.node_list().await?;
    let now = chrono::Utc::now();
    Ok(Json(
        nodes.iter().map(|node| NodeView::at(node, now)).collect(),
    ))
}
