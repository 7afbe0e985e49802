//! `sluice queues`: every queue with its job counts by state.

use sluice::model::JobState;

use super::Context;

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let queues = context.target.queues().await?;
    if context.json {
        super::print_view(&queues);
        return Ok(());
    }
    let mut headers = vec!["QUEUE", "PAUSED", "CONCURRENCY", "LIMITS"];
    headers.extend(JobState::ALL.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let concurrency = match (&q.autoscale, q.concurrency) {
                (Some(auto), _) => format!("auto {}..{}", auto.min, auto.max),
                (None, Some(n)) => n.to_string(),
                (None, None) => "node's own".to_string(),
            };
            let limits = q
                .limits
                .as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string);
            let mut row = vec![q.name.clone(), q.paused.to_string(), concurrency, limits];
            row.extend(JobState::ALL.iter().map(|s| {
                let count = q.counts.get(s.as_str()).copied().unwrap_or(0);
                // A count that stopped at the cap is a lower bound.
                let more = q.at_least.iter().any(|c| c == s.as_str());
                format!("{count}{}", if more { "+" } else { "" })
            }));
            row
        })
        .collect();
    super::print_table(&headers, &rows);
    Ok(())
}
