//! `berth schema`: write the JSON Schemas editors use to check berth files as you type.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::Printer;

/// Arguments of `berth schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Directory to write `tenant.schema.json` and `environment.schema.json` into.
    #[arg(long, default_value = "schema")]
    pub out: PathBuf,
}

/// The files `berth schema` writes, name and content.
#[must_use]
pub fn schema_files() -> Vec<(&'static str, String)> {
    let render = |v: serde_json::Value| {
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("tenant.schema.json", render(crate::spec::tenant_schema())),
        (
            "environment.schema.json",
            render(crate::spec::environment_schema()),
        ),
    ]
}

/// Run it.
pub fn run(args: &SchemaArgs, printer: &Printer) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    for (name, text) in schema_files() {
        let path = args.out.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("wrote {}", path.display()));
    }
    Ok(0)
}
