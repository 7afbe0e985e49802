//! `sluice batch ID`: a batch's progress and its callbacks.

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The batch to show.
    id: i64,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let batch = context.target.batch(args.id).await?;
    if context.json {
        super::print_view(&batch);
        return Ok(());
    }
    let counts = &batch.counts;
    let ended = counts.completed + counts.discarded + counts.cancelled;
    out!(
        "batch {}  {ended}/{} ended{}",
        batch.id,
        counts.total,
        if batch.finished { "  (finished)" } else { "" }
    );
    if let Some(parent) = batch.parent_id {
        out!("  opened by job {parent}");
    }
    out!(
        "  completed {}  discarded {}  cancelled {}  running {}  waiting {}",
        counts.completed,
        counts.discarded,
        counts.cancelled,
        counts.running,
        counts.waiting
    );
    for (when, callback) in [
        ("on finished", &batch.on_finished),
        ("on success", &batch.on_success),
        ("on discard", &batch.on_discard),
    ] {
        if let Some(callback) = callback {
            let job = callback
                .job_id
                .map_or_else(|| "not yet".to_string(), |id| format!("job {id}"));
            out!("  {when}: {}.{}  {job}", callback.module, callback.function);
        }
    }
    Ok(())
}
