//! Drivers: the adapters between a plan and real hosts, behind one face.
//!
//! [`AnyDriver`] is what the rest of berth sees of a host: observe it, apply one step, and
//! keep berth's own records there (the lease that keeps two applies apart and the commit the
//! host last had applied). Each backend implements those operations its own way — [`dokku`]
//! over SSH, [`docker`] through bollard, [`memory`] on a value — so `reconcile` and `execute`
//! never name a Dokku command, a Dokku parser or a bollard type. Drivers know nothing about
//! git, Stripe, the CLI or output. [`secrets`] resolves secret references at apply time — the
//! only place secret values exist.

pub mod docker;
pub mod dokku;
pub mod http;
pub mod memory;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use self::docker::{DockerDriver, DockerError};
use self::dokku::{DokkuDriver, DokkuError};
use self::memory::{MemoryDriver, MemoryError};
use self::secrets::SecretProvider;
use crate::model::live::{HostRef, Live, LiveHost};
use crate::model::{Fleet, HostTarget};
use crate::plan::Step;

/// Who holds a host's lease, as recorded on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `user@machine pid N`.
    pub holder: String,
    /// `apply`, `daemon`.
    pub purpose: String,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds.
    pub expires: u64,
    /// Random token of the holder.
    pub token: String,
}

impl LeaseRecord {
    /// The record as key/value fields (`HOLDER`, `PURPOSE`, …), for backends that store
    /// strings.
    #[must_use]
    pub fn fields(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("HOLDER".to_string(), self.holder.clone()),
            ("PURPOSE".to_string(), self.purpose.clone()),
            ("STARTED".to_string(), self.started.to_string()),
            ("EXPIRES".to_string(), self.expires.to_string()),
            ("TOKEN".to_string(), self.token.clone()),
        ])
    }

    /// Inverse of [`LeaseRecord::fields`]; `None` when a required field is missing.
    #[must_use]
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| fields.get(k).cloned();
        Some(LeaseRecord {
            holder: get("HOLDER")?,
            purpose: get("PURPOSE").unwrap_or_default(),
            started: get("STARTED")?.parse().ok()?,
            expires: get("EXPIRES")?.parse().ok()?,
            token: get("TOKEN").unwrap_or_default(),
        })
    }

    /// A record for a lease object whose fields were never written (its holder crashed
    /// between creating and writing it): it belongs to nobody and has expired.
    #[must_use]
    pub fn incomplete() -> Self {
        LeaseRecord {
            holder: "(unknown: incomplete lease)".into(),
            purpose: String::new(),
            started: 0,
            expires: 0,
            token: String::new(),
        }
    }
}

/// What an attempt to create the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The lease object did not exist; it is ours now.
    Taken,
    /// Someone's lease is there (possibly expired, possibly our own).
    Held(LeaseRecord),
}

/// Something that would make a step fail, found before anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Host.
    pub host: HostRef,
    /// Tenant.
    pub tenant: String,
    /// What is wrong (a secret without a value, an image that cannot be pulled).
    pub message: String,
}

/// Secret names a config value needs (`Secret`, or `Derived` from one).
#[must_use]
pub fn secret_names(value: &crate::model::desired::ConfigValue) -> Option<&str> {
    use crate::model::desired::ConfigValue;
    match value {
        ConfigValue::Secret { name } => Some(name),
        ConfigValue::Derived { from, .. } => secret_names(from),
        _ => None,
    }
}

