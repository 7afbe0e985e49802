//! `sluice bench --workload sleep`: `--jobs` attempts that sleep (jobs waiting on I/O), all
//! in flight at once on one node: how much memory each holds, and how long the batch took
//! against the one sleep it would take with no overhead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use sluice::model::{JobState, NewJob};
use sluice::sandbox::Sandbox;
use sluice::store::JobCount;

use super::{Args, Context, MODULE, drain};

/// How often the resident set and the running jobs are sampled during the drain.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// This process's resident memory, in bytes (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub async fn run(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
) -> anyhow::Result<()> {
    let jobs = args.jobs;
    let concurrency = u32::try_from(jobs)?;
    let job = || {
        let mut job = NewJob::json(MODULE, "sleep", &serde_json::json!({ "ms": args.sleep_ms }));
        job.queue = queue.to_string();
        job
    };
    let ids = context
        .app()?
        .store
        .job_insert_many((0..jobs).map(|_| job()).collect())
        .await?;
    let Some(before) = resident_bytes() else {
        bail!("--workload sleep reads /proc/self/statm, which this system does not have");
    };
    // Sample while the node drains: the highest resident set, and the most jobs running.
    let (peak_resident, peak_running) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (store, queue) = (context.app()?.store.clone(), queue.to_string());
        let (peak_resident, peak_running) = (peak_resident.clone(), peak_running.clone());
        tokio::spawn(async move {
            loop {
                let resident = resident_bytes().unwrap_or(0);
                let count = JobCount {
                    state: Some(JobState::Running),
                    queue: Some(queue.clone()),
                    module: None,
                };
                // The resident set is read when this many ran, so the two belong together.
                if let Ok(running) = store.job_count(count).await
                    && running >= peak_running.load(Ordering::Relaxed)
                {
                    peak_running.store(running, Ordering::Relaxed);
                    peak_resident.fetch_max(resident, Ordering::Relaxed);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    drain(context, sandbox, queue, concurrency, jobs as u64).await?;
    sampler.abort();
    let span = super::cpu::span_of(context, &ids).await?;
    let running = peak_running.load(Ordering::Relaxed);
    let grown = peak_resident.load(Ordering::Relaxed).saturating_sub(before);
    let per_attempt = grown as f64 / running.max(1) as f64;
    let sleep = args.sleep_ms as f64 / 1e3;
    if context.json {
        super::super::print_json(&serde_json::json!({
            "jobs": jobs,
            "sleep_ms": args.sleep_ms,
            "most_running_at_once": running,
            "resident_before_bytes": before,
            "resident_growth_bytes": grown,
            "resident_bytes_per_attempt": per_attempt,
            "wall_seconds": span.wall,
            "overhead_seconds": span.wall - sleep,
        }));
        return Ok(());
    }
    let rows = vec![
        vec![
            "attempts sleeping at once".into(),
            format!("{jobs} jobs of {} ms, one node", args.sleep_ms),
            format!("{running} at most"),
        ],
        vec![
            "resident memory per attempt".into(),
            format!(
                "{:.1} MiB before, goal: at most 128 KiB",
                before as f64 / (1 << 20) as f64
            ),
            format!("{:.0} KiB", per_attempt / 1024.0),
        ],
        vec![
            "all of them, first start to last finish".into(),
            format!("one sleep is {sleep:.2} s"),
            format!("{:.2} s", span.wall),
        ],
    ];
    super::super::print_table(&["MEASURE", "RUN", "RESULT"], &rows);
    Ok(())
}
