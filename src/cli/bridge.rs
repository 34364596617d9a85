//! `berth bridge`: receive Stripe webhooks and turn them into commits on the tenants repo.
//!
//! Configuration is flags (docs/stripe.md): where the repo is pushed (`--remote`, `--branch`),
//! where the bridge keeps its clone (`--state-dir`), where it listens (`--listen`, loopback by
//! default), and the names of the endpoint secrets, resolved through the environment's own
//! secret provider (`secrets: { provider: env }` reads `BERTH_SECRET_<NAME>`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::billing::decide::ChangeKind;
use crate::billing::git::{self, Auth, GitSettings};
use crate::billing::refetch::{DEFAULT_API_BASE, Refetcher};
use crate::billing::server::{self, BridgeState, DEFAULT_MAX_BODY};
use crate::billing::signature::DEFAULT_TOLERANCE_SECS;
use crate::driver::secrets::SecretProvider;
use crate::output::{Hinted, Printer};

/// Arguments of `berth bridge`.
#[derive(Debug, clap::Args)]
pub struct BridgeArgs {
    /// The tenants repo to commit to: a path to a bare repository, `file://…`, `ssh://…` or
    /// `https://…`.
    #[arg(long)]
    pub remote: String,
    /// The branch to commit to.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Where the bridge keeps its own bare clone.
    #[arg(long, default_value = ".berth-bridge")]
    pub state_dir: PathBuf,
    /// Address to listen on. Loopback unless you say otherwise (put a TLS proxy in front).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The environment whose `stripe:` block (prices, new-tenant template) and secret provider
    /// the bridge uses; default: the only environment with a `stripe:` block.
    #[arg(long)]
    pub environment: Option<String>,
    /// Name of an endpoint signing secret in the environment's secret provider (repeat it to
    /// accept several while rolling a secret).
    #[arg(long = "webhook-secret", default_value = "stripe-webhook")]
    pub webhook_secrets: Vec<String>,
    /// Seconds a signature's timestamp may differ from now, either way.
    #[arg(long, default_value_t = DEFAULT_TOLERANCE_SECS)]
    pub tolerance: u64,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Re-fetch each event's subscription from the Stripe API and apply that (the truth)
    /// instead of the event's snapshot.
    #[arg(long)]
    pub refetch: bool,
    /// Base URL of the Stripe API (for an emulator or a proxy).
    #[arg(long, default_value = DEFAULT_API_BASE)]
    pub stripe_api_base: String,
    /// Name of the Stripe API key (`sk_…` or a restricted `rk_…` with read access to
    /// subscriptions) in the secret provider; used with --refetch.
    #[arg(long, default_value = "stripe-api-key")]
    pub stripe_api_key: String,
    /// Send changes of this kind to a review branch instead of --branch (repeatable).
    #[arg(long = "review", value_enum)]
    pub review: Vec<ChangeKind>,
    /// Prefix of review branch names.
    #[arg(long, default_value = "berth-bridge/")]
    pub review_prefix: String,
    /// A push option sent with every push, e.g. `merge_request.create` on GitLab (repeatable).
    #[arg(long = "push-option")]
    pub push_options: Vec<String>,
    /// Push attempts per batch before the batch is answered 503.
    #[arg(long, default_value_t = 8)]
    pub push_attempts: u32,
    /// Most events committed and pushed together.
    #[arg(long, default_value_t = 500)]
    pub max_batch: usize,
    /// Seconds a request waits for its push before it is answered 503 (Stripe retries).
    #[arg(long, default_value_t = 20)]
    pub reply_timeout: u64,
    /// Commit author name.
    #[arg(long, default_value = "berth-bridge")]
    pub author_name: String,
    /// Commit author email.
    #[arg(long, default_value = "berth-bridge@berth.invalid")]
    pub author_email: String,
    /// Credentials of an ssh or https remote.
    #[command(flatten)]
    pub remote_auth: super::RemoteAuth,
}

/// Run it.
pub fn run(args: &BridgeArgs, printer: &Printer) -> anyhow::Result<u8> {
    if std::env::var_os("BERTH_LOG").is_none() {
        // The bridge is a service: its log is its output.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::stderr)
            .with_ansi(printer.color_stderr)
            .try_init();
    }
    if args.webhook_secrets.is_empty() {
        anyhow::bail!("at least one --webhook-secret is needed");
    }
    let settings = GitSettings {
        remote: args.remote.clone(),
        branch: args.branch.clone(),
        state_dir: args.state_dir.clone(),
        environment: args.environment.clone(),
        review: args.review.iter().copied().collect::<BTreeSet<_>>(),
        review_prefix: args.review_prefix.clone(),
        push_options: args.push_options.clone(),
        attempts: args.push_attempts,
        backoff: Duration::from_millis(10),
        max_batch: args.max_batch.max(1),
        author: (args.author_name.clone(), args.author_email.clone()),
        auth: Auth::default(),
        before_push: git::PushHook::default(),
    };
    let settings = GitSettings {
        auth: args.remote_auth.auth()?,
        ..settings
    };
    let runtime = super::runtime()?;
    let mut prepared = git::prepare(settings)
        .with_context(|| format!("cannot start the bridge on `{}`", args.remote))?;
    let fleet = &prepared.fleet;
    let environment = git::bridge_environment(fleet, args.environment.as_deref())
        .map_err(|reason| Hinted {
            message: reason,
            hint: "add `stripe: { prices: …, new-tenant: … }` to one environment, or pass --environment".into(),
        })?;
    let provider = SecretProvider::for_environment(&fleet.environments[&environment].secrets);
    let mut secrets = Vec::new();
    for name in &args.webhook_secrets {
        let value = runtime.block_on(provider.get(name)).map_err(|e| Hinted {
            message: format!("cannot read the webhook secret: {e}"),
            hint: format!(
                "the environment `{environment}` names its secret provider under `secrets:`; with `provider: env` set `{}`",
                SecretProvider::env_var(name)
            ),
        })?;
        secrets.push(value.into_bytes());
    }
    let refetch = if args.refetch {
        let key = runtime
            .block_on(provider.get(&args.stripe_api_key))
            .context("--refetch needs the Stripe API key")?;
        Some(Refetcher::new(
            &key,
            &args.stripe_api_base,
            Duration::from_secs(10),
        )?)
    } else {
        None
    };
    prepared.set_environment(environment.clone());
    let (writer, thread) = prepared.spawn()?;
    let state = Arc::new(BridgeState {
        secrets,
        tolerance: args.tolerance,
        max_body: args.max_body,
        refetch,
        writer,
        reply_timeout: Duration::from_secs(args.reply_timeout),
    });
    runtime.block_on(async {
        // Handlers first: a signal the moment the port answers stops the bridge cleanly.
        let stopped = super::signals();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        printer.status(&format!(
            "berth bridge: listening on http://{local}/stripe/webhook; committing to `{}` of {} (environment `{environment}`{})",
            args.branch,
            args.remote,
            if args.refetch { ", re-fetching subscriptions" } else { "" }
        ));
        server::serve(listener, state, stopped).await?;
        anyhow::Ok(())
    })?;
    // The server has stopped and dropped its handles: the writer finishes its batch and ends.
    let _ = thread.join();
    printer.status("berth bridge: stopped");
    Ok(0)
}
