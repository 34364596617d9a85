//! The command line: one file per subcommand, each a clap `Args` struct and a `run` function.
//!
//! This layer turns raw arguments into calls of the library and maps outcomes to exit codes;
//! `anyhow` is allowed here and nowhere below.

pub mod apply;
pub mod bridge;
pub mod daemon;
pub mod import;
pub mod lock;
pub mod plan;
pub mod schema;
pub mod show;
pub mod status;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{ColorChoice, Format, Printer};

/// berth keeps a multi-tenant fleet exactly as a git repo of YAML files says.
#[derive(Debug, Parser)]
#[command(name = "berth", version = VERSION, about, propagate_version = true)]
pub struct Args {
    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    /// Whether the subcommand sets up its own logging (`berth daemon`, in its
    /// `--log-format`), so `main` must not install the `BERTH_LOG` subscriber first.
    #[must_use]
    pub fn logs_itself(&self) -> bool {
        matches!(&self.command, Command::Daemon(a) if a.action.is_none())
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every environment and tenant file and report every problem at once.
    Validate(validate::ValidateArgs),
    /// Plan the changes that make the hosts match the files.
    Plan(plan::PlanArgs),
    /// Make the hosts match the files (or execute a saved plan).
    Apply(apply::ApplyArgs),
    /// Render a saved plan file.
    Show(show::ShowArgs),
    /// Show or break the per-host leases that keep applies apart.
    Lock(lock::LockArgs),
    /// Per host: the commit it reflects, how far behind it is, and whether it drifted.
    Status(status::StatusArgs),
    /// Write the JSON Schemas of the tenant and environment files.
    Schema(schema::SchemaArgs),
    /// Receive Stripe webhooks and turn them into commits on the tenants repo.
    Bridge(Box<bridge::BridgeArgs>),
    /// Follow the repo, apply new commits, heal drift and show the fleet (docs/daemon.md).
    Daemon(Box<daemon::DaemonArgs>),
    /// Write tenant files for what a script made on a host: Dokku apps, or compose-style Docker
    /// stacks (docs/migrating.md).
    Import(import::ImportArgs),
}

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_BUILD_COMMIT"),
    ")"
);

/// Exit code for "something went wrong".
pub const EXIT_ERROR: u8 = 1;

/// A tokio runtime for the commands that talk to hosts.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Turn a session error into the CLI's error, printing what goes with it first (the
/// diagnostics of invalid files, the objects a stale plan saw move).
pub(crate) fn fail(printer: &Printer, error: crate::reconcile::SessionError) -> anyhow::Error {
    use crate::reconcile::SessionError;
    match &error {
        SessionError::Invalid {
            sources,
            diagnostics,
            ..
        } => printer.status(&crate::output::diagnostics::render_text(
            sources,
            diagnostics,
            printer.color_stderr,
        )),
        SessionError::Preflight { problems } => {
            let list: Vec<String> = problems
                .iter()
                .map(|p| format!("  {} tenant {}: {}", p.host, p.tenant, p.message))
                .collect();
            printer.status(&format!("preflight:\n{}", list.join("\n")));
        }
        SessionError::StalePlan { moved } => {
            let list: Vec<String> = moved.iter().map(|m| format!("  {}", m.key)).collect();
            printer.status(&format!(
                "objects changed since the plan was made:\n{}",
                list.join("\n")
            ));
        }
        _ => {}
    }
    match error.hint() {
        Some(hint) => crate::output::Hinted {
            message: crate::driver::error_chain(&error),
            hint,
        }
        .into(),
        None => anyhow::Error::new(error),
    }
}

/// Load and validate the desired state; invalid files become one error with the report
/// printed.
pub(crate) fn load(
    source: &crate::reconcile::Source,
    printer: &Printer,
) -> anyhow::Result<crate::reconcile::Loaded> {
    crate::reconcile::load(source).map_err(|e| fail(printer, e))
}

/// The safety overrides a fresh plan may take.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Accept more destroys than `policy.max-destroys`.
    #[arg(long)]
    pub allow_destroys: bool,
    /// Accept an empty desired set while hosts hold berth's objects.
    #[arg(long)]
    pub allow_empty: bool,
    /// Let Dokku Postgres/Redis services move to the image the files name, through the
    /// plugin's `upgrade` (the data directory is kept; back it up first — a new Postgres
    /// major version cannot read an older one's files).
    #[arg(long)]
    pub allow_service_upgrades: bool,
    /// Purge this tenant's data (`state: purge`) before `policy.retain-data` has passed
    /// since its cancellation (repeatable; names the tenant on purpose).
    #[arg(long = "purge-now", value_name = "TENANT")]
    pub purge_now: Vec<String>,
}

/// Credentials of an ssh or https remote (`berth bridge`, `berth daemon --remote`). A token
/// is named by an environment variable, never given as a flag (flags show in `ps`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RemoteAuth {
    /// Private key for an ssh remote (default: the ssh agent).
    #[arg(long)]
    pub ssh_key: Option<std::path::PathBuf>,
    /// The ssh remote's host key, `ssh-ed25519 AAAA…` (required for ssh remotes).
    #[arg(long)]
    pub ssh_host_key: Option<String>,
    /// Environment variable holding a token for an https remote.
    #[arg(long)]
    pub https_token_env: Option<String>,
    /// User name sent with the https token.
    #[arg(long, default_value = "x-access-token")]
    pub https_user: String,
}

