//! `berth show plan.json`: render a saved plan.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::{Format, Hinted, Printer};
use crate::plan::{PLAN_FORMAT_VERSION, Plan};

/// Arguments of `berth show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A plan file written by `berth plan --out`.
    pub plan: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Read a plan file, checking its format version.
pub(crate) fn read_plan(path: &std::path::Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(PLAN_FORMAT_VERSION)) {
        return Err(Hinted {
            message: format!(
                "`{}` is plan format {}, this berth reads {PLAN_FORMAT_VERSION}",
                path.display(),
                version.map_or("(none)".into(), |v| v.to_string())
            ),
            hint: "plan again with this berth".into(),
        }
        .into());
    }
    serde_json::from_value(value)
        .with_context(|| format!("`{}` is not a berth plan", path.display()))
}

/// Run it.
pub fn run(args: &ShowArgs, printer: &Printer) -> anyhow::Result<u8> {
    let plan = read_plan(&args.plan)?;
    super::plan::print_plan(&plan, printer)?;
    Ok(0)
}
