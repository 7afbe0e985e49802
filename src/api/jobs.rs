//! `/v1/jobs`: enqueue one or many, list with filters and a cursor, one job with its
//! attempts, and retry, cancel or delete one.

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Json, Path, Problem, Query};
use super::views::{
    AttemptView, BulkActionRequest, BulkActionView, BulkEnqueueRequest, EnqueueRequest, Enqueued,
    EnqueuedOne, JobDetailView, JobFilter, JobPage, JobView, RefusedJob, RetryRequest,
};
use crate::model::{Codec, LimitOverrides, NewJob};
use crate::ops::{JobAction, MAX_BULK_ACTION, OpError};
use crate::store::JobList;

/// The most jobs one bulk request may enqueue.
pub const MAX_BULK_JOBS: usize = 10_000;
/// The most jobs one page lists.
pub const MAX_PAGE: u32 = 1000;

/// Enqueue one call.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    request_body = EnqueueRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The same as the body's `idempotency_key` (give one or the other, or both alike)"),
    ),
    responses(
        (status = 201, description = "A new job", body = EnqueuedOne),
        (status = 200, description = "The job that holds the idempotency key", body = EnqueuedOne),
        (status = 404, description = "No such module (or version)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown function, bad args or options", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the API takes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enqueue(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(mut request): Json<EnqueueRequest>,
) -> ApiResult<(StatusCode, Json<EnqueuedOne>)> {
    if let Some(header) = headers.get(IDEMPOTENCY_KEY) {
        let header = header.to_str().map_err(|_| {
            OpError::Invalid("the Idempotency-Key header is not printable text".into())
        })?;
        match &request.idempotency_key {
            Some(body) if body != header => {
                return Err(OpError::Invalid(
                    "the Idempotency-Key header and the body's idempotency_key differ".into(),
                )
                .into());
            }
            _ => request.idempotency_key = Some(header.to_string()),
        }
    }
    let job = new_job(request, &state)?;
    check_indexes(&job, 0)?;
    let queue = job.queue.clone();
    let enqueued = state.enqueuer.enqueue(job).await?;
    let status = if enqueued.existing {
        StatusCode::OK
    } else {
        state.metrics.enqueued(&queue, 1);
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(EnqueuedOne {
            id: enqueued.id,
            existing: enqueued.existing,
        }),
    ))
}

/// The header of an idempotent request (the IETF HTTPAPI draft's name).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Enqueue many calls: all are stored, or none.
#[utoipa::path(
    post, path = "/v1/jobs/bulk", tag = "jobs",
    request_body = BulkEnqueueRequest,
    responses(
        (status = 201, body = Enqueued),
        (status = 404, description = "No such module (or version)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A call is invalid (the detail says which)", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the API takes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enqueue_many(
    State(state): State<ApiState>,
    Json(request): Json<BulkEnqueueRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    if request.jobs.len() > MAX_BULK_JOBS {
        return Err(OpError::Invalid(format!(
            "a bulk enqueue takes at most {MAX_BULK_JOBS} jobs; this one has {}",
            request.jobs.len()
        ))
        .into());
    }
    let mut jobs = Vec::with_capacity(request.jobs.len());
    for (index, call) in request.jobs.into_iter().enumerate() {
        let job = new_job(call, &state)
            .and_then(|job| check_indexes(&job, index).map(|()| job))
            .map_err(|problem| problem.prefixed(&format!("job {index}")))?;
        jobs.push(job);
    }
    let queues: Vec<String> = jobs.iter().map(|job| job.queue.clone()).collect();
    let enqueued = crate::ops::enqueue_many(state.store.as_ref(), jobs).await?;
    let mut by_queue = std::collections::BTreeMap::<&str, u64>::new();
    for (queue, job) in queues.iter().zip(&enqueued) {
        if !job.existing {
            *by_queue.entry(queue).or_default() += 1;
        }
    }
    for (queue, count) in by_queue {
        state.metrics.enqueued(queue, count);
    }
    Ok((
        StatusCode::CREATED,
        Json(Enqueued {
            ids: enqueued.iter().map(|job| job.id).collect(),
            existing: enqueued
                .iter()
                .filter(|job| job.existing)
                .map(|job| job.id)
                .collect(),
        }),
    ))
}

/// Refuses a dependency by index on a job that is not before the `index`-th of its request.
pub(super) fn check_indexes(job: &NewJob, index: usize) -> Result<(), Problem> {
    for dependency in &job.depends_on {
        if let crate::compose::JobRef::Child(earlier) = dependency.on
            && earlier as usize >= index
        {
            return Err(OpError::Invalid(format!(
                "a dependency's `index` names an earlier job of the same bulk request; {earlier} is not before this one"
            ))
            .into());
        }
    }
    Ok(())
}

/// A dependency as the request names it.
fn dependency(
    request: super::views::DependencyRequest,
) -> Result<crate::compose::Dependency, OpError> {
    use crate::compose::JobRef;
    let on = match (request.job, request.index) {
        (Some(id), None) if id > 0 => JobRef::Stored(id),
        (None, Some(index)) => JobRef::Child(index),
        _ => {
            return Err(OpError::Invalid(
                "a dependency names a job id (`job`, positive) or an earlier job of the request (`index`), one of them".into(),
            ));
        }
    };
    Ok(crate::compose::Dependency {
        on,
        if_failed: request.if_failed.unwrap_or_default(),
    })
}

/// The job the request describes, or why it cannot be one.
pub(super) fn new_job(request: EnqueueRequest, state: &ApiState) -> Result<NewJob, Problem> {
    let codec = request.codec.unwrap_or(Codec::Json);
    let args = match codec {
        Codec::Json => serde_json::to_vec(&request.args).expect("a JSON value always serializes"),
        Codec::Postcard => request
            .args
            .as_str()
            .and_then(|text| hex::decode(text).ok())
            .ok_or_else(|| {
                OpError::BadArgs("postcard args must be a string of hex digits".into())
            })?,
    };
    let scheduled_at = match (request.run_at, request.run_in_ms) {
        (Some(_), Some(_)) => {
            return Err(OpError::Invalid("give run_at or run_in_ms, not both".into()).into());
        }
        (Some(at), None) => Some(at),
        (None, Some(ms)) => {
            let delay = i64::try_from(ms)
                .ok()
                .and_then(chrono::Duration::try_milliseconds)
                .ok_or_else(|| OpError::Invalid("run_in_ms is too far".into()))?;
            Some(
                Utc::now()
                    .checked_add_signed(delay)
                    .ok_or_else(|| OpError::Invalid("run_in_ms is too far".into()))?,
            )
        }
        (None, None) => None,
    };
    if request.idempotency_key.is_some() && request.unique.is_some() {
        return Err(OpError::Invalid("give idempotency_key or unique, not both".into()).into());
    }
    let unique_options = request.unique;
    let depends_on = request
        .depends_on
        .into_iter()
        .map(dependency)
        .collect::<Result<Vec<_>, _>>()?;
    let mut job = NewJob {
        queue: request
            .queue
            .unwrap_or_else(|| NewJob::DEFAULT_QUEUE.to_string()),
        module: request.module,
        module_version: request.version,
        function: request.function,
        args,
        codec,
        priority: request.priority.unwrap_or(0),
        max_attempts: request.max_attempts.unwrap_or(state.default_max_attempts),
        scheduled_at,
        limits: LimitOverrides {
            fuel: request.fuel,
            memory_bytes: request.memory,
            timeout: request.timeout_ms.map(Duration::from_millis),
        },
        unique: request
            .idempotency_key
            .as_deref()
            .map(|key| crate::ops::idempotency_key(key, state.idempotency_period))
            .transpose()?,
        partition_key: request.partition_key,
        depends_on,
        parent_id: None,
        batch_id: None,
    };
    if let Some(options) = unique_options {
        job.unique = Some(
            options
                .key_for(&job, Utc::now())
                .map_err(OpError::Invalid)?,
        );
    }
    Ok(job)
}

/// Jobs, newest first, filtered, a page at a time.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(JobFilter),
    responses(
        (status = 200, body = JobPage),
        (status = 422, description = "A filter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(filter): Query<JobFilter>,
) -> ApiResult<Json<JobPage>> {
    let mut list = listing(filter, 50)?;
    let limit = list.limit;
    let floor = window_floor(state.store.as_ref(), &list).await?;
    if let Some(floor) = floor {
        list.after_id = Some(floor);
    }
    let jobs = state.store.job_list(list).await?;
    let next_before = if jobs.len() == limit as usize {
        jobs.last().map(|job| job.id)
    } else {
        floor.map(|floor| floor.saturating_add(1))
    };
    Ok(Json(JobPage {
        jobs: jobs.iter().map(JobView::from).collect(),
        next_before,
        searched_to: floor.map(|floor| floor.saturating_add(1)),
    }))
}

/// How many ids a page filtered by module, function or args text reads at most: no index
/// serves those filters, and a rare function must not make a page read the whole table.
const FILTER_SCAN_WINDOW: i64 = 50_000;

/// For a listing no index bounds, the id above which this page looks (the window's floor);
/// `None` when an index bounds it or the window would reach past the listing's own floor.
async fn window_floor(store: &dyn crate::store::Store, list: &JobList) -> ApiResult<Option<i64>> {
    if list.module.is_none() && list.function.is_none() && list.args_contains.is_none() {
        return Ok(None);
    }
    let top = match list.before_id {
        Some(before) => before,
        // The newest job, through the primary key.
        None => match store
            .job_list(JobList {
                limit: 1,
                ..Default::default()
            })
            .await?
            .first()
        {
            Some(newest) => newest.id.saturating_add(1),
            None => return Ok(None),
        },
    };
    // Saturating: `before` is the caller's, as small as i64 allows.
    let floor = top.saturating_sub(FILTER_SCAN_WINDOW + 1);
    Ok((floor > list.after_id.unwrap_or(0)).then_some(floor))
}

/// One job with every attempt.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, body = JobDetailView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<JobDetailView>> {
    let detail = state.store.job_get(id).await?;
    Ok(Json(JobDetailView {
        job: JobView::from(&detail.job),
        attempts: detail.attempts.iter().map(AttemptView::from).collect(),
    }))
}

/// A job's parent, children, dependencies both ways, and batch.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/tree", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, body = super::views::JobTreeView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn tree(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<super::views::JobTreeView>> {
    let tree = crate::ops::compose::tree(state.store.as_ref(), id).await?;
    Ok(Json(super::views::JobTreeView::from(&tree)))
}

/// Run the job again now (a finished job gets one more attempt). With a body, its `args`
/// replace the job's own first.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    request_body(content = Option<RetryRequest>, description = "Optional: new args for the job"),
    responses(
        (status = 200, body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job's state forbids it", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the API takes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body that is not a retry request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    request: axum::extract::Request,
) -> ApiResult<Json<JobView>> {
    let edit = optional_json::<RetryRequest>(request).await?;
    let args = edit.as_ref().and_then(|edit| edit.args.as_ref());
    let job = crate::ops::retry_job(state.store.as_ref(), id, args, &caller.name).await?;
    Ok(Json(JobView::from(&job)))
}

/// A JSON body if the request has one (`None` for an empty body), rejected as `Json` would.
async fn optional_json<T: serde::de::DeserializeOwned>(
    request: axum::extract::Request,
) -> ApiResult<Option<T>> {
    let empty = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|length| length == "0")
        || (request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none()
            && request
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none()
            && request
                .headers()
                .get(axum::http::header::TRANSFER_ENCODING)
                .is_none());
    if empty {
        return Ok(None);
    }
    use axum::extract::FromRequest;
    let Json(value) = Json::<T>::from_request(request, &()).await?;
    Ok(Some(value))
}

/// Stop the job. A running attempt is interrupted by its node within a second and recorded
/// as `cancelled` (the job stays `running` until then).
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job already finished", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<Json<JobView>> {
    let job = crate::ops::cancel_job(state.store.as_ref(), id, &caller.name).await?;
    Ok(Json(JobView::from(&job)))
}

/// Delete the job and its history.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is running", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    crate::ops::delete_job(state.store.as_ref(), id, &caller.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The store's listing for `filter`, `default_limit` jobs unless it names a limit.
fn listing(filter: JobFilter, default_limit: u32) -> Result<JobList, Problem> {
    let limit = filter.limit.unwrap_or(default_limit);
    if limit == 0 || limit > MAX_PAGE {
        return Err(OpError::Invalid(format!("limit must be between 1 and {MAX_PAGE}")).into());
    }
    let state = filter
        .state
        .as_deref()
        .map(crate::ops::parse_state)
        .transpose()?;
    Ok(JobList {
        state,
        queue: filter.queue,
        module: filter.module,
        function: filter.function,
        args_contains: filter.args.filter(|text| !text.is_empty()),
        limit,
        before_id: filter.before,
        after_id: filter.after,
    })
}

/// Run the jobs again now (each finished one gets one more attempt).
#[utoipa::path(
    post, path = "/v1/jobs/retry", tag = "jobs",
    request_body = BulkActionRequest,
    responses(
        (status = 200, description = "Done to each job it fits; the others are listed with why", body = BulkActionView),
        (status = 422, description = "Neither or both of ids and filter, or too many jobs", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_many(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<BulkActionRequest>,
) -> ApiResult<Json<BulkActionView>> {
    act_on_many(&state, &caller, JobAction::Retry, request).await
}

/// Stop the jobs (running attempts are interrupted by their nodes).
#[utoipa::path(
    post, path = "/v1/jobs/cancel", tag = "jobs",
    request_body = BulkActionRequest,
    responses(
        (status = 200, description = "Done to each job it fits; the others are listed with why", body = BulkActionView),
        (status = 422, description = "Neither or both of ids and filter, or too many jobs", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_many(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<BulkActionRequest>,
) -> ApiResult<Json<BulkActionView>> {
    act_on_many(&state, &caller, JobAction::Cancel, request).await
}

/// Delete the jobs and their history (running ones are refused).
#[utoipa::path(
    post, path = "/v1/jobs/delete", tag = "jobs",
    request_body = BulkActionRequest,
    responses(
        (status = 200, description = "Done to each job it fits; the others are listed with why", body = BulkActionView),
        (status = 422, description = "Neither or both of ids and filter, or too many jobs", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A malformed path, query or body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`content-type: application/json`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_many(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<BulkActionRequest>,
) -> ApiResult<Json<BulkActionView>> {
    act_on_many(&state, &caller, JobAction::Delete, request).await
}

async fn act_on_many(
    state: &ApiState,
    caller: &Caller,
    action: JobAction,
    request: BulkActionRequest,
) -> ApiResult<Json<BulkActionView>> {
    let (ids, more) = match (request.ids, request.filter) {
        (Some(ids), None) => (ids, false),
        (None, Some(filter)) => {
            let list = listing(filter, MAX_BULK_ACTION as u32)?;
            let limit = list.limit as usize;
            // One more than asked: whether the filter matched more than its limit.
            let mut jobs = state
                .store
                .job_list(JobList {
                    limit: list.limit + 1,
                    ..list
                })
                .await?;
            let more = jobs.len() > limit;
            jobs.truncate(limit);
            (jobs.iter().map(|job| job.id).collect(), more)
        }
        _ => {
            return Err(
                OpError::Invalid("give the jobs as ids or as a filter, not both".into()).into(),
            );
        }
    };
    let results = crate::ops::act_on_jobs(state.store.as_ref(), action, &ids, &caller.name).await?;
    let mut view = BulkActionView {
        done: Vec::new(),
        refused: Vec::new(),
        more,
    };
    for (id, result) in results {
        match result {
            Ok(()) => view.done.push(id),
            Err(error) => view.refused.push(RefusedJob {
                id,
                code: error.code().to_string(),
                detail: error.to_string(),
            }),
        }
    }
    Ok(Json(view))
}
