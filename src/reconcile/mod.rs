//! The reconcile session: the one code path of `berth plan`, `berth apply`, `berth status`
//! and every daemon pass.
//!
//! ```text
//! load ─▶ validate ─▶ scope ─▶ connect ─▶ [leases] ─▶ observe ─▶ plan | stale check
//!      ─▶ check ─▶ approve ─▶ execute (leases renewed) ─▶ record commit ─▶ release
//! ```
//!
//! - [`load`] reads the desired state (work tree or a git revision) and validates it; the
//!   scope ([`resolve_scope`]) is all tenants, or those `--since` / `--tenant` name.
//! - [`Session`] holds the validated fleet, its commit and the connected drivers. A daemon
//!   keeps one session's drivers across passes; the CLI builds one per command.
//! - [`Session::plan`] observes and plans; [`Session::apply`] does the whole apply under the
//!   hosts' leases and returns an [`ApplyOutcome`] (per tenant: converged, failed at a step,
//!   skipped, refused) for the caller to render.
//!
//! A pass is level-triggered: it is never told why it runs. Nothing here prints; progress
//! and questions go through [`Hooks`].

mod hooks;
pub mod journal;
pub mod lease;
mod pass;
mod scope;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use self::hooks::{Approval, Hooks, Notice, StopSignal, Unattended};
pub use self::pass::{HostPass, PassOutcome, PassSettings, TenantPass, TenantReport, Withheld};
pub use self::scope::{ScopeRequest, dokku_prefixes, since_applied};
pub use self::status::{HostStatus, lock_break, lock_status, status};
use crate::driver::{ConnectError, Connector, Drivers, LeaseRecord, observe_all_scoped};
use crate::execute::{ExecOptions, Report, Reporter};
use crate::gitops::{GitError, GitRepo};
use crate::model::Fleet;
use crate::model::live::{HostRef, Live};
use crate::plan::{Plan, PlanOptions, Scope};
use crate::repo::RepoError;
use crate::spec::source::SourceSet;
use crate::validate::Diagnostic;

/// Where the desired state comes from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The berth repo (a directory holding `environments/` and `tenants/`).
    pub repo: PathBuf,
    /// A git revision to read instead of the work tree.
    pub rev: Option<String>,
}

/// The desired state, read and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The files read (for rendering diagnostics and warnings).
    pub sources: SourceSet,
    /// The validated fleet (shared with the session that plans it: one copy in memory).
    pub fleet: Arc<Fleet>,
    /// The commit the files are at (`None` outside git).
    pub commit: Option<String>,
    /// Warnings found while loading (never errors).
    pub diagnostics: Vec<Diagnostic>,
}

/// Session failures. Each names its subject; [`SessionError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The repo could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// git could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The files are invalid; the diagnostics say why.
    #[error("{summary}")]
    Invalid {
        /// `2 errors in 1 of 4 files`.
        summary: String,
        /// The files.
        sources: Box<SourceSet>,
        /// Every problem.
        diagnostics: Vec<Diagnostic>,
    },
    /// `--tenant` names a tenant that has no file and no object on any host.
    #[error("no tenant {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    UnknownTenant {
        /// The names given.
        names: Vec<String>,
        /// Close matches.
        suggestions: Vec<String>,
    },
    /// A host could not be read.
    #[error(transparent)]
    Connect(Box<ConnectError>),
    /// Hosts could not be reached (every one of them is named).
    #[error(transparent)]
    Unreachable(Box<crate::driver::Unreachable>),
    /// A lease could not be taken.
    #[error(transparent)]
    Lease(Box<lease::LeaseError>),
    /// The saved plan no longer matches the hosts.
    #[error("the saved plan is stale: {} objects moved", moved.len())]
    StalePlan {
        /// `(object, then, now)`.
        moved: Vec<Moved>,
    },
    /// A saved plan made with `--offline` cannot be applied.
    #[error("the saved plan was made offline: its hosts were never observed")]
    OfflinePlan,
    /// Preflight found problems; nothing was changed.
    #[error("preflight found {} problem{}; nothing was changed", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Preflight {
        /// Every problem found.
        problems: Vec<crate::driver::Problem>,
    },
    /// `--resume` without a saved plan.
    #[error("`--resume` needs a saved plan file")]
    ResumeNeedsPlan,
    /// A saved plan file cannot be read.
    #[error("cannot read the plan file `{}`: {reason}", path.display())]
    PlanFile {
        /// Path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The plan checker found a malformed plan: a berth bug, never a half-applied fleet.
    #[error("internal error: the plan is malformed ({})", defects.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Malformed {
        /// What the checker found.
        defects: Vec<crate::plan::check::Defect>,
    },
    /// Confirmation could not be asked.
    #[error("{message}")]
    NotApproved {
        /// Why.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

impl From<ConnectError> for SessionError {
    fn from(e: ConnectError) -> Self {
        SessionError::Connect(Box::new(e))
    }
}

impl From<crate::driver::Unreachable> for SessionError {
    fn from(e: crate::driver::Unreachable) -> Self {
        SessionError::Unreachable(Box::new(e))
    }
}

impl From<lease::LeaseError> for SessionError {
    fn from(e: lease::LeaseError) -> Self {
        SessionError::Lease(Box::new(e))
    }
}

impl SessionError {
    /// What the user can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SessionError::Invalid { .. } => {
                "fix the files above; `berth validate` shows the same report".into()
            }
            SessionError::UnknownTenant { suggestions, .. } => match suggestions.as_slice() {
                [] => "`--tenant` takes a tenant id: the stem of a file in `tenants/`".into(),
                s => format!("did you mean {}?", s.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or ")),
            },
            SessionError::Connect(_) | SessionError::Unreachable(_) => "check the host entry in the environment file; `berth plan --offline` plans without contacting hosts".into(),
            SessionError::Lease(_) => "wait for the other apply, raise `--lock-timeout`, or `berth lock break --host H` if its holder is gone".into(),
            SessionError::StalePlan { .. } => {
                "plan again (`berth plan --out plan.json`) and review the new plan".into()
            }
            SessionError::Preflight { .. } => "fix the problems above and apply again (`--skip-preflight` skips these checks; for experts)".into(),
            SessionError::OfflinePlan => "plan against the hosts (`berth plan --out plan.json`, without `--offline`) and apply that".into(),
            SessionError::ResumeNeedsPlan => {
                "a fresh plan re-observes the hosts and already skips what is done".into()
            }
            SessionError::PlanFile { .. } => "plan again with this berth".into(),
            SessionError::Malformed { .. } => {
                "nothing was changed; please report this with the plan (`berth plan --format json`)".into()
            }
            SessionError::NotApproved { hint, .. } => hint.clone(),
            SessionError::Repo(_) | SessionError::Git(_) | SessionError::Journal(_) => return None,
        })
    }
}

