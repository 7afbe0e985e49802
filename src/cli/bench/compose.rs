//! `sluice bench --workload compose`: what composition costs. The drain of jobs that each
//! enqueue one child (written with their completion) against the drain of plain jobs of the
//! same module, in alternating rounds; and the wall time of a fan-out of `--fan-out` children
//! and the fan-in that waits for them all, from the parent's enqueue to the fan-in's output.

use std::time::Duration;

use anyhow::{Context as _, bail};
use sluice::model::{JobState, NewJob};
use sluice::sandbox::Sandbox;
use sluice::store::JobList;

use super::{Args, Context, drain, drain_every_job, enqueue_noops};

/// The name the `composer` test module must have: its jobs name it when they enqueue.
pub const COMPOSER_MODULE: &str = "composer";

pub async fn run(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
) -> anyhow::Result<()> {
    let store = context.app()?.store.clone();
    // The fan-out first, while the default queue (where children go) holds nothing else.
    let fan_out = fan_out_and_in(context, sandbox, args).await?;

    // The children of the parents' rounds go to the default queue, which these drains do
    // not run: each round measures the parents' attempts and completions alone.
    let plain_queue = format!("{queue}-plain");
    let parent_queue = format!("{queue}-parents");
    let job = |queue: &str, function: &str, args: serde_json::Value| {
        let mut job = NewJob::json(COMPOSER_MODULE, function, &args);
        job.queue = queue.to_string();
        job
    };
    let (mut best_plain, mut best_parent) = (Duration::MAX, Duration::MAX);
    for _ in 0..args.rounds {
        for parents in [false, true] {
            let (queue, make): (&str, Box<dyn Fn() -> NewJob>) = if parents {
                let args = serde_json::json!({ "n": 1, "ms": 0 });
                let queue = parent_queue.as_str();
                (
                    queue,
                    Box::new(move || job(queue, "enqueue_then_sleep", args.clone())),
                )
            } else {
                let queue = plain_queue.as_str();
                (
                    queue,
                    Box::new(move || job(queue, "square", serde_json::json!({ "x": 7 }))),
                )
            };
            enqueue_noops(context, args.jobs, &make).await?;
            let span =
                drain_every_job(context, sandbox, queue, args.concurrency, args.jobs).await?;
            let best = if parents {
                &mut best_parent
            } else {
                &mut best_plain
            };
            *best = (*best).min(span);
        }
    }
    let children = store
        .job_count(sluice::store::JobCount {
            state: None,
            queue: Some(sluice::model::NewJob::DEFAULT_QUEUE.to_string()),
            module: Some(COMPOSER_MODULE.to_string()),
        })
        .await?;
    let expected = (args.jobs * args.rounds + fan_out.children + 2) as u64;
    if children != expected {
        bail!("the default queue holds {children} jobs, not the {expected} the parents enqueued");
    }

    let rate = |span: Duration| args.jobs as f64 / span.as_secs_f64();
    let (plain, parent) = (rate(best_plain), rate(best_parent));
    if context.json {
        super::super::print_json(&serde_json::json!({
            "jobs": args.jobs,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "plain_jobs_per_second": plain,
            "child_enqueuing_jobs_per_second": parent,
            "child_enqueuing_over_plain": parent / plain,
            "fan_out": {
                "children": fan_out.children,
                "wall_seconds": fan_out.wall.as_secs_f64(),
            },
        }));
        return Ok(());
    }
    let rows = vec![
        vec![
            "plain jobs (composer.square)".into(),
            format!("{} jobs, best of {} rounds", args.jobs, args.rounds),
            format!("{plain:.0} jobs/s"),
        ],
        vec![
            "jobs enqueuing one child each".into(),
            format!("{} jobs, same rounds", args.jobs),
            format!("{parent:.0} jobs/s ({:.2}x plain)", parent / plain),
        ],
        vec![
            "fan-out and fan-in".into(),
            format!(
                "{} children and a job waiting for them all",
                fan_out.children
            ),
            format!(
                "{:.2} s from the parent's enqueue to the fan-in's output",
                fan_out.wall.as_secs_f64()
            ),
        ],
    ];
    super::super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
    Ok(())
}

struct FanOut {
    children: usize,
    /// From the parent's enqueue to the fan-in's completion, as the store recorded them.
    wall: Duration,
}

/// Enqueues `fan_out {"n": N}` on the default queue and runs a node there until idle; checks
/// that the fan-in summed every child's output.
async fn fan_out_and_in(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
) -> anyhow::Result<FanOut> {
    let store = context.app()?.store.clone();
    let n = args.fan_out;
    let queue = NewJob::DEFAULT_QUEUE;
    let mut fan_out = NewJob::json(COMPOSER_MODULE, "fan_out", &serde_json::json!({ "n": n }));
    // One attempt: a refused fan-out fails the benchmark instead of waiting for retries.
    fan_out.max_attempts = 1;
    let parent = store.job_insert(fan_out).await?;
    drain(context, sandbox, queue, args.concurrency, n as u64 + 2).await?;
    let parent_state = store.job_get(parent.id).await?.job.state;
    if parent_state != JobState::Completed {
        bail!(
            "the fan-out of {n} is {parent_state}: see `sluice job {}`",
            parent.id
        );
    }
    let find = |function: &str| JobList {
        state: None,
        queue: Some(queue.to_string()),
        module: Some(COMPOSER_MODULE.to_string()),
        function: Some(function.to_string()),
        args_contains: None,
        limit: 1,
        before_id: None,
        after_id: None,
    };
    let fan_in = store
        .job_list(find("sum"))
        .await?
        .into_iter()
        .next()
        .context("the fan-out enqueued no fan-in")?;
    if fan_in.state != JobState::Completed || fan_in.parent_id != Some(parent.id) {
        bail!("the fan-in {} is {}", fan_in.id, fan_in.state);
    }
    let total: serde_json::Value = serde_json::from_slice(
        &store
            .job_output(fan_in.id)
            .await?
            .context("the fan-in has no output")?,
    )?;
    let squares: u64 = (0..n as u64).map(|x| x * x).sum();
    if total["count"] != n || total["sum"] != squares {
        bail!("the fan-in computed {total}, not {n} outputs summing to {squares}");
    }
    let inserted = store.job_get(parent.id).await?.job.inserted_at;
    let finished = store
        .job_get(fan_in.id)
        .await?
        .attempts
        .last()
        .map(|attempt| attempt.finished_at)
        .context("the fan-in has no attempt")?;
    Ok(FanOut {
        children: n,
        wall: (finished - inserted).to_std().unwrap_or_default(),
    })
}
