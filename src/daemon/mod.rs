//! `berth daemon`: a long-running reconciler around the library session — follow the repo,
//! apply new commits, find and heal drift, show the fleet.
//!
//! ```text
//! wake (start · poll ± jitter · push webhook · file watch · drift scan · retry due · resume)
//!   ─▶ refresh (fetch the remote branch / read the local path)
//!   ─▶ load + validate (only when the commit moved, or always for a local path)
//!   ─▶ scope: changes since each host's applied commit + tenants due for a retry,
//!             or everything on the periodic drift scan (deep)
//!   ─▶ Session::pass (leases, policy, per-tenant independence, per-host records)
//!   ─▶ status, metrics, backoff
//! ```
//!
//! The daemon is a loop around [`Session::pass`]; it never applies anything itself. A pass
//! is never told why it runs: the trigger is kept only for the metrics. Error policy:
//! failures that may go away (a transient error, a container that did not become healthy, a
//! preflight problem, an unreachable host, a failed fetch) are retried with exponential
//! backoff and jitter ([`backoff`]); permanent ones (a refusal naming the tenant, a
//! permanent driver error, invalid files) wait for a change of the tenant's file or its
//! environment's file (or, for invalid files, for a new commit). One tenant backing off is
//! held out of the next passes; the others go on.
//!
//! A global pause (`berth daemon pause`, `POST /api/pause`) is a file in the state
//! directory, so it survives restarts. SIGTERM / SIGINT stop new passes; the pass in flight
//! finishes its in-flight steps, releases its leases and the daemon exits within the
//! configured bound. Each host's applied commit lives on the host, so a restarted daemon
//! resumes from it.

pub mod backoff;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod page;
pub mod status;
mod watch;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use self::backoff::{Backoff, Retries};
use self::follow::{Follow, Follower, Head};
use self::metrics::Metrics;
use self::status::{
    CommitView, DaemonView, ErrorView, HostView, PassView, State, Status, TenantView,
};
use self::webhook::WebhookSecrets;
use crate::driver::Connector;
use crate::execute::{Event, ExecOptions, Reporter};
use crate::gitops::{CommitInfo, GitRepo};
use crate::model::Fleet;
use crate::model::live::HostRef;
use crate::plan::Plan;
use crate::reconcile::{
    Approval, Hooks, Loaded, Notice, PassOutcome, PassSettings, PlanSettings, Session,
    SessionError, StopSignal, TenantPass,
};

/// Everything `berth daemon` is told.
#[derive(Clone)]
pub struct Config {
    /// What to follow.
    pub follow: Follow,
    /// Where the daemon keeps its mirror and its pause file.
    pub state_dir: PathBuf,
    /// Where the HTTP side listens.
    pub listen: SocketAddr,
    /// Bearer token for the HTTP API (required for a bind that is not loopback).
    pub token: Option<String>,
    /// Push webhook secrets.
    pub webhooks: WebhookSecrets,
    /// Largest webhook body.
    pub max_body: usize,
    /// How often to look for a new commit (fetch a remote, re-read a local path).
    pub poll: Duration,
    /// Spread of the poll interval, as a fraction (`0.1` = ±10%).
    pub poll_jitter: f64,
    /// How often a full, deep pass (the drift scan) runs.
    pub drift_scan: Duration,
    /// How often a full pass runs between drift scans: every tenant, observed fast (Dokku
    /// apps confirmed by their spec labels) when every host records the followed commit.
    pub full_pass: Duration,
    /// Quiet time after the last file event before a local path is read.
    pub debounce: Duration,
    /// Backoff of failing tenants and of daemon-wide errors.
    pub backoff: Backoff,
    /// Executor knobs.
    pub exec: ExecOptions,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// Lease holder name.
    pub holder: String,
    /// How hosts are reached.
    pub connector: Connector,
    /// Seconds between refreshes of the status page.
    pub refresh: u32,
    /// How long a stop may take (in-flight steps finishing) before the daemon gives up.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("follow", &self.follow)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

/// Daemon failures (start-up, or a stop that took too long).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A bind beyond loopback without a token.
    #[error("refusing to listen on {addr} without a bearer token")]
    OpenBind {
        /// The address.
        addr: SocketAddr,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state directory cannot be used.
    #[error("cannot use the state directory `{}`", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The followed source cannot be set up.
    #[error(transparent)]
    Follow(#[from] follow::FollowError),
    /// The local path cannot be watched.
    #[error("cannot watch `{}`", path.display())]
    Watch {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: notify::Error,
    },
    /// The pass in flight did not finish within the bound.
    #[error("the pass in flight did not finish within {} s; its leases expire by themselves", grace.as_secs())]
    ShutdownTimeout {
        /// The bound.
        grace: Duration,
    },
}

impl DaemonError {
    /// What to do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            DaemonError::OpenBind { .. } => {
                "set a token (`--token-env NAME`), or listen on 127.0.0.1 behind a proxy".into()
            }
            DaemonError::ShutdownTimeout { .. } => {
                "raise `--shutdown-timeout`; `berth lock status` shows leases left behind".into()
            }
            DaemonError::Listen { .. } => "pick another `--listen` address".into(),
            _ => return None,
        })
    }
}