/// An object whose fingerprint moved since a plan was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Object key (`prod/dokku-1/app/acme-web`).
    pub key: String,
    /// Fingerprint in the plan.
    pub then: String,
    /// Fingerprint now (`absent` when gone).
    pub now: String,
}

/// Read and validate the desired state.
///
/// # Errors
/// Unreadable repos or revisions, and invalid files ([`SessionError::Invalid`]).
pub fn load(source: &Source) -> Result<Loaded, SessionError> {
    let (sources, commit) = match &source.rev {
        Some(rev) => {
            let git = GitRepo::open(&source.repo)?;
            (git.sources_at(rev)?, Some(git.resolve(rev)?))
        }
        None => (
            crate::repo::load_dir(&source.repo)?,
            GitRepo::open(&source.repo)
                .ok()
                .and_then(|g| g.resolve("HEAD").ok()),
        ),
    };
    let (fleet, diagnostics) = validate(&sources);
    match fleet {
        Some(fleet) => Ok(Loaded {
            sources,
            fleet: Arc::new(fleet),
            commit,
            diagnostics,
        }),
        None => Err(SessionError::Invalid {
            summary: crate::validate::summary(&sources, &diagnostics),
            sources: Box::new(sources),
            diagnostics,
        }),
    }
}

/// Tenant files checked on every core (`repo::parallel_map`); the result is the one
/// [`crate::validate::validate`] gives, in the same order.
pub struct Threads;

impl crate::validate::Spread for Threads {
    fn map(
        &self,
        n: usize,
        work: &(dyn Fn(usize) -> crate::validate::Checked + Sync),
    ) -> Vec<crate::validate::Checked> {
        crate::repo::parallel_map(n, work)
    }
}

/// [`crate::validate::validate`] with the tenant files checked on every core.
#[must_use]
pub fn validate(sources: &SourceSet) -> (Option<Fleet>, Vec<Diagnostic>) {
    crate::validate::validate_with(sources, &Threads)
}

/// Resolve `--since` / `--tenant` into the set of tenants a plan is about (`None` = all).
///
/// # Errors
/// Unresolvable revisions.
pub fn resolve_scope(
    source: &Source,
    loaded: &Loaded,
    request: &ScopeRequest,
) -> Result<Option<Scope>, SessionError> {
    scope::resolve(source, loaded, request)
}

/// Every host of the fleet's environments. An environment without tenants is observed too:
/// its hosts may still hold berth's objects (the last tenant file was removed), which a plan
/// must show as removals (refused as an empty desired set unless `--allow-empty`).
#[must_use]
pub fn hosts_in_use(fleet: &Fleet) -> BTreeSet<HostRef> {
    fleet
        .environments
        .values()
        .flat_map(|env| env.hosts.keys().map(|h| HostRef::new(&env.name, h)))
        .collect()
}

/// Hosts a saved plan acts on or observed.
#[must_use]
pub fn plan_hosts(plan: &Plan) -> BTreeSet<HostRef> {
    let mut hosts: BTreeSet<HostRef> = plan
        .steps
        .iter()
        .map(|s| HostRef::new(&s.environment, &s.host))
        .collect();
    for (key, value) in &plan.fingerprints {
        if value == crate::plan::UNOBSERVED {
            continue;
        }
        let mut parts = key.splitn(3, '/');
        if let (Some(env), Some(host)) = (parts.next(), parts.next()) {
            hosts.insert(HostRef::new(env, host));
        }
    }
    hosts
}

