//! `berth plan`: load, validate, observe (or assume empty hosts with `--offline`), plan,
//! render; `--out` stores the plan for `berth show` and a later `berth apply plan.json`.

use std::path::PathBuf;

use anyhow::Context;

use crate::model::live::Live;
use crate::output::{Format, Hinted, Printer, diagnostics, plan as render};
use crate::plan::{Plan, PlanOptions};

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
    /// Accept more destroys than `policy.max-destroys`.
    #[arg(long)]
    pub allow_destroys: bool,
    /// Accept an empty desired set while hosts hold berth's objects.
    #[arg(long)]
    pub allow_empty: bool,
}

/// Run it.
pub fn run(args: &PlanArgs, printer: &Printer) -> anyhow::Result<u8> {
    let sources = crate::repo::load_dir(&args.repo)?;
    let (fleet, diags) = crate::validate::validate(&sources);
    let Some(fleet) = fleet else {
        printer.status(&diagnostics::render_text(
            &sources,
            &diags,
            printer.color_stderr,
        ));
        return Err(Hinted {
            message: diagnostics::summary(&sources, &diags),
            hint: "fix the files above; `berth validate` shows the same report".into(),
        }
        .into());
    };
    let live = if args.offline {
        Live::default()
    } else {
        let runtime = super::runtime()?;
        runtime.block_on(async {
            let hosts = crate::reconcile::hosts_in_use(&fleet);
            let drivers = crate::reconcile::connect(&fleet, Some(&hosts))
                .await
                .map_err(|e| hinted_connect(&e))?;
            crate::reconcile::observe(&drivers)
                .await
                .map_err(|e| hinted_connect(&e))
        })?
    };
    let options = PlanOptions {
        allow_destroys: args.allow_destroys,
        allow_empty: args.allow_empty,
        baseline: None,
    };
    let mut plan = crate::plan::plan(&fleet, &live, &options);
    plan.commit = head_commit(&args.repo);
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&render::render_json(&plan))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("saved plan to {}", path.display()));
    }
    print_plan(&plan, printer)?;
    Ok(exit_code(&plan, args.detailed_exitcode))
}

/// A connection error with the hint to plan offline.
pub(crate) fn hinted_connect(e: &crate::reconcile::ConnectError) -> anyhow::Error {
    let mut chain = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    Hinted {
        message: chain.join(": "),
        hint: "check the host entry in the environment file; `berth plan --offline` plans without contacting hosts".into(),
    }
    .into()
}

/// Render a plan in the printer's format.
pub(crate) fn print_plan(plan: &Plan, printer: &Printer) -> anyhow::Result<()> {
    match printer.format {
        Format::Text => printer.data(&render::render_text(plan, printer.color_stdout)),
        Format::Json => {
            printer.data(&(serde_json::to_string_pretty(&render::render_json(plan))? + "\n"))
        }
        Format::Markdown => printer.data(&render::render_markdown(plan)),
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

/// The commit of the repo's HEAD, when the repo is a git work tree.
pub(crate) fn head_commit(repo: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && commit.len() == 40).then_some(commit)
}
