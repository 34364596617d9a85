//! The Docker driver: one Engine per host through bollard, observed in four list calls,
//! changed one step at a time with compose's recreate sequence.
//!
//! - Observe: every container (berth's and others', so names and published ports that
//!   something else holds are seen), every network, every volume, every image — four calls,
//!   whatever the number of tenants. No per-container inspect.
//! - Create: a container is created with its one network and started; starts are serialised
//!   per host (concurrent starts can race on published ports, as compose learned). When it has
//!   a health check, the step waits until Docker reports it healthy, with a timeout.
//! - Recreate: create the new container under a temporary name, stop and remove the old one,
//!   rename, start. Generated secrets are read back from the old container first, so a
//!   database password never changes by accident.
//! - Suspend is `StopContainer`; data volumes are removed only by a purge step.

pub mod convert;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use super::secrets::{MissingSecret, SecretProvider, generate};
use crate::model::desired::{ConfigValue, ContainerSpec};
use crate::model::live::{HostRef, LiveDocker, LiveHost, LiveNetwork, LiveVolume};
use crate::plan::{Change, Step};

/// How long a started container may take to become healthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// Docker driver failures.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The endpoint cannot be reached or spoken to.
    #[error("cannot reach the Docker Engine of `{host}` at `{endpoint}`")]
    Connect {
        /// Host.
        host: HostRef,
        /// Endpoint from the environment file.
        endpoint: String,
        /// Cause.
        #[source]
        source: BollardError,
    },
    /// An Engine API call failed.
    #[error("`{call}` failed on `{host}` (tenant `{tenant}`)")]
    Api {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// The call, `create container acme-web-1`.
        call: String,
        /// Cause.
        #[source]
        source: BollardError,
    },
    /// A container did not become healthy.
    #[error("container `{container}` on `{host}` is {status} after {waited:?} (tenant `{tenant}`)")]
    Unhealthy {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Container.
        container: String,
        /// Last status seen.
        status: String,
        /// Time waited.
        waited: Duration,
    },
    /// A secret reference without a value.
    #[error("cannot resolve env for tenant `{tenant}` on `{host}`")]
    Secret {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Which secret.
        #[source]
        source: MissingSecret,
    },
    /// A value derived from another container could not be read.
    #[error(
        "`{key}` of container `{container}` is needed for `{wanted}` but is not set (tenant `{tenant}` on `{host}`)"
    )]
    Derived {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Container holding the value.
        container: String,
        /// Its key.
        key: String,
        /// The env key being built.
        wanted: String,
    },
    /// A volume has the lease's name but carries no lease.
    #[error("volume `{volume}` on `{host}` has the lease's name but is not a lease")]
    NotALease {
        /// Host.
        host: HostRef,
        /// Volume.
        volume: String,
    },
    /// Not a Docker change.
    #[error("`{kind}` is not a Docker change")]
    NotDocker {
        /// Change kind.
        kind: &'static str,
    },
}

impl DockerError {
    /// Transient: the Engine was unreachable, timed out or answered 5xx.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        let api = |e: &BollardError| match e {
            BollardError::DockerResponseServerError { status_code, .. } => *status_code >= 500,
            BollardError::RequestTimeoutError
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. } => true,
            _ => false,
        };
        match self {
            DockerError::Connect { .. } => true,
            DockerError::Api { source, .. } => api(source),
            _ => false,
        }
    }
}

fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A connected Docker host.
pub struct DockerDriver {
    host: HostRef,
    docker: Docker,
    secrets: SecretProvider,
    /// Starts are serialised per host.
    starts: tokio::sync::Mutex<()>,
    /// Engine calls made, for benchmarks and tests.
    calls: std::sync::atomic::AtomicU64,
    /// Inspect managed containers on every observation (`--deep`).
    deep: bool,
}

