//! The live model: what drivers report about hosts, one value per host.
//!
//! Drivers fill it from batched reads (Dokku reports, Docker list calls); tests and
//! `plan --offline` build it by hand or leave it empty. Objects berth manages carry the tenant
//! they belong to (`owner`); everything else is reported with `owner: None` and is never
//! touched — only seen, so name conflicts and taken ports can be found at plan time.
//!
//! Live values may hold secrets (config values read back from Dokku, generated passwords). The
//! planner only compares them and hashes them into fingerprints; it never copies them into a
//! plan. `Debug` of config values is redacted for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ServiceKind;

/// Identifies a host across environments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostRef {
    /// Environment name.
    pub environment: String,
    /// Host name within the environment.
    pub host: String,
}

impl HostRef {
    /// A host reference.
    #[must_use]
    pub fn new(environment: &str, host: &str) -> Self {
        HostRef {
            environment: environment.to_string(),
            host: host.to_string(),
        }
    }
}

impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.environment, self.host)
    }
}

/// Everything observed, by host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    /// Hosts that were observed. A host missing here was not observed (offline planning).
    pub hosts: BTreeMap<HostRef, LiveHost>,
}

/// One host's live state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveHost {
    /// Dokku state, for Dokku hosts.
    #[serde(default)]
    pub dokku: LiveDokku,
    /// Docker state, for Docker hosts.
    #[serde(default)]
    pub docker: LiveDocker,
    /// The commit berth recorded as applied here for this environment, read with the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// Digests of the environment's secret values as its provider holds them now (name →
    /// `secret_digest`), read by the session before planning: a rotated value shows as a
    /// changed secret. Never serialized.
    #[serde(skip)]
    pub secret_digests: BTreeMap<String, String>,
    /// When berth applied each tenant's cancellation here (unix seconds): data retention
    /// (`policy.retain-data`) counts from it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cancelled: BTreeMap<String, u64>,
    /// Docker: tenants whose stacks `berth import --adopt` recorded here (their
    /// `berth-adopted.<env>.<tenant>` record): it goes once nothing of the tenant is left.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub adopted: std::collections::BTreeSet<String>,
}

/// A config value read from a host. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveValue(pub String);

impl fmt::Debug for LiveValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(live value)")
    }
}

/// Dokku state of one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDokku {
    /// Dokku version, when probed.
    #[serde(default)]
    pub version: Option<String>,
    /// Global vhosts (`domains:report --global`): new apps get `<app>.<global>` by default.
    #[serde(default)]
    pub global_domains: Vec<String>,
    /// Apps by name.
    #[serde(default)]
    pub apps: BTreeMap<String, LiveDokkuApp>,
    /// Postgres/Redis services by (kind, name).
    #[serde(default)]
    pub services: BTreeMap<String, LiveDokkuService>,
    /// Other environments that use this host (their apps' and services' markers, their
    /// records and leases). While there are any, an object without an environment marker
    /// (made by a berth before markers) is never destroyed: it may be theirs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub shared_with: std::collections::BTreeSet<String>,
}

/// Key of a Dokku service in [`LiveDokku::services`]: `postgres:acme-db`.
#[must_use]
pub fn service_key(kind: ServiceKind, name: &str) -> String {
    format!("{}:{name}", service_kind_word(kind))
}

/// `postgres`, `redis` or `container`.
#[must_use]
pub fn service_kind_word(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Postgres => "postgres",
        ServiceKind::Redis => "redis",
        ServiceKind::Container => "container",
    }
}

/// The env key a Dokku service link sets by default (`DATABASE_URL`, `REDIS_URL`;
/// reference/dokku.md §12).
#[must_use]
pub fn link_env_key(kind: ServiceKind) -> Option<&'static str> {
    match kind {
        ServiceKind::Postgres => Some("DATABASE_URL"),
        ServiceKind::Redis => Some("REDIS_URL"),
        ServiceKind::Container => None,
    }
}

