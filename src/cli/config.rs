//! `sluice config`: the effective settings, each with the layer that gave it;
//! `sluice config apply`: the settings that live in the store, pushed from the config file.

use sluice::settings::Layers;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Store the config file's cron entries and queue limits, replacing entries and limits
    /// of the same names (those the file does not name are kept). A running node seeds
    /// only what is missing.
    Apply,
}

/// Pushes the config file's cron entries and queue limits to the store (or a node's API); every entry is
/// checked and the first refusal stops the rest.
pub async fn apply(context: &Context, args: Args) -> anyhow::Result<()> {
    let Some(Action::Apply) = args.action else {
        unreachable!("`sluice config` alone is answered before the store is opened")
    };
    let mut applied = Vec::new();
    for (name, spec) in &context.settings.cron {
        let entry = context
            .target
            .cron_put(name, spec.clone())
            .await
            .map_err(|error| anyhow::anyhow!("cron entry {name}: {error:#}"))?;
        applied.push(entry);
    }
    for (name, limits) in &context.settings.limits {
        context
            .target
            .set_queue_limits(name, limits)
            .await
            .map_err(|error| anyhow::anyhow!("limits of queue {name}: {error:#}"))?;
    }
    let retention = sluice::ops::RetentionSecs::from(context.settings.node.retention_by_state());
    context
        .target
        .set_retention(retention)
        .await
        .map_err(|error| anyhow::anyhow!("retention: {error:#}"))?;
    for (name, autoscale) in &context.settings.autoscale {
        context
            .target
            .set_queue_autoscale(name, Some(autoscale))
            .await
            .map_err(|error| anyhow::anyhow!("autoscale of queue {name}: {error:#}"))?;
    }
    for (key, policy) in &context.settings.breakers {
        let (module, function) = super::run::breaker_key(key)?;
        context
            .target
            .set_breaker(module, function, Some(policy))
            .await
            .map_err(|error| anyhow::anyhow!("breaker {key}: {error:#}"))?;
    }
    if context.json {
        super::print_json(&serde_json::json!({
            "cron": applied,
            "limits": context.settings.limits,
            "retention": retention,
            "autoscale": context.settings.autoscale,
            "breakers": context.settings.breakers,
        }));
    } else {
        out!(
            "retention applied: completed {} s, discarded {} s, cancelled {} s",
            retention.completed_secs,
            retention.discarded_secs,
            retention.cancelled_secs
        );
        for entry in &applied {
            out!("cron {} applied ({})", entry.name, entry.schedule);
        }
        for (name, limits) in &context.settings.limits {
            out!("queue {name}: limits {limits} applied");
        }
        for (name, autoscale) in &context.settings.autoscale {
            out!(
                "queue {name}: autoscaled between {} and {} applied",
                autoscale.min,
                autoscale.max
            );
        }
        for key in context.settings.breakers.keys() {
            out!("breaker {key} applied");
        }
    }
    Ok(())
}

pub fn run(layers: &Layers, json: bool) -> anyhow::Result<()> {
    let explained = layers.explain()?;
    if json {
        super::print_json(&serde_json::to_value(&explained)?);
        return Ok(());
    }
    match &layers.file {
        Some(path) => out!("# config file: {}", path.display()),
        None => out!("# no config file (sluice.toml here, or --config PATH)"),
    }
    let rows: Vec<Vec<String>> = explained
        .into_iter()
        .map(|setting| {
            let value = match setting.value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            vec![setting.key, value, setting.source]
        })
        .collect();
    super::print_table(&["KEY", "VALUE", "FROM"], &rows);
    Ok(())
}
