//! `berth plan`: load, validate, observe (or assume empty hosts with `--offline`), plan,
//! render; `--out` stores the plan for `berth show` and a later `berth apply plan.json`.

use std::path::PathBuf;

use anyhow::Context;

use crate::driver::Connector;
use crate::output::{Format, Printer, plan as render};
use crate::plan::Plan;
use crate::reconcile::{PlanSettings, Session, Source};

/// Arguments of `berth plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The berth repo (holding `environments/` and `tenants/`).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Plan against empty hosts instead of observing them (no host is contacted).
    #[arg(long)]
    pub offline: bool,
    /// Write the plan to this file (`-out` is accepted too, as in Terraform).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Exit 2 when the plan has changes, 0 when it has none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Safety overrides (fresh plans only).
    #[command(flatten)]
    pub overrides: super::Overrides,
    /// Which tenants (`--since`, `--tenant`).
    #[command(flatten)]
    pub select: super::Selection,
    /// Docker hosts: inspect every container berth manages, so edits made with `docker
    /// update` or a changed env show up as drift (one more API call per container).
    #[arg(long)]
    pub deep: bool,
    /// Markdown only: the most bytes the comment may take (GitHub refuses comments over
    /// 65,536 characters); details collapse to counts past it.
    #[arg(long, default_value_t = render::MARKDOWN_BUDGET)]
    pub max_bytes: usize,
    /// Read the files at this git revision instead of the work tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// Run it.
pub fn run(args: &PlanArgs, printer: &Printer) -> anyhow::Result<u8> {
    let source = Source {
        repo: args.repo.clone(),
        rev: args.rev.clone(),
    };
    let (loaded, scope) = super::load_scoped(&source, &args.select, printer)?;
    let settings = PlanSettings {
        scope,
        offline: args.offline,
        deep: args.deep,
        fast: false,
        allow_destroys: args.overrides.allow_destroys,
        allow_empty: args.overrides.allow_empty,
        allow_upgrades: args.overrides.allow_service_upgrades,
        purge_now: args.overrides.purge_now.clone(),
    };
    let plan = if args.offline {
        let session = Session::offline(loaded.fleet, loaded.commit).with_history(&args.repo);
        super::runtime()?
            .block_on(session.plan(&settings))
            .map_err(|e| super::fail(printer, e))?
    } else {
        let runtime = super::runtime()?;
        runtime
            .block_on(async {
                let session = Session::connect(loaded.fleet, loaded.commit, &Connector::Real, None)
                    .await?
                    .with_history(&args.repo);
                session.plan(&settings).await
            })
            .map_err(|e| super::fail(printer, e))?
    };
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&render::render_json(&plan))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("saved plan to {}", path.display()));
    }
    print_plan(&plan, printer, args.max_bytes)?;
    Ok(exit_code(&plan, args.detailed_exitcode))
}

/// Render a plan in the printer's format.
pub(crate) fn print_plan(plan: &Plan, printer: &Printer, max_bytes: usize) -> anyhow::Result<()> {
    match printer.format {
        Format::Text => printer.data(&render::render_text(plan, printer.color_stdout)),
        Format::Json => {
            printer.data(&(serde_json::to_string_pretty(&render::render_json(plan))? + "\n"))
        }
        Format::Markdown => printer.data(&render::render_markdown_within(plan, max_bytes)),
    }
    Ok(())
}

/// 1 when refused; with `--detailed-exitcode` 2 when there are changes; else 0.
pub(crate) fn exit_code(plan: &Plan, detailed: bool) -> u8 {
    if !plan.refusals.is_empty() {
        super::EXIT_ERROR
    } else if detailed && !plan.is_empty() {
        2
    } else {
        0
    }
}