/// Read a saved plan file, checking its format version.
///
/// # Errors
/// Unreadable files, other format versions, and files that are not plans.
pub fn read_plan(path: &Path) -> Result<Plan, SessionError> {
    use std::io::Read as _;
    let error = |reason: String| SessionError::PlanFile {
        path: path.to_path_buf(),
        reason,
    };
    // At most the cap plus one byte is read, so `/dev/zero` or a runaway file cannot take
    // all memory (found by the hostile catalogue).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PLAN_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| error(e.to_string()))?;
    if bytes.len() as u64 > MAX_PLAN_FILE_BYTES {
        return Err(error(format!(
            "larger than {} MiB; no plan is that large",
            MAX_PLAN_FILE_BYTES >> 20
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| error("not UTF-8 text".into()))?;
    crate::plan::from_json(&text).map_err(|e| error(e.to_string()))
}

/// Largest plan file `apply PLAN` reads (a 10,000-tenant plan is far below it).
pub const MAX_PLAN_FILE_BYTES: u64 = 256 << 20;

/// Why an apply executed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The plan has nothing to do.
    NothingToDo,
    /// The plan carries refusals.
    Refused,
    /// The user said no.
    Declined,
}

/// What happened to one tenant in an apply (serialized as the summary event's per-tenant
/// entry: `{"result": "failed", "step": 3, "error": "…"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum TenantOutcome {
    /// Every step of the tenant succeeded.
    Converged,
    /// A step failed.
    Failed {
        /// First failed step id.
        step: u32,
        /// Its error (secrets redacted by the driver).
        error: String,
    },
    /// Some steps did not run (cancelled, or a failure upstream).
    Skipped,
    /// The plan was refused; nothing of the tenant ran.
    Refused,
}

/// The outcome of an apply.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// The plan that was (or would have been) executed.
    pub plan: Plan,
    /// Why nothing ran, when nothing did.
    pub stopped: Option<Stopped>,
    /// What happened to each step.
    pub report: Report,
    /// Per tenant with steps in the plan.
    pub tenants: BTreeMap<String, TenantOutcome>,
    /// Stopped early by a signal (or a lost lease).
    pub cancelled: bool,
    /// Stopped early because the leases could not be renewed before they expired (not a
    /// signal): `cancelled` is set too.
    pub lease_expired: bool,
    /// Hosts whose applied commit was recorded.
    pub recorded: Vec<HostRef>,
    /// Plans made again after steps failed on held host ports, with what they did.
    pub replans: Vec<(Plan, Report)>,
}

impl ApplyOutcome {
    /// Whether the hosts now match the plan (or nothing had to be done).
    #[must_use]
    pub fn success(&self) -> bool {
        match self.stopped {
            Some(Stopped::NothingToDo) => true,
            Some(_) => false,
            None => self
                .replans
                .last()
                .map_or(self.report.success(), |(_, r)| r.success()),
        }
    }

    /// Steps that succeeded.
    #[must_use]
    pub fn succeeded(&self) -> usize {
        std::iter::once(&self.report)
            .chain(self.replans.iter().map(|(_, r)| r))
            .flat_map(|r| r.outcomes.values())
            .filter(|o| **o == crate::execute::Outcome::Succeeded)
            .count()
    }
}

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanSettings {
    /// Which tenants (`None` = all).
    pub scope: Option<Scope>,
    /// Plan against empty hosts without contacting them.
    pub offline: bool,
    /// The observation's depth: a deep scan reads what the cheap batch reports cannot show
    /// (Docker: inspect every managed container). A daemon passes it per pass: deep on its
    /// periodic drift scan, fast otherwise.
    pub deep: bool,
    /// A fast observation (Dokku): apps whose spec label holds the hash of the spec berth
    /// wants are confirmed from the all-app reports, without their config and formation
    /// (docs/daemon.md). For a daemon's periodic full pass; never with `deep`.
    pub fast: bool,
    /// Override the circuit breaker.
    pub allow_destroys: bool,
    /// Allow an empty desired set.
    pub allow_empty: bool,
    /// Allow Dokku services to change image through `<kind>:upgrade`.
    pub allow_upgrades: bool,
    /// Purge these tenants' data before `policy.retain-data` has passed (`--purge-now`).
    pub purge_now: Vec<String>,
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Planning knobs (ignored for a saved plan, except `deep`).
    pub plan: PlanSettings,
    /// Execute exactly this saved plan (after the stale check).
    pub saved: Option<Plan>,
    /// Skip the steps the journal records as done (saved plans only).
    pub resume: bool,
    /// Where the journal lives (`None`: no journal).
    pub journal_dir: Option<PathBuf>,
    /// Executor knobs.
    pub exec: ExecOptions,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// How long to wait for another holder's lease.
    pub lock_timeout: Duration,
    /// Skip the preflight checks (secrets, images) before the first mutating step.
    pub skip_preflight: bool,
    /// Who we are, for the lease (`user@machine pid N`).
    pub holder: String,
    /// `apply` or `daemon`.
    pub purpose: String,
}

impl Default for ApplySettings {
    fn default() -> Self {
        ApplySettings {
            plan: PlanSettings::default(),
            saved: None,
            resume: false,
            journal_dir: None,
            exec: ExecOptions::default(),
            lease_ttl: lease::DEFAULT_TTL,
            lock_timeout: Duration::ZERO,
            holder: holder(),
            purpose: "apply".into(),
            skip_preflight: false,
        }
    }
}

/// `user@machine pid N` for this process.
#[must_use]
pub fn holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(uid);
    let machine = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{machine} pid {}", std::process::id())
}

/// The user name of the real user id (`/proc/self/status` and `/etc/passwd`; no libc call),
/// or `uid N` when it has none.
fn uid() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// A digest of a work tree's file listing, for a follower deciding whether to [`load`] again
/// ([`crate::repo::listing_fingerprint`]: `None` means read the files).
#[must_use]
pub fn listing_fingerprint(repo: &Path) -> Option<u64> {
    crate::repo::listing_fingerprint(repo)
}

/// A validated fleet, its commit, and drivers connected to its hosts.
pub struct Session {
    /// The desired state (shared: a daemon keeps the same fleet between passes).
    pub fleet: Arc<Fleet>,
    /// Its commit, recorded on hosts after a converged apply.
    pub commit: Option<String>,
    /// Connected drivers.
    pub drivers: Drivers,
    /// The git repo holding the berth repo, to read the fleet at each host's applied commit
    /// (the baseline that tells drift from intended change where no marker can).
    pub history: Option<PathBuf>,
    /// Fleets read at applied commits, by commit.
    baselines: std::sync::Mutex<BTreeMap<String, Option<std::sync::Arc<Fleet>>>>,
}

