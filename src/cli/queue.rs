//! `sluice queue pause|resume NAME`: stop or restart claims from a queue on every node.

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
    sluice::ops::set_queue_paused(
        context.app.store.as_ref(),
        &name,
        paused,
        sluice::ops::CLI_ACTOR,
    )
    .await?;
    if context.json {
        super::print_json(&serde_json::json!({ "name": name, "paused": paused }));
    } else {
        out!("queue {name} {}", if paused { "paused" } else { "resumed" });
    }
    Ok(())
}
