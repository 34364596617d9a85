//! The Docker driver: one Engine per host through bollard, observed in four list calls,
//! changed one step at a time with compose's recreate sequence.
//!
//! - Observe: every container (berth's and others', so names and published ports that
//!   something else holds are seen), every network, every volume, every image — four calls,
//!   whatever the number of tenants. No per-container inspect.
//! - Create and replace: see [`lifecycle`] — starts serialised per host, health probed by
//!   berth itself ([`probe`]), replacement start-first with automatic rollback (stop-first
//!   where a published host port forbids two at once, still rolled back).
//! - Generated values live in secret volumes, made once and shared by every replica.
//! - Suspend is `StopContainer`; data volumes are removed only by a purge step.

pub mod adopted;
pub mod caddy;
pub mod convert;
pub mod images;
mod lifecycle;
pub mod probe;
mod records;

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
};

use super::secrets::{MissingSecret, SecretProvider};
use crate::model::live::{HostRef, LiveDocker, LiveHost, LiveNetwork, LiveVolume};
use crate::plan::{Change, Rollout, Step};

/// How long one Engine API call may go unanswered when the host sets no `timeout:`.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// The Engine accepted a call and did not answer it in time (hung or overloaded).
    #[error("`{call}` on `{host}` got no answer from the Docker Engine within {} s (tenant `{tenant}`)", waited.as_secs())]
    Timeout {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// The call.
        call: String,
        /// How long berth waited.
        waited: Duration,
    },
    /// A container did not become healthy (a replacement was removed and the old container
    /// kept serving).
    #[error("container `{container}` on `{host}` did not become healthy within {:.0} s (tenant `{tenant}`): {status}", waited.as_secs_f64())]
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
    /// Something the engine was already doing (another removal) did not finish in time.
    #[error("{what} on `{host}` did not finish within {seconds} s (tenant `{tenant}`)")]
    Stuck {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// What was waited for.
        what: String,
        /// How long berth waited.
        seconds: u64,
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
    /// An image is not on the host and its pull policy is `never`.
    #[error(
        "image `{image}` is not on `{host}` and `pull: never` forbids pulling it (tenant `{tenant}`)"
    )]
    ImageMissing {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Image.
        image: String,
    },
    /// An image could not be pulled (or, in preflight, found in its registry).
    #[error("cannot pull `{image}` from `{registry}` on `{host}` (tenant `{tenant}`): {reason}")]
    Pull {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Image.
        image: String,
        /// Registry server.
        registry: String,
        /// What the engine or registry said.
        reason: String,
    },
    /// A secret volume that holds no value (made by hand, or lost).
    #[error("secret volume `{volume}` on `{host}` holds no value (tenant `{tenant}`)")]
    NoKeptValue {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// The volume.
        volume: String,
    },
    /// A host port is held by something that is not a container berth knows of.
    #[error(
        "host port {port} on `{host}` is held by another process; container `{container}` cannot start (tenant `{tenant}`)"
    )]
    PortHeld {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Container.
        container: String,
        /// The port.
        port: u16,
    },
    /// A volume has the lease's name but carries no lease.
    #[error("volume `{volume}` on `{host}` has the lease's name but is not a lease")]
    NotALease {
        /// Host.
        host: HostRef,
        /// Volume.
        volume: String,
    },
    /// The host's Caddy refused a route change or could not be reached.
    #[error("a Caddy admin call failed on `{host}` (tenant `{tenant}`)")]
    Caddy {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// The call and what Caddy said.
        #[source]
        source: caddy::CaddyError,
    },
    /// A route names containers none of which has an address (none is running).
    #[error(
        "route `{route}` on `{host}` has no running container to send requests to (tenant `{tenant}`)"
    )]
    NoUpstream {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Route.
        route: String,
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
            DockerError::Connect { .. } | DockerError::Timeout { .. } => true,
            DockerError::Api { source, .. } => api(source),
            DockerError::Caddy { source, .. } => source.transient,
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
    deep: std::sync::atomic::AtomicBool,
    /// Where published ports of this engine answer (health probes): the endpoint's host, or
    /// loopback for a local socket.
    probe_host: String,
    /// How long one Engine call may go unanswered.
    timeout: Duration,
    /// How long a replaced container keeps running after it was switched out, so requests
    /// in flight finish.
    drain: Duration,
    /// Registry credentials of the host's environment.
    registries: std::collections::BTreeMap<String, crate::model::Registry>,
    /// The host's Caddy, when berth manages routes there.
    caddy: Option<Box<caddy::Caddy>>,
}