/// Whether two secrets are equal, in constant time (compared as SHA-256 digests).
#[must_use]
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// State shared by the reconcile loop and the HTTP side.
pub struct Shared {
    status: Mutex<Status>,
    metrics: Mutex<Metrics>,
    wake: tokio::sync::Notify,
    trigger: Mutex<Option<&'static str>>,
    paused: AtomicBool,
    alive: AtomicBool,
    pause_file: PathBuf,
    /// Stops the pass in flight (a signal).
    pub stop: Arc<StopSignal>,
    stopping: AtomicBool,
    /// Push webhook secrets.
    pub webhooks: WebhookSecrets,
    /// Bearer token.
    pub token: Option<String>,
    /// Largest webhook body.
    pub max_body: usize,
    /// Status page refresh, seconds.
    pub refresh: u32,
}

impl Shared {
    /// The status (locked).
    pub fn status(&self) -> MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics (locked).
    pub fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wake the loop now (`trigger` is kept for the metrics only).
    pub fn wake(&self, trigger: &'static str) {
        *self
            .trigger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(trigger);
        self.wake.notify_one();
    }

    fn take_trigger(&self) -> &'static str {
        self.trigger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or("wake")
    }

    /// Pause or resume: the pause file is written or removed, and the loop woken.
    ///
    /// # Errors
    /// The pause file cannot be written or removed.
    pub fn set_paused(&self, paused: bool) -> std::io::Result<()> {
        set_pause_file(&self.pause_file, paused)?;
        self.paused.store(paused, Ordering::SeqCst);
        self.status().daemon.paused = paused;
        self.wake(if paused { "pause" } else { "resume" });
        Ok(())
    }

    fn is_paused(&self) -> bool {
        let paused = self.pause_file.exists();
        self.paused.store(paused, Ordering::SeqCst);
        paused
    }

    fn loop_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Ready: the loop runs, the repo was read and the hosts reached on the last try.
    ///
    /// # Errors
    /// Why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.loop_alive() {
            return Err("the reconcile loop stopped".into());
        }
        let status = self.status();
        if let Some(e) = &status.daemon.error {
            return Err(e.message.clone());
        }
        if status.daemon.head.is_none() && status.daemon.last_pass.is_none() {
            return Err("the repo has not been read yet".into());
        }
        Ok(())
    }

    fn count_webhook(&self, forge: &str) {
        *self
            .metrics()
            .webhooks
            .entry(forge.to_string())
            .or_default() += 1;
    }
}

