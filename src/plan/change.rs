//! What a plan does: every change kind berth makes (verb + noun, with full parameters) and
//! the config-key changes inside them.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::desired::{ConfigValue, ContainerSpec};
use crate::model::live::{ObjectKind, service_key};
use crate::model::{PullPolicy, ServiceKind};

/// Old value of a config key, as much as may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum OldValue {
    /// The key was not set.
    Absent,
    /// Set; the value is shown only for keys the files declare as literals.
    Present {
        /// The old literal, for literal keys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
}

/// One config key change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigChange {
    /// Key.
    pub key: String,
    /// New value instruction.
    pub new: ConfigValue,
    /// What was there.
    pub old: OldValue,
}

/// Every change kind berth makes, verb + noun, with full parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Change {
    /// `apps:create`.
    CreateApp {
        /// Dokku app name.
        app: String,
    },
    /// `config:set --no-restart --encoded`, all keys of one app in one batch.
    SetConfig {
        /// App.
        app: String,
        /// Keys to set.
        changes: Vec<ConfigChange>,
    },
    /// `config:unset --no-restart`.
    UnsetConfig {
        /// App.
        app: String,
        /// Keys to remove.
        keys: Vec<String>,
    },
    /// `domains:set` (or `domains:clear` when empty).
    SetDomains {
        /// App.
        app: String,
        /// New vhosts.
        domains: Vec<String>,
        /// Vhosts before.
        before: Vec<String>,
    },
    /// `git:from-image`.
    DeployImage {
        /// App.
        app: String,
        /// Image reference.
        image: String,
        /// Deployed image before, if any.
        before: Option<String>,
    },
    /// `registry:login --password-stdin <app> <server> <username>` (Dokku 0.38,
    /// dokku.com/docs/advanced-usage/registry-management): the app's own credentials for
    /// the registry its image is pulled from, planned before each `git:from-image` of an
    /// image on a registry the environment's `registries` names. The password is the value
    /// of secret `password-secret`, looked up at apply time and sent on the command's
    /// stdin, never in its argv.
    LoginRegistry {
        /// App.
        app: String,
        /// Registry server.
        server: String,
        /// User name.
        username: String,
        /// Secret holding the password (the name only).
        password_secret: String,
    },
    /// `ps:scale`.
    Scale {
        /// App.
        app: String,
        /// New formation.
        processes: BTreeMap<String, u32>,
        /// Formation before.
        before: BTreeMap<String, u32>,
    },
    /// `resource:limit`.
    SetLimits {
        /// App.
        app: String,
        /// Memory (`512m`), `None` = clear.
        memory: Option<String>,
        /// CPUs, `None` = clear.
        cpus: Option<String>,
        /// Memory before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_memory: Option<String>,
        /// CPUs before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_cpus: Option<String>,
    },
    /// `storage:mount`.
    MountStorage {
        /// App.
        app: String,
        /// `host:container`.
        mount: String,
    },
    /// `storage:unmount` (the data directory stays).
    UnmountStorage {
        /// App.
        app: String,
        /// `host:container`.
        mount: String,
    },
    /// `ports:set` (the proxy's port map, from `port:`).
    SetPorts {
        /// App.
        app: String,
        /// New map (`http:80:5000`, `https:443:5000`).
        ports: Vec<String>,
        /// Map before.
        before: Vec<String>,
    },
    /// `ps:set restart-policy` (no value: back to Dokku's default).
    SetRestartPolicy {
        /// App.
        app: String,
        /// New policy, `None` = Dokku's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        /// Policy before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
    },
    /// `ps:start`: the app was stopped (`ps:stop`) while it should run.
    StartApp {
        /// App.
        app: String,
    },
    /// `ps:restart`, once after batched no-restart changes.
    Restart {
        /// App.
        app: String,
    },
    /// `<kind>:create`.
    CreateService {
        /// `postgres` or `redis`.
        service_kind: ServiceKind,
        /// Service name.
        service: String,
        /// Image reference.
        image: String,
    },
    /// `<kind>:upgrade -i REPO -I TAG`: the service container moves to another image, its
    /// data directory kept (only with `--allow-service-upgrades`).
    UpgradeService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
        /// New image.
        image: String,
        /// Image before.
        before: String,
    },
    /// `<kind>:link --no-restart`.
    LinkService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
        /// App.
        app: String,
    },
    /// Repair a link whose env var was edited by hand: `<kind>:unlink`, unset the edited
    /// key so the default alias is free again, `<kind>:link --no-restart`.
    RelinkService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
        /// App.
        app: String,
        /// The link's env key to clear first (`DATABASE_URL`), when berth knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// `<kind>:unlink --no-restart`.
    UnlinkService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
        /// App.
        app: String,
    },
    /// `letsencrypt:enable`.
    EnableTls {
        /// App.
        app: String,
    },
    /// `letsencrypt:disable`.
    DisableTls {
        /// App.
        app: String,
    },
    /// Record that the app now runs exactly spec `hash` (a docker-options label, readable
    /// for every app in one report): written last, once every other step of the app
    /// succeeded, so a failed apply is never mistaken for drift later.
    RecordSpec {
        /// App.
        app: String,
        /// Spec hash.
        hash: String,
        /// Hash recorded before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
    },
    /// Mark an app made by a berth before environment markers as this environment's
    /// (docker-options label `io.berth.environment`; bookkeeping, no restart).
    LabelApp {
        /// App.
        app: String,
    },
    /// Mark a service whose ownership record predates environment markers as this
    /// environment's (its record in `berth-state` gains the environment).
    MarkService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
    },
    /// `apps:destroy --force`.
    DestroyApp {
        /// App.
        app: String,
    },
    /// `<kind>:destroy --force` (purge only).
    DestroyService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
    },
    /// Create a labelled Docker network.
    CreateNetwork {
        /// Name.
        network: String,
        /// Internal.
        internal: bool,
        /// IPv4 subnet from the host's `subnets` block (the engine's pools when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subnet: Option<String>,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// Create a labelled Docker volume (a secret volume makes or adopts its value).
    CreateVolume {
        /// Name.
        volume: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// For a secret volume: the value to make (or adopt from a container that has it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<NewSecret>,
    },
    /// Create (and start, unless the tenant is suspended) a container.
    CreateContainer {
        /// The complete container.
        spec: ContainerSpec,
        /// Start it after creating.
        start: bool,
        /// When to pull its image.
        #[serde(default)]
        pull: PullPolicy,
    },
    /// Replace a container. `start-first`: the new one starts beside the old one under a
    /// temporary name, and only once it is healthy is the old one switched out and removed;
    /// `stop-first` (it publishes a host port, so two cannot run at once): the old one
    /// stops, the new one starts, and if it never gets healthy the old one is started again.
    RecreateContainer {
        /// The complete new container.
        spec: ContainerSpec,
        /// Start it.
        start: bool,
        /// Why, in short: the fields that changed (`image`, `memory`), or what the host did
        /// (`not attached to network …`, `image changed behind its tag`).
        reasons: Vec<String>,
        /// Each changed field, old → new (sensitive values shown as `(sensitive)`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
        /// How the old container is replaced.
        #[serde(default)]
        rollout: Rollout,
        /// When to pull its image.
        #[serde(default)]
        pull: PullPolicy,
    },
    /// Start a stopped container.
    StartContainer {
        /// Name.
        container: String,
    },
    /// Stop a container (suspend).
    StopContainer {
        /// Name.
        container: String,
    },
    /// Stop and remove a container.
    RemoveContainer {
        /// Name.
        container: String,
    },
    /// Remove a network.
    RemoveNetwork {
        /// Name.
        network: String,
    },
    /// Remove a volume (purge only).
    RemoveVolume {
        /// Name.
        volume: String,
    },
    /// Add a route to the host's Caddy (through its admin API): requests for `hosts` go to
    /// the containers' addresses on their network.
    CreateRoute {
        /// Name (`<tenant>.<app>`).
        route: String,
        /// Host names matched.
        hosts: Vec<String>,
        /// Containers balanced over.
        upstreams: Vec<String>,
        /// Their port.
        port: u16,
    },
    /// Replace a route in the host's Caddy (its hosts or upstreams changed, or someone
    /// edited it there).
    UpdateRoute {
        /// Name (`<tenant>.<app>`).
        route: String,
        /// Host names matched.
        hosts: Vec<String>,
        /// Containers balanced over.
        upstreams: Vec<String>,
        /// Their port.
        port: u16,
        /// Each changed field, old → new.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
    },
    /// Remove a route from the host's Caddy (its hosts then get Caddy's fallback).
    RemoveRoute {
        /// Name (`<tenant>.<app>`).
        route: String,
    },
    /// Record on the host that the tenant's cancellation was applied now: data retention
    /// (`policy.retain-data`) counts from this moment.
    RecordCancellation {
        /// Tenant.
        tenant: String,
    },
    /// Forget a tenant's cancellation record (it is active again, or its data is gone).
    ClearCancellation {
        /// Tenant.
        tenant: String,
    },
    /// Docker: remove the record `berth import --adopt` wrote for a tenant
    /// (`berth-adopted.<env>.<tenant>`) once nothing it names is left (a purge).
    ClearAdoption {
        /// Tenant.
        tenant: String,
    },
}

