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

mod docker;
mod dokku;
mod place;

pub use docker::{TRAEFIK_CERT_RESOLVER, db_name, nano_cpus, proxy_labels, url_key};
pub use place::place;

use super::live::HostRef;
use super::{
    EnvValue, Fleet, HostTarget, Policy, ProxyKind, PullPolicy, RestartPolicy, ServiceKind, Stack,
    TenantState,
};

/// Label namespace on Docker objects.
pub const LABEL_PREFIX: &str = "io.berth.";
/// Label holding a container's health check as JSON, so a later start probes it the same way.
pub const HEALTH_LABEL: &str = "io.berth.health";
/// Dokku config key naming the owning tenant (the ownership marker).
pub const BERTH_TENANT_KEY: &str = "BERTH_TENANT";
/// Dokku config key that held the hash of the app spec berth last applied, before the hash
/// moved to a docker-options label (read on older apps, never written).
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
    /// The generated value berth keeps in one of its secret volumes (Docker): made once when
    /// the volume is created, shared by every replica of the app, and kept as long as the
    /// tenant's data (a secret volume is removed only by `state: purge`).
    Kept {
        /// The secret volume holding the value.
        volume: String,
    },
    /// A value built at apply time from another (`DATABASE_URL` built from the Postgres
    /// service's generated password). `{value}` in the template is replaced.
    Derived {
        /// Template with `{value}`.
        template: String,
        /// Where the value comes from (`Kept` or `Secret`).
        from: Box<ConfigValue>,
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
    /// Whether the tenant already has objects on that host.
    #[serde(default)]
    pub present: bool,
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
    /// The file each tenant (and each environment's shared stack, as `shared@<env>`) comes
    /// from, for the plan to say which file a change is from.
    pub files: BTreeMap<String, String>,
}

/// What a fast observation of a Dokku host confirms apps against: per desired app, its
/// tenant and the hash of its spec (the value berth's `record-spec` step writes as a
/// docker-options label).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// App name → (tenant, spec hash).
    pub apps: BTreeMap<String, (String, String)>,
}

/// The spec hashes of every Dokku app the fleet wants. An app's spec does not depend on the
/// host it lands on, so placing against empty hosts gives the same hashes.
#[must_use]
pub fn expected(fleet: &Fleet) -> Expected {
    let placements = place(fleet, &crate::model::live::Live::default());
    let desired = compile(fleet, &placements);
    let mut out = Expected::default();
    for host in desired.hosts.values() {
        for (name, app) in &host.dokku_apps {
            out.apps
                .insert(name.clone(), (app.tenant.clone(), app.spec_hash.clone()));
        }
    }
    out
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
    /// The host's name in its environment (Docker objects are labelled with it, so two
    /// host entries on one engine never take each other's objects).
    pub name: String,
    /// Docker: whether berth manages Caddy routes here (the host's `caddy`).
    pub caddy: bool,
    /// Docker: Caddy routes by name (`<tenant>.<app>`), when `caddy` is set.
    pub routes: BTreeMap<String, Route>,
    /// Tenants placed here.
    pub tenants: BTreeSet<String>,
}

/// A route in the host's Caddy: requests for these hosts go to these containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Tenant.
    pub tenant: String,
    /// Host names matched (the app's domains).
    pub hosts: Vec<String>,
    /// Containers requests are balanced over (the app's running web replicas).
    pub upstreams: Vec<String>,
    /// The port they listen on.
    pub port: u16,
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
    /// Config berth owns (tenant env plus its markers).
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
    /// Proxy port map (`http:80:5000`, plus `https:443:5000` with TLS) from `port:`; empty
    /// leaves the map to Dokku (detected from the image, extended by Let's Encrypt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `ps:set restart-policy` value; `None` = Dokku's default (`on-failure:10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Hash of this spec, recorded on the app (a docker-options label) once it is applied.
    pub spec_hash: String,
    /// Credentials for the registry the image is pulled from, when the environment's
    /// `registries` names its server: logged in per app before each deploy. Not part of
    /// the spec hash (it is set after hashing): a login changes nothing berth observes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryLogin>,
}

/// A registry login of one Dokku app (`registry:login --password-stdin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryLogin {
    /// Registry server (`registry.example.net`).
    pub server: String,
    /// User name.
    pub username: String,
    /// Secret holding the password (its name; the value is looked up at apply time).
    pub password_secret: String,
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
    /// For a secret volume: the generated value it holds.
    pub secret: Option<SecretKey>,
}

