//! `berth status`: for every host in use, the commit it last had applied, how many commits
//! it is behind `HEAD`, and whether a fresh plan finds drift or pending changes there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::output::Printer;
use crate::plan::{Cause, PlanOptions};

/// Arguments of `berth status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The berth repo (a git work tree).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
}

/// Run it.
pub fn run(args: &StatusArgs, printer: &Printer) -> anyhow::Result<u8> {
    let fleet = super::load_fleet(&args.repo, printer)?;
    let git = crate::gitops::GitRepo::open(&args.repo).ok();
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let hosts = crate::reconcile::hosts_in_use(&fleet);
        let drivers = crate::reconcile::connect(&fleet, Some(&hosts)).await.map_err(|e| super::plan::hinted_connect(&e))?;
        let live = crate::reconcile::observe(&drivers).await.map_err(|e| super::plan::hinted_connect(&e))?;
        let plan = crate::plan::plan(&fleet, &live, &PlanOptions { allow_destroys: true, allow_empty: true, baseline: None });
        let mut per_host: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for step in &plan.steps {
            let entry = per_host.entry(format!("{}/{}", step.environment, step.host)).or_default();
            match step.cause {
                Cause::Drift => entry.0 += 1,
                Cause::Intended => entry.1 += 1,
            }
        }
        let mut text = String::new();
        for (host, driver) in &drivers.hosts {
            let applied = crate::reconcile::applied::read(driver, host).await.unwrap_or(None);
            let behind = match (&git, &applied) {
                (Some(g), Some(commit)) => g.behind(commit, "HEAD").map_or("unknown".to_string(), |n| n.to_string()),
                _ => "unknown".to_string(),
            };
            let (drift, pending) = per_host.get(&host.to_string()).copied().unwrap_or_default();
            let short = applied.as_deref().map_or("(never applied)".to_string(), |c| c[..c.len().min(12)].to_string());
            text.push_str(&format!(
                "{host}: applied {short}, {behind} commits behind HEAD, {drift} drifted, {pending} pending\n"
            ));
        }
        printer.data(&text);
        Ok(0)
    })
}