/// A Dokku app as observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDokkuApp {
    /// Tenant named by the app's `BERTH_TENANT` config key; `None` = not berth's, or
    /// another environment's.
    #[serde(default)]
    pub owner: Option<String>,
    /// The environment the app is marked with (its docker-options label
    /// `io.berth.environment`); `None` = unmarked (not berth's, or made by a berth before
    /// markers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// App config (env), Dokku-managed keys included.
    #[serde(default)]
    pub config: BTreeMap<String, LiveValue>,
    /// App vhosts.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Formation.
    #[serde(default)]
    pub processes: BTreeMap<String, u32>,
    /// Deployed image (`deploy-source-metadata`), `None` before the first deploy.
    #[serde(default)]
    pub image: Option<String>,
    /// Default-process memory limit as Dokku stores it (`512m`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Default-process CPU limit as Dokku stores it (`0.5`).
    #[serde(default)]
    pub cpus: Option<String>,
    /// Storage mounts, `host-path:container-path`.
    #[serde(default)]
    pub storage: Vec<String>,
    /// Let's Encrypt active.
    #[serde(default)]
    pub tls: bool,
    /// Hash of the spec berth last applied completely (its docker-options label
    /// `io.berth.spec`; on older apps the `BERTH_SPEC` config key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// Whether its containers run (`ps:report` `running`: `true`; `false` and `mixed` are
    /// not running), `None` when not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// Configured proxy port map (`ports:report` `map`: `http:80:5000 …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The app's own restart policy (`ps:report` `restart-policy`), `None` when unset
    /// (Dokku's default `on-failure:10` applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// Names the installed certificate covers (`certs:report` hostnames), `None` when no
    /// certificate is installed or it was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_domains: Option<Vec<String>>,
    /// Confirmed by a fast observation: its spec label holds the hash of the spec berth
    /// wants, so its config and formation were not read (`config` and `processes` are
    /// empty and mean nothing). Only a daemon's fast pass makes these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shallow: bool,
}

/// A Dokku Postgres/Redis service as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDokkuService {
    /// Kind.
    pub kind: ServiceKind,
    /// Service name.
    pub name: String,
    /// Tenant it belongs to when berth manages it for this environment.
    #[serde(default)]
    pub owner: Option<String>,
    /// The environment its ownership record names; `None` = unmarked (a record written by
    /// a berth before markers, or no record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Apps linked to it.
    #[serde(default)]
    pub links: Vec<String>,
    /// Linked apps whose env no longer holds the service's DSN (a hand-edited
    /// `DATABASE_URL`): listed as linked, but not connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_links: Vec<String>,
    /// Image reference, when known.
    #[serde(default)]
    pub image: Option<String>,
}

/// Docker state of one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDocker {
    /// Networks by name.
    #[serde(default)]
    pub networks: BTreeMap<String, LiveNetwork>,
    /// Volumes by name.
    #[serde(default)]
    pub volumes: BTreeMap<String, LiveVolume>,
    /// Containers by name.
    #[serde(default)]
    pub containers: BTreeMap<String, LiveContainer>,
    /// Image reference → image id, for the references desired containers use.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Host ports published by anything on the host (managed or not; berth's own stopped
    /// containers included, from their `io.berth.ports` label).
    #[serde(default)]
    pub ports_in_use: BTreeSet<u16>,
    /// Host ports found held by something that is not a container (a start failed with
    /// "address already in use" during this apply). Not observed: the session adds them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ports_held: BTreeSet<u16>,
    /// berth's routes in the host's Caddy, by name (`<tenant>.<app>`); empty without `caddy`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, LiveRoute>,
}

/// A route berth made in Caddy, as Caddy holds it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRoute {
    /// Tenant (from the route's `@id`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Host names matched.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Where requests go: container names where an address is a container's on this host,
    /// else the address as Caddy has it (`10.0.0.9:80`).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// The port dialled (`None` when the upstreams disagree or are not `address:port`).
    #[serde(default)]
    pub port: Option<u16>,
}

/// A Docker network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveNetwork {
    /// Tenant label when berth manages it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Internal (no outside access).
    #[serde(default)]
    pub internal: bool,
    /// IPv4 subnets of its address pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
}

/// A Docker volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveVolume {
    /// Tenant label when berth manages it.
    #[serde(default)]
    pub owner: Option<String>,
}