/// The secret names the steps of one host need, with the tenant needing each.
fn needed_secrets(steps: &[&Step]) -> Vec<(String, String)> {
    use crate::plan::Change;
    let mut out = Vec::new();
    for step in steps {
        let values: Vec<&crate::model::desired::ConfigValue> = match &step.change {
            Change::SetConfig { changes, .. } => changes.iter().map(|c| &c.new).collect(),
            Change::CreateContainer { spec, .. } | Change::RecreateContainer { spec, .. } => {
                spec.env.values().collect()
            }
            Change::LoginRegistry {
                password_secret, ..
            } => {
                let entry = (step.tenant.clone(), password_secret.clone());
                if !out.contains(&entry) {
                    out.push(entry);
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        for v in values {
            if let Some(name) = secret_names(v) {
                let entry = (step.tenant.clone(), name.to_string());
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// Name of the lease object of an environment on a host (an app or a volume).
#[must_use]
pub fn lease_name(environment: &str) -> String {
    format!("berth-lease-{environment}")
}

/// Any driver berth has. A closed enum: the set of drivers is known, and enum dispatch
/// sidesteps object-safety questions of async methods.
pub enum AnyDriver {
    /// The in-memory driver over a shared world (tests, simulations, dry runs).
    Memory(MemoryDriver),
    /// A Dokku host over SSH.
    Dokku(DokkuDriver),
    /// A Docker Engine.
    Docker(DockerDriver),
}

/// A driver failure, whichever driver. Every inner error names its host (and the tenant,
/// where a step has one).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// In-memory driver.
    #[error("in-memory driver failed")]
    Memory(#[source] MemoryError),
    /// Dokku driver.
    #[error("Dokku driver failed")]
    Dokku(#[source] DokkuError),
    /// Docker driver.
    #[error("Docker driver failed")]
    Docker(#[source] DockerError),
    /// No driver is connected for the step's host.
    #[error("no driver for host `{host}`")]
    NoDriver {
        /// Host.
        host: HostRef,
    },
}

impl From<MemoryError> for DriverError {
    fn from(e: MemoryError) -> Self {
        DriverError::Memory(e)
    }
}

impl From<DokkuError> for DriverError {
    fn from(e: DokkuError) -> Self {
        DriverError::Dokku(e)
    }
}

impl From<DockerError> for DriverError {
    fn from(e: DockerError) -> Self {
        DriverError::Docker(e)
    }
}

/// A failure the plan can route around: the session re-plans with what it learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replan {
    /// A host port is held by something that is not a container: plan another.
    PortHeld {
        /// The port.
        port: u16,
    },
}

impl DriverError {
    /// What the plan should learn from this failure, if anything.
    #[must_use]
    pub fn replan(&self) -> Option<Replan> {
        match self {
            DriverError::Docker(DockerError::PortHeld { port, .. }) => {
                Some(Replan::PortHeld { port: *port })
            }
            _ => None,
        }
    }

    /// Whether a retry may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            DriverError::Dokku(e) => e.is_transient(),
            DriverError::Docker(e) => e.is_transient(),
            DriverError::Memory(e) => e.is_transient(),
            DriverError::NoDriver { .. } => false,
        }
    }

    /// Whether the same step may succeed later with the same files: transient failures, a
    /// container that did not become healthy (what it depends on may recover), an image that
    /// could not be pulled yet, a port something else holds for now.
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        self.is_transient()
            || matches!(
                self,
                DriverError::Docker(
                    DockerError::Unhealthy { .. }
                        | DockerError::Pull { .. }
                        | DockerError::PortHeld { .. }
                )
            )
    }

    /// The whole chain joined with `: ` (the innermost part is usually the useful one).
    #[must_use]
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

tokio::task_local! {
    /// The lease deadline (unix seconds) of the steps running in this task.
    static LEASE_DEADLINE: std::sync::Arc<std::sync::atomic::AtomicU64>;
}

/// Run `steps` (an executor run) fenced by `deadline`, the unix second after which the
/// leases may no longer be ours: a driver asks [`lease_expired`] between the commands of a
/// step and stops there, so a holder paused past its lease (`SIGSTOP`, a frozen VM) and
/// resumed sends nothing more to a host someone else now holds.
pub async fn fenced<F: std::future::Future>(
    deadline: std::sync::Arc<std::sync::atomic::AtomicU64>,
    steps: F,
) -> F::Output {
    LEASE_DEADLINE.scope(deadline, steps).await
}

/// Whether the lease deadline of the running steps has passed (never outside [`fenced`]).
#[must_use]
pub fn lease_expired() -> bool {
    LEASE_DEADLINE
        .try_with(|d| crate::clock::now_unix() >= d.load(std::sync::atomic::Ordering::SeqCst))
        .unwrap_or(false)
}

/// Every message of an error's source chain, joined with `: `.
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

impl AnyDriver {
    /// The host this driver reaches.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        match self {
            AnyDriver::Memory(d) => d.host(),
            AnyDriver::Dokku(d) => d.host(),
            AnyDriver::Docker(d) => d.host(),
        }
    }

    /// The secret provider of the host's environment.
    #[must_use]
    pub fn secrets(&self) -> &SecretProvider {
        match self {
            AnyDriver::Memory(d) => d.secrets(),
            AnyDriver::Dokku(d) => d.secrets(),
            AnyDriver::Docker(d) => d.secrets(),
        }
    }

    /// Observe the host.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn observe(&self) -> Result<LiveHost, DriverError> {
        self.observe_scoped(None).await
    }

    /// Observe, reading per-object details only for names with one of `prefixes` (Dokku; a
    /// Docker pass costs the same four calls either way).
    ///
    /// # Errors
    /// Driver failures.
    pub async fn observe_scoped(
        &self,
        prefixes: Option<&[String]>,
    ) -> Result<LiveHost, DriverError> {
        Ok(match self {
            AnyDriver::Memory(d) => d.observe().await?,
            AnyDriver::Dokku(d) => d.observe_scoped(prefixes).await?,
            AnyDriver::Docker(d) => d.observe_configured().await?,
        })
    }

    /// Apply one step.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn apply(&self, step: &Step) -> Result<(), DriverError> {
        match self {
            AnyDriver::Memory(d) => d.apply(step).await?,
            AnyDriver::Dokku(d) => d.apply(step).await?,
            AnyDriver::Docker(d) => d.apply(step).await?,
        }
        Ok(())
    }

    /// Preflight: everything `steps` (this host's steps of a plan) will need exists — every
    /// secret reference resolves, and on Docker every image is on the host or in its
    /// registry. Read-only; every problem is reported, not just the first.
    pub async fn preflight(&self, steps: &[&Step]) -> Vec<Problem> {
        let host = self.host().clone();
        let problem = |tenant: &str, message: String| Problem {
            host: host.clone(),
            tenant: tenant.to_string(),
            message,
        };
        let secrets = self.secrets();
        let mut problems = Vec::new();
        for (tenant, name) in needed_secrets(steps) {
            if let Err(missing) = secrets.get(&name).await {
                problems.push(problem(&tenant, missing.to_string()));
            }
        }
        if let AnyDriver::Docker(d) = self {
            let mut seen = BTreeSet::new();
            for step in steps {
                if let crate::plan::Change::CreateContainer { spec, pull, .. }
                | crate::plan::Change::RecreateContainer { spec, pull, .. } = &step.change
                    && seen.insert(spec.image.clone())
                    && let Err(e) = d.image_available(&step.tenant, &spec.image, *pull).await
                {
                    problems.push(problem(&step.tenant, error_chain(&e)));
                }
            }
        }
        problems
    }

    /// Create the environment's lease object atomically with `record`, or report the lease
    /// that is there.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn lease_claim(&self, record: &LeaseRecord) -> Result<Claim, DriverError> {
        Ok(match self {
            AnyDriver::Memory(d) => d.lease_claim(record).await,
            AnyDriver::Dokku(d) => d.lease_claim(record).await?,
            AnyDriver::Docker(d) => d.lease_claim(record).await?,
        })
    }

    /// The lease on the host, if any (with the holder's latest renewal applied).
    ///
    /// # Errors
    /// Driver failures.
    pub async fn lease_read(&self) -> Result<Option<LeaseRecord>, DriverError> {
        Ok(match self {
            AnyDriver::Memory(d) => d.lease_read().await,
            AnyDriver::Dokku(d) => d.lease_read().await?,
            AnyDriver::Docker(d) => d.lease_read().await?,
        })
    }

    /// Extend a lease we hold to `record.expires`.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn lease_extend(&self, record: &LeaseRecord) -> Result<(), DriverError> {
        match self {
            AnyDriver::Memory(d) => d.lease_extend(record).await,
            AnyDriver::Dokku(d) => d.lease_extend(record).await?,
            AnyDriver::Docker(d) => d.lease_extend(record).await?,
        }
        Ok(())
    }

    /// Remove whatever lease is there.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn lease_clear(&self) -> Result<(), DriverError> {
        match self {
            AnyDriver::Memory(d) => d.lease_clear().await,
            AnyDriver::Dokku(d) => d.lease_clear().await?,
            AnyDriver::Docker(d) => d.lease_clear().await?,
        }
        Ok(())
    }

    /// The commit recorded as applied on the host for its environment, if any.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn applied_commit(&self) -> Result<Option<String>, DriverError> {
        Ok(match self {
            AnyDriver::Memory(d) => d.applied_commit().await,
            AnyDriver::Dokku(d) => d.applied_commit().await?,
            AnyDriver::Docker(d) => d.applied_commit().await?,
        })
    }

    /// Record `commit` as applied on the host for its environment.
    ///
    /// # Errors
    /// Driver failures.
    pub async fn record_applied(&self, commit: &str) -> Result<(), DriverError> {
        match self {
            AnyDriver::Memory(d) => d.record_applied(commit).await,
            AnyDriver::Dokku(d) => d.record_applied(commit).await?,
            AnyDriver::Docker(d) => d.record_applied(commit).await?,
        }
        Ok(())
    }
}

