//! `sluice enqueue MODULE FUNCTION [ARGS_JSON]`: enqueue one call, or many with `--batch`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sluice::model::{Codec, LimitOverrides, NewJob};
use sluice::unique::UniqueOptions;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The module's name, as uploaded.
    module: String,
    /// The job function to call.
    function: String,
    /// The args as JSON; `null` when omitted.
    args: Option<String>,
    /// Read one JSON args value per line from FILE (`-` for stdin) and enqueue them all.
    #[arg(long, conflicts_with = "args")]
    batch: Option<PathBuf>,
    #[arg(long, default_value = NewJob::DEFAULT_QUEUE)]
    queue: String,
    /// Lower runs first.
    #[arg(long, default_value_t = 0)]
    priority: i16,
    /// Attempts before the job is discarded (default 20; `jobs.max_attempts`).
    #[arg(long)]
    max_attempts: Option<i32>,
    /// Run no earlier than this long from now (like 3s, 5m).
    #[arg(long = "in", value_parser = super::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Run no earlier than this time (RFC 3339).
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// Pin a module version; by default each attempt runs the latest.
    #[arg(long)]
    version: Option<i32>,
    /// Fuel budget of each attempt.
    #[arg(long)]
    fuel: Option<u64>,
    /// Deadline of each attempt (like 30s).
    #[arg(long, value_parser = super::parse_duration)]
    timeout: Option<Duration>,
    /// Memory cap of each attempt, in bytes.
    #[arg(long)]
    memory: Option<u64>,
    /// While a job holds this key (`jobs.idempotency_period`, 24h by default), enqueueing
    /// with it again prints that job's id instead of making another.
    #[arg(long, conflicts_with = "batch")]
    idempotency_key: Option<String>,
    /// A unique job: while a job of the same call (module, function, args) is unfinished,
    /// enqueueing it again prints that job's id instead of making another.
    #[arg(long, conflicts_with = "idempotency_key")]
    unique: bool,
    /// Only these fields of the args make the call the same (implies --unique).
    #[arg(long, value_delimiter = ',', conflicts_with = "idempotency_key")]
    unique_fields: Option<Vec<String>>,
    /// The queue counts too: the same call on another queue is another job (implies --unique).
    #[arg(long, conflicts_with = "idempotency_key")]
    unique_by_queue: bool,
    /// At most one such job per period of this length, by its scheduled time (like 1h;
    /// implies --unique).
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "idempotency_key")]
    unique_period: Option<Duration>,
    /// Finished states in which a job still holds its key: completed, discarded, cancelled
    /// (implies --unique).
    #[arg(long, value_delimiter = ',', conflicts_with = "idempotency_key")]
    unique_finished: Option<Vec<String>>,
    /// The partition the job counts in on a queue with partitions, in place of the one the
    /// queue's partitioning derives.
    #[arg(long)]
    partition_key: Option<String>,
    /// Wait for these jobs (comma-separated ids): the job is held until each has ended, and
    /// then reads their outputs. If one is discarded or cancelled, the job is cancelled too
    /// unless --run-if-failed.
    #[arg(long, value_delimiter = ',')]
    depends_on: Vec<sluice::model::JobId>,
    /// Run the job even if a job it waits for is discarded or cancelled.
    #[arg(long, requires = "depends_on")]
    run_if_failed: bool,
}

impl Args {
    /// The unique job options the flags name, if any does.
    fn unique_options(&self) -> Option<UniqueOptions> {
        let named = self.unique
            || self.unique_fields.is_some()
            || self.unique_by_queue
            || self.unique_period.is_some()
            || self.unique_finished.is_some();
        named.then(|| UniqueOptions {
            fields: self.unique_fields.clone(),
            by_queue: self.unique_by_queue,
            period_secs: self.unique_period.map(|period| period.as_secs()),
            finished: self.unique_finished.clone().unwrap_or_default(),
        })
    }
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let limits = LimitOverrides {
        fuel: args.fuel,
        memory_bytes: args.memory,
        timeout: args.timeout,
    };
    let scheduled_at = match (args.delay, args.at) {
        (Some(delay), _) => {
            Some(Utc::now() + chrono::Duration::from_std(delay).context("--in is too far")?)
        }
        (None, at) => at,
    };
    let unique = args.unique_options();
    // Through --url the node's own default applies unless --max-attempts is given.
    let max_attempts_named = args.max_attempts.is_some();
    let template = NewJob {
        queue: args.queue.clone(),
        module: args.module.clone(),
        module_version: args.version,
        function: args.function.clone(),
        args: Vec::new(),
        codec: Codec::Json,
        priority: args.priority,
        max_attempts: args
            .max_attempts
            .unwrap_or(context.settings.jobs.max_attempts),
        scheduled_at,
        limits,
        unique: None,
        partition_key: args.partition_key.clone(),
        depends_on: args
            .depends_on
            .iter()
            .map(|&id| sluice::compose::Dependency {
                on: sluice::compose::JobRef::Stored(id),
                if_failed: if args.run_if_failed {
                    sluice::compose::IfFailed::Run
                } else {
                    sluice::compose::IfFailed::Cancel
                },
            })
            .collect(),
        parent_id: None,
        batch_id: None,
    };

    if let Some(batch) = &args.batch {
        let jobs = read_batch(batch, &template)?;
        let bar = super::progress::bar(jobs.len() as u64, "enqueued");
        let count = context
            .target
            .enqueue_many(jobs, max_attempts_named, unique.as_ref(), |stored| {
                bar.set_position(stored as u64)
            })
            .await;
        bar.finish_and_clear();
        let (count, existing) = count?;
        if context.json {
            super::print_json(&serde_json::json!({ "count": count, "existing": existing }));
        } else {
            if existing > 0 {
                eprintln!("{existing} of them were held by jobs already there");
            }
            out!("{count}");
        }
        return Ok(());
    }

    let mut job = template;
    job.args = sluice::ops::json_args(args.args.as_deref().unwrap_or("null"))?;
    job.unique = args
        .idempotency_key
        .as_deref()
        .map(|key| sluice::ops::idempotency_key(key, context.settings.jobs.idempotency_period))
        .transpose()?;
    let enqueued = context
        .target
        .enqueue(job, max_attempts_named, unique.as_ref())
        .await?;
    if context.json {
        super::print_view(&enqueued);
    } else {
        if enqueued.existing {
            // Not on stdout, which scripts read the id from.
            let what = if unique.is_some() {
                "the same call"
            } else {
                "this idempotency key"
            };
            eprintln!("job {} already holds {what}", enqueued.id);
        }
        out!("{}", enqueued.id);
    }
    Ok(())
}

fn read_batch(path: &PathBuf, template: &NewJob) -> anyhow::Result<Vec<NewJob>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let mut jobs = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.context("cannot read the batch")?;
        if line.trim().is_empty() {
            continue;
        }
        let mut job = template.clone();
        job.args = sluice::ops::json_args(&line).with_context(|| format!("line {}", number + 1))?;
        jobs.push(job);
    }
    Ok(jobs)
}