/// Container states that matter to the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerState {
    /// Running.
    Running,
    /// Created, never started.
    Created,
    /// Exited or stopped.
    #[default]
    Exited,
    /// Paused, dead, restarting, removing…
    Other,
}

/// A Docker container, from the list call (no inspect).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveContainer {
    /// Tenant label when berth manages it.
    #[serde(default)]
    pub owner: Option<String>,
    /// `io.berth.spec-hash` label.
    #[serde(default)]
    pub spec_hash: Option<String>,
    /// Image id the container runs.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Run state.
    #[serde(default)]
    pub state: ContainerState,
    /// Health status when the container has a health check.
    #[serde(default)]
    pub health: Option<String>,
    /// Networks it is attached to.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Named volumes it mounts.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// Its IPv4 address on its first network (what a Caddy route dials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The image reference the container was created from (the list call's `Image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The spec berth created it from (its `io.berth.spec` label), for field-level diffs.
    /// Not part of the serialized form (fingerprints): the spec hash already stands for it.
    #[serde(skip)]
    pub applied: Option<Box<crate::model::desired::ContainerSpec>>,
    /// What an inspect showed, in a deep scan only (`--deep`): catches edits the labels
    /// cannot see (`docker update`, a changed env).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspected: Option<InspectedContainer>,
}

/// Container configuration as the engine reports it (deep scans).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectedContainer {
    /// Image reference the container was created from.
    pub image: Option<String>,
    /// Memory limit in bytes (0 = none).
    pub memory: Option<i64>,
    /// CPU limit in nano-CPUs (0 = none).
    pub nano_cpus: Option<i64>,
    /// Restart policy name.
    pub restart: Option<String>,
    /// Env keys and values; values are compared, never shown.
    pub env: BTreeMap<String, LiveValue>,
}

/// A published port of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host port.
    pub host: u16,
    /// Container port.
    pub container: u16,
}

/// Kinds of live objects, for the one view of them ([`LiveHost::objects`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A Dokku app.
    App,
    /// A Dokku Postgres/Redis service.
    Service,
    /// A Docker container.
    Container,
    /// A Docker network.
    Network,
    /// A Docker volume.
    Volume,
    /// A Caddy route.
    Route,
}

impl ObjectKind {
    /// The word used in object keys (`prod/docker-1/container/acme-web-1`).
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::App => "app",
            ObjectKind::Service => "service",
            ObjectKind::Container => "container",
            ObjectKind::Network => "network",
            ObjectKind::Volume => "volume",
            ObjectKind::Route => "route",
        }
    }
}

