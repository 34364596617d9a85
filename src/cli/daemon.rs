//! `berth daemon`: parse the flags, set up logging, run the library's daemon until SIGTERM /
//! SIGINT. `berth daemon pause` / `resume` write the pause file of a state directory and,
//! with `--url`, tell a running daemon at once.
//!
//! Secrets (the bearer token, webhook secrets, an https token) are named, never given:
//! `--token-env NAME` names a variable, `--github-secret NAME` a secret of the `env`
//! provider (`BERTH_SECRET_<NAME>`), so no value shows in `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::daemon::backoff::Backoff;
use crate::daemon::follow::Follow;
use crate::daemon::webhook::WebhookSecrets;
use crate::daemon::{self, Config};
use crate::driver::secrets::SecretProvider;
use crate::execute::ExecOptions;
use crate::output::{Hinted, Printer};

/// A daemon's default lease time to live (an `apply`'s is 30 minutes): its passes renew
/// their leases throughout, so a short one only bounds how long a dead daemon's hosts wait.
const DAEMON_LEASE_TTL: u64 = 120;

/// Arguments of `berth daemon`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DaemonArgs {
    /// Pause or resume a daemon (without one: run it).
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
    /// How to run it.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `berth daemon pause` / `resume`.
#[derive(Debug, clap::Subcommand)]
pub enum DaemonAction {
    /// Stop running passes (the pause survives restarts) until `resume`.
    Pause(PauseArgs),
    /// Run passes again.
    Resume(PauseArgs),
}

/// Where the daemon to pause is.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The daemon's state directory (its pause file).
    #[arg(long, default_value = ".berth-daemon")]
    pub state_dir: PathBuf,
    /// A running daemon's URL, told at once (`http://127.0.0.1:8788`).
    #[arg(long)]
    pub url: Option<String>,
    /// Environment variable holding the daemon's bearer token.
    #[arg(long)]
    pub token_env: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// Arguments of `berth daemon` (run).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Follow this local berth repo (re-read on every change; a git work tree's `HEAD` is
    /// recorded when its berth files are committed).
    #[arg(long, default_value = ".", conflicts_with = "remote")]
    pub repo: PathBuf,
    /// Follow a branch of this remote instead (a path, `file://`, `ssh://`, `https://`),
    /// fetched into the state directory.
    #[arg(long)]
    pub remote: Option<String>,
    /// The branch of `--remote` to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Where the daemon keeps its mirror and its pause file.
    #[arg(long, default_value = ".berth-daemon")]
    pub state_dir: PathBuf,
    /// Address of the HTTP side (status page, metrics, webhooks). Loopback unless a token is
    /// set.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token for the HTTP API (required to listen
    /// beyond loopback).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Name of GitHub's (or Gitea's `X-Hub-Signature-256`) webhook secret, read as
    /// `BERTH_SECRET_<NAME>` (repeatable, to roll a secret).
    #[arg(long = "github-secret", value_name = "NAME")]
    pub github_secrets: Vec<String>,
    /// Name of GitLab's webhook secret token, read as `BERTH_SECRET_<NAME>` (repeatable).
    #[arg(long = "gitlab-secret", value_name = "NAME")]
    pub gitlab_secrets: Vec<String>,
    /// Name of Gitea's `X-Gitea-Signature` secret, read as `BERTH_SECRET_<NAME>` (repeatable).
    #[arg(long = "gitea-secret", value_name = "NAME")]
    pub gitea_secrets: Vec<String>,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Seconds between looks for a new commit (fetch or re-read).
    #[arg(long, default_value_t = 60.0)]
    pub poll: f64,
    /// Spread of the poll interval (0.1 = ±10%), so many daemons do not fetch in step.
    #[arg(long, default_value_t = 0.1)]
    pub poll_jitter: f64,
    /// Seconds between full, deep passes (the drift scan).
    #[arg(long, default_value_t = 600.0)]
    pub drift_scan: f64,
    /// Seconds between full passes in between drift scans: every tenant, with Dokku apps
    /// confirmed by berth's spec labels in a fixed number of commands per host.
    #[arg(long, default_value_t = 60.0)]
    pub full_pass: f64,
    /// Milliseconds of quiet after a file event before a local repo is read.
    #[arg(long, default_value_t = 500)]
    pub debounce_ms: u64,
    /// First retry delay in seconds of a failing tenant (doubles per failure, with jitter).
    #[arg(long, default_value_t = 5.0)]
    pub backoff: f64,
    /// Longest retry delay in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub backoff_max: f64,
    /// Steps in flight per host.
    #[arg(long, default_value_t = 4)]
    pub per_host: usize,
    /// Steps in flight across hosts.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Tries per step for transient failures within a pass.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Lease time to live in seconds, renewed every third of it through each pass: how long
    /// the hosts of a daemon that died mid-pass wait before another holder may take them.
    #[arg(long, default_value_t = DAEMON_LEASE_TTL)]
    pub lease_ttl: u64,
    /// Seconds between refreshes of the status page.
    #[arg(long, default_value_t = 10)]
    pub refresh: u32,
    /// Seconds a stop may take (in-flight steps finishing) before the daemon gives up.
    #[arg(long, default_value_t = 120)]
    pub shutdown_timeout: u64,
    /// `human` or `json` log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Credentials of an ssh or https `--remote`.
    #[command(flatten)]
    pub remote_auth: super::RemoteAuth,
}