/// What a secret volume holds: one generated env value of an app or service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct SecretKey {
    /// The env key (`POSTGRES_PASSWORD`).
    pub key: String,
    /// Characters to generate.
    pub length: u32,
}

/// Name of the secret volume of `owner` (`acme-db`, `acme-web`) for env `key`.
#[must_use]
pub fn secret_volume_name(owner: &str, key: &str) -> String {
    format!("{owner}.secret.{key}")
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
    /// When to pull its image.
    pub pull: PullPolicy,
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
    /// Health check: probed by berth over HTTP, or Docker's exec check.
    pub health: Option<ContainerHealth>,
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

/// A container's health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerHealth {
    /// What is probed.
    pub probe: Probe,
    /// Seconds between probes.
    pub interval: u32,
    /// Seconds one probe may take.
    pub timeout: u32,
    /// Failed probes in a row that make the container unhealthy.
    pub retries: u32,
}

/// How health is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Probe {
    /// berth itself sends `GET path` to the container's port (its address on its network, or
    /// its published port): no shell or tool inside the image is needed.
    Http {
        /// URL path.
        path: String,
        /// Container port.
        port: u16,
    },
    /// Docker's exec health check (`["CMD", …]`), for images that bring their own.
    Command {
        /// `["CMD", …]`.
        test: Vec<String>,
    },
}

impl ContainerSpec {
    /// Canonical hash of everything that, when changed, requires a new container.
    ///
    /// Computed over the serialized spec without the hash label itself. Generated secrets
    /// enter as instructions, not values, so the hash is stable across redeploys.
    #[must_use]
    pub fn hash(&self) -> String {
        short_hash(&serde_json::to_vec(&self.without_records()).unwrap_or_default())
    }

    /// The spec without berth's record labels (`io.berth.spec-hash`, `io.berth.spec`): what
    /// the spec label itself holds, and what the hash covers.
    #[must_use]
    pub fn without_records(&self) -> ContainerSpec {
        let mut spec = self.clone();
        spec.labels.remove(&format!("{LABEL_PREFIX}spec-hash"));
        spec.labels.remove(SPEC_LABEL);
        spec
    }
}

/// Label holding the spec berth created a container from (JSON, secrets as instructions
/// only), so the next plan can say field by field what a replacement changes.
pub const SPEC_LABEL: &str = "io.berth.spec";

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
                    caddy: host.caddy.is_some(),
                    routes: BTreeMap::new(),
                    name: host.name.clone(),
                    tenants: BTreeSet::new(),
                },
            );
        }
        if let Some(shared) = &env.shared
            && let Some(host) = &shared.host
        {
            let key = HostRef::new(&env.name, host);
            if let Some(dh) = desired.hosts.get_mut(&key) {
                add_stack(dh, env, super::SHARED_STACK_ID, shared, TenantState::Active);
            }
            desired.files.insert(
                format!("{}@{}", super::SHARED_STACK_ID, env.name),
                format!("environments/{}.yaml", env.name),
            );
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
        desired.files.insert(tenant.id.clone(), tenant.file.clone());
        let (Some(host), Some(env)) =
            (&placement.host, fleet.environments.get(&tenant.environment))
        else {
            continue;
        };
        if let Some(dh) = desired.hosts.get_mut(host) {
            dh.tenants.insert(tenant.id.clone());
            // Purge desires nothing; a cancelled tenant that has nothing on the host yet
            // (cancelled before it was ever deployed) gets nothing made just to be stopped.
            let nothing = tenant.state == TenantState::Purge
                || (tenant.state == TenantState::Cancelled && !placement.present);
            if !nothing {
                add_stack(dh, env, &tenant.id, &tenant.stack, tenant.state);
            }
        }
    }
    desired
}

pub(super) fn add_stack(
    dh: &mut DesiredHost,
    env: &super::Environment,
    tenant: &str,
    stack: &Stack,
    state: TenantState,
) {
    let running = state == TenantState::Active;
    match dh.kind {
        HostKind::Dokku => dokku::add_dokku_stack(dh, env, tenant, stack, running),
        HostKind::Docker => docker::add_docker_stack(dh, env, tenant, stack, running),
    }
}
