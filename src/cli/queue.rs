//! `sluice queue pause|resume NAME`: stop or restart claims from a queue on every node.

use sluice::store::QueuePause;

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
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let (name, paused) = match args.action {
        Action::Pause { name } => (name, true),
        Action::Resume { name } => (name, false),
    };
    context
        .app
        .store
        .queue_pause(QueuePause {
            name: name.clone(),
            paused,
        })
        .await?;
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    sluice::ops::audit(
        context.app.store.as_ref(),
        sluice::ops::CLI_ACTOR,
        action,
        &name,
    )
    .await?;
    if context.json {
        super::print_json(&serde_json::json!({ "name": name, "paused": paused }));
    } else {
        out!("queue {name} {}", if paused { "paused" } else { "resumed" });
    }
    Ok(())
}