impl RemoteAuth {
    /// The credentials, with the token read from its variable.
    ///
    /// # Errors
    /// The named variable is not set.
    pub fn auth(&self) -> anyhow::Result<crate::gitops::remote::Auth> {
        use anyhow::Context as _;
        let https_token = match &self.https_token_env {
            Some(var) => Some(
                std::env::var(var)
                    .with_context(|| format!("--https-token-env: `{var}` is not set"))?,
            ),
            None => None,
        };
        Ok(crate::gitops::remote::Auth {
            ssh_key: self.ssh_key.clone(),
            ssh_host_key: self.ssh_host_key.clone(),
            https_token,
            https_user: self.https_user.clone(),
        })
    }
}

/// `--since REV` and `--tenant ID`: which tenants a plan or apply is about.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Only the tenants whose files changed since this git revision (uncommitted edits
    /// included when the work tree is read), plus every tenant of an environment whose file
    /// changed.
    #[arg(long, value_name = "REV")]
    pub since: Option<String>,
    /// Only this tenant (repeatable; combines with `--since`). A name with no file and no
    /// object on any host is an error.
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,
}

/// Load and validate, then resolve the selection into a scope.
pub(crate) fn load_scoped(
    source: &crate::reconcile::Source,
    select: &Selection,
    printer: &Printer,
) -> anyhow::Result<(crate::reconcile::Loaded, Option<crate::plan::Scope>)> {
    let loaded = load(source, printer)?;
    let scope = crate::reconcile::resolve_scope(
        source,
        &loaded,
        &crate::reconcile::ScopeRequest {
            since: select.since.clone(),
            tenants: select.tenants.clone(),
        },
    )
    .map_err(|e| fail(printer, e))?;
    Ok((loaded, scope))
}

/// Ctrl-C and SIGTERM stop `stop`: in-flight steps finish, nothing new starts.
pub(crate) fn stop_on_signals(
    stop: std::sync::Arc<crate::reconcile::StopSignal>,
    printer: &Printer,
) {
    let printer = printer.clone();
    let signalled = signals();
    tokio::spawn(async move {
        signalled.await;
        stop.stop();
        printer.warn("stopping: in-flight steps finish, nothing new starts");
    });
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first. The handlers are installed when this
/// is called (not when the future is first polled), so a signal right after start-up is
/// never the default "die at once". Call it inside the runtime.
pub(crate) fn signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        let int = async {
            match int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = int => {}
            () = term => {}
        }
    }
}

/// `--format markdown` is for plans; other commands refuse it instead of printing text.
pub(crate) fn refuse_markdown(format: Format, command: &str) -> anyhow::Result<()> {
    if format == Format::Markdown {
        return Err(crate::output::Hinted {
            message: format!("`berth {command}` has no markdown output"),
            hint: "use `--format text` or `--format json`; markdown is for `berth plan` and `berth show`".into(),
        }
        .into());
    }
    Ok(())
}

/// Accept Terraform's single-dash `-out FILE`, `-detailed-exitcode` and `-auto-approve` as
/// their `--` forms.
#[must_use]
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    // Terraform's single-dash long flags, accepted as their double-dash forms.
    const SINGLE_DASH: &[&str] = &["out", "detailed-exitcode", "auto-approve"];
    args.into_iter()
        .map(|a| {
            let Some(text) = a.to_str() else { return a };
            for flag in SINGLE_DASH {
                if text == format!("-{flag}") {
                    return format!("--{flag}").into();
                }
                if let Some(rest) = text.strip_prefix(&format!("-{flag}=")) {
                    return format!("--{flag}={rest}").into();
                }
            }
            a
        })
        .collect()
}

/// The host `--host` names: `environment/host`, or `host` when only one environment has
/// it (`berth lock break`, `berth import`).
pub(crate) fn find_host(
    fleet: &crate::model::Fleet,
    name: &str,
) -> anyhow::Result<crate::model::live::HostRef> {
    let all: Vec<crate::model::live::HostRef> = fleet
        .environments
        .values()
        .flat_map(|e| {
            e.hosts
                .keys()
                .map(move |h| crate::model::live::HostRef::new(&e.name, h))
        })
        .collect();
    let candidates: Vec<&crate::model::live::HostRef> = all
        .iter()
        .filter(|h| h.to_string() == name || h.host == name)
        .collect();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let names: Vec<String> = all.iter().map(ToString::to_string).collect();
            Err(crate::output::Hinted {
                message: format!("no host `{name}`"),
                hint: format!("the hosts are: {}", names.join(", ")),
            }
            .into())
        }
        many => Err(crate::output::Hinted {
            message: format!("host `{name}` exists in several environments"),
            hint: format!(
                "write it as one of: {}",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into()),
    }
}

/// Run a parsed command line.
#[must_use]
pub fn run(args: Args) -> ExitCode {
    let (format, result) = match args.command {
        Command::Validate(a) => {
            let format = a.format;
            let printer = Printer::new(format, args.color);
            (printer.clone(), validate::run(&a, &printer))
        }
        Command::Plan(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), plan::run(&a, &printer))
        }
        Command::Apply(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), apply::run(&a, &printer))
        }
        Command::Lock(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), lock::run(&a, &printer))
        }
        Command::Status(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), status::run(&a, &printer))
        }
        Command::Show(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), show::run(&a, &printer))
        }
        Command::Bridge(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), bridge::run(&a, &printer))
        }
        Command::Daemon(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), daemon::run(&a, &printer))
        }
        Command::Import(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), import::run(&a, &printer))
        }
        Command::Schema(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), schema::run(&a, &printer))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            format.error(&error);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