/// One field of an object, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct FieldChange {
    /// Field (`image`, `memory`, `env LOG_LEVEL`, `routing`).
    pub field: String,
    /// Value before (`None`: not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Value after (`None`: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A generated value a new secret volume is to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct NewSecret {
    /// Env key.
    pub key: String,
    /// Characters to generate.
    pub length: u32,
    /// Containers that may already hold a value for the key (made before secret volumes
    /// existed): the first one found is kept instead of generating a new value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopt_from: Vec<String>,
}

/// How a container is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Rollout {
    /// New beside old; switch when healthy; an unhealthy new one is removed.
    #[default]
    StartFirst,
    /// Old stops first (these host ports cannot be held twice); rolled back when the new one
    /// never gets healthy.
    StopFirst {
        /// The host ports in the way.
        ports: Vec<u16>,
    },
}

/// What a step does to the world, for markers and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `+`
    Create,
    /// `~`
    Update,
    /// `-`
    Destroy,
}

impl Change {
    /// Create, update or destroy.
    #[must_use]
    pub fn effect(&self) -> Effect {
        match self {
            Change::CreateApp { .. }
            | Change::CreateService { .. }
            | Change::CreateNetwork { .. }
            | Change::CreateVolume { .. }
            | Change::CreateContainer { .. }
            | Change::CreateRoute { .. } => Effect::Create,
            Change::DestroyApp { .. }
            | Change::DestroyService { .. }
            | Change::RemoveContainer { .. }
            | Change::RemoveNetwork { .. }
            | Change::RemoveVolume { .. }
            | Change::RemoveRoute { .. } => Effect::Destroy,
            _ => Effect::Update,
        }
    }

