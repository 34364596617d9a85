//! The desired model: per host, the resources berth wants, with stable names.
//!
//! Compiled from the validated [`Fleet`] and a placement (which host each tenant is on).
//! Naming, tier defaults, tenant state (suspended and cancelled mean zero processes, data
//! kept; purge means nothing is desired and data may go), service links, published-port
//! allocation inputs and proxy labels are all decided here, so the planner only diffs.
//!
//! No secret value exists here: generated secrets and secret references are instructions
//! ([`ConfigValue`]) that the executor resolves on the host side at apply time.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::live::{HostRef, Live, service_key};
use super::{
    App, EnvValue, Fleet, Health, HostTarget, Policy, ProxyKind, RestartPolicy, Service,
    ServiceKind, Stack, TenantState,
};

/// Label namespace on Docker objects.
pub const LABEL_PREFIX: &str = "io.berth.";
/// Dokku config key naming the owning tenant (the ownership marker).
pub const BERTH_TENANT_KEY: &str = "BERTH_TENANT";
/// Dokku config key holding the hash of the app spec berth last applied.
pub const BERTH_SPEC_KEY: &str = "BERTH_SPEC";

/// A config (env) value as the plan carries it. Only `Literal` holds text, and literals come
/// from git, where they are already public.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ConfigValue {
    /// A literal from the tenant file.
    Literal {
        /// The value.
        value: String,
    },
    /// Keep the live value if present, else generate this many characters.
    Generate {
        /// Length.
        length: u32,
    },
    /// Resolve through the secret provider at apply time.
    Secret {
        /// Secret name.
        name: String,
    },
    /// A URL built at apply time from another container's value (`DATABASE_URL` built from
    /// the Postgres container's generated password). `{value}` in the template is replaced.
    Derived {
        /// Template with `{value}`.
        template: String,
        /// Container whose env holds the value.
        container: String,
        /// Env key in that container.
        key: String,
    },
}

impl ConfigValue {
    /// Whether printing the value would reveal a secret.
    #[must_use]
    pub fn is_sensitive(&self) -> bool {
        !matches!(self, ConfigValue::Literal { .. })
    }

    /// A literal.
    #[must_use]
    pub fn literal(value: impl Into<String>) -> Self {
        ConfigValue::Literal {
            value: value.into(),
        }
    }
}

impl From<&EnvValue> for ConfigValue {
    fn from(value: &EnvValue) -> Self {
        match value {
            EnvValue::Literal(v) => ConfigValue::literal(v.clone()),
            EnvValue::Generate { length } => ConfigValue::Generate { length: *length },
            EnvValue::Secret { name } => ConfigValue::Secret { name: name.clone() },
        }
    }
}

/// Which host each tenant is on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Tenant id.
    pub tenant: String,
    /// Host, or `None` when no host had room.
    pub host: Option<HostRef>,
    /// How the host was chosen.
    pub reason: PlacementReason,
}

/// Placement reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementReason {
    /// `host:` in the tenant file.
    Pinned,
    /// The tenant already lives there (sticky: placement never moves a tenant by itself).
    Existing,
    /// New tenant: the host with the most free capacity (ties by name).
    Chosen,
    /// No host of the environment has room.
    NoCapacity,
}

/// Everything berth wants, by host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Hosts of every environment, including ones that want nothing.
    pub hosts: BTreeMap<HostRef, DesiredHost>,
    /// Placement of every tenant.
    pub placements: Vec<Placement>,
    /// Tenants by id: environment and state, for safety rules.
    pub tenants: BTreeMap<String, (String, TenantState)>,
}

/// What one host should run.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredHost {
    /// `dokku` or `docker`.
    pub kind: HostKind,
    /// The environment's policy.
    pub policy: Policy,
    /// Publishable port range (Docker).
    pub ports: Option<(u16, u16)>,
    /// Proxy flavour for domain routing (Docker).
    pub proxy: ProxyKind,
    /// Block tenant networks get a /24 of (Docker).
    pub subnets: Option<(u32, u8)>,
    /// Dokku apps by name.
    pub dokku_apps: BTreeMap<String, DokkuApp>,
    /// Dokku services by `kind:name`.
    pub dokku_services: BTreeMap<String, DokkuService>,
    /// Docker networks by name.
    pub networks: BTreeMap<String, Network>,
    /// Docker volumes by name.
    pub volumes: BTreeMap<String, Volume>,
    /// Docker containers by name.
    pub containers: BTreeMap<String, Container>,
    /// Tenants placed here.
    pub tenants: BTreeSet<String>,
}

