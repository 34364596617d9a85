//! `berth show plan.json`: render a saved plan.

use std::path::PathBuf;

use crate::output::{Format, Printer};

/// Arguments of `berth show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A plan file written by `berth plan --out`.
    pub plan: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Markdown only: the most bytes the comment may take.
    #[arg(long, default_value_t = crate::output::plan::MARKDOWN_BUDGET)]
    pub max_bytes: usize,
}

/// Run it.
pub fn run(args: &ShowArgs, printer: &Printer) -> anyhow::Result<u8> {
    let plan = crate::reconcile::read_plan(&args.plan).map_err(|e| super::fail(printer, e))?;
    super::plan::print_plan(&plan, printer, args.max_bytes)?;
    Ok(0)
}
