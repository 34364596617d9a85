//! `berth status`: for every host in use, the commit it last had applied, how many commits
//! it is behind `HEAD`, and whether a fresh plan finds drift or pending changes there.

use std::path::PathBuf;

use crate::output::{Format, Printer, status as render};
use crate::reconcile::Source;

/// Arguments of `berth status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The berth repo (a git work tree).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Run it.
pub fn run(args: &StatusArgs, printer: &Printer) -> anyhow::Result<u8> {
    super::refuse_markdown(args.format, "status")?;
    let source = Source {
        repo: args.repo.clone(),
        rev: None,
    };
    let hosts = super::runtime()?
        .block_on(crate::reconcile::status(
            &source,
            &crate::driver::Connector::Real,
        ))
        .map_err(|e| super::fail(printer, e))?;
    match args.format {
        Format::Json => printer.data(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::render_status_json(&hosts))?
        )),
        _ => printer.data(&render::render_status_text(&hosts)),
    }
    Ok(0)
}