impl Session {
    /// Connect to the hosts the fleet uses (or those in `only`), several at a time.
    ///
    /// # Errors
    /// Every host that cannot be reached, in one error.
    pub async fn connect(
        fleet: impl Into<Arc<Fleet>>,
        commit: Option<String>,
        connector: &Connector,
        only: Option<&BTreeSet<HostRef>>,
    ) -> Result<Self, SessionError> {
        let fleet = fleet.into();
        let hosts = match only {
            Some(only) => only.clone(),
            None => hosts_in_use(&fleet),
        };
        let drivers = connector.connect(&fleet, Some(&hosts)).await?;
        Ok(Session {
            fleet,
            commit,
            drivers,
            history: None,
            baselines: std::sync::Mutex::default(),
        })
    }

    /// A session without hosts (offline planning).
    #[must_use]
    pub fn offline(fleet: impl Into<Arc<Fleet>>, commit: Option<String>) -> Self {
        Session {
            fleet: fleet.into(),
            commit,
            drivers: Drivers::default(),
            history: None,
            baselines: std::sync::Mutex::default(),
        }
    }

    /// Observe the connected hosts, reading details only for the tenants in scope.
    ///
    /// # Errors
    /// The first host that cannot be read.
    pub async fn observe(&self, scope: Option<&Scope>) -> Result<Live, SessionError> {
        let prefixes = scope.map(|s| dokku_prefixes(&self.fleet, s));
        let mut live = observe_all_scoped(&self.drivers, prefixes.as_deref()).await?;
        self.digest_secrets(&mut live).await;
        Ok(live)
    }

    /// Digest every secret each observed host's environment declares, as its provider holds
    /// it now, so a plan sees a rotated value (`(sensitive, changed)`) without holding it. A
    /// secret without a value is left out (preflight reports it).
    async fn digest_secrets(&self, live: &mut Live) {
        for (host, observed) in &mut live.hosts {
            let Some(env) = self.fleet.environments.get(&host.environment) else {
                continue;
            };
            let Some(driver) = self.drivers.hosts.get(host) else {
                continue;
            };
            let provider = driver.secrets();
            for name in &env.secrets.names {
                if let Ok(value) = provider.get(name).await {
                    observed
                        .secret_digests
                        .insert(name.clone(), crate::model::secret_digest(name, &value));
                }
            }
        }
    }

    /// Check that every tenant `--tenant` names exists in the files or on a host.
    fn check_named(&self, scope: Option<&Scope>, live: &Live) -> Result<(), SessionError> {
        let Some(scope) = scope else { return Ok(()) };
        let owners: BTreeSet<&str> = live
            .hosts
            .values()
            .flat_map(|h| h.objects().filter_map(|o| o.owner))
            .collect();
        let unknown: Vec<String> = scope
            .named
            .iter()
            .filter(|t| !self.fleet.tenants.contains_key(*t) && !owners.contains(t.as_str()))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.fleet.tenants.keys().map(String::as_str).collect();
        let suggestions = unknown
            .iter()
            .filter_map(|u| crate::spec::schema_check::did_you_mean(u, &known).map(str::to_string))
            .collect();
        Err(SessionError::UnknownTenant {
            names: unknown,
            suggestions,
        })
    }

    /// Swap in a new desired state for the next pass, keeping the connected drivers and the
    /// baselines already read (a daemon; the caller reconnects when hosts change).
    pub fn reload(
        &mut self,
        fleet: impl Into<Arc<Fleet>>,
        commit: Option<String>,
        history: Option<&Path>,
    ) {
        self.fleet = fleet.into();
        self.commit = commit;
        self.history = history
            .filter(|repo| GitRepo::open(repo).is_ok())
            .map(Path::to_path_buf);
        // Baselines are per applied commit; a few stay (hosts catch up one commit at a time).
        let mut cache = self
            .baselines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while cache.len() > 4 {
            cache.pop_first();
        }
    }

    /// Read the berth repo's history to tell drift from intended change (see
    /// [`Session::history`]).
    #[must_use]
    pub fn with_history(mut self, repo: &Path) -> Self {
        self.history = GitRepo::open(repo).ok().map(|_| repo.to_path_buf());
        self
    }

    /// The desired state of every observed host at the commit it records as applied: what
    /// berth last made it. `None` without history or applied commits.
    fn baseline(&self, live: &Live) -> Option<crate::model::desired::Desired> {
        let repo = self.history.as_ref()?;
        // Hosts at the same commit share one read, one validation and one compile.
        let mut by_commit: BTreeMap<&str, Vec<&HostRef>> = BTreeMap::new();
        for (host, observed) in &live.hosts {
            if let Some(commit) = &observed.applied_commit {
                by_commit.entry(commit).or_default().push(host);
            }
        }
        if by_commit.is_empty() {
            return None;
        }
        let git = GitRepo::open(repo).ok()?;
        let mut baseline = crate::model::desired::Desired::default();
        for (commit, hosts) in by_commit {
            let fleet = {
                let mut cache = self
                    .baselines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cache
                    .entry(commit.to_string())
                    .or_insert_with(|| {
                        let sources = git.sources_at(commit).ok()?;
                        validate(&sources).0.map(std::sync::Arc::new)
                    })
                    .clone()
            };
            let Some(fleet) = fleet else { continue };
            let placements = crate::model::desired::place(&fleet, live);
            let mut desired = crate::model::desired::compile(&fleet, &placements);
            for host in hosts {
                if let Some(at_commit) = desired.hosts.remove(host) {
                    baseline.hosts.insert(host.clone(), at_commit);
                }
            }
        }
        (!baseline.hosts.is_empty()).then_some(baseline)
    }

