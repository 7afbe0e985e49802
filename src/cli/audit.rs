//! `sluice audit`: who did what, when (every action but enqueueing), newest first.

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let entries = context.target.audit(args.limit).await?;
    if context.json {
        super::print_view(&entries);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.to_string(),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
            ]
        })
        .collect();
    super::print_table(&["AT", "ACTOR", "ACTION", "TARGET"], &rows);
    Ok(())
}
