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
    /// Plan only the tenants whose files changed since this git revision (plus every tenant
    /// of an environment whose file changed).
    #[arg(long, value_name = "REV")]
    pub since: Option<String>,
    /// Plan only this tenant (repeatable; combines with `--since`).
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,
    /// Docker hosts: inspect every container berth manages, so edits made with `docker
    /// update` or a changed env show up as drift (one more API call per container).
    #[arg(long)]
    pub deep: bool,
    /// Read the files at this git revision instead of the work tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// Run it.
pub fn run(args: &PlanArgs, printer: &Printer) -> anyhow::Result<u8> {
    let git = if args.since.is_some() || args.rev.is_some() {
        Some(crate::gitops::GitRepo::open(&args.repo)?)
    } else {
        None
    };
    let sources = match (&git, &args.rev) {
        (Some(g), Some(rev)) => g.sources_at(rev)?,
        _ => crate::repo::load_dir(&args.repo)?,
    };
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
    // Which tenants this plan is about: all, or those a commit range / the flags name.
    let scope = match (&git, &args.since) {
        (Some(g), Some(since)) => {
            let to = args.rev.as_deref().unwrap_or("HEAD");
            let mut changes = g.changes(since, to)?;
            changes.tenants.extend(args.tenants.iter().cloned());
            Some(changes)
        }
        _ if !args.tenants.is_empty() => Some(crate::gitops::Changes {
            tenants: args.tenants.iter().cloned().collect(),
            environments: std::collections::BTreeSet::new(),
        }),
        _ => None,
    };
    let prefixes: Option<Vec<String>> = scope.as_ref().map(|c| dokku_prefixes(&fleet, c));
    let live = if args.offline {
        Live::default()
    } else {
        let runtime = super::runtime()?;
        runtime.block_on(async {
            let hosts = crate::reconcile::hosts_in_use(&fleet);
            let mut drivers = crate::reconcile::connect(&fleet, Some(&hosts))
                .await
                .map_err(|e| hinted_connect(&e))?;
            drivers.set_deep(args.deep);
            crate::execute::observe_all_scoped(&drivers, prefixes.as_deref())
                .await
                .map_err(|(host, source)| {
                    hinted_connect(&crate::reconcile::ConnectError { host, source })
                })
        })?
    };
    let (fleet_in_scope, live) = match &scope {
        Some(changes) => crate::plan::scope(&fleet, &live, &changes.tenants, &changes.environments),
        None => (fleet.clone(), live),
    };
    // A scoped plan may desire no tenant (only deletions); the empty-set breaker is about the
    // whole fleet, which is judged on the full file set.
    let whole_fleet_nonempty = !fleet.tenants.is_empty();
    let options = PlanOptions {
        allow_destroys: args.allow_destroys,
        allow_empty: args.allow_empty || (scope.is_some() && whole_fleet_nonempty),
        baseline: None,
    };
    let mut plan = crate::plan::plan(&fleet_in_scope, &live, &options);
    plan.commit = match (&git, &args.rev) {
        (Some(g), Some(rev)) => Some(g.resolve(rev)?),
        _ => head_commit(&args.repo),
    };
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&render::render_json(&plan))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        printer.status(&format!("saved plan to {}", path.display()));
    }
    print_plan(&plan, printer)?;
    Ok(exit_code(&plan, args.detailed_exitcode))
}

/// Name prefixes of the Dokku apps and services of the tenants in scope, for a scoped scan;
/// `None` (read everything) when the naming template does not start with the tenant.
fn dokku_prefixes(fleet: &crate::model::Fleet, changes: &crate::gitops::Changes) -> Vec<String> {
    let templates_ok = fleet
        .environments
        .values()
        .all(|e| e.dokku_app_template.starts_with("{tenant}-"));
    let mut tenants = changes.tenants.clone();
    for (id, t) in &fleet.tenants {
        if changes.environments.contains(&t.environment) {
            tenants.insert(id.clone());
        }
    }
    if !templates_ok || !changes.environments.is_empty() {
        // Shared services or custom names: read everything rather than guess.
        return vec![String::new()];
    }
    tenants.into_iter().map(|t| format!("{t}-")).collect()
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