/// Write or remove the pause file.
///
/// # Errors
/// File system errors.
pub fn set_pause_file(path: &Path, paused: bool) -> std::io::Result<()> {
    if paused {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("paused at {}\n", crate::clock::now_rfc3339()))
    } else {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The pause file of a state directory.
#[must_use]
pub fn pause_file(state_dir: &Path) -> PathBuf {
    state_dir.join("paused")
}

/// Run the daemon until `shutdown` resolves. `listening` is told the bound address (port 0
/// picks one).
///
/// # Errors
/// Start-up failures, and a stop that did not finish within the bound.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(DaemonError::OpenBind {
            addr: config.listen,
        });
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let follower = Follower::new(&config.follow, &config.state_dir)?;
    let watch = match &config.follow {
        Follow::Local(path) => Some(watch::watch(path).map_err(|source| DaemonError::Watch {
            path: path.clone(),
            source,
        })?),
        Follow::Remote { .. } => None,
    };
    let pause_file = pause_file(&config.state_dir);
    let shared = Arc::new(Shared {
        status: Mutex::new(Status {
            version: status::STATUS_FORMAT_VERSION,
            daemon: DaemonView {
                source: match &config.follow {
                    Follow::Local(p) => p.display().to_string(),
                    Follow::Remote { url, .. } => url.clone(),
                },
                branch: match &config.follow {
                    Follow::Local(_) => None,
                    Follow::Remote { branch, .. } => Some(branch.clone()),
                },
                paused: pause_file.exists(),
                started_at: crate::clock::now_rfc3339(),
                ..DaemonView::default()
            },
            ..Status::default()
        }),
        metrics: Mutex::new(Metrics::default()),
        wake: tokio::sync::Notify::new(),
        trigger: Mutex::new(None),
        paused: AtomicBool::new(pause_file.exists()),
        alive: AtomicBool::new(true),
        pause_file,
        stop: Arc::new(StopSignal::default()),
        stopping: AtomicBool::new(false),
        webhooks: config.webhooks.clone(),
        token: config.token.clone(),
        max_body: config.max_body,
        refresh: config.refresh,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    listening(addr);
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The bridge's accept loop, not `axum::serve`: it times out clients that dribble their
    // headers (axum sets no timer for hyper, so a slow-loris held a socket forever).
    let server = tokio::spawn(crate::billing::server::serve_router(
        listener,
        http::router(shared.clone()),
        async {
            let _ = http_stop_rx.await;
        },
    ));
    let grace = config.shutdown_grace;
    let mut reconciler = Reconciler::new(config, shared.clone(), follower);
    let (watch_guard, watch_rx) = match watch {
        Some((w, rx)) => (Some(w), Some(rx)),
        None => (None, None),
    };
    let looping = tokio::spawn(async move {
        reconciler.run(watch_rx).await;
    });
    shutdown.await;
    tracing::info!("stopping: no new pass starts; in-flight steps finish and leases are released");
    shared.stopping.store(true, Ordering::SeqCst);
    shared.stop.stop();
    shared.wake("stop");
    let finished = tokio::time::timeout(grace, looping).await.is_ok();
    shared.alive.store(false, Ordering::SeqCst);
    drop(watch_guard);
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if finished {
        tracing::info!("stopped");
        Ok(())
    } else {
        Err(DaemonError::ShutdownTimeout { grace })
    }
}

/// The reconcile loop's own state.
struct Reconciler {
    config: Config,
    shared: Arc<Shared>,
    follower: Follower,
    session: Option<Session>,
    /// The hosts the session's drivers were made for (reconnect when it changes).
    hosts_key: String,
    /// The validated files and the commit they were read at (a remote's tip).
    /// Its texts are dropped once read: only each file's digest stays ([`FileDigests`]).
    loaded: Option<(Option<String>, Loaded)>,
    /// A digest of each file of `loaded` (what [`input_digest`] compares).
    digests: FileDigests,
    /// The local path's listing when `loaded` was read from it (`None`: read it again).
    listing: Option<u64>,
    retries: Retries,
    /// Tenants waiting for a file change: the digest of their inputs when they failed.
    waiting: BTreeMap<String, u64>,
    /// Daemon-wide failures in a row (fetch, invalid files, unreachable hosts).
    errors: u32,
    /// No pass before this (daemon-wide backoff).
    quiet_until: Option<Instant>,
    last_full: Option<Instant>,
    /// The last full pass (fast or deep).
    last_check: Option<Instant>,
    /// Invalid files at this commit: wait for another one.
    invalid_at: Option<String>,
}

impl Reconciler {
    fn new(config: Config, shared: Arc<Shared>, follower: Follower) -> Self {
        Reconciler {
            config,
            shared,
            follower,
            session: None,
            hosts_key: String::new(),
            loaded: None,
            digests: FileDigests::default(),
            listing: None,
            retries: Retries::default(),
            waiting: BTreeMap::new(),
            errors: 0,
            quiet_until: None,
            last_full: None,
            last_check: None,
            invalid_at: None,
        }
    }

    async fn run(&mut self, mut watch: Option<tokio::sync::mpsc::UnboundedReceiver<()>>) {
        let mut trigger: &'static str = "start";
        let mut next_poll = Instant::now();
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let paused = self.shared.is_paused();
            self.shared.status().daemon.paused = paused;
            let now = Instant::now();
            if paused {
                tracing::info!("paused: no pass runs");
            } else if self.quiet_until.is_some_and(|q| q > now) && trigger != "webhook" {
                tracing::debug!(trigger, "backing off after an error");
            } else {
                self.tick(trigger).await;
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            if next_poll <= now {
                let spread = 1.0 + self.config.poll_jitter * (2.0 * backoff::jitter() - 1.0);
                next_poll = now + self.config.poll.mul_f64(spread.max(0.0));
            }
            let mut deadlines: Vec<(Instant, &'static str)> = vec![(next_poll, "poll")];
            if let Some(full) = self.last_full {
                deadlines.push((full + self.config.drift_scan, "drift-scan"));
            }
            if let Some(check) = self.last_check {
                deadlines.push((check + self.config.full_pass, "full-pass"));
            }
            if let Some(due) = self.retries.next_due(now) {
                deadlines.push((due, "retry"));
            }
            if let Some(q) = self.quiet_until.filter(|q| *q > now) {
                deadlines.push((q, "backoff"));
            }
            let (at, why) = deadlines
                .into_iter()
                .min_by_key(|(at, _)| *at)
                .unwrap_or((next_poll, "poll"));
            trigger = tokio::select! {
                () = tokio::time::sleep_until(at) => why,
                () = self.shared.wake.notified() => self.shared.take_trigger(),
                Some(()) = recv(&mut watch) => {
                    // Debounce: wait until the events stop for a moment.
                    if let Some(rx) = watch.as_mut() {
                        while let Ok(Some(())) =
                            tokio::time::timeout(self.config.debounce, rx.recv()).await
                        {}
                    }
                    "watch"
                }
            };
        }
    }

    fn error(&mut self, message: String, kind: &str) {
        tracing::warn!(error = %message, kind, "daemon error");
        self.errors += 1;
        if kind == "transient" {
            let delay = self.config.backoff.delay(self.errors, backoff::jitter());
            self.quiet_until = Some(Instant::now() + delay);
        }
        self.shared.status().daemon.error = Some(ErrorView {
            message,
            at: crate::clock::now_rfc3339(),
            kind: kind.to_string(),
        });
    }

    fn clear_error(&mut self) {
        self.errors = 0;
        self.quiet_until = None;
        self.shared.status().daemon.error = None;
    }

    /// One wake-up: refresh, load, scope, pass, bookkeeping.
    async fn tick(&mut self, trigger: &'static str) {
        let started = Instant::now();
        let head = match tokio::task::block_in_place(|| self.follower.refresh()) {
            Ok(head) => head,
            Err(e) => {
                if matches!(e, follow::FollowError::Fetch(_)) {
                    self.shared.metrics().git_fetch_errors += 1;
                }
                self.error(crate::driver::error_chain(&e), "transient");
                return;
            }
        };
        self.shared.status().daemon.head = head.commit.as_ref().map(commit_view);
        let commit = head.commit.as_ref().map(|c| c.id.clone());
        let remote = head.source.rev.is_some();
        if remote && commit.is_some() && self.invalid_at == commit {
            // Invalid files at this commit: a permanent error until a new commit.
            return;
        }
        // A local path is re-read only when its listing changed (names, sizes, times: no
        // file is opened), and always while a file is younger than the clock can tell apart.
        let listing = if remote {
            None
        } else {
            tokio::task::block_in_place(|| crate::reconcile::listing_fingerprint(&head.source.repo))
        };
        let reload = self
            .loaded
            .as_ref()
            .is_none_or(|(at, _)| at.as_ref() != commit.as_ref())
            || (!remote && (listing.is_none() || listing != self.listing));
        if reload {
            self.listing = None;
            let source = head.source.clone();
            // The previous files go before the next are read: two fleets never wait side by
            // side (the session still holds the one it planned last, shared, not copied).
            self.loaded = None;
            match tokio::task::block_in_place(|| crate::reconcile::load(&source)) {
                Ok(mut loaded) => {
                    self.invalid_at = None;
                    self.digests = FileDigests::of(&loaded.sources);
                    self.listing = listing;
                    loaded.sources = crate::spec::source::SourceSet::default();
                    self.loaded = Some((commit.clone(), loaded));
                }
                Err(e) => {
                    let permanent = matches!(e, SessionError::Invalid { .. });
                    self.invalid_at = permanent.then(|| commit.clone()).flatten();
                    self.error(
                        format!(
                            "{}: {}",
                            describe_head(&head),
                            crate::driver::error_chain(&e)
                        ),
                        if permanent { "permanent" } else { "transient" },
                    );
                    return;
                }
            }
        }
        let Some((_, loaded)) = &self.loaded else {
            return;
        };
        let fleet = std::sync::Arc::clone(&loaded.fleet);
        let history = self.follower.history();
        if let Err(e) = self
            .connect(fleet, commit.clone(), history.as_deref())
            .await
        {
            self.error(crate::driver::error_chain(&e), "transient");
            return;
        }
        let Some(session) = &self.session else { return };
        let applied = session.applied_commits().await;
        self.update_hosts(&applied, &head, history.as_deref());
        // Tenants whose inputs changed since they failed for good are free again.
        let Some((_, loaded)) = &self.loaded else {
            return;
        };
        self.waiting.retain(|tenant, digest| {
            let now = input_digest(&self.digests, &session.fleet, tenant);
            if now == *digest {
                true
            } else {
                tracing::info!(%tenant, "its files changed: trying again");
                false
            }
        });
        let now = Instant::now();
        let deep = self
            .last_full
            .is_none_or(|at| now >= at + self.config.drift_scan)
            || trigger == "drift-scan";
        let check = !deep
            && (self
                .last_check
                .is_none_or(|at| now >= at + self.config.full_pass)
                || trigger == "full-pass");
        let due = self.retries.due(now);
        let scope = if deep || check {
            None
        } else {
            match crate::reconcile::since_applied(&head.source, loaded, &applied, &due) {
                Ok(scope) => scope,
                Err(e) => {
                    self.error(crate::driver::error_chain(&e), "transient");
                    return;
                }
            }
        };
        let deep = deep || (scope.is_none() && !check);
        let full = deep || check;
        // Fast only when the files are what every host records as applied: then an app whose
        // spec label holds the wanted hash is what berth applied, and services are as well.
        let fast = check && applied.values().all(|a| a.is_some() && *a == commit);
        if let Some(s) = &scope {
            let nothing_changed = s.tenants.is_empty() && s.environments.is_empty();
            let all_recorded = applied.values().all(|a| a.is_some() && *a == commit);
            if nothing_changed && (all_recorded || commit.is_none()) {
                self.clear_error();
                return;
            }
        }
        let mut hold: BTreeSet<String> = self.retries.waiting(now);
        hold.extend(self.waiting.keys().cloned());
        let settings = PassSettings {
            plan: PlanSettings {
                scope,
                deep,
                fast,
                ..PlanSettings::default()
            },
            hold,
            exec: self.config.exec,
            lease_ttl: self.config.lease_ttl,
            holder: self.config.holder.clone(),
            skip_preflight: false,
        };
        let hooks = DaemonHooks {
            shared: &self.shared,
        };
        tracing::info!(
            trigger,
            full,
            commit = commit.as_deref().unwrap_or("(work tree)"),
            "pass started"
        );
        let result = session.pass(&settings, &hooks, &self.shared.stop).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(outcome) => {
                if deep {
                    self.last_full = Some(now);
                }
                if full {
                    self.last_check = Some(now);
                }
                let label = self.record_outcome(
                    &outcome,
                    trigger,
                    (full, deep),
                    seconds,
                    commit.as_deref(),
                );
                self.shared.metrics().pass(trigger, label, seconds);
                self.clear_error();
                // The applied commits may have moved.
                if let Some(session) = &self.session {
                    let applied = session.applied_commits().await;
                    self.update_hosts(&applied, &head, history.as_deref());
                }
            }
            Err(e) => {
                self.shared.metrics().pass(trigger, "error", seconds);
                let transient = !matches!(e, SessionError::Malformed { .. });
                self.error(
                    crate::driver::error_chain(&e),
                    if transient { "transient" } else { "permanent" },
                );
                self.reset_progressing();
            }
        }
    }

    /// Make the session for this fleet: keep the drivers when the hosts are the same.
    async fn connect(
        &mut self,
        fleet: std::sync::Arc<Fleet>,
        commit: Option<String>,
        history: Option<&Path>,
    ) -> Result<(), SessionError> {
        let key = hosts_key(&fleet);
        match &mut self.session {
            Some(session) if key == self.hosts_key => {
                session.reload(fleet, commit, history);
            }
            _ => {
                let mut session =
                    Session::connect(fleet, commit.clone(), &self.config.connector, None).await?;
                let fleet = std::sync::Arc::clone(&session.fleet);
                session.reload(fleet, commit, history);
                self.session = Some(session);
                self.hosts_key = key;
            }
        }
        Ok(())
    }

    fn update_hosts(
        &self,
        applied: &BTreeMap<HostRef, Option<String>>,
        head: &Head,
        history: Option<&Path>,
    ) {
        let git = history.and_then(|h| GitRepo::open(h).ok());
        let head_id = head.commit.as_ref().map(|c| c.id.clone());
        let mut status = self.shared.status();
        status
            .hosts
            .retain(|key, _| applied.keys().any(|h| h.to_string() == *key));
        for (host, commit) in applied {
            let view = status
                .hosts
                .entry(host.to_string())
                .or_insert_with(|| HostView {
                    environment: host.environment.clone(),
                    host: host.host.clone(),
                    ..HostView::default()
                });
            view.applied = commit
                .as_ref()
                .and_then(|c| git.as_ref()?.describe(c).ok())
                .as_ref()
                .map(commit_view);
            view.commits_behind = match (&git, commit, &head_id) {
                (Some(g), Some(c), Some(h)) => g.behind(c, h).ok(),
                _ => None,
            };
        }
    }

    fn reset_progressing(&self) {
        let mut status = self.shared.status();
        for t in status.tenants.values_mut() {
            if t.state == State::Progressing {
                t.state = State::OutOfSync;
            }
        }
        status.recount();
    }

    /// Fold a pass into the status, the retry schedule and the metrics; returns the pass's
    /// result label.
    fn record_outcome(
        &mut self,
        outcome: &PassOutcome,
        trigger: &str,
        (full, deep): (bool, bool),
        seconds: f64,
        commit: Option<&str>,
    ) -> &'static str {
        let now_text = crate::clock::now_rfc3339();
        let Some(session) = &self.session else {
            return "error";
        };
        if self.loaded.is_none() {
            return "error";
        }
        let whole_refusal = (!outcome.refused.is_empty()).then(|| {
            outcome
                .refused
                .iter()
                .map(|r| r.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        });
        let mut clean = outcome.clean();
        {
            let mut metrics = self.shared.metrics();
            for ((kind, result), n) in &outcome.steps {
                *metrics
                    .steps
                    .entry((kind.clone(), (*result).to_string()))
                    .or_default() += *n as u64;
            }
            for (host, pass) in &outcome.hosts {
                if pass.busy.is_some() {
                    *metrics.lease_waits.entry(host.to_string()).or_default() += 1;
                }
            }
        }
        let mut status = self.shared.status();
        for (host, pass) in &outcome.hosts {
            if let Some(view) = status.hosts.get_mut(&host.to_string()) {
                view.drift = pass.drift;
                view.busy = pass.busy.as_ref().map(|b| b.holder.clone());
            }
        }
        for (id, report) in &outcome.tenants {
            let environment = session
                .fleet
                .tenants
                .get(id)
                .map(|t| t.environment.clone())
                .or_else(|| {
                    report
                        .host
                        .as_ref()
                        .and_then(|h| h.split('/').next().map(str::to_string))
                })
                .unwrap_or_default();
            let mode = session.fleet.reconcile_mode(&environment, id);
            let view = status
                .tenants
                .entry(id.clone())
                .or_insert_with(|| TenantView {
                    environment: environment.clone(),
                    host: None,
                    mode: String::new(),
                    state: State::Synced,
                    drift: 0,
                    pending: 0,
                    last_pass_at: None,
                    last_error: None,
                    last_error_at: None,
                    failures: 0,
                    next_try_at: None,
                    waiting_for_change: false,
                    note: None,
                });
            view.environment = environment;
            view.host.clone_from(&report.host);
            view.mode = mode_name(mode).to_string();
            view.drift = report.drift;
            view.pending = report.pending;
            view.last_pass_at = Some(now_text.clone());
            view.note = None;
            let mut fail = |view: &mut TenantView, error: String, recoverable: bool| {
                view.last_error = Some(error);
                view.last_error_at = Some(now_text.clone());
                if recoverable {
                    let delay = self
                        .retries
                        .fail(id, &self.config.backoff, backoff::jitter());
                    view.state = State::Degraded;
                    view.failures = self.retries.failures(id);
                    view.next_try_at = Some(crate::clock::rfc3339(
                        crate::clock::now_unix() + delay.as_secs(),
                    ));
                    view.waiting_for_change = false;
                } else {
                    self.retries.clear(id);
                    self.waiting
                        .insert(id.clone(), input_digest(&self.digests, &session.fleet, id));
                    view.state = State::Failed;
                    view.failures += 1;
                    view.next_try_at = None;
                    view.waiting_for_change = true;
                }
            };
            match &report.result {
                TenantPass::Synced | TenantPass::Converged => {
                    self.retries.clear(id);
                    view.state = State::Synced;
                    view.failures = 0;
                    view.next_try_at = None;
                    view.waiting_for_change = false;
                }
                TenantPass::Drifted => {
                    self.retries.clear(id);
                    view.state = State::OutOfSync;
                    view.failures = 0;
                    view.next_try_at = None;
                    view.note = Some("drift reported, not healed (self-heal off)".into());
                }
                TenantPass::Paused => {
                    view.state = if report.pending > 0 {
                        State::OutOfSync
                    } else {
                        State::Synced
                    };
                    view.note = Some("paused (reconcile: paused)".into());
                }
                TenantPass::Held => {
                    if view.state == State::Progressing {
                        view.state = State::Degraded;
                    }
                }
                TenantPass::HostBusy { host, holder } => {
                    view.state = State::OutOfSync;
                    view.note = Some(format!(
                        "waiting for the lease of `{host}` (held by {holder})"
                    ));
                }
                TenantPass::Refused { reasons } => match &whole_refusal {
                    Some(_) => {
                        view.state = State::OutOfSync;
                        view.note = Some("the whole plan is refused".into());
                    }
                    None => fail(view, reasons.join("; "), false),
                },
                TenantPass::Blocked { problems } => fail(view, problems.join("; "), true),
                TenantPass::Failed { error, recoverable } => {
                    fail(view, error.clone(), *recoverable)
                }
                TenantPass::Cancelled => {
                    view.state = State::OutOfSync;
                    view.note = Some("the pass stopped before its steps ran".into());
                }
            }
        }
        // A full pass saw every tenant: forget the ones that are gone.
        if full {
            status.tenants.retain(|id, _| {
                outcome.tenants.contains_key(id) || session.fleet.tenants.contains_key(id)
            });
        }
        status.recount();
        if outcome.tenants.values().any(|t| {
            !matches!(
                t.result,
                TenantPass::Synced
                    | TenantPass::Converged
                    | TenantPass::Drifted
                    | TenantPass::Paused
            )
        }) {
            clean = false;
        }
        let label = if whole_refusal.is_some() {
            "refused"
        } else if outcome.cancelled {
            "cancelled"
        } else if clean {
            "ok"
        } else {
            "partial"
        };
        status.daemon.passes += 1;
        status.daemon.last_pass = Some(PassView {
            at: now_text,
            trigger: trigger.to_string(),
            kind: if full { "full" } else { "incremental" }.to_string(),
            deep,
            result: label.to_string(),
            seconds,
            tenants: outcome.tenants.len(),
            commit: commit.map(str::to_string),
        });
        drop(status);
        if let Some(message) = whole_refusal {
            tracing::warn!(%message, "the plan is refused; nothing ran (never forced)");
        }
        tracing::info!(
            result = label,
            seconds,
            tenants = outcome.tenants.len(),
            "pass finished"
        );
        label
    }
}

async fn recv(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn describe_head(head: &Head) -> String {
    match &head.commit {
        Some(c) => format!("commit {}", &c.id[..c.id.len().min(12)]),
        None => "the work tree".into(),
    }
}

fn commit_view(c: &CommitInfo) -> CommitView {
    CommitView {
        id: c.id.clone(),
        summary: c.summary.clone(),
        time: crate::clock::rfc3339(u64::try_from(c.time).unwrap_or(0)),
        unix: c.time,
    }
}

fn mode_name(mode: crate::model::ReconcileMode) -> &'static str {
    match mode {
        crate::model::ReconcileMode::Heal => "heal",
        crate::model::ReconcileMode::Report => "report",
        crate::model::ReconcileMode::Paused => "paused",
    }
}

/// What the drivers are made from: every environment's hosts and secret provider.
fn hosts_key(fleet: &Fleet) -> String {
    fleet
        .environments
        .values()
        .map(|e| {
            format!(
                "{}:{:?}:{:?}:{:?}",
                e.name, e.hosts, e.secrets, e.registries
            )
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// A digest of what decides a tenant's plan: its file and its environment's file.
fn input_digest(digests: &FileDigests, fleet: &Fleet, tenant: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let environment = fleet.tenants.get(tenant).map(|t| t.environment.as_str());
    for (kind, stem, digest) in &digests.files {
        let relevant = match kind {
            crate::spec::source::FileKind::Tenant => stem == tenant,
            crate::spec::source::FileKind::Environment => environment.is_none_or(|e| e == stem),
        };
        if relevant {
            digest.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// One digest per file read (path and text), in the loader's order: what a failed tenant's
/// inputs are compared by, without keeping 10,000 files' texts in memory between passes.
#[derive(Debug, Default)]
struct FileDigests {
    files: Vec<(crate::spec::source::FileKind, String, u64)>,
}

impl FileDigests {
    fn of(sources: &crate::spec::source::SourceSet) -> Self {
        use std::hash::{Hash as _, Hasher as _};
        FileDigests {
            files: sources
                .files
                .iter()
                .map(|file| {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    file.path.hash(&mut hasher);
                    file.text().hash(&mut hasher);
                    (file.kind, file.stem().to_string(), hasher.finish())
                })
                .collect(),
        }
    }
}

/// The daemon's side of a pass: steps mark their tenants as progressing.
struct DaemonHooks<'a> {
    shared: &'a Shared,
}

impl Reporter for DaemonHooks<'_> {
    fn event(&self, event: &Event<'_>) {
        if let Event::StepStarted { step, attempt: 1 } = event {
            let mut status = self.shared.status();
            if let Some(t) = status.tenants.get_mut(&step.tenant)
                && t.state != State::Progressing
            {
                t.state = State::Progressing;
                status.recount();
            }
        }
    }
}

impl Hooks for DaemonHooks<'_> {
    fn notice(&self, notice: &Notice<'_>) {
        match notice {
            Notice::WaitingForLease { host, held } => {
                tracing::info!(%host, holder = %held.holder, purpose = %held.purpose, "host busy: left for the next pass");
            }
            Notice::LeaseLost { host } => tracing::warn!(%host, "lease lost: no new step starts"),
            Notice::LeaseReclaimed { host } => {
                tracing::info!(%host, "took back a lease an earlier pass could not release");
            }
            Notice::RecordFailed { host, error } => {
                tracing::warn!(%host, %error, "cannot record the applied commit");
            }
            _ => {}
        }
    }

    fn approve(&self, _: &Plan) -> Approval {
        Approval::Approved
    }
}
