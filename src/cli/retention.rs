//! `sluice retention [set ...]`: how long the leader keeps finished jobs of each state,
//! the same for every node.

use std::time::Duration;

use sluice::ops::RetentionSecs;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Set the retention of one or more finished states; the others keep theirs.
    Set {
        #[arg(long, value_parser = super::parse_duration)]
        completed: Option<Duration>,
        /// Discarded jobs: the dead letters.
        #[arg(long, value_parser = super::parse_duration)]
        discarded: Option<Duration>,
        #[arg(long, value_parser = super::parse_duration)]
        cancelled: Option<Duration>,
    },
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let current = context.target.retention().await?;
    let shown = match args.action {
        None => current,
        Some(Action::Set {
            completed,
            discarded,
            cancelled,
        }) => {
            if completed.is_none() && discarded.is_none() && cancelled.is_none() {
                anyhow::bail!("name a state to set: --completed, --discarded or --cancelled");
            }
            let base = current
                .unwrap_or_else(|| RetentionSecs::from(context.settings.node.retention_by_state()));
            let secs =
                |duration: Option<Duration>, kept: u64| duration.map_or(kept, |d| d.as_secs());
            let set = RetentionSecs {
                completed_secs: secs(completed, base.completed_secs),
                discarded_secs: secs(discarded, base.discarded_secs),
                cancelled_secs: secs(cancelled, base.cancelled_secs),
            };
            context.target.set_retention(set).await?;
            Some(set)
        }
    };
    if context.json {
        super::print_json(&serde_json::to_value(shown)?);
        return Ok(());
    }
    match shown {
        Some(secs) => {
            let show = |s: u64| humantime::format_duration(Duration::from_secs(s)).to_string();
            out!(
                "completed {}, discarded {}, cancelled {}",
                show(secs.completed_secs),
                show(secs.discarded_secs),
                show(secs.cancelled_secs)
            );
        }
        None => out!("no retention stored yet: the first node to start stores its own"),
    }
    Ok(())
}
