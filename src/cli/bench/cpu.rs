//! `sluice bench --workload cpu`: N CPU-bound jobs of one size on an otherwise idle node, and
//! how close their wall time comes to N·t/C (t: one such job alone, C: the cores).

use anyhow::{Context as _, bail};
use sluice::model::{JobId, JobState, NewJob};
use sluice::sandbox::Sandbox;

use super::{Args, Context, MODULE, drain};

/// A job of `rounds` rounds of the `crunch` kernel in `queue`.
pub fn crunch_job(queue: &str, rounds: u32) -> NewJob {
    let mut job = NewJob::json(MODULE, "crunch", &serde_json::json!({ "rounds": rounds }));
    job.queue = queue.to_string();
    // Heavy jobs are given the time they need: the benchmark measures, it does not cut off.
    job.limits.fuel = Some(u64::MAX / 2);
    job.limits.timeout = Some(std::time::Duration::from_secs(3600));
    job
}

/// When a set of jobs ran, and the longest attempt among them.
pub struct JobsSpan {
    pub last: chrono::DateTime<chrono::Utc>,
    /// From the first start to the last finish, in seconds.
    pub wall: f64,
    pub longest_attempt: f64,
}

/// The span of the jobs `ids`, which must all have completed.
pub async fn span_of(context: &Context, ids: &[JobId]) -> anyhow::Result<JobsSpan> {
    let mut times = Vec::with_capacity(ids.len());
    for &id in ids {
        let job = context.app()?.store.job_get(id).await?.job;
        if job.state != JobState::Completed {
            bail!("CPU-bound job {id} ended {}, not completed", job.state);
        }
        let started = job.attempted_at.context("a completed job has an attempt")?;
        let finished = job.finalized_at.context("a completed job is finalized")?;
        times.push((started, finished));
    }
    let first = times.iter().map(|t| t.0).min().context("no jobs")?;
    let last = times.iter().map(|t| t.1).max().context("no jobs")?;
    let seconds = |d: chrono::TimeDelta| d.to_std().unwrap_or_default().as_secs_f64();
    Ok(JobsSpan {
        last,
        wall: seconds(last - first),
        longest_attempt: times
            .iter()
            .map(|(start, end)| seconds(*end - *start))
            .fold(0.0, f64::max),
    })
}

/// One CPU-bound job alone on the node, twice: the shorter attempt, in seconds.
pub async fn single_job_seconds(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        let ids = context
            .app()?
            .store
            .job_insert_many(vec![crunch_job(queue, args.heavy_rounds)])
            .await?;
        drain(context, sandbox, queue, args.concurrency, 1).await?;
        best = best.min(span_of(context, &ids).await?.longest_attempt);
    }
    Ok(best)
}

pub async fn run(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
) -> anyhow::Result<()> {
    let cores = sluice::engine::cores();
    let jobs = args.heavy_jobs.unwrap_or(4 * cores);
    let single = single_job_seconds(context, sandbox, args, queue).await?;
    let mut walls = Vec::new();
    for _ in 0..args.rounds {
        let batch = (0..jobs).map(|_| crunch_job(queue, args.heavy_rounds));
        let ids = context
            .app()?
            .store
            .job_insert_many(batch.collect())
            .await?;
        drain(context, sandbox, queue, args.concurrency, jobs as u64).await?;
        walls.push(span_of(context, &ids).await?.wall);
    }
    let ideal = jobs as f64 * single / cores as f64;
    let best = walls.iter().copied().fold(f64::INFINITY, f64::min);
    let efficiency = ideal / best;
    if context.json {
        super::super::print_json(&serde_json::json!({
            "cores": cores,
            "jobs": jobs,
            "rounds_each": args.heavy_rounds,
            "single_job_seconds": single,
            "wall_seconds": walls,
            "ideal_seconds": ideal,
            "parallel_efficiency": efficiency,
        }));
        return Ok(());
    }
    let walls = walls
        .iter()
        .map(|wall| format!("{wall:.2} s"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = vec![
        vec![
            "one CPU-bound job alone".into(),
            format!("{} rounds of crunch", args.heavy_rounds),
            format!("{single:.3} s"),
        ],
        vec![
            format!("{jobs} such jobs on {cores} cores"),
            format!("ideal N·t/C {ideal:.2} s"),
            walls,
        ],
        vec![
            "parallel efficiency".into(),
            "ideal over the best round; goal: at least 0.90".into(),
            format!("{efficiency:.2}"),
        ],
    ];
    super::super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
    Ok(())
}
