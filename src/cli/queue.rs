//! `sluice queue pause|resume NAME`: stop or restart claims from a queue on every node;
//! `sluice queue concurrency NAME N|default`: how many of its jobs each node runs at once;
//! `sluice queue limits NAME ...`: the limits all nodes obey together.

use sluice::limits::{Autoscale, Partitioning, QueueLimits, RateLimit};

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// No node claims jobs of this queue until it is resumed; running attempts finish.
    Pause { name: String },
    /// Let nodes claim jobs of this queue again.
    Resume { name: String },
    /// Set how many of this queue's jobs each node runs at once (clamped to each node's
    /// ceiling, the slots its pool was sized for); `default` gives each node back its own.
    /// Running nodes follow within a few seconds.
    Concurrency {
        name: String,
        #[arg(value_parser = parse_concurrency)]
        concurrency: Concurrency,
    },
    /// Set the limits every node obeys for this queue, together: at most N of its jobs at
    /// once over all nodes, at most N starts per period, and partitions, each with a
    /// concurrency and a rate of its own. The flags given replace all the queue's limits;
    /// none lifts them.
    Limits(LimitFlags),
    /// Scale this queue's concurrency on each node between --min and --max, from its
    /// backlog, its jobs' wait to start, and the node's memory and CPU (up to the slots each
    /// node's pool was sized for: its --queue concurrency). `--off` stops it.
    Autoscale(AutoscaleFlags),
}

#[derive(clap::Args)]
struct AutoscaleFlags {
    name: String,
    #[arg(long, required_unless_present = "off")]
    min: Option<u32>,
    #[arg(long, required_unless_present = "off")]
    max: Option<u32>,
    /// The least time between two changes.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    cooldown: std::time::Duration,
    /// How long the queue stays without backlog, half its slots idle, before it shrinks.
    #[arg(long, value_parser = super::parse_duration, default_value = "30s")]
    shrink_after: std::time::Duration,
    /// Jobs waiting longer than this to start make it grow.
    #[arg(long, value_parser = super::parse_duration, default_value = "1s")]
    target_wait: std::time::Duration,
    /// Stop autoscaling: each node goes back to the queue's set concurrency, or its own.
    #[arg(long, conflicts_with_all = ["min", "max"])]
    off: bool,
}

#[derive(clap::Args)]
struct LimitFlags {
    name: String,
    /// At most this many of the queue's jobs at once, summed over all nodes.
    #[arg(long)]
    global: Option<u32>,
    /// At most this many starts per period over all nodes, like 50/1s or 1000/1m.
    #[arg(long)]
    rate: Option<String>,
    /// Starts allowed at once beyond the rate after a quiet spell.
    #[arg(long, default_value_t = 0, requires = "rate")]
    burst: u32,
    /// Split the queue's jobs into partitions by module, function, args.FIELD or key (the
    /// key given at enqueue).
    #[arg(long)]
    partition_by: Option<String>,
    /// At most this many of one partition's jobs at once; 1 runs each partition's jobs one
    /// at a time, in enqueue order.
    #[arg(long, requires = "partition_by")]
    partition_concurrency: Option<u32>,
    /// At most this many of one partition's jobs start per period, like 2/1s.
    #[arg(long, requires = "partition_by")]
    partition_rate: Option<String>,
    /// One partition's burst beyond its rate.
    #[arg(long, default_value_t = 0, requires = "partition_rate")]
    partition_burst: u32,
}

impl LimitFlags {
    fn limits(&self) -> anyhow::Result<QueueLimits> {
        let rate = |text: &Option<String>, burst| {
            text.as_deref()
                .map(|text| RateLimit::parse(text, burst, super::parse_duration))
                .transpose()
                .map_err(|reason| anyhow::anyhow!(reason))
        };
        Ok(QueueLimits {
            global_concurrency: self.global,
            rate: rate(&self.rate, self.burst)?,
            partition: match &self.partition_by {
                None => None,
                Some(by) => Some(Partitioning {
                    by: by.clone(),
                    concurrency: self.partition_concurrency,
                    rate: rate(&self.partition_rate, self.partition_burst)?,
                }),
            },
        })
    }
}

#[derive(Clone, Copy)]
struct Concurrency(Option<u32>);

fn parse_concurrency(text: &str) -> Result<Concurrency, String> {
    if text == "default" {
        return Ok(Concurrency(None));
    }
    text.parse()
        .map(|n| Concurrency(Some(n)))
        .map_err(|_| format!("`{text}` is not a concurrency: a number, or `default`"))
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let (name, paused) = match args.action {
        Action::Autoscale(flags) => {
            let autoscale = match (flags.off, flags.min, flags.max) {
                (false, Some(min), Some(max)) => Some(Autoscale {
                    min,
                    max,
                    cooldown_secs: flags.cooldown.as_secs(),
                    shrink_after_secs: flags.shrink_after.as_secs(),
                    target_wait_ms: u64::try_from(flags.target_wait.as_millis())
                        .unwrap_or(u64::MAX),
                }),
                _ => None,
            };
            context
                .target
                .set_queue_autoscale(&flags.name, autoscale.as_ref())
                .await?;
            if context.json {
                super::print_json(
                    &serde_json::json!({ "name": flags.name, "autoscale": autoscale }),
                );
            } else {
                match autoscale {
                    Some(a) => out!(
                        "queue {}: autoscaled between {} and {} on each node",
                        flags.name,
                        a.min,
                        a.max
                    ),
                    None => out!("queue {}: not autoscaled", flags.name),
                }
            }
            return Ok(());
        }
        Action::Limits(flags) => {
            let limits = flags.limits()?;
            context
                .target
                .set_queue_limits(&flags.name, &limits)
                .await?;
            if context.json {
                super::print_json(&serde_json::json!({ "name": flags.name, "limits": limits }));
            } else {
                out!("queue {}: limits {limits}", flags.name);
            }
            return Ok(());
        }
        Action::Pause { name } => (name, true),
        Action::Resume { name } => (name, false),
        Action::Concurrency {
            name,
            concurrency: Concurrency(concurrency),
        } => {
            context
                .target
                .set_queue_concurrency(&name, concurrency)
                .await?;
            if context.json {
                super::print_json(&serde_json::json!({ "name": name, "concurrency": concurrency }));
            } else {
                match concurrency {
                    Some(n) => out!("queue {name}: {n} at once on each node"),
                    None => out!("queue {name}: each node's own concurrency"),
                }
            }
            return Ok(());
        }
    };
    context.target.set_queue_paused(&name, paused).await?;
    if context.json {
        super::print_json(&serde_json::json!({ "name": name, "paused": paused }));
    } else {
        out!("queue {name} {}", if paused { "paused" } else { "resumed" });
    }
    Ok(())
}