/// The drivers of one run, by host.
#[derive(Default)]
pub struct Drivers {
    /// Connected drivers.
    pub hosts: BTreeMap<HostRef, AnyDriver>,
}

impl Drivers {
    /// Deep observation on every Docker host (`--deep`): a parameter of each observation,
    /// so a daemon sets it per pass (deep scans periodically, fast passes otherwise).
    pub fn set_deep(&self, deep: bool) {
        for driver in self.hosts.values() {
            if let AnyDriver::Docker(d) = driver {
                d.set_deep(deep);
            }
        }
    }

    /// Fast observation on every Dokku host (a daemon's periodic full pass): apps whose spec
    /// label holds the hash in `expected` are not read one by one. `None`: read everything.
    pub fn set_fast(&self, expected: Option<&crate::model::desired::Expected>) {
        for driver in self.hosts.values() {
            if let AnyDriver::Dokku(d) = driver {
                d.set_fast(expected.cloned());
            }
        }
    }
}

/// A host that could not be reached or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach host `{host}`")]
pub struct ConnectError {
    /// Host.
    pub host: HostRef,
    /// Cause.
    #[source]
    pub source: DriverError,
}

/// Hosts that could not be reached, every one of them (connections are made side by side,
/// so one report names them all).
#[derive(Debug)]
pub struct Unreachable {
    /// Each host and why, in host order.
    pub hosts: Vec<ConnectError>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.hosts.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "cannot reach {} hosts; nothing was changed", many.len())?;
                for e in many {
                    write!(f, "\n  {}: {}", e.host, error_chain(&e.source))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Unreachable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.hosts.as_slice() {
            [one] => Some(&one.source),
            _ => None,
        }
    }
}

