//! `sluice jobs [--state S] [--queue Q] [--module M] [--limit N]`: list jobs, newest first.

use sluice::model::JobState;

use super::Context;
use super::target::JobQuery;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_state)]
    state: Option<JobState>,
    #[arg(long)]
    queue: Option<String>,
    #[arg(long)]
    module: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub fn parse_state(text: &str) -> Result<JobState, String> {
    sluice::ops::parse_state(text).map_err(|error| error.to_string())
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let query = JobQuery {
        state: args.state,
        queue: args.queue,
        module: args.module,
        limit: args.limit,
    };
    let jobs = context.target.jobs(query).await?;
    if context.json {
        super::print_view(&jobs);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                job.id.to_string(),
                job.queue.clone(),
                format!("{}.{}", job.module, job.function),
                job.state.to_string(),
                format!("{}/{}", job.attempt, job.max_attempts),
                super::ellipsize(&job.output.to_string(), 40),
            ]
        })
        .collect();
    super::print_table(
        &["ID", "QUEUE", "CALL", "STATE", "ATTEMPT", "OUTPUT"],
        &rows,
    );
    Ok(())
}
