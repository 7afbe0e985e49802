//! `sluice queue pause|resume NAME`: stop or restart claims from a queue on every node;
//! `sluice queue concurrency NAME N|default`: how many of its jobs each node runs at once.

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
