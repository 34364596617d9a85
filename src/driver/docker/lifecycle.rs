//! Container lifecycle on one engine: env resolution, creation, start, health, and
//! replacement that never takes a tenant down.
//!
//! - Starts are serialised per host (concurrent starts can race on published ports, as
//!   compose learned). A start that fails because a host port is held by something that is
//!   not a container is reported as [`DockerError::PortHeld`], so the session re-plans that
//!   container onto another port.
//! - Health is berth's own: the HTTP form is probed by berth over TCP against the container's
//!   published port or its address on its network ([`super::probe`]); the exec form is
//!   Docker's check, polled; without a check a container must keep running for a grace period.
//! - Start-first replacement: the new container is created under `<name>-berth-next` with the
//!   same network alias and labels and started beside the old one; only when it is healthy is
//!   the old one switched out (Caddy's routes moved to the new one, or else disconnected from
//!   the network, so DNS and label-reading proxies stop sending it requests), drained,
//!   stopped and removed, and the new one renamed. A new
//!   container that never gets healthy is removed; the old one never stopped serving.
//! - Stop-first replacement (a published host port cannot be held twice): the old container
//!   stops, the new one starts; if it never gets healthy it is removed and the old one is
//!   started again.
//! - Generated values come from secret volumes: one per app or service and key, created
//!   once (adopting a value an existing container already has), read back from the engine's
//!   answer so two creators agree, removed only with the tenant's data.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use super::probe::{self, ProbeResult};
use super::{DockerDriver, DockerError, HEALTH_TIMEOUT, convert, not_found};
use crate::driver::secrets::generate;
use crate::model::desired::{ConfigValue, ContainerHealth, ContainerSpec, HEALTH_LABEL, Probe};
use crate::plan::NewSecret;

/// Seconds a stopped container gets between SIGTERM and SIGKILL.
const STOP_GRACE_SECS: u16 = 10;

/// Suffix of a replacement container while it runs beside the one it replaces.
pub(super) const NEXT_SUFFIX: &str = "-berth-next";

/// How long a removal someone else started may take before berth gives up on it.
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// The engine's 409 for a container whose removal is already under way.
fn removal_in_progress(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError { status_code: 409, message }
            if message.contains("already in progress")
    )
}
/// Label of a secret volume holding its value.
pub(super) const SECRET_VALUE_LABEL: &str = "io.berth.secret-value";
/// A container without a health check counts as started once it has run this long.
const START_GRACE: Duration = Duration::from_secs(1);