/// Connections opened at once while connecting a fleet (SSH handshakes, Engine pings).
const CONNECT_CONCURRENCY: usize = 16;

/// How drivers are made for a fleet's hosts.
#[derive(Clone)]
pub enum Connector {
    /// The real thing: SSH for Dokku hosts, the Engine API for Docker hosts.
    Real,
    /// Every host is an in-memory host of this world (tests, simulations).
    Memory(memory::World),
}

impl Connector {
    /// Connect a driver to every host of the fleet's environments (or only those in `only`),
    /// several at a time.
    ///
    /// # Errors
    /// Every host that cannot be reached (none of the others' drivers is kept).
    pub async fn connect(
        &self,
        fleet: &Fleet,
        only: Option<&BTreeSet<HostRef>>,
    ) -> Result<Drivers, Unreachable> {
        let mut wanted = Vec::new();
        for env in fleet.environments.values() {
            let secrets = SecretProvider::for_environment(&env.secrets);
            for host in env.hosts.values() {
                let key = HostRef::new(&env.name, &host.name);
                if only.is_some_and(|o| !o.contains(&key)) {
                    continue;
                }
                wanted.push((key, env, host, secrets.clone()));
            }
        }
        let mut results: Vec<(HostRef, Result<AnyDriver, DriverError>)> = Vec::new();
        for batch in wanted.chunks(CONNECT_CONCURRENCY) {
            let connecting = batch.iter().map(|(key, env, host, secrets)| async move {
                (
                    key.clone(),
                    self.connect_one(key, env, host, secrets.clone()).await,
                )
            });
            results.extend(futures_util::future::join_all(connecting).await);
        }
        let mut drivers = Drivers::default();
        let mut failed = Vec::new();
        for (host, result) in results {
            match result {
                Ok(driver) => {
                    drivers.hosts.insert(host, driver);
                }
                Err(source) => failed.push(ConnectError { host, source }),
            }
        }
        if failed.is_empty() {
            Ok(drivers)
        } else {
            failed.sort_by(|a, b| a.host.cmp(&b.host));
            Err(Unreachable { hosts: failed })
        }
    }