impl DockerDriver {
    /// Connect to an endpoint (`unix://`, `tcp://`, `http(s)://`, `ssh://`) and negotiate the
    /// API version (bollard speaks a newer one than most engines).
    ///
    /// # Errors
    /// An unreachable or unusable endpoint (transient).
    pub async fn connect(
        host: &HostRef,
        endpoint: &str,
        secrets: SecretProvider,
    ) -> Result<Self, DockerError> {
        let connect_error = |source| DockerError::Connect {
            host: host.clone(),
            endpoint: endpoint.to_string(),
            source,
        };
        let docker = Docker::connect_with_host(endpoint).map_err(connect_error)?;
        let docker = docker
            .with_timeout(Duration::from_secs(120))
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(DockerDriver {
            host: host.clone(),
            docker,
            secrets,
            starts: tokio::sync::Mutex::new(()),
            calls: std::sync::atomic::AtomicU64::new(1),
            deep: false,
        })
    }

    /// The host.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        &self.host
    }

    /// Make every observation a deep one (inspect each container berth manages here).
    pub fn set_deep(&mut self, deep: bool) {
        self.deep = deep;
    }

    /// Observe, deep or not as configured.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn observe_configured(&self) -> Result<LiveHost, DockerError> {
        if self.deep {
            self.observe_deep().await
        } else {
            self.observe().await
        }
    }

    /// Engine API calls made so far (the version negotiation included).
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn api(&self, tenant: &str, call: String) -> impl Fn(BollardError) -> DockerError + '_ {
        let tenant = tenant.to_string();
        move |source| DockerError::Api {
            host: self.host.clone(),
            tenant: tenant.clone(),
            call: call.clone(),
            source,
        }
    }

    /// Read the whole host in four list calls, then inspect every container berth manages
    /// here (`--deep`): edits the labels cannot show become drift.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn observe_deep(&self) -> Result<LiveHost, DockerError> {
        let mut live = self.observe().await?;
        for (name, container) in &mut live.docker.containers {
            if container.owner.is_none() {
                continue;
            }
            self.count();
            let info = self
                .docker
                .inspect_container(name, None)
                .await
                .map_err(self.api("(deep scan)", format!("inspect container {name}")))?;
            let config = info.config.unwrap_or_default();
            let host = info.host_config.unwrap_or_default();
            container.inspected = Some(crate::model::live::InspectedContainer {
                image: config.image,
                memory: Some(host.memory.unwrap_or(0)),
                nano_cpus: Some(host.nano_cpus.unwrap_or(0)),
                restart: host
                    .restart_policy
                    .and_then(|r| r.name)
                    .map(|n| n.to_string()),
                env: convert::env_map(&config.env.unwrap_or_default())
                    .into_iter()
                    .map(|(k, v)| (k, crate::model::live::LiveValue(v)))
                    .collect(),
            });
        }
        Ok(live)
    }

    /// Read the whole host in four list calls.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn observe(&self) -> Result<LiveHost, DockerError> {
        let scan = "(scan)";
        let containers = self.docker.list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ));
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::default().build()));
        let volumes = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>);
        let images = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::default().build()));
        let (containers, networks, volumes, images) =
            tokio::join!(containers, networks, volumes, images);
        for _ in 0..4 {
            self.count();
        }
        let containers = containers.map_err(self.api(scan, "list containers".into()))?;
        let networks = networks.map_err(self.api(scan, "list networks".into()))?;
        let volumes = volumes.map_err(self.api(scan, "list volumes".into()))?;
        let images = images.map_err(self.api(scan, "list images".into()))?;
        let mut live = LiveDocker::default();
        for summary in &containers {
            let Some(name) = convert::container_name(summary) else {
                continue;
            };
            let container = convert::live_container(summary, &self.host.environment);
            if container.state == crate::model::live::ContainerState::Running {
                live.ports_in_use
                    .extend(container.ports.iter().map(|b| b.host));
            }
            live.containers.insert(name, container);
        }
        for network in networks {
            let Some(name) = network.name.clone() else {
                continue;
            };
            live.networks.insert(
                name,
                LiveNetwork {
                    owner: convert::managed_owner(network.labels.as_ref(), &self.host.environment),
                    internal: network.internal.unwrap_or(false),
                    subnets: network
                        .ipam
                        .as_ref()
                        .and_then(|i| i.config.as_ref())
                        .map(|c| c.iter().filter_map(|p| p.subnet.clone()).collect())
                        .unwrap_or_default(),
                },
            );
        }
        let applied_volume = format!("berth-applied-{}", self.host.environment);
        let mut applied_commit = None;
        for volume in volumes.volumes.unwrap_or_default() {
            // berth's own records are not tenant objects.
            if volume.name == applied_volume {
                applied_commit = volume.labels.get("io.berth.applied-commit").cloned();
            }
            if volume.name.starts_with("berth-lease-") || volume.name.starts_with("berth-applied-")
            {
                continue;
            }
            live.volumes.insert(
                volume.name.clone(),
                LiveVolume {
                    owner: convert::managed_owner(Some(&volume.labels), &self.host.environment),
                },
            );
        }
        for image in images {
            for tag in &image.repo_tags {
                live.images.insert(tag.clone(), image.id.clone());
            }
        }
        Ok(LiveHost {
            docker: live,
            applied_commit,
            ..LiveHost::default()
        })
    }

    /// Env of an existing container (inspect), empty when it does not exist.
    async fn env_of(
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

    /// Resolve a spec's env: literals, generated values (kept from `previous` when present),
    /// secret references, and values derived from another container.
    async fn resolve_env(
        &self,
        tenant: &str,
        spec: &ContainerSpec,
        previous: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, DockerError> {
        let mut env = BTreeMap::new();
        let mut others: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (key, value) in &spec.env {
            let resolved = match value {
                ConfigValue::Literal { value } => value.clone(),
                ConfigValue::Generate { length } => previous
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| generate(*length)),
                ConfigValue::Secret { name } => {
                    self.secrets
                        .get(name)
                        .map_err(|source| DockerError::Secret {
                            host: self.host.clone(),
                            tenant: tenant.to_string(),
                            source,
                        })?
                }
                ConfigValue::Derived {
                    template,
                    container,
                    key: from,
                } => {
                    if !others.contains_key(container) {
                        let env = self.env_of(tenant, container).await?;
                        others.insert(container.clone(), env);
                    }
                    let value =
                        others
                            .get(container)
                            .and_then(|e| e.get(from))
                            .ok_or_else(|| DockerError::Derived {
                                host: self.host.clone(),
                                tenant: tenant.to_string(),
                                container: container.clone(),
                                key: from.clone(),
                                wanted: key.clone(),
                            })?;
                    template.replace("{value}", value)
                }
            };
            env.insert(key.clone(), resolved);
        }
        Ok(env)
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
        let want = spec
            .labels
            .get(&format!("{}spec-hash", crate::model::desired::LABEL_PREFIX));
        self.count();
        self.docker
            .inspect_container(name, None)
            .await
            .is_ok_and(|info| {
                info.config
                    .and_then(|c| c.labels)
                    .and_then(|l| {
                        l.get(&format!("{}spec-hash", crate::model::desired::LABEL_PREFIX))
                            .cloned()
                    })
                    .as_ref()
                    == want
            })
    }

    /// Start (serialised per host), then wait for health when the container has a check.
    async fn start(&self, tenant: &str, name: &str, has_health: bool) -> Result<(), DockerError> {
        {
            let _one_at_a_time = self.starts.lock().await;
            self.count();
            self.docker
                .start_container(name, None)
                .await
                .map_err(self.api(tenant, format!("start container {name}")))?;
        }
        if has_health {
            self.wait_healthy(tenant, name).await?;
        }
        Ok(())
    }

    async fn wait_healthy(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        let started = Instant::now();
        loop {
            self.count();
            let info = self
                .docker
                .inspect_container(name, None)
                .await
                .map_err(self.api(tenant, format!("inspect container {name}")))?;
            let state = info.state.unwrap_or_default();
            let status = state
                .health
                .and_then(|h| h.status)
                .map_or_else(|| "starting".to_string(), |s| s.to_string());
            let running = state.running.unwrap_or(false);
            if status == "healthy" {
                return Ok(());
            }
            if status == "unhealthy" || !running || started.elapsed() > HEALTH_TIMEOUT {
                let status = if running {
                    status
                } else {
                    "not running".to_string()
                };
                return Err(DockerError::Unhealthy {
                    host: self.host.clone(),
                    tenant: tenant.to_string(),
                    container: name.to_string(),
                    status,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn stop(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
        self.count();
        match self
            .docker
            .stop_container(
                name,
                Some(StopContainerOptionsBuilder::default().t(10).build()),
            )
            .await
        {
            Err(e) if !not_found(&e) => Err(self.api(tenant, format!("stop container {name}"))(e)),
            _ => Ok(()),
        }
    }

    async fn remove(&self, tenant: &str, name: &str) -> Result<(), DockerError> {
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
            Err(e) if !not_found(&e) => {
                Err(self.api(tenant, format!("remove container {name}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Apply one step.
    ///
    /// # Errors
    /// The failing Engine call, or a container that did not become healthy.
    pub async fn apply(&self, step: &Step) -> Result<(), DockerError> {
        let tenant = step.tenant.as_str();
        match &step.change {
            Change::CreateNetwork {
                network,
                internal,
                labels,
                subnet,
            } => {
                self.count();
                let ipam = subnet.as_ref().map(|s| bollard::models::Ipam {
                    config: Some(vec![bollard::models::IpamConfig {
                        subnet: Some(s.clone()),
                        ..bollard::models::IpamConfig::default()
                    }]),
                    ..bollard::models::Ipam::default()
                });
                self.docker
                    .create_network(NetworkCreateRequest {
                        name: network.clone(),
                        driver: Some("bridge".into()),
                        internal: Some(*internal),
                        labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                        ipam,
                        ..NetworkCreateRequest::default()
                    })
                    .await
                    .map_err(self.api(tenant, format!("create network {network}")))?;
            }
            Change::CreateVolume { volume, labels } => {
                self.count();
                self.docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(volume.clone()),
                        labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                        ..VolumeCreateRequest::default()
                    })
                    .await
                    .map_err(self.api(tenant, format!("create volume {volume}")))?;
            }
            Change::CreateContainer { spec, start } => {
                let env = self.resolve_env(tenant, spec, &BTreeMap::new()).await?;
                self.create(tenant, spec, &spec.name, &env).await?;
                if *start {
                    self.start(tenant, &spec.name, spec.health.is_some())
                        .await?;
                }
            }
            Change::RecreateContainer { spec, start, .. } => {
                let previous = self.env_of(tenant, &spec.name).await?;
                let env = self.resolve_env(tenant, spec, &previous).await?;
                let temporary = format!("{}-berth-next", spec.name);
                // A leftover from an interrupted recreate would block the name.
                self.remove(tenant, &temporary).await?;
                self.create(tenant, spec, &temporary, &env).await?;
                self.stop(tenant, &spec.name).await?;
                self.remove(tenant, &spec.name).await?;
                self.count();
                self.docker
                    .rename_container(
                        &temporary,
                        RenameContainerOptionsBuilder::default()
                            .name(&spec.name)
                            .build(),
                    )
                    .await
                    .map_err(self.api(tenant, format!("rename container {temporary}")))?;
                if *start {
                    self.start(tenant, &spec.name, spec.health.is_some())
                        .await?;
                }
            }
            Change::StartContainer { container } => {
                let has_health = {
                    self.count();
                    self.docker
                        .inspect_container(container, None)
                        .await
                        .map_err(self.api(tenant, format!("inspect container {container}")))?
                        .config
                        .and_then(|c| c.healthcheck)
                        .and_then(|h| h.test)
                        .is_some_and(|t| t.first().map(String::as_str) != Some("NONE"))
                };
                self.start(tenant, container, has_health).await?;
            }
            Change::StopContainer { container } => self.stop(tenant, container).await?,
            Change::RemoveContainer { container } => {
                self.stop(tenant, container).await?;
                self.remove(tenant, container).await?;
            }
            Change::RemoveNetwork { network } => {
                self.count();
                match self.docker.remove_network(network).await {
                    Err(e) if !not_found(&e) => {
                        return Err(self.api(tenant, format!("remove network {network}"))(e));
                    }
                    _ => {}
                }
            }
            Change::RemoveVolume { volume } => {
                self.count();
                match self
                    .docker
                    .remove_volume(
                        volume,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                {
                    Err(e) if !not_found(&e) => {
                        return Err(self.api(tenant, format!("remove volume {volume}"))(e));
                    }
                    _ => {}
                }
            }
            other => {
                return Err(DockerError::NotDocker {
                    kind: other.kind_name(),
                });
            }
        }
        Ok(())
    }

    /// The Engine client, for tests and tooling on the same host.
    #[must_use]
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}
