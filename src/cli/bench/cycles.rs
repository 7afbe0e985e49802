//! `sluice bench --workload cycles`: `--rounds` cycles of enqueueing `--jobs` no-op jobs,
//! draining them and pruning them as the leader does (then reclaiming space where the
//! database will not): whether the tables and indexes stay the size of the first cycle.

use sluice::model::NewJob;
use sluice::sandbox::Sandbox;
use std::time::Duration;

use sluice::config::Retention;

use super::{Args, Context, drain, enqueue_noops};

pub async fn run(
    context: &Context,
    sandbox: &Sandbox,
    args: &Args,
    queue: &str,
    noop: &dyn Fn() -> NewJob,
) -> anyhow::Result<()> {
    let store = &context.app()?.store;
    // Per cycle: the drain rate, whether space was reclaimed, and the sizes after it.
    let mut cycles = Vec::new();
    for _ in 0..args.rounds {
        enqueue_noops(context, args.jobs, noop).await?;
        let metrics = drain(context, sandbox, queue, args.concurrency, args.jobs as u64).await?;
        let span = metrics.busy_span().unwrap_or_default().as_secs_f64();
        let now = chrono::Utc::now();
        sluice::maintenance::prune_finished(store.as_ref(), &Retention::all(Duration::ZERO), now)
            .await?;
        let reclaimed = store.reclaim_space().await?;
        let sizes = store.storage_sizes().await?;
        cycles.push((args.jobs as f64 / span.max(1e-6), reclaimed, sizes));
    }
    let total = |sizes: &[(String, u64)]| sizes.iter().map(|(_, bytes)| bytes).sum::<u64>();
    let first = cycles.first().map_or(0, |(_, _, sizes)| total(sizes));
    if context.json {
        let rounds: Vec<_> = cycles
            .iter()
            .map(|(rate, reclaimed, sizes)| {
                serde_json::json!({
                    "drain_jobs_per_second": rate,
                    "vacuumed": reclaimed,
                    "total_bytes": total(sizes),
                    "bytes": sizes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                })
            })
            .collect();
        super::super::print_json(&serde_json::json!({ "jobs": args.jobs, "cycles": rounds }));
        return Ok(());
    }
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
    let rows: Vec<Vec<String>> = cycles
        .iter()
        .enumerate()
        .map(|(i, (rate, reclaimed, sizes))| {
            let largest: Vec<String> = sizes
                .iter()
                .take(4)
                .map(|(name, bytes)| format!("{name} {}", mib(*bytes)))
                .collect();
            vec![
                format!("{}", i + 1),
                format!(
                    "{rate:.0} jobs/s{}",
                    if *reclaimed { ", vacuumed" } else { "" }
                ),
                format!(
                    "{} ({:.2}x the first): {}",
                    mib(total(sizes)),
                    total(sizes) as f64 / first.max(1) as f64,
                    largest.join(", ")
                ),
            ]
        })
        .collect();
    super::super::print_table(
        &["CYCLE", "DRAIN", "TABLES AND INDEXES AFTER PRUNING"],
        &rows,
    );
    Ok(())
}
