//! `sluice upload FILE.wasm [--name NAME]`: validate a module and store it as a new version.

use std::path::PathBuf;

use super::Context;
use super::target::{Target, UploadError};
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
    /// The largest module accepted, in bytes (default 32 MiB; `api.max_module_size`). Through
    /// --url the node's own cap applies.
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
    let not_uploaded = |reason: &dyn std::fmt::Display| {
        anyhow::anyhow!("{} was not uploaded: {reason}", args.file.display())
    };
    // Refuse an oversized file before reading it whole (a node checks its own cap).
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    if matches!(context.target, Target::Store(_)) && size > max_module_size as u64 {
        return Err(not_uploaded(&sluice::sandbox::ModuleError::TooLarge {
            size: size as usize,
            max: max_module_size,
        }));
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
    let cache_dir = settings.node.cache_dir;
    let sandbox = move || {
        sluice::app::App::sandbox_with(cache_dir, |config| {
            config.max_module_bytes = max_module_size;
        })
    };
    let spinner = super::progress::spinner(&format!("validating and compiling {name}"));
    let uploaded = context.target.upload(name, wasm, sandbox).await;
    spinner.finish_and_clear();
    let uploaded = uploaded.map_err(|error| match error {
        UploadError::Refused(reason) => not_uploaded(&reason),
        UploadError::Other(error) => error,
    })?;
    if context.json {
        super::print_view(&uploaded);
    } else {
        let module = &uploaded.module;
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
