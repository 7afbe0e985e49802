//! `/v1/stats`: throughput, failures and queue wait over time, by queue, for charts; read
//! from the per-minute counts nodes add to the store, never from the jobs.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::problem::{ApiResult, Json, Problem, Query};
use crate::ops::OpError;
use crate::store::MinuteStats;

/// Which stats, over what span.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How far back, in minutes (1 to 10080; 60 by default).
    pub minutes: Option<u32>,
    /// Minutes per point (1 to 1440; 1 by default).
    pub step: Option<u32>,
    /// One queue only.
    pub queue: Option<String>,
}

/// One point of a series: what a queue did in one step.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsPoint {
    /// The start of the step.
    pub at: DateTime<Utc>,
    /// Attempts completed in the step.
    pub completed: u64,
    /// Attempts failed in the step (any class).
    pub failed: u64,
    /// The median and 99th percentile of queue wait (from due to start), in milliseconds:
    /// the upper bound of the histogram bucket they fall in (null: no attempts, or over 60 s).
    pub wait_p50_ms: Option<u64>,
    pub wait_p99_ms: Option<u64>,
}

/// One queue's points, oldest first, one per step (zeros included).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsSeries {
    pub queue: String,
    pub points: Vec<StatsPoint>,
}

/// Stats of every queue (or the one asked for) over the span asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    pub since: DateTime<Utc>,
    pub step_minutes: u32,
    pub series: Vec<StatsSeries>,
    /// Every queue together (`queue` is empty): counts added, and the wait quantiles of the
    /// merged histograms, not an average of each queue's.
    pub total: StatsSeries,
}

/// Throughput, failures and queue wait over time, by queue. Nodes add their counts every
/// 5 seconds, so the current minute fills in as it goes.
#[utoipa::path(
    get, path = "/v1/stats", tag = "nodes",
    params(StatsQuery),
    responses(
        (status = 200, body = StatsView),
        (status = 400, description = "A malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A span or step out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    Query(query): Query<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    let minutes = query.minutes.unwrap_or(60);
    let step = query.step.unwrap_or(1);
    if !(1..=10_080).contains(&minutes) {
        return Err(OpError::Invalid("minutes must be between 1 and 10080 (a week)".into()).into());
    }
    if !(1..=1440).contains(&step) {
        return Err(OpError::Invalid("step must be between 1 and 1440 minutes".into()).into());
    }
    let now = MinuteStats::minute_of(Utc::now());
    // `minutes` whole minutes up to and including the current one, in whole steps.
    let steps = minutes.div_ceil(step);
    let step_span = chrono::Duration::minutes(i64::from(step));
    let since = now + chrono::Duration::minutes(1) - step_span * steps as i32;
    let rows = state.store.stats_since(since, query.queue.clone()).await?;
    // Every step of a series is there, zeros included.
    let empty = |queue: &str| -> Vec<MinuteStats> {
        (0..steps)
            .map(|k| MinuteStats::new(since + step_span * k as i32, queue.to_string()))
            .collect()
    };
    let mut series: std::collections::BTreeMap<String, Vec<MinuteStats>> = Default::default();
    if let Some(queue) = &query.queue {
        series.insert(queue.clone(), empty(queue));
    }
    for row in rows {
        let points = series
            .entry(row.queue.clone())
            .or_insert_with(|| empty(&row.queue));
        let k =
            ((row.minute - since).num_minutes() / i64::from(step)).clamp(0, i64::from(steps) - 1);
        points[k as usize].add(&row);
    }
    let mut total = empty("");
    for points in series.values() {
        for (sum, point) in total.iter_mut().zip(points) {
            sum.add(point);
        }
    }
    let series = series
        .into_iter()
        .map(|(queue, points)| to_series(queue, &points))
        .collect();
    Ok(Json(StatsView {
        since,
        step_minutes: step,
        series,
        total: to_series(String::new(), &total),
    }))
}

fn to_series(queue: String, points: &[MinuteStats]) -> StatsSeries {
    StatsSeries {
        queue,
        points: points
            .iter()
            .map(|p| StatsPoint {
                at: p.minute,
                completed: p.completed,
                failed: p.failed,
                wait_p50_ms: p.wait_quantile_ms(0.5),
                wait_p99_ms: p.wait_quantile_ms(0.99),
            })
            .collect(),
    }
}
