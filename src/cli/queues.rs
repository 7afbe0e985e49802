//! `sluice queues`: every queue with its job counts by state.

use sluice::model::JobState;

use super::Context;

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let queues = context.app.store.queue_list().await?;
    if context.json {
        let value: Vec<serde_json::Value> = queues
            .iter()
            .map(|q| {
                let counts: serde_json::Map<String, serde_json::Value> = JobState::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), q.count(*s).into()))
                    .collect();
                serde_json::json!({
                    "name": q.name,
                    "paused": q.paused,
                    "concurrency": q.concurrency,
                    "counts": counts,
                })
            })
            .collect();
        super::print_json(&serde_json::Value::Array(value));
        return Ok(());
    }
    let mut headers = vec!["QUEUE", "PAUSED", "CONCURRENCY"];
    headers.extend(JobState::ALL.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let concurrency = q
                .concurrency
                .map_or_else(|| "node's own".to_string(), |n| n.to_string());
            let mut row = vec![q.name.clone(), q.paused.to_string(), concurrency];
            row.extend(JobState::ALL.iter().map(|s| q.count(*s).to_string()));
            row
        })
        .collect();
    super::print_table(&headers, &rows);
    Ok(())
}