    /// Whether the step destroys data (a database, a Redis, a volume).
    #[must_use]
    pub fn destroys_data(&self) -> bool {
        matches!(
            self,
            Change::DestroyService { .. } | Change::RemoveVolume { .. }
        )
    }

    /// The Dokku app the change acts on, when it acts on one (links included).
    #[must_use]
    pub fn app(&self) -> Option<&str> {
        match self {
            Change::CreateApp { app }
            | Change::SetConfig { app, .. }
            | Change::UnsetConfig { app, .. }
            | Change::SetDomains { app, .. }
            | Change::DeployImage { app, .. }
            | Change::LoginRegistry { app, .. }
            | Change::Scale { app, .. }
            | Change::SetLimits { app, .. }
            | Change::MountStorage { app, .. }
            | Change::UnmountStorage { app, .. }
            | Change::SetPorts { app, .. }
            | Change::SetRestartPolicy { app, .. }
            | Change::Restart { app }
            | Change::StartApp { app }
            | Change::LinkService { app, .. }
            | Change::RelinkService { app, .. }
            | Change::UnlinkService { app, .. }
            | Change::EnableTls { app }
            | Change::DisableTls { app }
            | Change::RecordSpec { app, .. }
            | Change::LabelApp { app }
            | Change::DestroyApp { app } => Some(app),
            _ => None,
        }
    }