/// Host kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// Dokku over SSH.
    Dokku,
    /// Docker Engine.
    Docker,
}

/// A Dokku app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DokkuApp {
    /// Owning tenant.
    pub tenant: String,
    /// App name in the tenant file.
    pub app: String,
    /// Config berth owns (tenant env plus `BERTH_TENANT`, `BERTH_SPEC`).
    pub config: BTreeMap<String, ConfigValue>,
    /// Vhosts; empty means Dokku's default vhost is fine.
    pub domains: Vec<String>,
    /// Formation.
    pub processes: BTreeMap<String, u32>,
    /// Image to deploy.
    pub image: String,
    /// Memory limit as Dokku stores it (`512m`).
    pub memory: Option<String>,
    /// CPU limit as Dokku stores it.
    pub cpus: Option<String>,
    /// Storage mounts `host:container`.
    pub storage: Vec<String>,
    /// Let's Encrypt.
    pub tls: bool,
    /// Linked services (`postgres:acme-db`).
    pub links: Vec<String>,
    /// Hash of this spec, recorded on the app as `BERTH_SPEC`.
    pub spec_hash: String,
}

/// A Dokku Postgres/Redis service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DokkuService {
    /// Owning tenant.
    pub tenant: String,
    /// Kind.
    pub kind: ServiceKind,
    /// Service name on the host.
    pub name: String,
    /// Image reference.
    pub image: String,
}

/// A Docker network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Owning tenant.
    pub tenant: String,
    /// Internal unless the tenant publishes ports or routes domains.
    pub internal: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A Docker volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// Owning tenant.
    pub tenant: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A Docker container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Owning tenant.
    pub tenant: String,
    /// Whether it should run (false for suspended and cancelled tenants).
    pub running: bool,
    /// Service containers this one waits for (by container name).
    pub depends_on: Vec<String>,
    /// The container configuration.
    pub spec: ContainerSpec,
}

/// A container configuration, complete: the executor creates exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command, if not the image's.
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, ConfigValue>,
    /// Published ports; `host: None` until the planner allocates one.
    pub ports: Vec<PublishedPort>,
    /// Memory limit, bytes.
    pub memory: Option<u64>,
    /// CPU limit, nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Docker health check, exec form.
    pub health: Option<DockerHealth>,
    /// Network.
    pub network: String,
    /// Network aliases (the service name, so apps reach `db`).
    pub aliases: Vec<String>,
    /// Volume mounts, `(volume, path)`.
    pub mounts: Vec<(String, String)>,
    /// Labels, ownership and proxy routing included.
    pub labels: BTreeMap<String, String>,
}

/// A published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct PublishedPort {
    /// Container port.
    pub container: u16,
    /// Host port (fixed in the file, or allocated by the planner).
    pub host: Option<u16>,
}

/// A Docker health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerHealth {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Seconds.
    pub interval: u32,
    /// Seconds.
    pub timeout: u32,
    /// Retries.
    pub retries: u32,
}

impl ContainerSpec {
    /// Canonical hash of everything that, when changed, requires a new container.
    ///
    /// Computed over the serialized spec without the hash label itself. Generated secrets
    /// enter as instructions, not values, so the hash is stable across redeploys.
    #[must_use]
    pub fn hash(&self) -> String {
        let mut spec = self.clone();
        spec.labels.remove(&format!("{LABEL_PREFIX}spec-hash"));
        short_hash(&serde_json::to_vec(&spec).unwrap_or_default())
    }
}

/// First 16 hex characters of SHA-256.
#[must_use]
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Dokku app name for a tenant's app.
#[must_use]
pub fn dokku_app_name(template: &str, tenant: &str, app: &str) -> String {
    template.replace("{tenant}", tenant).replace("{app}", app)
}

/// Docker container name for replica `n` of process `process` of `app`.
#[must_use]
pub fn container_name(tenant: &str, app: &str, process: &str, n: u32) -> String {
    if process == "web" {
        format!("{tenant}-{app}-{n}")
    } else {
        format!("{tenant}-{app}-{process}-{n}")
    }
}