/// A live object of any kind, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum ObjectRef<'a> {
    /// A Dokku app.
    App(&'a LiveDokkuApp),
    /// A Dokku service.
    Service(&'a LiveDokkuService),
    /// A Docker container.
    Container(&'a LiveContainer),
    /// A Docker network.
    Network(&'a LiveNetwork),
    /// A Docker volume.
    Volume(&'a LiveVolume),
    /// A Caddy route.
    Route(&'a LiveRoute),
}

impl Serialize for ObjectRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ObjectRef::App(o) => o.serialize(s),
            ObjectRef::Service(o) => o.serialize(s),
            ObjectRef::Container(o) => o.serialize(s),
            ObjectRef::Network(o) => o.serialize(s),
            ObjectRef::Volume(o) => o.serialize(s),
            ObjectRef::Route(o) => o.serialize(s),
        }
    }
}

/// One live object as every cross-cutting rule sees it: kind, name, owner.
#[derive(Debug, Clone, Copy)]
pub struct LiveObject<'a> {
    /// Kind.
    pub kind: ObjectKind,
    /// Name on the host (a service's key is `postgres:acme-db`).
    pub name: &'a str,
    /// Tenant it belongs to when berth manages it.
    pub owner: Option<&'a str>,
    /// The object.
    pub value: ObjectRef<'a>,
}

impl LiveHost {
    /// Every object of the host, Dokku's and Docker's, in a stable order.
    pub fn objects(&self) -> impl Iterator<Item = LiveObject<'_>> {
        let d = &self.dokku;
        let k = &self.docker;
        let apps = d.apps.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::App,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::App(o),
        });
        let services = d.services.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::Service,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::Service(o),
        });
        let containers = k.containers.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::Container,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::Container(o),
        });
        let networks = k.networks.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::Network,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::Network(o),
        });
        let volumes = k.volumes.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::Volume,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::Volume(o),
        });
        let routes = k.routes.iter().map(|(n, o)| LiveObject {
            kind: ObjectKind::Route,
            name: n,
            owner: o.owner.as_deref(),
            value: ObjectRef::Route(o),
        });
        apps.chain(services)
            .chain(containers)
            .chain(networks)
            .chain(volumes)
            .chain(routes)
    }

    /// The owner field of every object, to rewrite (scoping forgets owners out of scope).
    pub fn owners_mut(&mut self) -> impl Iterator<Item = &mut Option<String>> {
        let d = &mut self.dokku;
        let k = &mut self.docker;
        d.apps
            .values_mut()
            .map(|o| &mut o.owner)
            .chain(d.services.values_mut().map(|o| &mut o.owner))
            .chain(k.containers.values_mut().map(|o| &mut o.owner))
            .chain(k.networks.values_mut().map(|o| &mut o.owner))
            .chain(k.volumes.values_mut().map(|o| &mut o.owner))
            .chain(k.routes.values_mut().map(|o| &mut o.owner))
    }

    /// Whether any object of the host belongs to `tenant`.
    #[must_use]
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.objects().any(|o| o.owner == Some(tenant))
    }

    /// Whether the host holds any object berth manages.
    #[must_use]
    pub fn holds_managed(&self) -> bool {
        self.objects().any(|o| o.owner.is_some())
    }
}

/// What `berth import` reads from a Docker Engine: every container berth does not manage
/// here, inspected, with the images they run, and the volumes and networks. Never part of
/// an observation (a plan reads list calls only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerInventory {
    /// Containers berth does not manage for this environment, by name.
    pub containers: BTreeMap<String, ContainerDetail>,
    /// Containers berth manages here (names only): never imported.
    pub managed: BTreeSet<String>,
    /// Every volume (berth's records left out): name → labels.
    pub volumes: BTreeMap<String, BTreeMap<String, String>>,
    /// Every network: name → whether berth manages it for this environment.
    pub networks: BTreeMap<String, bool>,
}

/// One container as an inspect shows it (with what its image brings, so that the two can be
/// told apart). Env values may be secrets: `Debug` never shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDetail {
    /// Container id.
    pub id: String,
    /// The image reference it was created from (`Config.Image`).
    pub image: String,
    /// Image id it runs.
    pub image_id: String,
    /// Entrypoint in effect.
    pub entrypoint: Option<Vec<String>>,
    /// Command in effect.
    pub command: Option<Vec<String>>,
    /// Env in effect (the image's included).
    pub env: BTreeMap<String, LiveValue>,
    /// Labels (the image's included).
    pub labels: BTreeMap<String, String>,
    /// Whether it runs.
    pub running: bool,
    /// Restart policy name (`""` = none) and its retry count.
    pub restart: (String, i64),
    /// Memory limit, bytes (0 = none).
    pub memory: i64,
    /// CPU limit, nano-CPUs (0 = none).
    pub nano_cpus: i64,
    /// Published ports: `(container port, protocol, host ip, host port)`.
    pub ports: Vec<(u16, String, String, u16)>,
    /// Mounts: `(kind, volume name or host path, destination)`; kind `volume`, `bind`, …
    pub mounts: Vec<(String, String, String)>,
    /// Networks it is attached to, with its aliases there.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Docker health check in effect: test, interval, timeout (seconds), retries.
    pub health: Option<(Vec<String>, u64, u64, i64)>,
    /// What the image itself sets: entrypoint, command, env, labels, health check.
    pub from_image: ImageDefaults,
}

/// Config an image brings to every container made from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Command.
    pub command: Option<Vec<String>>,
    /// Env.
    pub env: BTreeMap<String, LiveValue>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Health check.
    pub health: Option<(Vec<String>, u64, u64, i64)>,
}
