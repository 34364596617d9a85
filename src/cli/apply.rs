//! `berth apply [PLANFILE]`: parse the flags, run the library's apply session, confirm on a
//! terminal, render.
//!
//! - Without a plan file the session plans now; the plan is shown and, on a terminal,
//!   confirmed (`--auto-approve` skips the question; without a terminal it is required).
//! - With a plan file the session re-reads every object the plan fingerprinted and refuses
//!   when any moved; otherwise it executes exactly the saved steps.
//! - Ctrl-C / SIGTERM: in-flight steps finish, nothing new starts, leases are released, the
//!   exit status is non-zero with a summary.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::execute::{Event, ExecOptions, Reporter};
use crate::output::progress::Progress;
use crate::output::{Format, Printer};
use crate::plan::Plan;
use crate::reconcile::{
    ApplySettings, Approval, Hooks, Notice, PlanSettings, Session, Source, StopSignal, lease,
};

/// Arguments of `berth apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A plan file from `berth plan --out`; without it berth plans now.
    pub plan: Option<PathBuf>,
    /// The berth repo.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Apply the files as they are at this git revision (a rollback: `--rev HEAD~1`, with
    /// `--tenant ID` for one tenant). The revision is what is recorded as applied.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// `text` (progress on stderr) or `json` (JSON lines on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Safety overrides (fresh plans only).
    #[command(flatten)]
    pub overrides: super::Overrides,
    /// Which tenants (`--since`, `--tenant`; fresh plans only).
    #[command(flatten)]
    pub select: super::Selection,
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
    /// Lease time to live in seconds (renewed every third of it while the apply runs).
    #[arg(long, default_value_t = lease::DEFAULT_TTL.as_secs())]
    pub lease_ttl: u64,
    /// Docker hosts: inspect every container berth manages, so edits made with `docker
    /// update` or a changed env show up as drift (one more API call per container).
    #[arg(long)]
    pub deep: bool,
    /// Skip the steps the journal records as done (saved plans only).
    #[arg(long)]
    pub resume: bool,
    /// Skip the checks made before the first mutating step (every secret resolves, every
    /// image is on its host or in its registry). For experts: a failure then surfaces
    /// half-way through the apply instead.
    #[arg(long)]
    pub skip_preflight: bool,
}

/// The CLI's side of the session: progress rendering and the confirmation question.
struct Terminal<'p> {
    progress: Progress<'p>,
    printer: &'p Printer,
    ask: bool,
}

impl Reporter for Terminal<'_> {
    fn event(&self, event: &Event<'_>) {
        self.progress.event(event);
    }
}

impl Hooks for Terminal<'_> {
    fn notice(&self, notice: &Notice<'_>) {
        self.progress.notice(notice);
    }

    fn approve(&self, plan: &Plan) -> Approval {
        if !self.ask {
            return Approval::Approved;
        }
        if !std::io::stdin().is_terminal() {
            return Approval::Impossible {
                message: "refusing to apply without confirmation: stdin is not a terminal".into(),
                hint: "review the plan, then run `berth apply --auto-approve` (CI) or apply a saved plan file".into(),
            };
        }
        self.printer.status(&format!(
            "apply {} steps? type `yes` to proceed:",
            plan.steps.len()
        ));
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(_) if line.trim() == "yes" => Approval::Approved,
            _ => Approval::Declined,
        }
    }
}

/// Run it.
pub fn run(args: &ApplyArgs, printer: &Printer) -> anyhow::Result<u8> {
    super::refuse_markdown(args.format, "apply")?;
    let source = Source {
        repo: args.repo.clone(),
        rev: args.rev.clone(),
    };
    let (loaded, scope) = super::load_scoped(&source, &args.select, printer)?;
    let saved = match &args.plan {
        Some(path) => Some(crate::reconcile::read_plan(path).map_err(|e| super::fail(printer, e))?),
        None => None,
    };
    let settings = ApplySettings {
        plan: PlanSettings {
            scope,
            offline: false,
            deep: args.deep,
            fast: false,
            allow_destroys: args.overrides.allow_destroys,
            allow_empty: args.overrides.allow_empty,
            allow_upgrades: args.overrides.allow_service_upgrades,
            purge_now: args.overrides.purge_now.clone(),
        },
        resume: args.resume,
        journal_dir: Some(args.repo.clone()),
        exec: ExecOptions {
            per_host: args.per_host.max(1),
            total: args.parallel.max(1),
            attempts: args.attempts.max(1),
            ..ExecOptions::default()
        },
        lease_ttl: Duration::from_secs(args.lease_ttl.max(1)),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        skip_preflight: args.skip_preflight,
        ..ApplySettings::default()
    };
    let settings = ApplySettings { saved, ..settings };
    let hooks = Terminal {
        progress: Progress::new(printer),
        printer,
        ask: !args.auto_approve && settings.saved.is_none(),
    };
    let runtime = super::runtime()?;
    let stop = Arc::new(StopSignal::default());
    let outcome = runtime.block_on(async {
        super::stop_on_signals(stop.clone(), printer);
        let only = settings.saved.as_ref().map(crate::reconcile::plan_hosts);
        let session = Session::connect(
            loaded.fleet,
            loaded.commit,
            &crate::driver::Connector::Real,
            only.as_ref(),
        )
        .await?
        .with_history(&args.repo);
        session.apply(&settings, &hooks, &stop).await
    });
    let outcome = outcome.map_err(|e| super::fail(printer, e))?;
    hooks.progress.finish(&outcome);
    if outcome.stopped == Some(crate::reconcile::Stopped::Refused) {
        return Err(crate::output::Hinted {
            message: format!(
                "the plan is refused ({} reasons above)",
                outcome.plan.refusals.len()
            ),
            hint: "fix the cause, or re-plan with the override flag the refusal names".into(),
        }
        .into());
    }
    Ok(if outcome.success() {
        0
    } else {
        super::EXIT_ERROR
    })
}
