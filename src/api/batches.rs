//! `/v1/batches`: a group of jobs enqueued together, with callback jobs when they have all
//! ended, when they all completed, and on the first discard; its progress.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::problem::{ApiResult, Json, Path, Problem};
use super::views::EnqueueRequest;
use crate::compose::BatchCallbacks;
use crate::ops::OpError;
use crate::store::BatchInfo;

/// The most jobs one batch request creates (as a bulk enqueue).
const MAX_BATCH_JOBS: usize = 10_000;

/// A callback: a job function called once, with JSON args
/// `{"batch": ID, "counts": {...}, "context": CONTEXT}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    pub module: String,
    pub function: String,
    /// Any JSON value, handed to the callback as `context`.
    #[serde(default)]
    pub context: serde_json::Value,
}

/// A batch to create: its jobs and callbacks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<EnqueueRequest>,
    /// When every job has completed, been discarded or been cancelled.
    pub on_finished: Option<CallbackRequest>,
    /// When every job completed.
    pub on_success: Option<CallbackRequest>,
    /// When the first job is discarded.
    pub on_discard: Option<CallbackRequest>,
    /// The queue the callbacks run on; defaults to `default`.
    pub callback_queue: Option<String>,
}

/// A batch that was created.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreated {
    pub id: i64,
    /// Its jobs' ids, in request order.
    pub ids: Vec<i64>,
}

/// A batch's counts by state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchCountsView {
    pub total: i32,
    pub completed: i32,
    pub discarded: i32,
    pub cancelled: i32,
    /// Running now.
    pub running: u64,
    /// Waiting to run: available, scheduled, retryable or held.
    pub waiting: u64,
}

/// A callback and the job it became, once it did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallbackView {
    pub module: String,
    pub function: String,
    pub job_id: Option<i64>,
}

/// A batch's progress and callbacks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    pub id: i64,
    /// The job whose attempt opened it, if a job did.
    pub parent_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub counts: BatchCountsView,
    /// Every job has ended.
    pub finished: bool,
    pub on_finished: Option<CallbackView>,
    pub on_success: Option<CallbackView>,
    pub on_discard: Option<CallbackView>,
}

impl From<&BatchInfo> for BatchView {
    fn from(batch: &BatchInfo) -> BatchView {
        let view = |call: &Option<crate::compose::CallSpec>, job_id: Option<i64>| {
            call.as_ref().map(|call| CallbackView {
                module: call.module.clone(),
                function: call.function.clone(),
                job_id,
            })
        };
        let counts = batch.counts;
        BatchView {
            id: batch.id,
            parent_id: batch.parent_id,
            created_at: batch.created_at,
            counts: BatchCountsView {
                total: counts.total,
                completed: counts.completed,
                discarded: counts.discarded,
                cancelled: counts.cancelled,
                running: batch.running,
                waiting: batch.waiting,
            },
            finished: counts.ended() >= counts.total,
            on_finished: view(&batch.callbacks.on_finished, batch.finished_job),
            on_success: view(&batch.callbacks.on_success, batch.success_job),
            on_discard: view(&batch.callbacks.on_discard, batch.discard_job),
        }
    }
}

/// Create a batch: its jobs, enqueued together, and its callbacks.
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    request_body = BatchRequest,
    responses(
        (status = 201, body = BatchCreated),
        (status = 400, description = "A malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A job's or callback's module or function does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A job's args are too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A job or callback is invalid, or there are no jobs", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    Json(request): Json<BatchRequest>,
) -> ApiResult<(StatusCode, Json<BatchCreated>)> {
    if request.jobs.len() > MAX_BATCH_JOBS {
        return Err(OpError::Invalid(format!(
            "a batch takes at most {MAX_BATCH_JOBS} jobs; this one has {}",
            request.jobs.len()
        ))
        .into());
    }
    let mut jobs = Vec::with_capacity(request.jobs.len());
    for (index, call) in request.jobs.into_iter().enumerate() {
        let job = super::jobs::new_job(call, &state)
            .and_then(|job| super::jobs::check_indexes(&job, index).map(|()| job))
            .map_err(|problem| problem.prefixed(&format!("job {index}")))?;
        jobs.push(job);
    }
    let callback = |request: Option<CallbackRequest>| {
        request
            .map(|c| crate::ops::compose::callback(&c.module, &c.function, &c.context.to_string()))
            .transpose()
    };
    let callbacks = BatchCallbacks {
        on_finished: callback(request.on_finished)?,
        on_success: callback(request.on_success)?,
        on_discard: callback(request.on_discard)?,
        queue: request.callback_queue,
    };
    let (id, enqueued) =
        crate::ops::compose::create_batch(state.store.as_ref(), callbacks, jobs).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchCreated {
            id,
            ids: enqueued.iter().map(|job| job.id).collect(),
        }),
    ))
}

/// A batch's progress: its jobs' counts by state, and its callbacks' jobs.
#[utoipa::path(
    get, path = "/v1/batches/{id}", tag = "batches",
    params(("id" = i64, Path, description = "The batch's id")),
    responses(
        (status = 200, body = BatchView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(state): State<ApiState>, Path(id): Path<i64>) -> ApiResult<Json<BatchView>> {
    let batch = crate::ops::compose::batch(state.store.as_ref(), id).await?;
    Ok(Json(BatchView::from(&batch)))
}
