//! `/v1/topics`: subscriptions of topics, and events published to them (each subscription
//! gets its own job).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem};
use crate::store::Subscription;

/// A subscription: each event published to `topic` becomes a job of `module.function` on
/// `queue`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    pub topic: String,
    pub queue: String,
    pub module: String,
    pub function: String,
    pub max_attempts: i32,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> SubscriptionView {
        SubscriptionView {
            topic: s.topic,
            queue: s.queue,
            module: s.module,
            function: s.function,
            max_attempts: s.max_attempts,
        }
    }
}

/// A subscription to add or remove.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    pub queue: String,
    pub module: String,
    pub function: String,
    /// The attempts each delivered job has; defaults to 20.
    pub max_attempts: Option<i32>,
}

/// An event to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event: any JSON value, the args of every subscription's job.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The partition the jobs count in, on queues with partitions.
    pub partition_key: Option<String>,
}

/// The jobs an event became, one per subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    pub ids: Vec<i64>,
}

fn subscription(topic: String, request: SubscribeRequest) -> Subscription {
    Subscription {
        topic,
        queue: request.queue,
        module: request.module,
        function: request.function,
        max_attempts: request
            .max_attempts
            .unwrap_or(crate::model::NewJob::DEFAULT_MAX_ATTEMPTS),
    }
}

/// Every subscription, by topic.
#[utoipa::path(
    get, path = "/v1/topics", tag = "topics",
    responses(
        (status = 200, body = Vec<SubscriptionView>),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<ApiState>) -> ApiResult<Json<Vec<SubscriptionView>>> {
    let found = crate::ops::compose::subscriptions(state.store.as_ref(), None).await?;
    Ok(Json(
        found.into_iter().map(SubscriptionView::from).collect(),
    ))
}

/// Subscribe a job function to a topic (201), or update an existing subscription's
/// attempts (200).
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscriptions", tag = "topics",
    params(("topic" = String, Path, description = "The topic")),
    request_body = SubscribeRequest,
    responses(
        (status = 201, body = SubscriptionView),
        (status = 200, description = "It was subscribed already", body = SubscriptionView),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such module, or it exports no such function", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a topic, queue, module or function name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn subscribe(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    Json(request): Json<SubscribeRequest>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let subscription = subscription(topic, request);
    let added =
        crate::ops::compose::subscribe(state.store.as_ref(), subscription.clone(), &caller.name)
            .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(subscription.into())))
}

/// Remove a subscription.
#[utoipa::path(
    delete, path = "/v1/topics/{topic}/subscriptions", tag = "topics",
    params(("topic" = String, Path, description = "The topic")),
    request_body = SubscribeRequest,
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a topic, queue, module or function name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unsubscribe(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    Json(request): Json<SubscribeRequest>,
) -> ApiResult<StatusCode> {
    let subscription = subscription(topic, request);
    crate::ops::compose::unsubscribe(state.store.as_ref(), &subscription, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publish an event: every subscription of the topic gets its own job, in one transaction.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/events", tag = "topics",
    params(("topic" = String, Path, description = "The topic")),
    request_body = PublishRequest,
    responses(
        (status = 201, body = Published),
        (status = 400, description = "A malformed path or body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The args are larger than a job's args may be", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a topic name, or not a partition key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn publish(
    State(state): State<ApiState>,
    Path(topic): Path<String>,
    Json(request): Json<PublishRequest>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let args = request.args.to_string();
    let enqueued =
        crate::ops::compose::publish(state.store.as_ref(), &topic, &args, request.partition_key)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            ids: enqueued.iter().map(|job| job.id).collect(),
        }),
    ))
}