/// The host port in an engine error about a port held by something else.
fn held_port(message: &str) -> Option<u16> {
    if !(message.contains("address already in use") || message.contains("already allocated")) {
        return None;
    }
    for marker in ["0.0.0.0:", "[::]:", ":::"] {
        if let Some(at) = message.find(marker) {
            let digits: String = message[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(port) = digits.parse() {
                return Some(port);
            }
        }
    }
    None
}

impl DockerDriver {
    /// Env of an existing container (inspect), empty when it does not exist.
    pub(super) async fn env_of(
        &self,
        tenant: &str,
        container: &str,
    ) -> Result<BTreeMap<String, String>, DockerError> {
        self.count();
        match self.docker.inspect_container(container, None).await {
            Ok(info) => Ok(convert::env_map(
                &info.config.and_then(|c| c.env).unwrap_or_default(),
            )),
            Err(e) if not_found(&e) => Ok(BTreeMap::new()),
            Err(e) => Err(self.api(tenant, format!("inspect container {container}"))(
                e,
            )),
        }
    }

    /// The value a secret volume holds.
    async fn kept(
        &self,
        tenant: &str,
        volume: &str,
        cache: &mut HashMap<String, String>,
    ) -> Result<String, DockerError> {
        if let Some(v) = cache.get(volume) {
            return Ok(v.clone());
        }
        self.count();
        let found = self
            .docker
            .inspect_volume(volume)
            .await
            .map_err(self.api(tenant, format!("inspect volume {volume}")))?;
        let value = found
            .labels
            .get(SECRET_VALUE_LABEL)
            .cloned()
            .ok_or_else(|| DockerError::NoKeptValue {
                host: self.host.clone(),
                tenant: tenant.to_string(),
                volume: volume.to_string(),
            })?;
        cache.insert(volume.to_string(), value.clone());
        Ok(value)
    }

    /// One value that is not `Derived`.
    async fn resolve_one(
        &self,
        tenant: &str,
        key: &str,
        value: &ConfigValue,
        previous: &BTreeMap<String, String>,
        cache: &mut HashMap<String, String>,
    ) -> Result<String, DockerError> {
        Ok(match value {
            ConfigValue::Literal { value } => value.clone(),
            // Plans made before secret volumes: keep what the old container had.
            ConfigValue::Generate { length } => previous
                .get(key)
                .cloned()
                .unwrap_or_else(|| generate(*length)),
            ConfigValue::Secret { name } => {
                self.secrets
                    .get(name)
                    .await
                    .map_err(|source| DockerError::Secret {
                        host: self.host.clone(),
                        tenant: tenant.to_string(),
                        source,
                    })?
            }
            ConfigValue::Kept { volume } => self.kept(tenant, volume, cache).await?,
            ConfigValue::Derived { .. } => {
                return Err(DockerError::NotDocker {
                    kind: "nested derived value",
                });
            }
        })
    }

    /// Resolve a spec's env: literals, kept secrets, secret references, derived values.
    pub(super) async fn resolve_env(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        previous: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, DockerError> {
        let mut env = BTreeMap::new();
        let mut cache = HashMap::new();
        for (key, value) in &spec.env {
            let resolved = match value {
                ConfigValue::Derived { template, from } => {
                    let inner = self
                        .resolve_one(tenant, key, from, previous, &mut cache)
                        .await?;
                    template.replace("{value}", &inner)
                }
                other => {
                    self.resolve_one(tenant, key, other, previous, &mut cache)
                        .await?
                }
            };
            env.insert(key.clone(), resolved);
        }
        Ok(env)
    }

    /// Create a secret volume: adopt the value a container already has, or generate one.
    /// The engine answers a second creator with the existing volume, so every replica and
    /// every racing apply reads the same value back.
    pub(super) async fn create_secret_volume(
        &self,
        tenant: &str,
        volume: &str,
        labels: &BTreeMap<String, String>,
        secret: &NewSecret,
    ) -> Result<(), DockerError> {
        let mut value = None;
        for holder in &secret.adopt_from {
            if let Some(v) = self.env_of(tenant, holder).await?.remove(&secret.key) {
                value = Some(v);
                break;
            }
        }
        let value = value.unwrap_or_else(|| generate(secret.length));
        let mut labels: HashMap<String, String> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(SECRET_VALUE_LABEL.to_string(), value);
        self.count();
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.to_string()),
                labels: Some(labels),
                ..VolumeCreateRequest::default()
            })
            .await
            .map_err(self.api(tenant, format!("create volume {volume}")))?;
        Ok(())
    }

    async fn create(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        name: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let body = convert::create_body(spec, env);
        self.count();
        match self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
        {
            Ok(_) => Ok(()),
            // A retry after a create whose answer was lost: the container is there already.
            // It is ours if it carries this spec's hash; anything else is a real conflict.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) if self.has_spec(name, spec).await => Ok(()),
            Err(e) => Err(self.api(tenant, format!("create container {name}"))(e)),
        }
    }

    async fn has_spec(&self, name: &str, spec: &ContainerSpec) -> bool {
        let key = format!("{}spec-hash", crate::model::desired::LABEL_PREFIX);
        let want = spec.labels.get(&key);
        self.count();
        self.docker
            .inspect_container(name, None)
            .await
            .is_ok_and(|info| {
                info.config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(&key).cloned())
                    .as_ref()
                    == want
            })
    }

    /// Start a container (serialised per host).
    async fn start(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        let _one_at_a_time = self.starts.lock().await;
        self.count();
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) => match held_port(&e.to_string()) {
                Some(port) => Err(DockerError::PortHeld {
                    host: self.host.clone(),
                    tenant: tenant.to_string(),
                    container: name.to_string(),
                    port,
                }),
                None => Err(self.api(tenant, format!("start container {name}"))(e)),
            },
        }
    }

    /// Wait until a started container is healthy: berth's HTTP probe, Docker's exec check,
    /// or — without a check — still running after a grace period.
    async fn wait_healthy(
        &self,
        tenant: &str,
        name: &str,
        health: Option<&ContainerHealth>,
    ) -> Result<(), DockerError> {
        let started = Instant::now();
        let deadline = health.map_or(START_GRACE, |h| {
            Duration::from_secs(
                u64::from(h.interval) * u64::from(h.retries + 1) + u64::from(h.timeout),
            )
            .clamp(Duration::from_secs(5), HEALTH_TIMEOUT)
        });
        let pause = health.map_or(Duration::from_millis(200), |h| {
            Duration::from_secs(u64::from(h.interval.max(1))).min(Duration::from_secs(2))
        });
        let mut last = "starting".to_string();
        loop {
            self.count();
            let info = self
                .docker
                .inspect_container(name, None)
                .await
                .map_err(self.api(tenant, format!("inspect container {name}")))?;
            let state = info.state.clone().unwrap_or_default();
            let restarts = info.restart_count.unwrap_or(0);
            if !state.running.unwrap_or(false) || restarts > 0 {
                let code = state.exit_code.unwrap_or_default();
                let again = if restarts > 0 {
                    format!(" (restarted {restarts} times)")
                } else {
                    String::new()
                };
                return Err(self.unhealthy(
                    tenant,
                    name,
                    format!("exited with code {code}{again}"),
                    started,
                ));
            }
            match health.map(|h| &h.probe) {
                None if started.elapsed() >= START_GRACE => return Ok(()),
                None => {}
                Some(Probe::Command { .. }) => {
                    let status = state
                        .health
                        .and_then(|h| h.status)
                        .map_or_else(|| "starting".to_string(), |s| s.to_string());
                    if status == "healthy" {
                        return Ok(());
                    }
                    if status == "unhealthy" {
                        return Err(self.unhealthy(
                            tenant,
                            name,
                            "Docker's health check reports unhealthy".into(),
                            started,
                        ));
                    }
                    last = format!("Docker's health check: {status}");
                }
                Some(Probe::Http { path, port }) => {
                    let timeout =
                        Duration::from_secs(u64::from(health.map_or(5, |h| h.timeout.max(1))));
                    let (address, port) = self.probe_target(&info, *port);
                    match probe::http(&address, port, path, timeout).await {
                        ProbeResult::Healthy => return Ok(()),
                        ProbeResult::Unhealthy(why) => last = why,
                    }
                }
            }
            if started.elapsed() > deadline {
                return Err(self.unhealthy(tenant, name, last, started));
            }
            tokio::time::sleep(pause).await;
        }
    }

    fn unhealthy(&self, tenant: &str, name: &str, status: String, started: Instant) -> DockerError {
        DockerError::Unhealthy {
            host: self.host.clone(),
            tenant: tenant.to_string(),
            container: name.to_string(),
            status,
            waited: started.elapsed(),
        }
    }

    /// Where to probe `port` of a container: its published host port on the engine's address,
    /// else its address on its network.
    fn probe_target(
        &self,
        info: &bollard::models::ContainerInspectResponse,
        port: u16,
    ) -> (String, u16) {
        let settings = info.network_settings.as_ref();
        let published = settings
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
            .and_then(|bindings| {
                bindings
                    .iter()
                    .find_map(|b| b.host_port.as_deref().and_then(|p| p.parse().ok()))
            });
        if let Some(host_port) = published {
            return (self.probe_host.clone(), host_port);
        }
        let address = settings
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| {
                n.values()
                    .find_map(|e| e.ip_address.clone().filter(|a| !a.is_empty()))
            })
            .unwrap_or_else(|| self.probe_host.clone());
        (address, port)
    }

    pub(super) async fn stop(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        self.count();
        // The engine answers a stop once the container is down: up to its grace after the
        // signal, so the call may take that much longer than any other.
        let docker = self
            .docker
            .clone()
            .with_timeout(self.timeout + Duration::from_secs(u64::from(STOP_GRACE_SECS)));
        match docker
            .stop_container(
                name,
                Some(
                    StopContainerOptionsBuilder::default()
                        .t(i32::from(STOP_GRACE_SECS))
                        .build(),
                ),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(self.api(tenant, format!("stop container {name}"))(e)),
            _ => Ok(()),
        }
    }

    pub(super) async fn remove(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        self.count();
        match self
            .docker
            .remove_container(
                name,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(false)
                        .build(),
                ),
            )
            .await
        {
            Err(e) if removal_in_progress(&e) => self.wait_removed(tenant, name).await,
            Err(e) if !not_found(&e) => {
                Err(self.api(tenant, format!("remove container {name}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Another removal of `name` is under way (a replacement clearing a leftover `-berth-next`
    /// while a step of the same plan removes it; found by the Docker fault tests): wait until
    /// it is gone, so removing stays idempotent.
    async fn wait_removed(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        let started = Instant::now();
        loop {
            self.count();
            match self.docker.inspect_container(name, None).await {
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(self.api(tenant, format!("inspect container {name}"))(e)),
                Ok(_) if started.elapsed() > REMOVAL_WAIT => {
                    return Err(DockerError::Stuck {
                        host: self.host.clone(),
                        tenant: tenant.to_string(),
                        what: format!("the removal of container {name}"),
                        seconds: REMOVAL_WAIT.as_secs(),
                    });
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Rename a container (running or not: nothing restarts). Replacements use it, and
    /// `berth import --adopt` gives adopted service containers berth's names with it.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn rename_container(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
    ) -> Result<(), DockerError> {
        self.count();
        self.docker
            .rename_container(
                from,
                RenameContainerOptionsBuilder::default().name(to).build(),
            )
            .await
            .map_err(self.api(tenant, format!("rename container {from}")))
    }

    /// Take a container off its network: DNS (the alias) and proxies that read the network
    /// stop sending it new requests. When Caddy's routes were already moved away from it
    /// (`routed`), it drains first: a request Caddy forwarded just before the move still
    /// gets its answer (leaving the network cuts open connections).
    async fn switch_out(&self, tenant: &str, name: &str, network: &str, routed: bool) {
        if routed {
            tokio::time::sleep(self.drain).await;
        }
        self.count();
        let _ = self
            .docker
            .disconnect_network(
                network,
                bollard::models::NetworkDisconnectRequest {
                    container: name.to_string(),
                    force: Some(true),
                },
            )
            .await;
        let _ = tenant;
        if !routed {
            tokio::time::sleep(self.drain).await;
        }
    }

    /// `CreateContainer`: create, start unless suspended, wait until healthy. A new container
    /// that never becomes healthy is removed again (volumes stay): left in place it would look
    /// converged to the next plan, which must try again instead (the daemon, with backoff).
    pub(super) async fn create_container(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        start: bool,
    ) -> Result<(), DockerError> {
        let env = self.resolve_env(tenant, spec, &BTreeMap::new()).await?;
        self.create(tenant, spec, &spec.name, &env).await?;
        if start {
            self.start(tenant, &spec.name).await?;
            if let Err(e) = self
                .wait_healthy(tenant, &spec.name, spec.health.as_ref())
                .await
            {
                if matches!(e, DockerError::Unhealthy { .. }) {
                    let _ = self.remove(tenant, &spec.name).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Start-first replacement with rollback (module docs).
    pub(super) async fn replace_start_first(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        start: bool,
    ) -> Result<(), DockerError> {
        let previous = self.env_of(tenant, &spec.name).await?;
        let env = self.resolve_env(tenant, spec, &previous).await?;
        let next = format!("{}{NEXT_SUFFIX}", spec.name);
        // A leftover from an interrupted replacement would block the name.
        self.remove(tenant, &next).await?;
        self.create(tenant, spec, &next, &env).await?;
        if start {
            let ready = match self.start(tenant, &next).await {
                Ok(()) => self.wait_healthy(tenant, &next, spec.health.as_ref()).await,
                Err(e) => Err(e),
            };
            // Caddy's routes move to the new container while the old one still serves.
            let ready = match ready {
                Ok(()) => self.hand_over(tenant, &spec.name, &next, None).await,
                Err(e) => Err(e),
            };
            if let Err(e) = ready {
                // The old container never stopped serving; the new one goes.
                self.remove(tenant, &next).await?;
                return Err(e);
            }
            let routed = self.caddy.is_some();
            self.switch_out(tenant, &spec.name, &spec.network, routed)
                .await;
        }
        self.stop(tenant, &spec.name).await?;
        self.remove(tenant, &spec.name).await?;
        self.rename_container(tenant, &next, &spec.name).await
    }

    /// Stop-first replacement with rollback (module docs).
    pub(super) async fn replace_stop_first(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        start: bool,
    ) -> Result<(), DockerError> {
        let previous = self.env_of(tenant, &spec.name).await?;
        let env = self.resolve_env(tenant, spec, &previous).await?;
        let next = format!("{}{NEXT_SUFFIX}", spec.name);
        self.remove(tenant, &next).await?;
        self.create(tenant, spec, &next, &env).await?;
        let was_running = self.is_running(tenant, &spec.name).await?;
        let old_address = self.address_of(tenant, &spec.name).await?;
        self.stop(tenant, &spec.name).await?;
        if start {
            let ready = match self.start(tenant, &next).await {
                Ok(()) => self.wait_healthy(tenant, &next, spec.health.as_ref()).await,
                Err(e) => Err(e),
            };
            let ready = match ready {
                Ok(()) => {
                    self.hand_over(tenant, &spec.name, &next, old_address.as_deref())
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = ready {
                self.remove(tenant, &next).await?;
                if was_running {
                    // Roll back: the old container serves again.
                    self.start(tenant, &spec.name).await?;
                }
                return Err(e);
            }
        }
        self.remove(tenant, &spec.name).await?;
        self.rename_container(tenant, &next, &spec.name).await
    }

    /// Point the host's Caddy routes from container `old` (or its address `known`, when it
    /// already stopped) to container `new`.
    async fn hand_over(
        &self,
        tenant: &str,
        old: &str,
        new: &str,
        known: Option<&str>,
    ) -> Result<(), DockerError> {
        let Some(caddy) = &self.caddy else {
            return Ok(());
        };
        let old_address = match known {
            Some(a) => Some(a.to_string()),
            None => self.address_of(tenant, old).await?,
        };
        let new_address = self.address_of(tenant, new).await?;
        if let (Some(from), Some(to)) = (old_address, new_address) {
            caddy
                .repoint(&from, &to)
                .await
                .map_err(self.caddy_error(tenant))?;
        }
        Ok(())
    }

    async fn is_running(&self, tenant: &str, name: &str) -> Result<bool, DockerError> {
        self.count();
        match self.docker.inspect_container(name, None).await {
            Ok(info) => Ok(info.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.api(tenant, format!("inspect container {name}"))(e)),
        }
    }

    /// `StartContainer`: start and wait, probing the health check recorded on the container.
    pub(super) async fn start_existing(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        self.count();
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(self.api(tenant, format!("inspect container {name}")))?;
        let health: Option<ContainerHealth> = info
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(HEALTH_LABEL).cloned())
            .and_then(|j| serde_json::from_str(&j).ok());
        self.start(tenant, name).await?;
        self.wait_healthy(tenant, name, health.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::held_port;

    #[test]
    fn held_ports_are_read_from_engine_errors() {
        assert_eq!(
            held_port(
                "driver failed programming external connectivity on endpoint x (abc): Error starting userland proxy: listen tcp4 0.0.0.0:20001: bind: address already in use"
            ),
            Some(20001)
        );
        assert_eq!(
            held_port("Bind for 0.0.0.0:20002 failed: port is already allocated"),
            Some(20002)
        );
        assert_eq!(held_port("no such image"), None);
    }
}
