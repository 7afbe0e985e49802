//! `sluice modules`: the latest version of every uploaded module.

use super::Context;

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let modules = context.target.modules().await?;
    if context.json {
        super::print_view(&modules);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = modules
        .iter()
        .map(|m| {
            let functions: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
            vec![
                m.name.clone(),
                m.version.to_string(),
                m.digest.chars().take(12).collect(),
                m.size_bytes.to_string(),
                m.uploaded_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                functions.join(", "),
            ]
        })
        .collect();
    super::print_table(
        &[
            "MODULE",
            "VERSION",
            "DIGEST",
            "BYTES",
            "UPLOADED",
            "FUNCTIONS",
        ],
        &rows,
    );
    Ok(())
}
