//! The in-memory driver: applies plan steps to a [`Live`] value.
//!
//! It mimics what Dokku and Docker do to the objects berth reads back (a new Dokku app gets
//! `web=1` and the default vhost, a deploy sets `GIT_REV`, linking sets `DATABASE_URL`, a new
//! container records its labels), so "apply, then plan again" is a real convergence test of
//! the planner. Generated secrets are made here deterministically (this driver runs only in
//! tests, simulations and dry runs), and kept when present, exactly as the real drivers must.
//!
//! [`MemoryDriver`] puts the same behaviour behind the driver face: every host of a [`World`]
//! is one entry of a shared [`Live`], with berth's records (leases, applied commits) beside
//! it, and an optional per-call latency so a simulation can stand in for slow hosts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::secrets::SecretProvider;
use super::{Claim, LeaseRecord};
use crate::model::desired::{BERTH_TENANT_KEY, ConfigValue, LABEL_PREFIX, short_hash};
use crate::model::live::{
    ContainerState, HostRef, Live, LiveContainer, LiveDokkuApp, LiveDokkuService, LiveHost,
    LiveNetwork, LiveValue, LiveVolume, PortBinding, link_env_key, service_key,
};
use crate::plan::{Change, Plan, Step};

/// Everything the in-memory hosts hold.
#[derive(Debug, Clone, Default)]
pub struct WorldState {
    /// Live state of every host.
    pub live: Live,
    /// Lease per host.
    pub leases: BTreeMap<HostRef, LeaseRecord>,
    /// Applied commit per host.
    pub applied: BTreeMap<HostRef, String>,
    /// Calls made (observe, apply, records), for tests and simulations.
    pub calls: u64,
}

/// A set of in-memory hosts shared by every driver (and every clone) made from it.
#[derive(Debug, Clone, Default)]
pub struct World {
    state: Arc<Mutex<WorldState>>,
    latency: Duration,
}

impl World {
    /// An empty world.
    #[must_use]
    pub fn new() -> Self {
        World::default()
    }

    /// A world whose every call waits `latency` first (a simulated network).
    #[must_use]
    pub fn with_latency(latency: Duration) -> Self {
        World {
            latency,
            ..World::default()
        }
    }

    /// The same hosts behind a connection of another latency (a second machine reaching
    /// them over a slower network).
    #[must_use]
    pub fn sharing_with_latency(&self, latency: Duration) -> Self {
        World {
            state: Arc::clone(&self.state),
            latency,
        }
    }

    /// The state, for tests to read or edit (drift made by hand).
    ///
    /// # Panics
    /// Never in practice: a poisoned lock is recovered.
    pub fn state(&self) -> MutexGuard<'_, WorldState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn call(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.state().calls += 1;
    }
}

/// One host of a [`World`].
pub struct MemoryDriver {
    host: HostRef,
    world: World,
    secrets: SecretProvider,
}

impl MemoryDriver {
    /// A driver for `host` in `world`.
    #[must_use]
    pub fn new(host: HostRef, world: World, secrets: SecretProvider) -> Self {
        MemoryDriver {
            host,
            world,
            secrets,
        }
    }

    /// The secret provider of the host's environment.
    #[must_use]
    pub fn secrets(&self) -> &SecretProvider {
        &self.secrets
    }

