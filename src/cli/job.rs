//! `sluice job ID` shows a job and its attempts; `sluice job retry|cancel|delete ID` acts on it.

use sluice::model::JobId;

use super::Context;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// The job to show.
    #[arg(required = true)]
    id: Option<JobId>,
    /// Show where the job sits in a composition: the job that enqueued it, the jobs it
    /// enqueued, what it waits for and what waits for it, and its batch.
    #[arg(long)]
    tree: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Run the job again now (a finished job gets one more attempt).
    Retry { id: JobId },
    /// Stop the job. A running attempt is interrupted by its node within a second and
    /// recorded as `cancelled`; one that completes before the interrupt lands stays completed.
    Cancel { id: JobId },
    /// Delete the job and its history.
    Delete { id: JobId },
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let target = &context.target;
    let id = match args.action {
        Some(Action::Retry { id }) => target.retry(id).await?.id,
        Some(Action::Cancel { id }) => {
            let job = target.cancel(id).await?;
            if job.state == sluice::model::JobState::Running && !context.json {
                out!(
                    "cancel requested: {} interrupts the running attempt within a second",
                    job.lease_node.as_deref().unwrap_or("its node")
                );
            }
            job.id
        }
        Some(Action::Delete { id }) => {
            target.delete(id).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "id": id, "deleted": true }));
            } else {
                out!("deleted job {id}");
            }
            return Ok(());
        }
        None => args.id.expect("clap requires an id without a subcommand"),
    };
    if args.tree {
        return show_tree(context, id).await;
    }
    show(context, id).await
}

/// How many jobs of each list `--tree` prints before it counts the rest.
const TREE_LINES: usize = 20;

async fn show_tree(context: &Context, id: JobId) -> anyhow::Result<()> {
    let tree = context.target.tree(id).await?;
    if context.json {
        super::print_view(&tree);
        return Ok(());
    }
    let line = |job: &sluice::api::views::JobView| {
        format!(
            "job {}  {}.{}  {}",
            job.id, job.module, job.function, job.state
        )
    };
    match &tree.parent {
        Some(parent) => out!("{}", line(parent)),
        None => out!("(no parent: enqueued from outside a job)"),
    }
    out!("└─ {}", line(&tree.job));
    // A fan-out's tree can name thousands of jobs: the first few of each list, then a count.
    let shown = tree.children.len().min(TREE_LINES);
    for (index, child) in tree.children[..shown].iter().enumerate() {
        let last = index + 1 == shown && tree.children_total as usize == shown;
        out!("   {} {}", if last { "└─" } else { "├─" }, line(child));
    }
    let hidden = tree.children_total as usize - shown;
    if hidden > 0 {
        out!("   └─ … {hidden} more children");
    }
    let links = |links: &[sluice::api::views::DependencyView], verb: &str| {
        for link in links.iter().take(TREE_LINES) {
            out!(
                "  {verb} job {} {} ({}; if it failed: {})",
                link.job_id,
                link.function,
                link.state,
                link.if_failed
            );
        }
        if links.len() > TREE_LINES {
            let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
            for link in &links[TREE_LINES..] {
                *by_state.entry(link.state.as_str()).or_default() += 1;
            }
            let counts: Vec<String> = by_state
                .iter()
                .map(|(state, count)| format!("{count} {state}"))
                .collect();
            out!(
                "  {verb} {} more jobs ({})",
                links.len() - TREE_LINES,
                counts.join(", ")
            );
        }
    };
    links(&tree.waits_for, "waits for");
    links(&tree.waited_on_by, "waited on by");
    if let Some(batch) = &tree.batch {
        let counts = &batch.counts;
        out!(
            "  in batch {}: {} completed, {} discarded, {} cancelled of {}",
            batch.id,
            counts.completed,
            counts.discarded,
            counts.cancelled,
            counts.total
        );
    }
    Ok(())
}

async fn show(context: &Context, id: JobId) -> anyhow::Result<()> {
    let detail = context.target.job(id).await?;
    if context.json {
        super::print_view(&detail);
        return Ok(());
    }
    let job = &detail.job;
    out!(
        "job {}  {}.{}({})",
        job.id,
        job.module,
        job.function,
        job.args
    );
    out!(
        "  queue {}  priority {}  state {}",
        job.queue,
        job.priority,
        job.state
    );
    out!(
        "  attempt {}/{}  scheduled {}",
        job.attempt,
        job.max_attempts,
        job.scheduled_at
    );
    if let Some(node) = &job.lease_node {
        out!(
            "  leased by {node} until {}",
            job.lease_expires_at
                .map(|t| t.to_string())
                .unwrap_or_default()
        );
    }
    if !job.output.is_null() {
        out!("  output {}", job.output);
    }
    if detail.attempts.is_empty() {
        out!("  no attempts yet");
    }
    for a in &detail.attempts {
        let version = a
            .module_version
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "-".into());
        out!(
            "  #{} {} on {} ({version}) at {}: {:.1} ms, {} fuel",
            a.attempt,
            a.outcome,
            a.node,
            a.started_at,
            a.duration_ms,
            a.fuel_consumed
        );
        if let Some(message) = &a.message {
            out!("      {message}");
        }
        if let Some(explanation) = &a.explanation {
            out!("      ({explanation})");
        }
        for line in &a.logs {
            out!("      [{}] {}", line.stream, line.text);
        }
    }
    Ok(())
}