/// The address published ports of an engine answer on: the endpoint's host name, or loopback
/// for a unix socket.
#[must_use]
pub fn probe_host(endpoint: &str) -> String {
    let rest =
        endpoint.split_once("://").map_or(
            endpoint,
            |(scheme, rest)| if scheme == "unix" { "" } else { rest },
        );
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        "127.0.0.1".to_string()
    } else {
        host.to_string()
    }
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
        Self::connect_with_timeout(host, endpoint, secrets, DEFAULT_API_TIMEOUT).await
    }

    /// [`DockerDriver::connect`], giving up on any one Engine call after `timeout` (the
    /// host's `timeout:`): an engine that accepts a request and never answers fails the
    /// step with [`DockerError::Timeout`] instead of holding the apply.
    ///
    /// # Errors
    /// An unreachable or unusable endpoint (transient).
    pub async fn connect_with_timeout(
        host: &HostRef,
        endpoint: &str,
        secrets: SecretProvider,
        timeout: Duration,
    ) -> Result<Self, DockerError> {
        let connect_error = |source| DockerError::Connect {
            host: host.clone(),
            endpoint: endpoint.to_string(),
            source,
        };
        let docker = Docker::connect_with_host(endpoint).map_err(connect_error)?;
        let docker = docker
            .with_timeout(timeout)
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(DockerDriver {
            host: host.clone(),
            docker,
            secrets,
            starts: tokio::sync::Mutex::new(()),
            calls: std::sync::atomic::AtomicU64::new(1),
            deep: std::sync::atomic::AtomicBool::new(false),
            probe_host: probe_host(endpoint),
            timeout,
            drain: Duration::from_secs(1),
            registries: std::collections::BTreeMap::new(),
            caddy: None,
        })
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

    /// Use these registry credentials for pulls (the environment's `registries`).
    #[must_use]
    pub fn with_registries(
        mut self,
        registries: std::collections::BTreeMap<String, crate::model::Registry>,
    ) -> Self {
        self.registries = registries;
        self
    }

    /// Manage routes in this Caddy (the host's `caddy`).
    #[must_use]
    pub fn with_caddy(mut self, config: Option<&crate::model::Caddy>) -> Self {
        self.caddy = config.map(|c| Box::new(caddy::Caddy::new(c, &self.host)));
        self
    }

    fn caddy_error(&self, tenant: &str) -> impl Fn(caddy::CaddyError) -> DockerError + '_ {
        let tenant = tenant.to_string();
        move |source| DockerError::Caddy {
            host: self.host.clone(),
            tenant: tenant.clone(),
            source,
        }
    }

    /// Make every observation a deep one (inspect each container berth manages here).
    pub fn set_deep(&self, deep: bool) {
        self.deep.store(deep, std::sync::atomic::Ordering::Relaxed);
    }

    /// Observe, deep or not as configured.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn observe_configured(&self) -> Result<LiveHost, DockerError> {
        if self.deep.load(std::sync::atomic::Ordering::Relaxed) {
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
        move |source| match source {
            BollardError::RequestTimeoutError => DockerError::Timeout {
                host: self.host.clone(),
                tenant: tenant.clone(),
                call: call.clone(),
                waited: self.timeout,
            },
            source => DockerError::Api {
                host: self.host.clone(),
                tenant: tenant.clone(),
                call: call.clone(),
                source,
            },
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
        let mut ids = std::collections::BTreeMap::new();
        for summary in &containers {
            let Some(name) = convert::container_name(summary) else {
                continue;
            };
            if let Some(id) = &summary.id {
                ids.insert(name.clone(), id.clone());
            }
            let container = convert::live_container(summary, &self.host);
            // Running containers hold their ports; berth's stopped ones keep theirs too.
            if container.state == crate::model::live::ContainerState::Running
                || container.owner.is_some()
            {
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
                    owner: convert::managed_owner(network.labels.as_ref(), &self.host),
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
        let mut cancelled = std::collections::BTreeMap::new();
        let mut records = std::collections::BTreeMap::new();
        for volume in volumes.volumes.unwrap_or_default() {
            if volume.name.starts_with(adopted::PREFIX) {
                records.insert(volume.name.clone(), volume.labels.clone());
            }
            // berth's own records are not tenant objects.
            if volume.name == applied_volume {
                applied_commit = volume.labels.get("io.berth.applied-commit").cloned();
            }
            if let Some((tenant, at)) =
                records::cancellation_of(&self.host.environment, &volume.name, &volume.labels)
            {
                cancelled.insert(tenant, at);
            }
            if records::is_record_volume(&volume.name) {
                continue;
            }
            live.volumes.insert(
                volume.name.clone(),
                LiveVolume {
                    owner: convert::managed_owner(Some(&volume.labels), &self.host),
                },
            );
        }
        // Stacks `berth import --adopt` took over: their containers carry no labels.
        let adopted = adopted::apply_records(
            &self.host.environment,
            &self.host.host,
            &records,
            &ids,
            &mut live,
        );
        for image in images {
            for tag in &image.repo_tags {
                live.images.insert(tag.clone(), image.id.clone());
            }
        }
        if let Some(caddy) = &self.caddy {
            let routes = caddy.observe().await.map_err(self.caddy_error(scan))?;
            live.routes = convert::live_routes(routes, &live.containers);
        }
        Ok(LiveHost {
            docker: live,
            applied_commit,
            cancelled,
            adopted,
            ..LiveHost::default()
        })
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
            Change::CreateVolume {
                volume,
                labels,
                secret,
            } => match secret {
                Some(secret) => {
                    self.create_secret_volume(tenant, volume, labels, secret)
                        .await?;
                }
                None => {
                    self.count();
                    self.docker
                        .create_volume(VolumeCreateRequest {
                            name: Some(volume.clone()),
                            labels: Some(
                                labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                            ),
                            ..VolumeCreateRequest::default()
                        })
                        .await
                        .map_err(self.api(tenant, format!("create volume {volume}")))?;
                }
            },
            Change::CreateContainer { spec, start, pull } => {
                self.ensure_image(tenant, &spec.image, *pull).await?;
                self.create_container(tenant, spec, *start).await?;
            }
            Change::RecreateContainer {
                spec,
                start,
                rollout,
                pull,
                ..
            } => {
                // Before anything of the old container is touched.
                self.ensure_image(tenant, &spec.image, *pull).await?;
                match rollout {
                    Rollout::StartFirst => self.replace_start_first(tenant, spec, *start).await?,
                    Rollout::StopFirst { .. } => {
                        self.replace_stop_first(tenant, spec, *start).await?;
                    }
                }
            }
            Change::StartContainer { container } => {
                self.start_existing(tenant, container).await?;
            }
            Change::StopContainer { container } => self.stop(tenant, container).await?,
            Change::RecordCancellation { tenant } => self.record_cancellation(tenant).await?,
            Change::ClearCancellation { tenant } => self.clear_cancellation(tenant).await?,
            Change::ClearAdoption { tenant } => self.clear_adoption(tenant).await?,
            Change::RemoveContainer { container } => {
                self.stop(tenant, container).await?;
                self.remove(tenant, container).await?;
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
                self.put_route(tenant, route, hosts, upstreams, *port)
                    .await?
            }
            Change::RemoveRoute { route } => {
                if let Some(caddy) = &self.caddy {
                    caddy
                        .remove(route)
                        .await
                        .map_err(self.caddy_error(tenant))?;
                }
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

    /// Point route `route` at the addresses of `upstreams` (those that have one).
    async fn put_route(
        &self,
        tenant: &str,
        route: &str,
        hosts: &[String],
        upstreams: &[String],
        port: u16,
    ) -> Result<(), DockerError> {
        let Some(caddy) = &self.caddy else {
            return Ok(());
        };
        let mut dials = Vec::new();
        for name in upstreams {
            if let Some(address) = self.address_of(tenant, name).await? {
                dials.push(format!("{address}:{port}"));
            }
        }
        if dials.is_empty() {
            return Err(DockerError::NoUpstream {
                host: self.host.clone(),
                tenant: tenant.to_string(),
                route: route.to_string(),
            });
        }
        caddy
            .put(route, hosts, &dials)
            .await
            .map_err(self.caddy_error(tenant))
    }

    /// A container's address on its network (`None` when it is not running or not there).
    async fn address_of(&self, tenant: &str, name: &str) -> Result<Option<String>, DockerError> {
        self.count();
        match self.docker.inspect_container(name, None).await {
            Ok(info) => Ok(info
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|n| {
                    n.values()
                        .find_map(|e| e.ip_address.clone().filter(|a| !a.is_empty()))
                })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.api(tenant, format!("inspect container {name}"))(e)),
        }
    }

    /// The Engine client, for tests and tooling on the same host.
    #[must_use]
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}
