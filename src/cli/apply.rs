//! `berth apply [PLANFILE]`: plan (or read a saved plan), take every host's lease, confirm,
//! execute, release.
//!
//! - Without a plan file: observe, plan, show the plan, ask on a terminal (or require
//!   `--auto-approve` without one), execute.
//! - With a plan file: re-read every object the plan fingerprinted; if any moved, refuse and
//!   list them; otherwise execute exactly the saved steps.
//! - Refusals in the plan stop the apply unless their override flag was given at plan time.
//! - Ctrl-C / SIGTERM: in-flight steps finish, nothing new starts, leases are released, the
//!   exit status is non-zero with a summary.
//! - A journal of finished steps (`.berth/journal/<plan>.jsonl` in the repo) lets
//!   `--resume` skip them when the same saved plan is applied again; correctness never
//!   depends on it, since a fresh plan re-observes anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::execute::{Event, ExecOptions, Outcome, Reporter, Tee, TenantResult, execute};
use crate::model::live::HostRef;
use crate::output::progress::Progress;
use crate::output::{Format, Hinted, Printer, plan as render};
use crate::plan::{Plan, PlanOptions, short_hash_of};
use crate::reconcile::lease::{self, LeaseInfo};

/// Arguments of `berth apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A plan file from `berth plan --out`; without it berth plans now.
    pub plan: Option<PathBuf>,
    /// The berth repo.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// `text` (progress on stderr) or `json` (JSON lines on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Accept more destroys than `policy.max-destroys` (fresh plans only).
    #[arg(long)]
    pub allow_destroys: bool,
    /// Accept an empty desired set while hosts hold berth's objects (fresh plans only).
    #[arg(long)]
    pub allow_empty: bool,
    /// Steps in flight per host.
    #[arg(long, default_value_t = 4)]
    pub per_host: usize,
    /// Steps in flight across hosts.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Tries per step for transient failures.
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    /// Seconds to wait for another apply's lease before giving up.
    #[arg(long, default_value_t = 0)]
    pub lock_timeout: u64,
    /// Lease time to live in seconds (it is renewed while the apply runs, on Dokku hosts).
    #[arg(long, default_value_t = lease::DEFAULT_TTL.as_secs())]
    pub lease_ttl: u64,
    /// Docker hosts: inspect every container berth manages, so edits made with `docker
    /// update` or a changed env show up as drift (one more API call per container).
    #[arg(long)]
    pub deep: bool,
    /// Skip the steps the journal records as done (saved plans only).
    #[arg(long)]
    pub resume: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let machine = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{machine} pid {}", std::process::id())
}

/// Appends finished steps to the journal file.
struct Journal {
    file: std::sync::Mutex<std::fs::File>,
}

impl Reporter for Journal {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::StepSucceeded { step, .. } => {
                json!({"step": step.id, "outcome": "succeeded", "at": now()})
            }
            Event::StepFailed { step, .. } => {
                json!({"step": step.id, "outcome": "failed", "at": now()})
            }
            _ => return,
        };
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

fn journal_path(repo: &Path, plan: &Plan) -> PathBuf {
    repo.join(".berth/journal")
        .join(format!("{}.jsonl", short_hash_of(plan)))
}

fn journaled(path: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "succeeded")
        .filter_map(|v| v["step"].as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

fn plan_hosts(plan: &Plan) -> BTreeSet<HostRef> {
    let mut hosts: BTreeSet<HostRef> = plan
        .steps
        .iter()
        .map(|s| HostRef::new(&s.environment, &s.host))
        .collect();
    for (key, value) in &plan.fingerprints {
        if value == "unobserved" {
            continue;
        }
        let mut parts = key.splitn(3, '/');
        if let (Some(env), Some(host)) = (parts.next(), parts.next()) {
            hosts.insert(HostRef::new(env, host));
        }
    }
    hosts
}

fn confirm(printer: &Printer, plan: &Plan) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Hinted {
            message: "refusing to apply without confirmation: stdin is not a terminal".into(),
            hint: "review the plan, then run `berth apply --auto-approve` (CI) or apply a saved plan file".into(),
        }
        .into());
    }
    printer.status(&format!(
        "apply {} steps? type `yes` to proceed:",
        plan.steps.len()
    ));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Run it.
