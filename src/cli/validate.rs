//! `berth validate`: load every file, report every problem, exit 0 when valid and 1 when not.

use std::path::PathBuf;

use crate::output::{Format, Printer, diagnostics};

/// Arguments of `berth validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The berth repo (holding `environments/` and `tenants/`).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Run it.
pub fn run(args: &ValidateArgs, printer: &Printer) -> anyhow::Result<u8> {
    super::refuse_markdown(args.format, "validate")?;
    let sources = crate::repo::load_dir(&args.repo)?;
    let (fleet, diags) = crate::reconcile::validate(&sources);
    match printer.format {
        Format::Json => {
            let doc = diagnostics::render_json(&sources, &diags);
            printer.data(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
        }
        Format::Text | Format::Markdown => {
            printer.data(&diagnostics::render_text(
                &sources,
                &diags,
                printer.color_stdout,
            ));
            printer.data(&format!("{}\n", diagnostics::summary(&sources, &diags)));
        }
    }
    Ok(if fleet.is_some() {
        0
    } else {
        super::EXIT_ERROR
    })
}