    async fn connect_one(
        &self,
        key: &HostRef,
        env: &crate::model::Environment,
        host: &crate::model::Host,
        secrets: SecretProvider,
    ) -> Result<AnyDriver, DriverError> {
        match (self, &host.target) {
            (Connector::Memory(world), _) => Ok(AnyDriver::Memory(MemoryDriver::new(
                key.clone(),
                world.clone(),
                secrets,
            ))),
            (Connector::Real, HostTarget::Dokku(target)) => {
                DokkuDriver::connect(key, target, secrets)
                    .await
                    .map(AnyDriver::Dokku)
                    .map_err(DriverError::Dokku)
            }
            (
                Connector::Real,
                HostTarget::Docker {
                    endpoint,
                    timeout_secs,
                },
            ) => DockerDriver::connect_with_timeout(
                key,
                endpoint,
                secrets,
                Duration::from_secs(u64::from(*timeout_secs)),
            )
            .await
            .map(|d| {
                AnyDriver::Docker(
                    d.with_registries(env.registries.clone())
                        .with_caddy(host.caddy.as_ref()),
                )
            })
            .map_err(DriverError::Docker),
        }
    }
}

/// Observe every host that has a driver, in parallel.
///
/// # Errors
/// The first host that cannot be observed.
pub async fn observe_all(drivers: &Drivers) -> Result<Live, ConnectError> {
    observe_all_scoped(drivers, None).await
}

/// [`observe_all`] with per-object reads limited to names with one of `prefixes`.
///
/// # Errors
/// The first host that cannot be observed.
pub async fn observe_all_scoped(
    drivers: &Drivers,
    prefixes: Option<&[String]>,
) -> Result<Live, ConnectError> {
    let futures = drivers
        .hosts
        .iter()
        .map(|(host, d)| async move { (host.clone(), d.observe_scoped(prefixes).await) });
    let results = futures_util::future::join_all(futures).await;
    let mut live = Live::default();
    for (host, result) in results {
        let observed = result.map_err(|source| ConnectError {
            host: host.clone(),
            source,
        })?;
        live.hosts.insert(host, observed);
    }
    Ok(live)
}