#[allow(clippy::too_many_lines)]
pub fn run(args: &ApplyArgs, printer: &Printer) -> anyhow::Result<u8> {
    let fleet = super::load_fleet(&args.repo, printer)?;
    let saved = match &args.plan {
        Some(path) => Some(super::show::read_plan(path)?),
        None => None,
    };
    if args.resume && saved.is_none() {
        return Err(Hinted {
            message: "`--resume` needs a saved plan file".into(),
            hint: "a fresh plan re-observes the hosts and already skips what is done".into(),
        }
        .into());
    }
    let runtime = super::runtime()?;
    let cancel = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        {
            let cancel = cancel.clone();
            let printer = printer.clone();
            tokio::spawn(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                let term = async move {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = term => {}
                }
                cancel.store(true, Ordering::SeqCst);
                printer.warn("stopping: in-flight steps finish, nothing new starts");
            });
        }
        let hosts = match &saved {
            Some(plan) => plan_hosts(plan),
            None => crate::reconcile::hosts_in_use(&fleet),
        };
        let mut drivers = crate::reconcile::connect(&fleet, Some(&hosts)).await.map_err(|e| super::plan::hinted_connect(&e))?;
        drivers.set_deep(args.deep);

        // Leases first, in a fixed order, so two applies cannot deadlock.
        let token = short_hash_of(&format!("{}{}{:?}", holder(), now(), std::time::Instant::now()));
        let info = |expires: u64| LeaseInfo {
            holder: holder(),
            purpose: "apply".into(),
            started: now(),
            expires,
            token: token.clone(),
        };
        let mut held: Vec<HostRef> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(args.lock_timeout);
        for host in drivers.hosts.keys() {
            let driver = &drivers.hosts[host];
            loop {
                match lease::acquire(driver, host, &info(now() + args.lease_ttl), now()).await {
                    Ok(()) => {
                        held.push(host.clone());
                        break;
                    }
                    Err(lease::LeaseError::Held { .. }) if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        release(&drivers, &held, &token).await;
                        return Err(Hinted {
                            message: e.to_string(),
                            hint: "wait for the other apply, raise `--lock-timeout`, or `berth lock break --host H` if its holder is gone".into(),
                        }
                        .into());
                    }
                }
            }
        }
        let result = apply_locked(args, printer, &fleet, &drivers, saved, &cancel, &held, &info(0)).await;
        release(&drivers, &held, &token).await;
        result
    })
}

