//! `sluice bench --workload mixed` (and `--beside hostile`): the no-op stream's drain rate
//! alone, beside CPU-bound jobs and beside hostile guests, in alternating rounds; and how
//! much the CPU-bound jobs slow down beside the stream.

use std::time::Duration;

use anyhow::bail;
use sluice::model::{JobState, NewJob};
use sluice::sandbox::Sandbox;

use super::{Args, Context, MODULE, cpu, drain, enqueue_noops};

/// The module name the hostile guests are uploaded under.
pub const HOSTILE_MODULE: &str = "sluice_bench_hostile";

/// One call of each way a guest can misbehave: function and JSON args. Each runs under a
/// 10 s deadline, so a round ends soon after the stream. `infinite_loop` is added until
/// there is one loop per core.
const HOSTILE_JOBS: &[(&str, &str)] = &[
    ("infinite_loop", "null"),
    ("allocate_forever", "null"),
    ("recurse_forever", "null"),
    ("panic", "null"),
    ("unreachable", "null"),
    ("huge_output", r#"{"mb":4}"#),
    ("huge_output", r#"{"mb":300}"#),
    ("log_flood", r#"{"lines":20000}"#),
    ("log_loop", r#"{"kib":256}"#),
    ("stdout_loop", r#"{"kib":256}"#),
    ("random_loop", r#"{"kib":512}"#),
    ("poll_loop", "null"),
    ("sleep_forever", "null"),
    ("exit", r#"{"status":3}"#),
    ("handle_flood", "null"),
    ("huge_error", r#"{"mb":16}"#),
    ("read_file", r#"{"path":"/etc/passwd"}"#),
    ("read_env", r#"{"name":"PATH"}"#),
    ("open_socket", r#"{"addr":"127.0.0.1:5432"}"#),
];

/// What the stream runs beside in a round.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Alone,
    Heavy,
    Hostile,
}

/// Each side's rates, and the heavy jobs' durations beside the stream.
#[derive(Default)]
struct Rounds {
    alone: Vec<f64>,
    heavy: Vec<f64>,
    hostile: Vec<f64>,
    /// Per heavy round, the slowest heavy job's attempt, in seconds.
    heavy_spans: Vec<f64>,
    /// Per heavy round, whether the stream outlasted every heavy job (else the slowdown is
    /// understated: the heavy jobs finished alone).
    stream_outlasted: Vec<bool>,
}

pub async fn run(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
    noop: &dyn Fn() -> NewJob,
    with_heavy: bool,
) -> anyhow::Result<()> {
    let cores = sluice::engine::cores();
    let heavy_jobs = args.heavy_jobs.unwrap_or(cores);
    let single = if with_heavy {
        Some(cpu::single_job_seconds(context, sandbox, args, queue).await?)
    } else {
        None
    };
    let sides: &[Side] = if with_heavy {
        &[Side::Alone, Side::Heavy, Side::Hostile]
    } else {
        &[Side::Alone, Side::Hostile]
    };
    let mut rounds = Rounds::default();
    for _ in 0..args.rounds {
        for &side in sides {
            let ahead = match side {
                Side::Alone => Vec::new(),
                Side::Heavy => {
                    let jobs = (0..heavy_jobs).map(|_| cpu::crunch_job(queue, args.heavy_rounds));
                    context.app()?.store.job_insert_many(jobs.collect()).await?
                }
                Side::Hostile => enqueue_hostile(context, queue, cores).await?,
            };
            enqueue_noops(context, args.jobs, noop).await?;
            let expected = (args.jobs + ahead.len()) as u64;
            drain(context, sandbox, queue, args.concurrency, expected).await?;
            let stream = stream_span(context, queue, args.jobs).await?;
            let rate = args.jobs as f64 / stream.seconds().max(1e-6);
            match side {
                Side::Alone => rounds.alone.push(rate),
                Side::Hostile => rounds.hostile.push(rate),
                Side::Heavy => {
                    rounds.heavy.push(rate);
                    let heavy = cpu::span_of(context, &ahead).await?;
                    rounds.heavy_spans.push(heavy.longest_attempt);
                    rounds.stream_outlasted.push(stream.last >= heavy.last);
                }
            }
        }
    }
    report(context, args, &rounds, single, heavy_jobs, cores);
    Ok(())
}

/// Enqueues one of each hostile job, and more infinite loops up to one per core.
async fn enqueue_hostile(
    context: &Context,
    queue: &str,
    cores: usize,
) -> anyhow::Result<Vec<sluice::model::JobId>> {
    let loops = cores.saturating_sub(1);
    let extra = std::iter::repeat_n(&("infinite_loop", "null"), loops);
    let mut jobs = Vec::new();
    for (function, json) in HOSTILE_JOBS.iter().chain(extra) {
        let args: serde_json::Value = serde_json::from_str(json)?;
        let mut job = NewJob::json(HOSTILE_MODULE, function, &args);
        job.queue = queue.to_string();
        job.max_attempts = 1;
        job.limits.timeout = Some(Duration::from_secs(10));
        jobs.push(job);
    }
    Ok(context.app()?.store.job_insert_many(jobs).await?)
}

/// When a set of jobs ran: the first attempt's start and the last one's finish.
pub struct Span {
    pub first: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        (self.last - self.first)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64()
    }
}

/// The span of the latest `count` no-op jobs of `queue`, as the store recorded it; fails
/// unless every one completed.
async fn stream_span(context: &Context, queue: &str, count: usize) -> anyhow::Result<Span> {
    let jobs = context
        .app()?
        .store
        .job_list(sluice::store::JobList {
            queue: Some(queue.to_string()),
            module: Some(MODULE.to_string()),
            limit: count as u32,
            ..Default::default()
        })
        .await?;
    if jobs.len() != count
        || jobs
            .iter()
            .any(|job| job.state != JobState::Completed || job.function != "noop")
    {
        bail!("not every no-op job of the round completed");
    }
    let first = jobs.iter().filter_map(|job| job.attempted_at).min();
    let last = jobs.iter().filter_map(|job| job.finalized_at).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("the round's jobs have no attempt times");
    };
    Ok(Span { first, last })
}

fn report(
    context: &Context,
    args: &Args,
    rounds: &Rounds,
    single: Option<f64>,
    heavy_jobs: usize,
    cores: usize,
) {
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let alone = best(&rounds.alone);
    let hostile_ratio = best(&rounds.hostile) / alone;
    let heavy_ratio = best(&rounds.heavy) / alone;
    // The heavy jobs' work, in core-seconds, over the cores and the time they took beside
    // the stream: the share of the node's cores they got. Best round, as for the rates.
    let shortest_span = rounds
        .heavy_spans
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let slowdown = single.map(|single| shortest_span / single);
    let share = single.map(|single| heavy_jobs as f64 * single / (cores as f64 * shortest_span));
    let outlasted = rounds.stream_outlasted.iter().all(|&outlasted| outlasted);
    if context.json {
        super::super::print_json(&serde_json::json!({
            "jobs": args.jobs,
            "concurrency": args.concurrency,
            "cores": cores,
            "hostile_jobs": HOSTILE_JOBS.len() + cores.saturating_sub(1),
            "alone_jobs_per_second": rounds.alone,
            "beside_hostile_jobs_per_second": rounds.hostile,
            "ratio_of_best": hostile_ratio,
            "heavy": single.map(|single| serde_json::json!({
                "jobs": heavy_jobs,
                "rounds_each": args.heavy_rounds,
                "alone_seconds": single,
                "beside_stream_seconds": rounds.heavy_spans,
                "slowdown": slowdown,
                "share_of_cores": share,
                "stream_outlasted_them": outlasted,
                "stream_beside_heavy_jobs_per_second": rounds.heavy,
                "stream_ratio_beside_heavy": heavy_ratio,
            })),
        }));
        return;
    }
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let run = format!("{} jobs, {} rounds", args.jobs, args.rounds);
    let mut rows = vec![vec![
        "no-op stream alone".into(),
        run.clone(),
        format!("{} jobs/s", list(&rounds.alone)),
    ]];
    if let (Some(single), Some(slowdown), Some(share)) = (single, slowdown, share) {
        rows.push(vec![
            format!("beside {heavy_jobs} CPU-bound jobs"),
            run.clone(),
            format!("{} jobs/s", list(&rounds.heavy)),
        ]);
        rows.push(vec![
            "stream ratio beside CPU-bound".into(),
            "best rounds".into(),
            format!("{heavy_ratio:.2}"),
        ]);
        rows.push(vec![
            "CPU-bound job beside the stream".into(),
            format!(
                "{} rounds of crunch, {single:.2} s alone",
                args.heavy_rounds
            ),
            format!(
                "{shortest_span:.2} s ({slowdown:.1}x), {share:.2} of the cores{}",
                if outlasted {
                    ""
                } else {
                    " (the stream ended first: raise --jobs)"
                }
            ),
        ]);
    }
    rows.push(vec![
        format!(
            "beside {} hostile jobs",
            HOSTILE_JOBS.len() + cores.saturating_sub(1)
        ),
        run,
        format!("{} jobs/s", list(&rounds.hostile)),
    ]);
    rows.push(vec![
        "stream ratio beside hostile".into(),
        "best rounds; goal: at least 0.80".into(),
        format!("{hostile_ratio:.2}"),
    ]);
    super::super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
}