/// Place every tenant: pinned, else where it already lives, else the emptiest host.
///
/// Never moves a tenant by itself: a tenant found on a host stays there, so adding a host
/// or changing capacities changes where *new* tenants go, not where existing ones are.
#[must_use]
pub fn place(fleet: &Fleet, live: &Live) -> Vec<Placement> {
    let mut load: BTreeMap<HostRef, u32> = BTreeMap::new();
    let mut placements = Vec::new();
    let mut unplaced = Vec::new();
    for (id, tenant) in &fleet.tenants {
        let Some(env) = fleet.environments.get(&tenant.environment) else {
            continue;
        };
        if let Some(host) = &tenant.host {
            let host = HostRef::new(&env.name, host);
            *load.entry(host.clone()).or_default() += 1;
            placements.push(Placement {
                tenant: id.clone(),
                host: Some(host),
                reason: PlacementReason::Pinned,
            });
            continue;
        }
        let existing = env.hosts.keys().find(|h| {
            live.hosts
                .get(&HostRef::new(&env.name, h))
                .is_some_and(|lh| host_has_tenant(lh, id))
        });
        if let Some(host) = existing {
            let host = HostRef::new(&env.name, host);
            *load.entry(host.clone()).or_default() += 1;
            placements.push(Placement {
                tenant: id.clone(),
                host: Some(host),
                reason: PlacementReason::Existing,
            });
        } else {
            unplaced.push((id.clone(), env));
        }
    }
    for (id, env) in unplaced {
        let best = env
            .hosts
            .values()
            .map(|h| {
                let used = load
                    .get(&HostRef::new(&env.name, &h.name))
                    .copied()
                    .unwrap_or(0);
                let free = i64::from(h.capacity.unwrap_or(u32::MAX)) - i64::from(used);
                (free, h)
            })
            .filter(|(free, _)| *free > 0)
            // Most free capacity first; among equals the first name wins.
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.name.cmp(&a.1.name)));
        match best {
            Some((_, h)) => {
                let host = HostRef::new(&env.name, &h.name);
                *load.entry(host.clone()).or_default() += 1;
                placements.push(Placement {
                    tenant: id,
                    host: Some(host),
                    reason: PlacementReason::Chosen,
                });
            }
            None => placements.push(Placement {
                tenant: id,
                host: None,
                reason: PlacementReason::NoCapacity,
            }),
        }
    }
    placements.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    placements
}

fn host_has_tenant(host: &super::live::LiveHost, tenant: &str) -> bool {
    let t = Some(tenant);
    host.dokku.apps.values().any(|a| a.owner.as_deref() == t)
        || host
            .dokku
            .services
            .values()
            .any(|s| s.owner.as_deref() == t)
        || host
            .docker
            .containers
            .values()
            .any(|c| c.owner.as_deref() == t)
        || host
            .docker
            .volumes
            .values()
            .any(|v| v.owner.as_deref() == t)
        || host
            .docker
            .networks
            .values()
            .any(|n| n.owner.as_deref() == t)
}

/// Compile the desired state of every host.
#[must_use]
pub fn compile(fleet: &Fleet, placements: &[Placement]) -> Desired {
    let mut desired = Desired {
        placements: placements.to_vec(),
        ..Desired::default()
    };
    for env in fleet.environments.values() {
        for host in env.hosts.values() {
            desired.hosts.insert(
                HostRef::new(&env.name, &host.name),
                DesiredHost {
                    kind: match host.target {
                        HostTarget::Dokku(_) => HostKind::Dokku,
                        HostTarget::Docker { .. } => HostKind::Docker,
                    },
                    policy: env.policy.clone(),
                    ports: host.ports,
                    proxy: host.proxy,
                    subnets: host.subnets,
                    dokku_apps: BTreeMap::new(),
                    dokku_services: BTreeMap::new(),
                    networks: BTreeMap::new(),
                    volumes: BTreeMap::new(),
                    containers: BTreeMap::new(),
                    tenants: BTreeSet::new(),
                },
            );
        }
        if let Some(shared) = &env.shared
            && let Some(host) = &shared.host
        {
            let key = HostRef::new(&env.name, host);
            if let Some(dh) = desired.hosts.get_mut(&key) {
                add_stack(
                    dh,
                    env,
                    crate::validate::SHARED_STACK_ID,
                    shared,
                    TenantState::Active,
                );
            }
        }
    }
    for placement in placements {
        let Some(tenant) = fleet.tenants.get(&placement.tenant) else {
            continue;
        };
        desired.tenants.insert(
            tenant.id.clone(),
            (tenant.environment.clone(), tenant.state),
        );
        let (Some(host), Some(env)) =
            (&placement.host, fleet.environments.get(&tenant.environment))
        else {
            continue;
        };
        if let Some(dh) = desired.hosts.get_mut(host) {
            dh.tenants.insert(tenant.id.clone());
            if tenant.state != TenantState::Purge {
                add_stack(dh, env, &tenant.id, &tenant.stack, tenant.state);
            }
        }
    }
    desired
}

