//! `/metrics`: the node's Prometheus metrics, with the queue depth counted at most every
//! few seconds however often it is scraped.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;
use crate::model::JobState;

/// The node's metrics in the OpenMetrics text format.
#[utoipa::path(
    get, path = "/metrics", tag = "nodes",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
    )
)]
pub async fn scrape(State(state): State<ApiState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    if let Some(due) = metrics.queue_depth_due().await {
        match state.store.queue_list(None).await {
            Ok(queues) => metrics.set_queue_depth(
                due,
                queues.iter().flat_map(|queue| {
                    // Every state of every queue, so an emptied one reads 0.
                    JobState::ALL
                        .iter()
                        .map(|state| (queue.name.as_str(), state.as_str(), queue.count(*state)))
                }),
            ),
            Err(error) => {
                // The last count stays; the next scrape tries again.
                metrics.store_error("queue_list");
                tracing::warn!(%error, "cannot count the queues for /metrics");
            }
        }
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}