    /// The host.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        &self.host
    }

    /// The host's live state (empty for a host never written).
    ///
    /// # Errors
    /// Never; the signature matches the other drivers.
    pub async fn observe(&self) -> Result<LiveHost, MemoryError> {
        self.world.call().await;
        let state = self.world.state();
        let mut host = state
            .live
            .hosts
            .get(&self.host)
            .cloned()
            .unwrap_or_default();
        host.applied_commit = state.applied.get(&self.host).cloned();
        Ok(host)
    }

    /// Apply one step to the host.
    ///
    /// # Errors
    /// As [`apply_step`].
    pub async fn apply(&self, step: &Step) -> Result<(), MemoryError> {
        self.world.call().await;
        let mut secrets = BTreeMap::new();
        for name in referenced_secrets(step) {
            let value = self
                .secrets
                .get(&name)
                .await
                .map_err(|_| MemoryError::Secret {
                    step: step.id,
                    name: name.clone(),
                })?;
            secrets.insert(name, value);
        }
        let mut state = self.world.state();
        apply_step(step, &mut state.live, &secrets)?;
        if let Change::RecordCancellation { tenant } = &step.change
            && let Some(host) = state.live.hosts.get_mut(&self.host)
        {
            host.cancelled
                .insert(tenant.clone(), crate::clock::now_unix());
        }
        Ok(())
    }

    /// See [`super::AnyDriver::lease_claim`].
    pub async fn lease_claim(&self, record: &LeaseRecord) -> Claim {
        self.world.call().await;
        let mut state = self.world.state();
        match state.leases.get(&self.host) {
            Some(held) => Claim::Held(held.clone()),
            None => {
                state.leases.insert(self.host.clone(), record.clone());
                Claim::Taken
            }
        }
    }

    /// See [`super::AnyDriver::lease_read`].
    pub async fn lease_read(&self) -> Option<LeaseRecord> {
        self.world.call().await;
        self.world.state().leases.get(&self.host).cloned()
    }

    /// See [`super::AnyDriver::lease_extend`].
    pub async fn lease_extend(&self, record: &LeaseRecord) {
        self.world.call().await;
        let mut state = self.world.state();
        if let Some(held) = state.leases.get_mut(&self.host)
            && held.token == record.token
        {
            held.expires = held.expires.max(record.expires);
        }
    }

    /// See [`super::AnyDriver::lease_clear`].
    pub async fn lease_clear(&self) {
        self.world.call().await;
        self.world.state().leases.remove(&self.host);
    }

    /// See [`super::AnyDriver::applied_commit`].
    pub async fn applied_commit(&self) -> Option<String> {
        self.world.call().await;
        self.world.state().applied.get(&self.host).cloned()
    }

    /// See [`super::AnyDriver::record_applied`].
    pub async fn record_applied(&self, commit: &str) {
        self.world.call().await;
        self.world
            .state()
            .applied
            .insert(self.host.clone(), commit.to_string());
    }
}

