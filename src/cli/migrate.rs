//! `sluice migrate`: apply pending migrations (opening the store already does; this says so).

use super::Context;

pub async fn run(context: &Context) -> anyhow::Result<()> {
    // `App::open` migrated; running again is a no-op that proves the schema is current.
    context.app()?.store.migrate().await?;
    if context.json {
        super::print_json(&serde_json::json!({ "migrated": true }));
    } else {
        out!("the database schema is up to date");
    }
    Ok(())
}
