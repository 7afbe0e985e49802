//! `sluice upload FILE.wasm [--name NAME]`: validate a module and store it as a new version.

use std::path::PathBuf;

use super::Context;
use anyhow::Context as _;

#[derive(clap::Args)]
pub struct Args {
    /// The component, built with `cargo build --target wasm32-wasip2`.
    file: PathBuf,
    /// The module's name; defaults to the file name without `.wasm`.
    #[arg(long)]
    name: Option<String>,
    /// Where this node caches compiled modules.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The largest module accepted, in bytes (default 32 MiB; `api.max_module_size`).
    #[arg(long)]
    max_module_size: Option<usize>,
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let settings = context
        .layers
        .clone()
        .flag("node.cache_dir", "--cache-dir", args.cache_dir)
        .flag(
            "api.max_module_size",
            "--max-module-size",
            args.max_module_size,
        )
        .settings()?;
    let max_module_size = settings.api.max_module_size;
    // Refuse an oversized file before reading it whole.
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    if size > max_module_size as u64 {
        anyhow::bail!(
            "{} was not uploaded: {}",
            args.file.display(),
            sluice::sandbox::ModuleError::TooLarge {
                size: size as usize,
                max: max_module_size
            }
        );
    }
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .context("cannot derive a module name from the file name; pass --name")?
            .to_string(),
    };
    let sandbox = sluice::app::App::sandbox_with(settings.node.cache_dir, |config| {
        config.max_module_bytes = max_module_size;
    })?;
    let uploaded = sluice::ops::upload(
        context.app.store.as_ref(),
        &sandbox,
        name,
        wasm,
        sluice::ops::CLI_ACTOR,
    )
    .await
    .map_err(|error| match error {
        sluice::ops::OpError::Module(_) => {
            anyhow::anyhow!("{} was not uploaded: {error}", args.file.display())
        }
        other => other.into(),
    })?;
    let module = &uploaded.module;
    if context.json {
        super::print_json(&serde_json::json!({
            "name": module.name,
            "version": module.version,
            "digest": module.digest,
            "already_present": uploaded.already_present,
            "functions": module.functions,
        }));
    } else {
        let note = if uploaded.already_present {
            " (these bytes were already uploaded)"
        } else {
            ""
        };
        out!("{} v{}{note}", module.name, module.version);
        for function in &module.functions {
            out!("  {}  {}", function.name, function.description);
        }
    }
    Ok(())
}