/// Secret names a step needs values for.
fn referenced_secrets(step: &Step) -> Vec<String> {
    if let Change::LoginRegistry {
        password_secret, ..
    } = &step.change
    {
        return vec![password_secret.clone()];
    }
    let values: Vec<&ConfigValue> = match &step.change {
        Change::SetConfig { changes, .. } => changes.iter().map(|c| &c.new).collect(),
        Change::CreateContainer { spec, .. } | Change::RecreateContainer { spec, .. } => {
            spec.env.values().collect()
        }
        _ => Vec::new(),
    };
    values
        .into_iter()
        .filter_map(|v| match v {
            ConfigValue::Secret { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Why the in-memory driver could not apply a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The step names an object that does not exist.
    #[error("step {step}: {subject} does not exist")]
    Missing {
        /// Step id.
        step: u32,
        /// What is missing.
        subject: String,
    },
    /// A secret reference has no value in the provider.
    #[error("step {step}: secret `{name}` has no value")]
    Secret {
        /// Step id.
        step: u32,
        /// Secret name.
        name: String,
    },
}

impl MemoryError {
    /// Nothing the in-memory driver reports goes away by retrying.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Apply every step of `plan` to `live`, in order.
///
/// # Errors
/// When a step refers to something missing, as a real host would fail.
pub fn apply(
    plan: &Plan,
    live: &mut Live,
    secrets: &BTreeMap<String, String>,
) -> Result<(), MemoryError> {
    for step in &plan.steps {
        apply_step(step, live, secrets)?;
    }
    Ok(())
}

/// The Dokku app a step acts on, or the error naming it.
fn app_mut<'a>(
    dokku: &'a mut crate::model::live::LiveDokku,
    app: &str,
    step: u32,
) -> Result<&'a mut LiveDokkuApp, MemoryError> {
    dokku.apps.get_mut(app).ok_or_else(|| MemoryError::Missing {
        step,
        subject: format!("app {app}"),
    })
}

/// Apply one step.
///
/// # Errors
/// As [`apply`].
pub fn apply_step(
    step: &Step,
    live: &mut Live,
    secrets: &BTreeMap<String, String>,
) -> Result<(), MemoryError> {
    let host = live
        .hosts
        .entry(HostRef::new(&step.environment, &step.host))
        .or_default();
    let missing = |subject: String| MemoryError::Missing {
        step: step.id,
        subject,
    };
    let dokku = &mut host.dokku;
    match &step.change {
        Change::CreateApp { app } => {
            let domains = dokku
                .global_domains
                .iter()
                .map(|g| format!("{app}.{g}"))
                .collect();
            dokku.apps.insert(
                app.clone(),
                LiveDokkuApp {
                    processes: BTreeMap::from([("web".to_string(), 1)]),
                    domains,
                    environment: Some(step.environment.clone()),
                    ..LiveDokkuApp::default()
                },
            );
        }
        Change::SetConfig { app, changes } => {
            let a = app_mut(dokku, app, step.id)?;
            for change in changes {
                let value = match &change.new {
                    ConfigValue::Literal { value } => value.clone(),
                    ConfigValue::Generate { length } => match a.config.get(&change.key) {
                        Some(v) => v.0.clone(),
                        None => generated(app, &change.key, *length),
                    },
                    ConfigValue::Secret { name } => {
                        secrets
                            .get(name)
                            .cloned()
                            .ok_or_else(|| MemoryError::Secret {
                                step: step.id,
                                name: name.clone(),
                            })?
                    }
                    ConfigValue::Derived { template, .. } => template.clone(),
                    ConfigValue::Kept { volume } => generated(app, volume, 32),
                };
                a.config.insert(change.key.clone(), LiveValue(value));
            }
            a.owner = a.config.get(BERTH_TENANT_KEY).map(|v| v.0.clone());
        }
        Change::UnsetConfig { app, keys } => {
            let a = app_mut(dokku, app, step.id)?;
            for key in keys {
                a.config.remove(key);
            }
            a.owner = a.config.get(BERTH_TENANT_KEY).map(|v| v.0.clone());
        }
        Change::SetDomains { app, domains, .. } => {
            let a = app_mut(dokku, app, step.id)?;
            a.domains.clone_from(domains);
        }
        Change::DeployImage { app, image, .. } => {
            let a = app_mut(dokku, app, step.id)?;
            a.image = Some(image.clone());
            a.config
                .insert("GIT_REV".into(), LiveValue(short_hash(image.as_bytes())));
        }
        // Dokku reports no logins: nothing to record, the app must exist.
        Change::LoginRegistry { app, .. } => {
            app_mut(dokku, app, step.id)?;
        }
        Change::Scale { app, processes, .. } => {
            let a = app_mut(dokku, app, step.id)?;
            a.processes.clone_from(processes);
        }
        Change::SetLimits {
            app, memory, cpus, ..
        } => {
            let a = app_mut(dokku, app, step.id)?;
            a.memory.clone_from(memory);
            a.cpus.clone_from(cpus);
        }
        Change::MountStorage { app, mount } => {
            let a = app_mut(dokku, app, step.id)?;
            a.storage.push(mount.clone());
        }
        Change::UnmountStorage { app, mount } => {
            let a = app_mut(dokku, app, step.id)?;
            a.storage.retain(|m| m != mount);
        }
        Change::SetPorts { app, ports, .. } => {
            let a = app_mut(dokku, app, step.id)?;
            a.ports.clone_from(ports);
        }
        Change::SetRestartPolicy { app, policy, .. } => {
            let a = app_mut(dokku, app, step.id)?;
            a.restart_policy.clone_from(policy);
        }
        Change::StartApp { app } => {
            app_mut(dokku, app, step.id)?.running = Some(true);
        }
        Change::Restart { app } => {
            dokku
                .apps
                .get(app)
                .ok_or_else(|| missing(format!("app {app}")))?;
        }
        Change::CreateService {
            service_kind,
            service,
            image,
        } => {
            dokku.services.insert(
                service_key(*service_kind, service),
                LiveDokkuService {
                    kind: *service_kind,
                    name: service.clone(),
                    owner: Some(step.tenant.clone()),
                    environment: Some(step.environment.clone()),
                    links: Vec::new(),
                    broken_links: Vec::new(),
                    image: Some(image.clone()),
                },
            );
        }
        Change::UpgradeService {
            service_kind,
            service,
            image,
            ..
        } => {
            let key = service_key(*service_kind, service);
            dokku
                .services
                .get_mut(&key)
                .ok_or_else(|| missing(key.clone()))?
                .image = Some(image.clone());
        }
        Change::LinkService {
            service_kind,
            service,
            app,
        }
        | Change::RelinkService {
            service_kind,
            service,
            app,
            ..
        } => {
            let key = service_key(*service_kind, service);
            let s = dokku
                .services
                .get_mut(&key)
                .ok_or_else(|| missing(key.clone()))?;
            if matches!(step.change, Change::LinkService { .. }) {
                s.links.push(app.clone());
            }
            s.broken_links.retain(|a| a != app);
            let var = link_env_key(*service_kind).unwrap_or("DATABASE_URL");
            app_mut(dokku, app, step.id)?
                .config
                .insert(var.into(), LiveValue(generated(service, "dsn", 40)));
        }
        Change::UnlinkService {
            service_kind,
            service,
            app,
        } => {
            let key = service_key(*service_kind, service);
            let s = dokku
                .services
                .get_mut(&key)
                .ok_or_else(|| missing(key.clone()))?;
            s.links.retain(|a| a != app);
            if let Some(a) = dokku.apps.get_mut(app) {
                a.config
                    .remove(link_env_key(*service_kind).unwrap_or("DATABASE_URL"));
            }
        }
        Change::EnableTls { app } => {
            let a = app_mut(dokku, app, step.id)?;
            a.tls = true;
            a.cert_domains = Some(a.domains.clone());
        }
        Change::DisableTls { app } => {
            let a = app_mut(dokku, app, step.id)?;
            a.tls = false;
            a.cert_domains = None;
        }
        Change::LabelApp { app } => {
            app_mut(dokku, app, step.id)?.environment = Some(step.environment.clone());
        }
        Change::MarkService {
            service_kind,
            service,
        } => {
            let key = service_key(*service_kind, service);
            let s = dokku
                .services
                .get_mut(&key)
                .ok_or_else(|| missing(format!("service {key}")))?;
            s.environment = Some(step.environment.clone());
        }
        Change::RecordSpec { app, hash, .. } => {
            app_mut(dokku, app, step.id)?.spec_hash = Some(hash.clone());
        }
        Change::DestroyApp { app } => {
            dokku
                .apps
                .remove(app)
                .ok_or_else(|| missing(format!("app {app}")))?;
            for s in dokku.services.values_mut() {
                s.links.retain(|a| a != app);
            }
        }
        Change::DestroyService {
            service_kind,
            service,
        } => {
            let key = service_key(*service_kind, service);
            dokku.services.remove(&key).ok_or_else(|| missing(key))?;
        }
        Change::CreateNetwork {
            network,
            internal,
            labels,
            subnet,
        } => {
            host.docker.networks.insert(
                network.clone(),
                LiveNetwork {
                    owner: labels.get(&format!("{LABEL_PREFIX}tenant")).cloned(),
                    internal: *internal,
                    subnets: subnet.iter().cloned().collect(),
                },
            );
        }
        Change::CreateVolume { volume, labels, .. } => {
            host.docker.volumes.insert(
                volume.clone(),
                LiveVolume {
                    owner: labels.get(&format!("{LABEL_PREFIX}tenant")).cloned(),
                },
            );
        }
        Change::CreateContainer { spec, start, .. }
        | Change::RecreateContainer { spec, start, .. } => {
            let docker = &mut host.docker;
            if let Some(old) = docker.containers.remove(&spec.name) {
                for b in old.ports {
                    docker.ports_in_use.remove(&b.host);
                }
            }
            let ports: Vec<PortBinding> = spec
                .ports
                .iter()
                .filter_map(|p| {
                    p.host.map(|h| PortBinding {
                        host: h,
                        container: p.container,
                    })
                })
                .collect();
            for b in &ports {
                docker.ports_in_use.insert(b.host);
            }
            let image_id = docker
                .images
                .get(&spec.image)
                .cloned()
                .unwrap_or_else(|| format!("sha256:{}", short_hash(spec.image.as_bytes())));
            docker.containers.insert(
                spec.name.clone(),
                LiveContainer {
                    owner: spec.labels.get(&format!("{LABEL_PREFIX}tenant")).cloned(),
                    spec_hash: spec
                        .labels
                        .get(&format!("{LABEL_PREFIX}spec-hash"))
                        .cloned(),
                    image_id: Some(image_id),
                    image: Some(spec.image.clone()),
                    applied: spec
                        .labels
                        .get(crate::model::desired::SPEC_LABEL)
                        .and_then(|j| serde_json::from_str(j).ok())
                        .map(Box::new),
                    state: if *start {
                        ContainerState::Running
                    } else {
                        ContainerState::Created
                    },
                    health: None,
                    networks: vec![spec.network.clone()],
                    volumes: spec.mounts.iter().map(|(v, _)| v.clone()).collect(),
                    ports,
                    address: None,
                    inspected: None,
                },
            );
        }
        Change::StartContainer { container } | Change::StopContainer { container } => {
            let c = host
                .docker
                .containers
                .get_mut(container)
                .ok_or_else(|| missing(format!("container {container}")))?;
            c.state = if matches!(step.change, Change::StartContainer { .. }) {
                ContainerState::Running
            } else {
                ContainerState::Exited
            };
        }
        Change::RemoveContainer { container } => {
            let c = host
                .docker
                .containers
                .remove(container)
                .ok_or_else(|| missing(format!("container {container}")))?;
            for b in c.ports {
                host.docker.ports_in_use.remove(&b.host);
            }
        }
        Change::RemoveNetwork { network } => {
            host.docker
                .networks
                .remove(network)
                .ok_or_else(|| missing(format!("network {network}")))?;
        }
        Change::RemoveVolume { volume } => {
            host.docker
                .volumes
                .remove(volume)
                .ok_or_else(|| missing(format!("volume {volume}")))?;
        }
        Change::CreateRoute {
            route,
            hosts,
            upstreams,
            port,
        }
        | Change::UpdateRoute {
            route,
            hosts,
            upstreams,
            port,
            ..
        } => {
            host.docker.routes.insert(
                route.clone(),
                crate::model::live::LiveRoute {
                    owner: Some(step.tenant.clone()),
                    hosts: hosts.clone(),
                    upstreams: upstreams.clone(),
                    port: Some(*port),
                },
            );
        }
        Change::RemoveRoute { route } => {
            host.docker
                .routes
                .remove(route)
                .ok_or_else(|| missing(format!("route {route}")))?;
        }
        // This pure form has no clock: the record says "at 0"; `MemoryDriver` stamps the
        // real time.
        Change::RecordCancellation { tenant } => {
            host.cancelled.insert(tenant.clone(), 0);
        }
        Change::ClearCancellation { tenant } => {
            host.cancelled.remove(tenant);
        }
        Change::ClearAdoption { tenant } => {
            host.adopted.remove(tenant);
        }
    }
    Ok(())
}

/// A deterministic stand-in for a generated secret.
fn generated(scope: &str, key: &str, length: u32) -> String {
    let mut out = String::new();
    let mut seed = format!("{scope}/{key}");
    while out.len() < length as usize {
        seed = short_hash(seed.as_bytes());
        out.push_str(&seed);
    }
    out.truncate(length as usize);
    format!("gen{out}")
}