    /// Plan against `live` (pure but for reading the baseline from git history).
    #[must_use]
    pub fn plan_against(&self, live: &Live, settings: &PlanSettings) -> Plan {
        let baseline = self.baseline(live);
        let options = PlanOptions {
            allow_destroys: settings.allow_destroys,
            allow_empty: settings.allow_empty,
            allow_upgrades: settings.allow_upgrades,
            baseline: baseline.as_ref(),
            scope: settings.scope.as_ref(),
            now: Some(crate::clock::now_unix()),
            purge_now: &settings.purge_now,
        };
        let mut plan = crate::plan::plan(&self.fleet, live, &options);
        plan.commit.clone_from(&self.commit);
        plan.offline = settings.offline;
        plan
    }

    /// Observe (unless offline), check `--tenant` names, and plan.
    ///
    /// # Errors
    /// Hosts that cannot be read, unknown `--tenant` names.
    pub async fn plan(&self, settings: &PlanSettings) -> Result<Plan, SessionError> {
        let live = self.observe_for(settings).await?;
        Ok(self.plan_against(&live, settings))
    }

    async fn observe_for(&self, settings: &PlanSettings) -> Result<Live, SessionError> {
        self.drivers.set_deep(settings.deep);
        let expected =
            (settings.fast && !settings.deep).then(|| crate::model::desired::expected(&self.fleet));
        self.drivers.set_fast(expected.as_ref());
        let live = if settings.offline {
            Live::default()
        } else {
            self.observe(settings.scope.as_ref()).await?
        };
        self.check_named(settings.scope.as_ref(), &live)?;
        Ok(live)
    }

    /// Take the lease of every connected host, in a fixed order (two applies cannot
    /// deadlock), waiting up to `lock_timeout` for other holders.
    async fn take_leases(
        &self,
        record: &LeaseRecord,
        settings: &ApplySettings,
        hooks: &dyn Hooks,
    ) -> Result<Vec<HostRef>, (SessionError, Vec<HostRef>)> {
        let (held, _) = self
            .take_leases_of(
                record,
                settings.lease_ttl,
                settings.lock_timeout,
                hooks,
                false,
            )
            .await?;
        Ok(held)
    }