async fn release(drivers: &crate::execute::Drivers, held: &[HostRef], token: &str) {
    for host in held {
        let _ = lease::release(&drivers.hosts[host], host, token).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_locked(
    args: &ApplyArgs,
    printer: &Printer,
    fleet: &crate::model::Fleet,
    drivers: &crate::execute::Drivers,
    saved: Option<Plan>,
    cancel: &AtomicBool,
    held: &[HostRef],
    lease_info: &LeaseInfo,
) -> anyhow::Result<u8> {
    let progress = Progress::new(printer);
    let live = crate::reconcile::observe(drivers)
        .await
        .map_err(|e| super::plan::hinted_connect(&e))?;
    let saved_file = saved.is_some();
    let plan = match saved {
        Some(plan) => {
            let now = crate::plan::fingerprints_of(&plan.fingerprints, &live);
            let moved = crate::reconcile::moved_objects(&plan, &now);
            if !moved.is_empty() {
                let list: Vec<String> = moved.iter().map(|(k, _, _)| format!("  {k}")).collect();
                printer.status(&format!(
                    "objects changed since the plan was made:\n{}",
                    list.join("\n")
                ));
                return Err(Hinted {
                    message: format!("the saved plan is stale: {} objects moved", moved.len()),
                    hint: "plan again (`berth plan --out plan.json`) and review the new plan"
                        .into(),
                }
                .into());
            }
            plan
        }
        None => {
            let options = PlanOptions {
                allow_destroys: args.allow_destroys,
                allow_empty: args.allow_empty,
                baseline: None,
            };
            let mut plan = crate::plan::plan(fleet, &live, &options);
            plan.commit = super::plan::head_commit(&args.repo);
            plan
        }
    };
    if printer.format == Format::Json {
        progress.json(&json!({"event": "plan", "plan": render::render_json(&plan)}));
    } else {
        printer.data(&render::render_text(&plan, printer.color_stdout));
    }
    if !plan.refusals.is_empty() {
        return Err(Hinted {
            message: format!(
                "the plan is refused ({} reasons above)",
                plan.refusals.len()
            ),
            hint: "fix the cause, or re-plan with the override flag the refusal names".into(),
        }
        .into());
    }
    if plan.is_empty() {
        return Ok(0);
    }
    if !args.auto_approve && !saved_file && !confirm(printer, &plan)? {
        printer.status("apply cancelled");
        return Ok(super::EXIT_ERROR);
    }
    let progress = Progress::with_bars(printer, &plan);
    let journal_file = journal_path(&args.repo, &plan);
    let skip = if args.resume {
        journaled(&journal_file)
    } else {
        BTreeSet::new()
    };
    if let Some(dir) = journal_file.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_file)
        .with_context(|| format!("cannot open the journal `{}`", journal_file.display()))?;
    let journal = Journal {
        file: std::sync::Mutex::new(file),
    };
    let reporter = Tee(vec![&progress, &journal]);
    let exec = ExecOptions {
        per_host: args.per_host.max(1),
        total: args.parallel.max(1),
        attempts: args.attempts.max(1),
        ..ExecOptions::default()
    };
    // Renew Dokku leases while the apply runs (a third of the time to live).
    let renewing = async {
        let every = Duration::from_secs((args.lease_ttl / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            for host in held {
                let mut info = lease_info.clone();
                info.expires = now() + args.lease_ttl;
                let _ = lease::renew(&drivers.hosts[host], host, &info).await;
            }
        }
    };
    let report = tokio::select! {
        report = execute(&plan, drivers, &exec, &reporter, cancel, &skip) => report,
        () = renewing => unreachable!("renewal never ends"),
    };
    // Record on each host the commit it now reflects (only when everything converged).
    if report.success()
        && let Some(commit) = &plan.commit
    {
        for host in held {
            if let Err(e) =
                crate::reconcile::applied::record(&drivers.hosts[host], host, commit).await
            {
                printer.warn(&format!(
                    "could not record the applied commit on {host}: {e}"
                ));
            }
        }
    }
    let tenants = report.tenants(&plan);
    let failed = tenants
        .values()
        .filter(|t| matches!(t, TenantResult::Failed { .. }))
        .count();
    let incomplete = tenants
        .values()
        .filter(|t| **t == TenantResult::Incomplete)
        .count();
    let done = report
        .outcomes
        .values()
        .filter(|o| **o == Outcome::Succeeded)
        .count();
    if printer.format == Format::Json {
        let per_tenant: BTreeMap<&String, serde_json::Value> = tenants
            .iter()
            .map(|(t, r)| {
                let v = match r {
                    TenantResult::Converged => json!({"result": "converged"}),
                    TenantResult::Failed { step, error } => {
                        json!({"result": "failed", "step": step, "error": error})
                    }
                    TenantResult::Incomplete => json!({"result": "skipped"}),
                };
                (t, v)
            })
            .collect();
        progress.json(&json!({"event": "summary", "steps": plan.steps.len(), "succeeded": done, "tenants": per_tenant, "cancelled": cancel.load(Ordering::SeqCst)}));
    } else {
        for (tenant, result) in &tenants {
            match result {
                TenantResult::Converged => printer.status(&format!("tenant {tenant}: converged")),
                TenantResult::Failed { step, error } => {
                    printer.status(&format!("tenant {tenant}: failed at step {step}: {error}"))
                }
                TenantResult::Incomplete => printer.status(&format!("tenant {tenant}: skipped")),
            }
        }
        printer.status(&format!(
            "apply: {done} of {} steps done, {failed} tenants failed, {incomplete} skipped{}",
            plan.steps.len(),
            if cancel.load(Ordering::SeqCst) {
                " (stopped by a signal)"
            } else {
                ""
            }
        ));
    }
    Ok(if report.success() {
        0
    } else {
        super::EXIT_ERROR
    })
}