fn env_value(var: &str, flag: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("{flag}: `{var}` is not set"))
}

fn secrets(names: &[String], runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Vec<u8>>> {
    names
        .iter()
        .map(|name| {
            runtime
                .block_on(SecretProvider::Env.get(name))
                .map(String::into_bytes)
                .map_err(|e| {
                    Hinted {
                        message: format!("cannot read the webhook secret: {e}"),
                        hint: format!("set `{}`", SecretProvider::env_var(name)),
                    }
                    .into()
                })
        })
        .collect()
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("{flag}: not a duration"))
}

/// Run it.
pub fn run(args: &DaemonArgs, printer: &Printer) -> anyhow::Result<u8> {
    match &args.action {
        Some(DaemonAction::Pause(p)) => return pause(p, true, printer),
        Some(DaemonAction::Resume(p)) => return pause(p, false, printer),
        None => {}
    }
    let args = &args.run;
    init_logging(args.log_format, printer);
    let runtime = super::runtime()?;
    let token = match &args.token_env {
        Some(var) => Some(env_value(var, "--token-env")?),
        None => None,
    };
    let follow = match &args.remote {
        Some(url) => Follow::Remote {
            url: url.clone(),
            branch: args.branch.clone(),
            auth: args.remote_auth.auth()?,
        },
        None => Follow::Local(args.repo.clone()),
    };
    let config = Config {
        follow,
        state_dir: args.state_dir.clone(),
        listen: args.listen,
        token,
        webhooks: WebhookSecrets {
            github: secrets(&args.github_secrets, &runtime)?,
            gitlab: secrets(&args.gitlab_secrets, &runtime)?,
            gitea: secrets(&args.gitea_secrets, &runtime)?,
        },
        max_body: args.max_body,
        poll: seconds(args.poll, "--poll")?,
        poll_jitter: args.poll_jitter.clamp(0.0, 0.9),
        drift_scan: seconds(args.drift_scan, "--drift-scan")?,
        full_pass: seconds(args.full_pass, "--full-pass")?,
        debounce: Duration::from_millis(args.debounce_ms),
        backoff: Backoff {
            base: seconds(args.backoff, "--backoff")?,
            max: seconds(args.backoff_max, "--backoff-max")?,
        },
        exec: ExecOptions {
            per_host: args.per_host.max(1),
            total: args.parallel.max(1),
            attempts: args.attempts.max(1),
            ..ExecOptions::default()
        },
        lease_ttl: Duration::from_secs(args.lease_ttl.max(3)),
        holder: crate::reconcile::holder(),
        connector: crate::driver::Connector::Real,
        refresh: args.refresh.max(1),
        shutdown_grace: Duration::from_secs(args.shutdown_timeout),
    };
    let source = match &config.follow {
        Follow::Local(p) => p.display().to_string(),
        Follow::Remote { url, branch, .. } => format!("{url} ({branch})"),
    };
    let result = runtime.block_on(async {
        // Handlers first: a signal the moment the port answers stops the daemon cleanly.
        let stopped = super::signals();
        daemon::run(config, stopped, |addr| {
            printer.status(&format!(
                "berth daemon: following {source}; status on http://{addr}/"
            ));
        })
        .await
    });
    match result {
        Ok(()) => {
            printer.status("berth daemon: stopped");
            Ok(0)
        }
        Err(e) => Err(match e.hint() {
            Some(hint) => Hinted {
                message: crate::driver::error_chain(&e),
                hint,
            }
            .into(),
            None => anyhow::Error::new(e),
        }),
    }
}

fn init_logging(format: LogFormat, printer: &Printer) {
    // The daemon is a service: its log is its output, at `info` unless `BERTH_LOG` names a
    // level, always in `--log-format` (main leaves the daemon's logging to this function).
    let level = std::env::var("BERTH_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(printer.color_stderr).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

fn pause(args: &PauseArgs, paused: bool, printer: &Printer) -> anyhow::Result<u8> {
    let file = daemon::pause_file(&args.state_dir);
    daemon::set_pause_file(&file, paused)
        .with_context(|| format!("cannot write `{}`", file.display()))?;
    let word = if paused { "paused" } else { "resumed" };
    if let Some(url) = &args.url {
        let token = match &args.token_env {
            Some(var) => Some(env_value(var, "--token-env")?),
            None => None,
        };
        let runtime = super::runtime()?;
        let endpoint = format!(
            "{}/api/{}",
            url.trim_end_matches('/'),
            if paused { "pause" } else { "resume" }
        );
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let answer = runtime
            .block_on(
                crate::driver::http::Http::new(Duration::from_secs(10)).send(
                    "POST",
                    &endpoint,
                    &headers,
                    Some(b"{}".to_vec()),
                ),
            )
            .with_context(|| format!("cannot reach the daemon at {url}"))?;
        if !(200..300).contains(&answer.status) {
            anyhow::bail!("the daemon at {url} answered {}", answer.status);
        }
    }
    printer.status(&format!(
        "berth daemon: {word} (`{}`{})",
        file.display(),
        if args.url.is_some() {
            ", told the running daemon"
        } else {
            "; a running daemon sees it at its next wake"
        }
    ));
    Ok(0)
}
