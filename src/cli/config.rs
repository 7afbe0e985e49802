//! `sluice config`: the effective settings, each with the layer that gave it.

use sluice::settings::Layers;

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