    /// The live object the change acts on, as `(kind, name)` (a service's name is its key,
    /// `postgres:acme-db`); `None` for links, which act on two.
    #[must_use]
    pub fn object(&self) -> Option<(ObjectKind, String)> {
        Some(match self {
            Change::CreateService {
                service_kind,
                service,
                ..
            }
            | Change::UpgradeService {
                service_kind,
                service,
                ..
            }
            | Change::DestroyService {
                service_kind,
                service,
            }
            | Change::MarkService {
                service_kind,
                service,
            } => (ObjectKind::Service, service_key(*service_kind, service)),
            Change::LinkService { .. }
            | Change::RelinkService { .. }
            | Change::UnlinkService { .. } => return None,
            Change::CreateNetwork { network, .. } | Change::RemoveNetwork { network } => {
                (ObjectKind::Network, network.clone())
            }
            Change::CreateVolume { volume, .. } | Change::RemoveVolume { volume } => {
                (ObjectKind::Volume, volume.clone())
            }
            Change::CreateContainer { spec, .. } | Change::RecreateContainer { spec, .. } => {
                (ObjectKind::Container, spec.name.clone())
            }
            Change::StartContainer { container }
            | Change::StopContainer { container }
            | Change::RemoveContainer { container } => (ObjectKind::Container, container.clone()),
            Change::CreateRoute { route, .. }
            | Change::UpdateRoute { route, .. }
            | Change::RemoveRoute { route } => (ObjectKind::Route, route.clone()),
            Change::RecordCancellation { .. }
            | Change::ClearCancellation { .. }
            | Change::ClearAdoption { .. } => return None,
            other => (ObjectKind::App, other.app()?.to_string()),
        })
    }

    /// The object the step acts on, `app acme-web`, `postgres acme-db`.
    #[must_use]
    pub fn subject(&self) -> String {
        match (self, self.object()) {
            (
                Change::LinkService { service, app, .. }
                | Change::RelinkService { service, app, .. }
                | Change::UnlinkService { service, app, .. },
                _,
            ) => format!("link {service} → {app}"),
            (Change::RecordCancellation { tenant } | Change::ClearCancellation { tenant }, _) => {
                format!("cancellation record of {tenant}")
            }
            (Change::ClearAdoption { tenant }, _) => format!("adoption record of {tenant}"),
            (_, Some((ObjectKind::Service, key))) => key.replacen(':', " ", 1),
            (_, Some((kind, name))) => format!("{} {name}", kind.word()),
            (_, None) => String::new(),
        }
    }

    /// The kebab-case verb-noun name of the change kind.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            Change::CreateApp { .. } => "create-app",
            Change::SetConfig { .. } => "set-config",
            Change::UnsetConfig { .. } => "unset-config",
            Change::SetDomains { .. } => "set-domains",
            Change::DeployImage { .. } => "deploy-image",
            Change::LoginRegistry { .. } => "login-registry",
            Change::Scale { .. } => "scale",
            Change::SetLimits { .. } => "set-limits",
            Change::MountStorage { .. } => "mount-storage",
            Change::UnmountStorage { .. } => "unmount-storage",
            Change::SetPorts { .. } => "set-ports",
            Change::SetRestartPolicy { .. } => "set-restart-policy",
            Change::Restart { .. } => "restart",
            Change::StartApp { .. } => "start-app",
            Change::CreateService { .. } => "create-service",
            Change::UpgradeService { .. } => "upgrade-service",
            Change::LinkService { .. } => "link-service",
            Change::RelinkService { .. } => "relink-service",
            Change::UnlinkService { .. } => "unlink-service",
            Change::EnableTls { .. } => "enable-tls",
            Change::DisableTls { .. } => "disable-tls",
            Change::RecordSpec { .. } => "record-spec",
            Change::LabelApp { .. } => "label-app",
            Change::MarkService { .. } => "mark-service",
            Change::DestroyApp { .. } => "destroy-app",
            Change::DestroyService { .. } => "destroy-service",
            Change::CreateNetwork { .. } => "create-network",
            Change::CreateVolume { .. } => "create-volume",
            Change::CreateContainer { .. } => "create-container",
            Change::RecreateContainer { .. } => "recreate-container",
            Change::StartContainer { .. } => "start-container",
            Change::StopContainer { .. } => "stop-container",
            Change::RemoveContainer { .. } => "remove-container",
            Change::RemoveNetwork { .. } => "remove-network",
            Change::RemoveVolume { .. } => "remove-volume",
            Change::CreateRoute { .. } => "create-route",
            Change::UpdateRoute { .. } => "update-route",
            Change::RemoveRoute { .. } => "remove-route",
            Change::RecordCancellation { .. } => "record-cancellation",
            Change::ClearCancellation { .. } => "clear-cancellation",
            Change::ClearAdoption { .. } => "clear-adoption",
        }
    }
}