    /// Take the lease of every connected host. With `tolerate_busy` (a daemon pass, which
    /// never waits), a host whose lease someone else holds is left out and returned with its
    /// holder instead of failing the whole run, and hosts are claimed several at a time.
    /// Without it (an apply, which waits up to `lock_timeout`), hosts are claimed one by one
    /// in a fixed order, so two waiting applies cannot each hold what the other waits for.
    async fn take_leases_of(
        &self,
        record: &LeaseRecord,
        ttl: Duration,
        lock_timeout: Duration,
        hooks: &dyn Hooks,
        tolerate_busy: bool,
    ) -> Result<(Vec<HostRef>, BTreeMap<HostRef, LeaseRecord>), (SessionError, Vec<HostRef>)> {
        let mut held: Vec<HostRef> = Vec::new();
        let mut busy = BTreeMap::new();
        let deadline = std::time::Instant::now() + lock_timeout;
        let hosts: Vec<HostRef> = self.drivers.hosts.keys().cloned().collect();
        if tolerate_busy {
            let taken = each_host(&hosts, |host| {
                self.take_one(host, record, ttl, deadline, hooks, true)
            })
            .await;
            let mut failed = None;
            for (host, result) in hosts.into_iter().zip(taken) {
                match result {
                    Ok(None) => held.push(host),
                    Ok(Some(other)) => {
                        busy.insert(host, other);
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            return match failed {
                Some(e) => Err((e, held)),
                None => Ok((held, busy)),
            };
        }
        for host in hosts {
            match self
                .take_one(&host, record, ttl, deadline, hooks, false)
                .await
            {
                Ok(None) => held.push(host),
                Ok(Some(other)) => {
                    busy.insert(host, other);
                }
                Err(e) => return Err((e, held)),
            }
        }
        Ok((held, busy))
    }

    /// Take one host's lease: `None` when taken, the other holder's record when it is busy
    /// (only with `tolerate_busy`; otherwise waited for until `deadline`).
    async fn take_one(
        &self,
        host: &HostRef,
        record: &LeaseRecord,
        ttl: Duration,
        deadline: std::time::Instant,
        hooks: &dyn Hooks,
        tolerate_busy: bool,
    ) -> Result<Option<LeaseRecord>, SessionError> {
        let Some(driver) = self.drivers.hosts.get(host) else {
            return Ok(None);
        };
        let mut told = false;
        let mut reclaimed = false;
        loop {
            let now = crate::clock::now_unix();
            let mut record = record.clone();
            record.started = now;
            // Whole seconds: one more, so the lease lives at least `ttl` whatever the
            // fraction of the current second (the local deadline stays at `now + ttl`).
            record.expires = now + ttl.as_secs() + 1;
            match lease::acquire(driver, &record, now).await {
                Ok(()) => {
                    hooks.notice(&Notice::LeaseTaken { host });
                    return Ok(None);
                }
                Err(lease::LeaseError::Held { held: other, .. })
                    if std::time::Instant::now() < deadline =>
                {
                    if !told {
                        hooks.notice(&Notice::WaitingForLease { host, held: &other });
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // A pass finding a lease in its own name: an earlier pass of this daemon
                // could not release it (its connection was cut). A daemon runs one pass
                // at a time, so nothing of ours uses it: take it back instead of
                // waiting out its time to live.
                Err(lease::LeaseError::Held { held: other, .. })
                    if tolerate_busy && !reclaimed && other.holder == record.holder =>
                {
                    reclaimed = true;
                    hooks.notice(&Notice::LeaseReclaimed { host });
                    lease::release_any(driver).await?;
                }
                Err(lease::LeaseError::Held { held: other, .. }) if tolerate_busy => {
                    hooks.notice(&Notice::WaitingForLease { host, held: &other });
                    return Ok(Some(other));
                }
                // Others are breaking the same expired lease: one of them will have it.
                Err(lease::LeaseError::Contended { .. }) if tolerate_busy => {
                    let other = LeaseRecord {
                        holder: "(changing hands)".into(),
                        ..LeaseRecord::incomplete()
                    };
                    hooks.notice(&Notice::WaitingForLease { host, held: &other });
                    return Ok(Some(other));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn release(&self, held: &[HostRef], token: &str) {
        each_host(held, |host| async move {
            if let Some(driver) = self.drivers.hosts.get(host) {
                let _ = lease::release(driver, token).await;
            }
        })
        .await;
    }

    /// The whole apply: leases → observe → plan (or stale-check the saved plan) → check →
    /// approve → execute with renewal → record the commit → release.
    ///
    /// # Errors
    /// Leases, unreadable hosts, stale or malformed plans, refused confirmation. A refused or
    /// declined plan is an outcome, not an error.
    pub async fn apply(
        &self,
        settings: &ApplySettings,
        hooks: &dyn Hooks,
        stop: &StopSignal,
    ) -> Result<ApplyOutcome, SessionError> {
        if settings.resume && settings.saved.is_none() {
            return Err(SessionError::ResumeNeedsPlan);
        }
        if settings.saved.as_ref().is_some_and(|p| p.offline) {
            return Err(SessionError::OfflinePlan);
        }
        let record = lease_record(&settings.holder, &settings.purpose);
        let token = record.token.clone();
        let held = match self.take_leases(&record, settings, hooks).await {
            Ok(held) => held,
            Err((e, held)) => {
                self.release(&held, &token).await;
                return Err(e);
            }
        };
        stop.set_deadline(crate::clock::now_unix() + settings.lease_ttl.as_secs());
        let result = self
            .apply_locked(settings, hooks, stop, &held, &record)
            .await;
        self.release(&held, &token).await;
        result
    }

    async fn apply_locked(
        &self,
        settings: &ApplySettings,
        hooks: &dyn Hooks,
        stop: &StopSignal,
        held: &[HostRef],
        record: &LeaseRecord,
    ) -> Result<ApplyOutcome, SessionError> {
        let (plan, live) = match &settings.saved {
            Some(saved) => {
                self.drivers.set_deep(settings.plan.deep);
                // A saved plan is checked against a full read.
                self.drivers.set_fast(None);
                let live = self.observe(saved.scope.as_ref()).await?;
                let moved = stale_objects(saved, &live);
                if !moved.is_empty() {
                    return Err(SessionError::StalePlan { moved });
                }
                (saved.clone(), live)
            }
            None => {
                let mut plan_settings = settings.plan.clone();
                plan_settings.offline = false;
                let live = self.observe_for(&plan_settings).await?;
                (self.plan_against(&live, &plan_settings), live)
            }
        };
        let defects = crate::plan::check::check(&plan, &live);
        if !defects.is_empty() {
            return Err(SessionError::Malformed { defects });
        }
        hooks.notice(&Notice::Planned(&plan));
        let stopped = |plan: Plan, why: Stopped| {
            let tenants = plan
                .steps
                .iter()
                .map(|s| {
                    let outcome = if why == Stopped::Refused {
                        TenantOutcome::Refused
                    } else {
                        TenantOutcome::Skipped
                    };
                    (s.tenant.clone(), outcome)
                })
                .collect();
            ApplyOutcome {
                plan,
                stopped: Some(why),
                report: Report::default(),
                tenants,
                cancelled: false,
                lease_expired: false,
                recorded: Vec::new(),
                replans: Vec::new(),
            }
        };
        if !plan.refusals.is_empty() {
            return Ok(stopped(plan, Stopped::Refused));
        }
        if plan.is_empty() {
            let recorded = self.record(held, plan.scope.as_ref(), hooks).await;
            let mut outcome = stopped(plan, Stopped::NothingToDo);
            outcome.recorded = recorded;
            return Ok(outcome);
        }
        if !settings.skip_preflight {
            let problems = self.preflight(&plan).await;
            if !problems.is_empty() {
                return Err(SessionError::Preflight { problems });
            }
        }
        if settings.saved.is_none() {
            match hooks.approve(&plan) {
                Approval::Approved => {}
                Approval::Declined => return Ok(stopped(plan, Stopped::Declined)),
                Approval::Impossible { message, hint } => {
                    return Err(SessionError::NotApproved { message, hint });
                }
            }
        }
        let (journal, skip) = match &settings.journal_dir {
            Some(dir) => {
                let path = journal::path_for(dir, &plan);
                let skip = if settings.resume {
                    journal::succeeded(&path)
                } else {
                    BTreeSet::new()
                };
                (Some(journal::Journal::open(&path)?), skip)
            }
            None => (None, BTreeSet::new()),
        };
        let mut reporters: Vec<&dyn Reporter> = vec![hooks];
        if let Some(j) = &journal {
            reporters.push(j);
        }
        let reporter = crate::execute::Tee(reporters);
        let renewing = self.renew_while_running(held, record, settings.lease_ttl, stop, hooks);
        let rounds = self.execute_rounds(
            plan,
            Rounds {
                exec: &settings.exec,
                plan: &settings.plan,
                reporter: &reporter,
                stop,
                skip: &skip,
                hooks,
                narrow: &|plan| plan,
            },
        );
        let (plan, report, replans) = tokio::select! {
            done = rounds => done?,
            () = renewing => unreachable!("renewal never ends"),
        };
        if let Some(error) = journal.as_ref().and_then(journal::Journal::take_error) {
            hooks.notice(&Notice::JournalFailed {
                error: crate::driver::error_chain(&error),
            });
        }
        let mut tenants = tenant_outcomes(&plan, &report);
        for (p, r) in &replans {
            tenants.extend(tenant_outcomes(p, r));
        }
        let converged = replans
            .last()
            .map_or(report.success(), |(_, r)| r.success());
        // Record on each host the commit it now reflects (only when everything converged).
        let recorded = if converged {
            self.record(held, plan.scope.as_ref(), hooks).await
        } else {
            Vec::new()
        };
        Ok(ApplyOutcome {
            plan,
            stopped: None,
            report,
            tenants,
            cancelled: stop.is_stopped(),
            lease_expired: stop.is_stopped() && !stop.requested(),
            recorded,
            replans,
        })
    }

    /// Execute, then — while steps failed on host ports something else holds — re-plan with
    /// those ports taken and execute again (at most [`REPLAN_ROUNDS`] times).
    async fn execute_rounds(
        &self,
        plan: Plan,
        rounds: Rounds<'_>,
    ) -> Result<(Plan, Report, Vec<(Plan, Report)>), SessionError> {
        let Rounds {
            exec,
            plan: settings,
            reporter,
            stop,
            skip,
            hooks,
            narrow,
        } = rounds;
        let stopped = || stop.is_stopped();
        // Steps run fenced by the lease deadline: a holder paused past it stops between the
        // commands of a step, not only between steps.
        let fence = stop.deadline_handle();
        let report = crate::driver::fenced(
            fence.clone(),
            crate::execute::execute(&plan, &self.drivers, exec, reporter, &stopped, skip),
        )
        .await;
        let mut replans: Vec<(Plan, Report)> = Vec::new();
        let mut held_total: BTreeMap<HostRef, BTreeSet<u16>> = BTreeMap::new();
        for _ in 0..REPLAN_ROUNDS {
            let (last_plan, last) = replans.last().map_or((&plan, &report), |(p, r)| (p, r));
            let held = held_ports(last_plan, last);
            if held.is_empty() || stop.is_stopped() {
                break;
            }
            for (host, ports) in &held {
                held_total.entry(host.clone()).or_default().extend(ports);
            }
            let mut live = self.observe(plan.scope.as_ref()).await?;
            for (host, ports) in &held_total {
                if let Some(observed) = live.hosts.get_mut(host) {
                    observed.docker.ports_held.extend(ports);
                }
            }
            let mut plan_settings = settings.clone();
            plan_settings.scope.clone_from(&plan.scope);
            let next = narrow(self.plan_against(&live, &plan_settings));
            let defects = crate::plan::check::check(&next, &live);
            if !defects.is_empty() {
                return Err(SessionError::Malformed { defects });
            }
            if !next.refusals.is_empty() || next.is_empty() {
                break;
            }
            for (host, ports) in &held {
                hooks.notice(&Notice::Replanned {
                    host,
                    ports,
                    plan: &next,
                });
            }
            let next_report = crate::driver::fenced(
                fence.clone(),
                crate::execute::execute(
                    &next,
                    &self.drivers,
                    exec,
                    reporter,
                    &stopped,
                    &BTreeSet::new(),
                ),
            )
            .await;
            replans.push((next, next_report));
        }
        Ok((plan, report, replans))
    }

    /// Every problem that would make a step of `plan` fail and can be known before anything
    /// changes (secrets, images), from every host at once.
    pub async fn preflight(&self, plan: &Plan) -> Vec<crate::driver::Problem> {
        let mut by_host: BTreeMap<HostRef, Vec<&crate::plan::Step>> = BTreeMap::new();
        for step in &plan.steps {
            by_host
                .entry(HostRef::new(&step.environment, &step.host))
                .or_default()
                .push(step);
        }
        let checks = by_host.iter().filter_map(|(host, steps)| {
            self.drivers
                .hosts
                .get(host)
                .map(|driver| driver.preflight(steps))
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn record(
        &self,
        held: &[HostRef],
        scope: Option<&Scope>,
        hooks: &dyn Hooks,
    ) -> Vec<HostRef> {
        let Some(commit) = &self.commit else {
            return Vec::new();
        };
        // A host reflects a commit only when everything that changed up to it was applied:
        // a full apply, or a `--since` apply (everything else is unchanged since then). A
        // `--tenant` apply leaves the other tenants where they were.
        if scope.is_some_and(|s| !s.named.is_empty() || s.since.is_none()) {
            return Vec::new();
        }
        self.record_on(held, commit, hooks).await
    }

    /// Record `commit` as applied on each of `hosts`, several at a time; returns those
    /// recorded (a failure is a notice: the next apply records again).
    pub(crate) async fn record_on(
        &self,
        hosts: &[HostRef],
        commit: &str,
        hooks: &dyn Hooks,
    ) -> Vec<HostRef> {
        let results = each_host(hosts, |host| async move {
            let driver = self.drivers.hosts.get(host)?;
            match driver.record_applied(commit).await {
                Ok(()) => Some(host.clone()),
                Err(e) => {
                    hooks.notice(&Notice::RecordFailed {
                        host,
                        error: e.chain(),
                    });
                    None
                }
            }
        })
        .await;
        results.into_iter().flatten().collect()
    }

    /// Renew every held lease each third of its time to live; when a lease turns out not to
    /// be ours any more, stop starting steps.
    async fn renew_while_running(
        &self,
        held: &[HostRef],
        record: &LeaseRecord,
        ttl: Duration,
        stop: &StopSignal,
        hooks: &dyn Hooks,
    ) {
        // A third of the time to live (at least 100 ms): two renewals can fail or run late
        // before the deadline passes.
        let every = (ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let now = crate::clock::now_unix();
            let renewed = each_host(held, |host| async move {
                let Some(driver) = self.drivers.hosts.get(host) else {
                    return true;
                };
                match lease::still_ours(driver, &record.token, now).await {
                    Ok(true) => {
                        let mut renewed = record.clone();
                        renewed.started = now;
                        renewed.expires = now + ttl.as_secs() + 1;
                        lease::renew(driver, &renewed).await.is_ok()
                    }
                    Ok(false) => {
                        hooks.notice(&Notice::LeaseLost { host });
                        // The fence, not the stop flag: nothing new starts in this run, and
                        // a daemon's next pass (which sets its own deadline) is not stopped.
                        stop.set_deadline(0);
                        false
                    }
                    // Cannot tell: keep the old deadline, try again next round.
                    Err(_) => false,
                }
            })
            .await;
            let all_ours = renewed.iter().all(|ours| *ours);
            if all_ours {
                stop.set_deadline(now + ttl.as_secs());
            }
        }
    }

    /// Per host: the recorded applied commit.
    pub async fn applied_commits(&self) -> BTreeMap<HostRef, Option<String>> {
        let hosts: Vec<HostRef> = self.drivers.hosts.keys().cloned().collect();
        let commits = each_host(&hosts, |host| async move {
            match self.drivers.hosts.get(host) {
                Some(driver) => driver.applied_commit().await.ok().flatten(),
                None => None,
            }
        })
        .await;
        hosts.into_iter().zip(commits).collect()
    }
}

/// Hosts worked on at once for leases, records and commit reads: each host has its own
/// connection, and hundreds of hosts one after the other cost hundreds of round trips.
const HOST_CONCURRENCY: usize = 32;

/// `f` for every host, [`HOST_CONCURRENCY`] at a time; results in the order of `hosts`.
async fn each_host<'a, T, F, Fut>(hosts: &'a [HostRef], f: F) -> Vec<T>
where
    F: Fn(&'a HostRef) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(hosts.len());
    for batch in hosts.chunks(HOST_CONCURRENCY) {
        out.extend(futures_util::future::join_all(batch.iter().map(&f)).await);
    }
    out
}

/// A lease record for `holder` with a fresh token (times are set when it is claimed).
fn lease_record(holder: &str, purpose: &str) -> LeaseRecord {
    let token = crate::plan::short_hash_of(&format!(
        "{holder}{}{:?}",
        crate::clock::now_rfc3339(),
        std::time::Instant::now()
    ));
    LeaseRecord {
        holder: holder.to_string(),
        purpose: purpose.to_string(),
        started: 0,
        expires: 0,
        token,
    }
}

/// What [`Session::execute_rounds`] needs besides the plan.
struct Rounds<'a> {
    exec: &'a ExecOptions,
    /// How a re-plan is made.
    plan: &'a PlanSettings,
    reporter: &'a dyn Reporter,
    stop: &'a StopSignal,
    /// Steps already done (first round only).
    skip: &'a BTreeSet<u32>,
    hooks: &'a dyn Hooks,
    /// What of a re-plan may run (a daemon pass leaves some tenants alone).
    narrow: &'a (dyn Fn(Plan) -> Plan + Sync),
}

/// Re-plans after steps failed on held host ports, at most.
pub const REPLAN_ROUNDS: usize = 3;

/// Host ports that steps of `plan` failed on because something else holds them.
fn held_ports(plan: &Plan, report: &Report) -> BTreeMap<HostRef, BTreeSet<u16>> {
    let mut out: BTreeMap<HostRef, BTreeSet<u16>> = BTreeMap::new();
    for step in &plan.steps {
        if let Some(crate::execute::Outcome::Failed {
            replan: Some(crate::driver::Replan::PortHeld { port }),
            ..
        }) = report.outcomes.get(&step.id)
        {
            out.entry(HostRef::new(&step.environment, &step.host))
                .or_default()
                .insert(*port);
        }
    }
    out
}

/// Objects of a saved plan whose fingerprint moved, comparing only what the plan observed
/// (its scope).
#[must_use]
pub fn stale_objects(plan: &Plan, live: &Live) -> Vec<Moved> {
    let now = crate::plan::fingerprints_of(plan, live);
    plan.fingerprints
        .iter()
        // A host the plan did not observe has nothing to compare.
        .filter(|(_, then)| then.as_str() != crate::plan::UNOBSERVED)
        .filter_map(|(key, then)| {
            let current = now
                .get(key)
                .cloned()
                .unwrap_or_else(|| crate::plan::ABSENT.into());
            (current != *then).then(|| Moved {
                key: key.clone(),
                then: then.clone(),
                now: current,
            })
        })
        .collect()
}

/// Summarise a report per tenant.
#[must_use]
pub fn tenant_outcomes(plan: &Plan, report: &Report) -> BTreeMap<String, TenantOutcome> {
    use crate::execute::Outcome;
    let mut out: BTreeMap<String, TenantOutcome> = BTreeMap::new();
    for step in &plan.steps {
        let entry = out
            .entry(step.tenant.clone())
            .or_insert(TenantOutcome::Converged);
        match (report.outcomes.get(&step.id), &*entry) {
            (
                Some(Outcome::Failed { error, .. }),
                TenantOutcome::Converged | TenantOutcome::Skipped,
            ) => {
                *entry = TenantOutcome::Failed {
                    step: step.id,
                    error: error.clone(),
                };
            }
            (
                Some(Outcome::Skipped { .. } | Outcome::Cancelled) | None,
                TenantOutcome::Converged,
            ) => {
                *entry = TenantOutcome::Skipped;
            }
            _ => {}
        }
    }
    out
}