fn add_stack(
    dh: &mut DesiredHost,
    env: &super::Environment,
    tenant: &str,
    stack: &Stack,
    state: TenantState,
) {
    let running = state == TenantState::Active;
    match dh.kind {
        HostKind::Dokku => add_dokku_stack(dh, env, tenant, stack, running),
        HostKind::Docker => add_docker_stack(dh, env, tenant, stack, running),
    }
}

fn add_dokku_stack(
    dh: &mut DesiredHost,
    env: &super::Environment,
    tenant: &str,
    stack: &Stack,
    running: bool,
) {
    for service in stack.services.values() {
        let name = format!("{tenant}-{}", service.name);
        dh.dokku_services.insert(
            service_key(service.kind, &name),
            DokkuService {
                tenant: tenant.to_string(),
                kind: service.kind,
                name,
                image: service.image.clone(),
            },
        );
    }
    for app in stack.apps.values() {
        let name = dokku_app_name(&env.dokku_app_template, tenant, &app.name);
        let mut config: BTreeMap<String, ConfigValue> =
            app.env.iter().map(|(k, v)| (k.clone(), v.into())).collect();
        config.insert(BERTH_TENANT_KEY.into(), ConfigValue::literal(tenant));
        let processes = app
            .processes
            .iter()
            .map(|(p, n)| (p.clone(), if running { *n } else { 0 }))
            .collect();
        let links = app
            .uses
            .iter()
            .filter_map(|u| stack.services.get(u))
            .map(|s| service_key(s.kind, &format!("{tenant}-{}", s.name)))
            .collect();
        let storage = app
            .storage
            .iter()
            .map(|s| format!("/var/lib/dokku/data/storage/{name}-{}:{}", s.volume, s.path))
            .collect();
        let mut spec = DokkuApp {
            tenant: tenant.to_string(),
            app: app.name.clone(),
            config,
            domains: app.domains.clone(),
            processes,
            image: app.image.clone(),
            memory: app.memory.map(dokku_memory),
            cpus: app.cpus.map(format_cpus),
            storage,
            tls: app.tls,
            links,
            spec_hash: String::new(),
        };
        spec.spec_hash = short_hash(&serde_json::to_vec(&spec).unwrap_or_default());
        spec.config.insert(
            BERTH_SPEC_KEY.into(),
            ConfigValue::literal(spec.spec_hash.clone()),
        );
        dh.dokku_apps.insert(name, spec);
    }
}

/// Dokku stores limits verbatim; berth writes megabytes with Dokku's `m` suffix.
fn dokku_memory(bytes: u64) -> String {
    format!("{}m", bytes.div_ceil(1 << 20))
}

fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn add_docker_stack(
    dh: &mut DesiredHost,
    env: &super::Environment,
    tenant: &str,
    stack: &Stack,
    running: bool,
) {
    let network = format!("{tenant}_net");
    let publishes = stack
        .apps
        .values()
        .any(|a| !a.ports.is_empty() || !a.domains.is_empty())
        || stack.services.values().any(|s| !s.ports.is_empty());
    let base_labels = |role: &str| {
        let mut labels = BTreeMap::new();
        labels.insert(format!("{LABEL_PREFIX}managed"), "true".to_string());
        labels.insert(format!("{LABEL_PREFIX}tenant"), tenant.to_string());
        labels.insert(format!("{LABEL_PREFIX}environment"), env.name.clone());
        labels.insert(format!("{LABEL_PREFIX}role"), role.to_string());
        labels.insert("com.docker.compose.project".to_string(), tenant.to_string());
        labels
    };
    let proxy = dh.proxy;
    dh.networks.insert(
        network.clone(),
        Network {
            tenant: tenant.to_string(),
            internal: !publishes,
            labels: base_labels("network"),
        },
    );
    let mut volume = |name: &str| {
        let full = format!("{tenant}_{name}");
        dh.volumes.insert(
            full.clone(),
            Volume {
                tenant: tenant.to_string(),
                labels: base_labels("volume"),
            },
        );
        full
    };
    let mut containers = Vec::new();
    for service in stack.services.values() {
        let name = format!("{tenant}-{}", service.name);
        let mounts = service
            .storage
            .iter()
            .map(|s| (volume(&s.volume), s.path.clone()))
            .collect();
        let mut env_map: BTreeMap<String, ConfigValue> = service
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.into()))
            .collect();
        if service.kind == ServiceKind::Postgres {
            env_map
                .entry("POSTGRES_PASSWORD".into())
                .or_insert(ConfigValue::Generate { length: 32 });
            env_map
                .entry("POSTGRES_DB".into())
                .or_insert_with(|| ConfigValue::literal(db_name(tenant)));
        }
        let mut labels = base_labels("service");
        labels.insert(format!("{LABEL_PREFIX}service"), service.name.clone());
        labels.insert("com.docker.compose.service".into(), service.name.clone());
        labels.insert("com.docker.compose.container-number".into(), "1".into());
        labels.insert("com.docker.compose.oneoff".into(), "False".into());
        let spec = ContainerSpec {
            name: name.clone(),
            image: service.image.clone(),
            command: service.command.clone(),
            env: env_map,
            ports: service
                .ports
                .iter()
                .map(|p| PublishedPort {
                    container: p.container,
                    host: p.host,
                })
                .collect(),
            memory: service.memory,
            nano_cpus: service.cpus.map(nano_cpus),
            restart: RestartPolicy::UnlessStopped,
            health: service.health.as_ref().map(|h| docker_health(h, None)),
            network: network.clone(),
            aliases: vec![service.name.clone()],
            mounts,
            labels,
        };
        containers.push(Container {
            tenant: tenant.to_string(),
            running,
            depends_on: Vec::new(),
            spec,
        });
    }
    for app in stack.apps.values() {
        let (env_map, depends_on) = app_env(tenant, app, stack);
        let mounts: Vec<(String, String)> = app
            .storage
            .iter()
            .map(|s| (volume(&s.volume), s.path.clone()))
            .collect();
        for (process, count) in &app.processes {
            for n in 1..=*count {
                let name = container_name(tenant, &app.name, process, n);
                let mut labels = base_labels("app");
                labels.insert(format!("{LABEL_PREFIX}app"), app.name.clone());
                labels.insert(format!("{LABEL_PREFIX}process"), process.clone());
                labels.insert(format!("{LABEL_PREFIX}replica"), n.to_string());
                let service_label = if process == "web" {
                    app.name.clone()
                } else {
                    format!("{}-{process}", app.name)
                };
                labels.insert("com.docker.compose.service".into(), service_label.clone());
                labels.insert("com.docker.compose.container-number".into(), n.to_string());
                labels.insert("com.docker.compose.oneoff".into(), "False".into());
                if process == "web" && !app.domains.is_empty() {
                    proxy_labels(&mut labels, proxy, tenant, app, &network);
                }
                let command = app
                    .commands
                    .get(process)
                    .cloned()
                    .or_else(|| app.command.clone());
                let ports = if process == "web" {
                    app.ports
                        .iter()
                        .map(|p| PublishedPort {
                            container: p.container,
                            // A fixed host port can serve one replica only.
                            host: if n == 1 { p.host } else { None },
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let spec = ContainerSpec {
                    name: name.clone(),
                    image: app.image.clone(),
                    command,
                    env: env_map.clone(),
                    ports,
                    memory: app.memory,
                    nano_cpus: app.cpus.map(nano_cpus),
                    restart: app.restart,
                    health: if process == "web" {
                        app.health.as_ref().map(|h| docker_health(h, app.port))
                    } else {
                        None
                    },
                    network: network.clone(),
                    aliases: if n == 1 {
                        vec![service_label]
                    } else {
                        Vec::new()
                    },
                    mounts: mounts.clone(),
                    labels,
                };
                containers.push(Container {
                    tenant: tenant.to_string(),
                    running,
                    depends_on: depends_on.clone(),
                    spec,
                });
            }
        }
    }
    for container in containers {
        dh.containers.insert(container.spec.name.clone(), container);
    }
}

fn db_name(tenant: &str) -> String {
    tenant.replace('-', "_")
}

fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

fn app_env(tenant: &str, app: &App, stack: &Stack) -> (BTreeMap<String, ConfigValue>, Vec<String>) {
    let mut env: BTreeMap<String, ConfigValue> =
        app.env.iter().map(|(k, v)| (k.clone(), v.into())).collect();
    let mut depends_on = Vec::new();
    for used in &app.uses {
        let Some(service) = stack.services.get(used) else {
            continue;
        };
        let container = format!("{tenant}-{}", service.name);
        depends_on.push(container.clone());
        let link = link_env(tenant, service, &container);
        for (key, value) in link {
            env.entry(key).or_insert(value);
        }
    }
    (env, depends_on)
}

/// The env a link to `service` gives an app: `DATABASE_URL` / `REDIS_URL` on the private
/// network, the password taken from the service container at apply time.
fn link_env(tenant: &str, service: &Service, container: &str) -> Vec<(String, ConfigValue)> {
    let alias = &service.name;
    match service.kind {
        ServiceKind::Postgres => {
            let db = match service.env.get("POSTGRES_DB") {
                Some(EnvValue::Literal(db)) => db.clone(),
                _ => db_name(tenant),
            };
            let value = match service.env.get("POSTGRES_PASSWORD") {
                Some(EnvValue::Literal(pw)) => {
                    ConfigValue::literal(format!("postgres://postgres:{pw}@{alias}:5432/{db}"))
                }
                _ => ConfigValue::Derived {
                    template: format!("postgres://postgres:{{value}}@{alias}:5432/{db}"),
                    container: container.to_string(),
                    key: "POSTGRES_PASSWORD".into(),
                },
            };
            vec![(url_key("DATABASE", alias, service.kind), value)]
        }
        ServiceKind::Redis => vec![(
            url_key("REDIS", alias, service.kind),
            ConfigValue::literal(format!("redis://{alias}:6379")),
        )],
        ServiceKind::Container => Vec::new(),
    }
}

/// `DATABASE_URL` for a service called `db` (or of the kind's usual names), else
/// `<NAME>_URL` so two databases of one tenant do not collide.
fn url_key(default: &str, alias: &str, kind: ServiceKind) -> String {
    let usual = match kind {
        ServiceKind::Postgres => ["db", "postgres", "database"].contains(&alias),
        ServiceKind::Redis => ["cache", "redis"].contains(&alias),
        ServiceKind::Container => false,
    };
    if usual {
        format!("{default}_URL")
    } else {
        format!("{}_URL", alias.to_uppercase().replace('-', "_"))
    }
}

fn docker_health(health: &Health, port: Option<u16>) -> DockerHealth {
    let test = match (&health.command, &health.path) {
        (Some(command), _) => std::iter::once("CMD".to_string())
            .chain(command.iter().cloned())
            .collect(),
        (None, Some(path)) => vec![
            "CMD-SHELL".to_string(),
            format!(
                "wget -q -O /dev/null http://127.0.0.1:{}{path} || exit 1",
                port.unwrap_or(8080)
            ),
        ],
        (None, None) => vec!["NONE".to_string()],
    };
    DockerHealth {
        test,
        interval: health.interval,
        timeout: health.timeout,
        retries: health.retries,
    }
}

fn proxy_labels(
    labels: &mut BTreeMap<String, String>,
    proxy: ProxyKind,
    tenant: &str,
    app: &App,
    network: &str,
) {
    let router = format!("{tenant}-{}", app.name);
    let port = app.port.unwrap_or(8080);
    match proxy {
        ProxyKind::Traefik => {
            let rule = app
                .domains
                .iter()
                .map(|d| format!("Host(`{d}`)"))
                .collect::<Vec<_>>()
                .join(" || ");
            labels.insert("traefik.enable".into(), "true".into());
            labels.insert(format!("traefik.http.routers.{router}.rule"), rule);
            labels.insert(
                format!("traefik.http.services.{router}.loadbalancer.server.port"),
                port.to_string(),
            );
            labels.insert("traefik.docker.network".into(), network.to_string());
            if app.tls {
                labels.insert(
                    format!("traefik.http.routers.{router}.tls.certresolver"),
                    "letsencrypt".into(),
                );
            }
        }
        ProxyKind::Caddy => {
            labels.insert("caddy".into(), app.domains.join(" "));
            labels.insert(
                "caddy.reverse_proxy".into(),
                format!("{{{{upstreams {port}}}}}"),
            );
        }
    }
}
