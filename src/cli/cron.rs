//! `sluice cron add|list|remove`: periodic jobs, which the leader node inserts once per slot.

use sluice::ops::CronSpec;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Add a periodic job, or replace the entry of that name. SCHEDULE is a cron expression:
    /// five fields (minute hour day month weekday), or six with seconds first; quote it.
    Add {
        name: String,
        schedule: String,
        module: String,
        function: String,
        /// The call's args as JSON (null when absent).
        args: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// The IANA time zone the schedule is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// What to do with slots missed while no node ran: `skip` them, or `run-once` for
        /// all of them.
        #[arg(long, default_value = "skip")]
        misfire: String,
        #[arg(long)]
        priority: Option<i16>,
        #[arg(long)]
        max_attempts: Option<i32>,
    },
    /// List the entries, with their last and next slots.
    List,
    /// Remove an entry; the jobs it inserted stay.
    Remove { name: String },
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Add {
            name,
            schedule,
            module,
            function,
            args,
            queue,
            timezone,
            misfire,
            priority,
            max_attempts,
        } => {
            let spec = CronSpec {
                schedule,
                module,
                function,
                args,
                queue,
                timezone: Some(timezone),
                misfire: Some(misfire),
                priority,
                max_attempts,
            };
            let entry = context.target.cron_put(&name, spec).await?;
            if context.json {
                super::print_view(&entry);
            } else {
                let next = entry
                    .next_slot
                    .map_or_else(|| "never".to_string(), |at| at.to_rfc3339());
                out!("cron {} set: next job at {next}", entry.name);
            }
        }
        Action::List => {
            let entries = context.target.cron_list().await?;
            if context.json {
                super::print_view(&entries);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|entry| {
                    vec![
                        entry.name.clone(),
                        entry.schedule.clone(),
                        entry.timezone.clone(),
                        format!("{}.{}", entry.module, entry.function),
                        entry.queue.clone(),
                        entry.misfire.clone(),
                        entry.last_slot.to_rfc3339(),
                        entry
                            .next_slot
                            .map_or_else(|| "never".to_string(), |at| at.to_rfc3339()),
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "NAME", "SCHEDULE", "ZONE", "CALL", "QUEUE", "MISFIRE", "LAST", "NEXT",
                ],
                &rows,
            );
        }
        Action::Remove { name } => {
            context.target.cron_remove(&name).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "name": name, "removed": true }));
            } else {
                out!("cron {name} removed");
            }
        }
    }
    Ok(())
}
