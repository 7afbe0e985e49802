//! `/v1/dead-letters`: discarded jobs grouped by module, function and the class of the
//! attempt that discarded them, and the recent failures of one function: where an operator
//! starts during an incident. Both read a bounded window of the newest such jobs.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::{ApiResult, Json, Problem, Query};
use super::views::AttemptView;
use crate::ops::OpError;
use crate::store::{DEAD_LETTER_WINDOW, DeadLetterGroup, RecentFailures};

/// Discarded jobs alike in module, function and how their last attempt ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterGroupView {
    pub module: String,
    pub function: String,
    /// The class of the attempt that discarded them (`trap`, `out_of_fuel`,
    /// `lease_expired`, ...).
    pub class: String,
    pub jobs: u64,
    /// The newest of them.
    pub last_job: i64,
    pub last_at: DateTime<Utc>,
    /// The newest one's last error.
    pub last_message: Option<String>,
}

impl From<DeadLetterGroup> for DeadLetterGroupView {
    fn from(g: DeadLetterGroup) -> DeadLetterGroupView {
        DeadLetterGroupView {
            module: g.module,
            function: g.function,
            class: g.class,
            jobs: g.jobs,
            last_job: g.last_job,
            last_at: g.last_at,
            last_message: g.last_message,
        }
    }
}

/// The dead letters, grouped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersView {
    /// How many of the newest discarded jobs were looked at.
    pub window: u32,
    /// The group with the newest job first.
    pub groups: Vec<DeadLetterGroupView>,
}

/// Discarded jobs grouped by module, function and class, among the newest 10,000.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "jobs",
    responses(
        (status = 200, body = DeadLettersView),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn groups(State(state): State<ApiState>) -> ApiResult<Json<DeadLettersView>> {
    let groups = state.store.dead_letter_groups().await?;
    Ok(Json(DeadLettersView {
        window: DEAD_LETTER_WINDOW,
        groups: groups.into_iter().map(DeadLetterGroupView::from).collect(),
    }))
}

/// Which function's failures.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FailuresQuery {
    pub module: String,
    pub function: String,
    /// At most this many (1 to 200; 20 by default).
    pub limit: Option<u32>,
}

/// A failed attempt and its job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    pub job_id: i64,
    #[serde(flatten)]
    pub attempt: AttemptView,
}

/// The newest failed attempts of one function, among its retrying and discarded jobs (the
/// newest 10,000 such jobs of any function are looked at).
#[utoipa::path(
    get, path = "/v1/dead-letters/failures", tag = "jobs",
    params(FailuresQuery),
    responses(
        (status = 200, body = Vec<FailureView>),
        (status = 400, description = "A malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn failures(
    State(state): State<ApiState>,
    Query(query): Query<FailuresQuery>,
) -> ApiResult<Json<Vec<FailureView>>> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(OpError::Invalid("limit must be between 1 and 200".into()).into());
    }
    let failures = state
        .store
        .failures_recent(RecentFailures {
            module: query.module,
            function: query.function,
            limit,
        })
        .await?;
    Ok(Json(
        failures
            .iter()
            .map(|(job_id, record)| FailureView {
                job_id: *job_id,
                attempt: AttemptView::from(record),
            })
            .collect(),
    ))
}
