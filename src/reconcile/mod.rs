//! `reconcile_once`: observe → plan → execute, the one code path of `berth apply` (and of
//! every daemon pass to come). A pass is level-triggered: it is never told why it runs.
//!
//! Also here: connecting the drivers an environment file describes, and the leases that keep
//! two applies (CI and a daemon on different machines) off one host at the same time.

pub mod applied;
pub mod lease;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use crate::driver::docker::DockerDriver;
use crate::driver::dokku::DokkuDriver;
use crate::driver::secrets::SecretProvider;
use crate::execute::{
    AnyDriver, DriverError, Drivers, ExecOptions, Report, Reporter, execute, observe_all,
};
use crate::model::live::{HostRef, Live};
use crate::model::{Fleet, HostTarget};
use crate::plan::{Plan, PlanOptions, plan};

/// A host that could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to host `{host}`")]
pub struct ConnectError {
    /// Host.
    pub host: HostRef,
    /// Cause.
    #[source]
    pub source: DriverError,
}

/// Connect a driver to every host of the fleet's environments (or only `only`).
///
/// # Errors
/// The first host that cannot be reached.
pub async fn connect(
    fleet: &Fleet,
    only: Option<&BTreeSet<HostRef>>,
) -> Result<Drivers, ConnectError> {
    let mut drivers = Drivers::default();
    for env in fleet.environments.values() {
        let secrets = SecretProvider::for_environment(&env.secrets);
        for host in env.hosts.values() {
            let key = HostRef::new(&env.name, &host.name);
            if only.is_some_and(|o| !o.contains(&key)) {
                continue;
            }
            let driver = match &host.target {
                HostTarget::Dokku(target) => DokkuDriver::connect(&key, target, secrets.clone())
                    .await
                    .map(AnyDriver::Dokku)
                    .map_err(DriverError::Dokku),
                HostTarget::Docker { endpoint } => {
                    DockerDriver::connect(&key, endpoint, secrets.clone())
                        .await
                        .map(AnyDriver::Docker)
                        .map_err(DriverError::Docker)
                }
            };
            let driver = driver.map_err(|source| ConnectError {
                host: key.clone(),
                source,
            })?;
            drivers.hosts.insert(key, driver);
        }
    }
    Ok(drivers)
}

/// Hosts a fleet's tenants and shared services are on, or could be placed on.
#[must_use]
pub fn hosts_in_use(fleet: &Fleet) -> BTreeSet<HostRef> {
    let mut hosts = BTreeSet::new();
    for env in fleet.environments.values() {
        let used =
            fleet.tenants.values().any(|t| t.environment == env.name) || env.shared.is_some();
        if used {
            hosts.extend(env.hosts.keys().map(|h| HostRef::new(&env.name, h)));
        }
    }
    hosts
}

/// Observe every connected host.
///
/// # Errors
/// The first host that cannot be read.
pub async fn observe(drivers: &Drivers) -> Result<Live, ConnectError> {
    observe_all(drivers)
        .await
        .map_err(|(host, source)| ConnectError { host, source })
}

/// What one pass did.
#[derive(Debug)]
pub struct Outcome {
    /// The plan that was executed.
    pub plan: Plan,
    /// What happened to each step.
    pub report: Report,
}

/// Observe, plan, and — unless the plan is refused — execute.
///
/// # Errors
/// When a host cannot be observed. Refused plans are returned unexecuted (empty report).
pub async fn reconcile_once(
    fleet: &Fleet,
    drivers: &Drivers,
    plan_options: &PlanOptions<'_>,
    exec: &ExecOptions,
    reporter: &dyn Reporter,
    cancel: &AtomicBool,
) -> Result<Outcome, ConnectError> {
    let live = observe(drivers).await?;
    let plan = plan(fleet, &live, plan_options);
    if !plan.refusals.is_empty() {
        return Ok(Outcome {
            plan,
            report: Report::default(),
        });
    }
    let report = execute(&plan, drivers, exec, reporter, cancel, &BTreeSet::new()).await;
    Ok(Outcome { plan, report })
}

/// Objects whose fingerprint moved since a plan was made: `(key, then, now)`.
#[must_use]
pub fn moved_objects(plan: &Plan, now: &BTreeMap<String, String>) -> Vec<(String, String, String)> {
    plan.fingerprints
        .iter()
        // A host the plan did not observe (offline, or not in use) has nothing to compare.
        .filter(|(_, then)| then.as_str() != "unobserved")
        .filter_map(|(key, then)| {
            let current = now.get(key).cloned().unwrap_or_else(|| "absent".into());
            (current != *then).then(|| (key.clone(), then.clone(), current))
        })
        .collect()
}
