//! The planner: `plan(&fleet, &live, &options) -> Plan`, pure and deterministic.
//!
//! The plan is complete: every step carries its full parameters and the steps it waits for,
//! so the executor makes no decisions (omicron's "primacy of planning"). Safety lives here as
//! values: refusals (circuit breaker, empty desired set, name conflicts, no capacity, no free
//! port) and warnings (data kept for a removed tenant) travel inside the plan, never as panics.
//!
//! Each step is marked as an intended change (the files say so) or drift (the host moved):
//! drift when the live object records that berth applied exactly the desired spec before
//! (Docker label `io.berth.spec-hash`, Dokku config key `BERTH_SPEC`), or when the optional
//! baseline (the desired state of the last applied commit) already held the same object.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

mod docker;
mod dokku;

pub use dokku::dokku_managed_key;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::desired::{
    self, ConfigValue, ContainerSpec, Desired, HostKind, Placement, PlacementReason, short_hash,
};
use crate::model::live::{HostRef, Live, LiveHost};
use crate::model::{Fleet, ServiceKind, TenantState};

/// Version of the plan format (plan files and `plan --format json`).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Knobs of one planning run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// Override the circuit breaker (`policy.max-destroys`).
    pub allow_destroys: bool,
    /// Allow a plan whose desired set is empty while the hosts hold berth's objects.
    pub allow_empty: bool,
    /// Desired state of the last applied commit, to tell drift from intended change.
    pub baseline: Option<&'a Desired>,
}

/// A complete plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// Format version ([`PLAN_FORMAT_VERSION`]).
    pub version: u32,
    /// Git commit of the desired state, when planned from a repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Steps, in an order that respects their dependencies.
    pub steps: Vec<Step>,
    /// Reasons this plan must not be applied (unless overridden where allowed).
    pub refusals: Vec<Refusal>,
    /// Things worth knowing that do not stop the plan.
    pub warnings: Vec<Note>,
    /// Where each tenant is.
    pub placements: Vec<PlacementView>,
    /// Fingerprint of every live object the plan read, by object key.
    pub fingerprints: BTreeMap<String, String>,
}

/// A tenant's placement as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct PlacementView {
    /// Tenant id.
    pub tenant: String,
    /// `environment/host`, or `None` when it could not be placed.
    pub host: Option<String>,
    /// `pinned`, `existing`, `chosen`, `no-capacity`.
    pub reason: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Step {
    /// Index in [`Plan::steps`].
    pub id: u32,
    /// Environment.
    pub environment: String,
    /// Host.
    pub host: String,
    /// Owning tenant (`shared` for environment services).
    pub tenant: String,
    /// Intended change or drift.
    pub cause: Cause,
    /// Ids of the steps that must succeed first.
    pub after: Vec<u32>,
    /// What to do.
    pub change: Change,
}

/// Why a step exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The files changed.
    Intended,
    /// The host moved away from what berth applied.
    Drift,
}

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
    /// `<kind>:link --no-restart`.
    LinkService {
        /// Kind.
        service_kind: ServiceKind,
        /// Service.
        service: String,
        /// App.
        app: String,
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
    /// Create a labelled Docker volume.
    CreateVolume {
        /// Name.
        volume: String,
        /// Labels.
        labels: BTreeMap<String, String>,
    },
    /// Create (and start, unless the tenant is suspended) a container.
    CreateContainer {
        /// The complete container.
        spec: ContainerSpec,
        /// Start it after creating.
        start: bool,
    },
    /// Create the new container under a temporary name, stop and remove the old one, rename,
    /// start. Generated secrets are read back from the old container first.
    RecreateContainer {
        /// The complete new container.
        spec: ContainerSpec,
        /// Start it.
        start: bool,
        /// Why (hash changed, image changed, network, volumes).
        reasons: Vec<String>,
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
            | Change::CreateContainer { .. } => Effect::Create,
            Change::DestroyApp { .. }
            | Change::DestroyService { .. }
            | Change::RemoveContainer { .. }
            | Change::RemoveNetwork { .. }
            | Change::RemoveVolume { .. } => Effect::Destroy,
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
            | Change::Scale { app, .. }
            | Change::SetLimits { app, .. }
            | Change::MountStorage { app, .. }
            | Change::UnmountStorage { app, .. }
            | Change::Restart { app }
            | Change::LinkService { app, .. }
            | Change::UnlinkService { app, .. }
            | Change::EnableTls { app }
            | Change::DisableTls { app }
            | Change::DestroyApp { app } => Some(app),
            _ => None,
        }
    }

    /// The object the step acts on, `app acme-web`.
    #[must_use]
    pub fn subject(&self) -> String {
        if let (Some(app), false) = (
            self.app(),
            matches!(
                self,
                Change::LinkService { .. } | Change::UnlinkService { .. }
            ),
        ) {
            return format!("app {app}");
        }
        match self {
            Change::CreateService {
                service_kind,
                service,
                ..
            }
            | Change::DestroyService {
                service_kind,
                service,
            } => format!(
                "{} {service}",
                crate::model::live::service_kind_word(*service_kind)
            ),
            Change::LinkService { service, app, .. }
            | Change::UnlinkService { service, app, .. } => {
                format!("link {service} → {app}")
            }
            Change::CreateNetwork { network, .. } | Change::RemoveNetwork { network } => {
                format!("network {network}")
            }
            Change::CreateVolume { volume, .. } | Change::RemoveVolume { volume } => {
                format!("volume {volume}")
            }
            Change::CreateContainer { spec, .. } | Change::RecreateContainer { spec, .. } => {
                format!("container {}", spec.name)
            }
            Change::StartContainer { container }
            | Change::StopContainer { container }
            | Change::RemoveContainer { container } => format!("container {container}"),
            _ => format!("app {}", self.app().unwrap_or_default()),
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
            Change::Scale { .. } => "scale",
            Change::SetLimits { .. } => "set-limits",
            Change::MountStorage { .. } => "mount-storage",
            Change::UnmountStorage { .. } => "unmount-storage",
            Change::Restart { .. } => "restart",
            Change::CreateService { .. } => "create-service",
            Change::LinkService { .. } => "link-service",
            Change::UnlinkService { .. } => "unlink-service",
            Change::EnableTls { .. } => "enable-tls",
            Change::DisableTls { .. } => "disable-tls",
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
        }
    }
}

/// A refusal: the plan must not be applied as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Refusal {
    /// Which rule.
    pub rule: RefusalRule,
    /// Lowercase message naming the subject.
    pub message: String,
    /// The flag that overrides it, when one may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_flag: Option<String>,
}

/// Refusal rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalRule {
    /// More destroys than `policy.max-destroys`.
    MaxDestroys,
    /// No tenant is desired but the hosts hold berth's objects.
    EmptyDesired,
    /// A desired name is taken by an object berth does not manage (or another tenant's).
    NameConflict,
    /// A fixed host port is held by something else.
    PortConflict,
    /// No free port left in the host's range.
    PortsExhausted,
    /// No host of the environment has capacity for a tenant.
    NoCapacity,
    /// A data-bearing object would be destroyed outside purge (a planner bug; never expected).
    ProtectedData,
}

/// A note (warning) carried by the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Note {
    /// `environment/host`, when it concerns one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Tenant, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Lowercase message.
    pub message: String,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Steps that create.
    pub create: usize,
    /// Steps that change.
    pub update: usize,
    /// Steps that destroy.
    pub destroy: usize,
    /// Steps caused by drift.
    pub drift: usize,
}

impl Plan {
    /// Whether the plan changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Counts.
    #[must_use]
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for step in &self.steps {
            match step.change.effect() {
                Effect::Create => s.create += 1,
                Effect::Update => s.update += 1,
                Effect::Destroy => s.destroy += 1,
            }
            if step.cause == Cause::Drift {
                s.drift += 1;
            }
        }
        s
    }
}

/// Plan a fleet against live state: place, compile, diff.
#[must_use]
pub fn plan(fleet: &Fleet, live: &Live, options: &PlanOptions<'_>) -> Plan {
    let placements = desired::place(fleet, live);
    let desired = desired::compile(fleet, &placements);
    plan_desired(&desired, live, options)
}

/// Plan an already compiled desired state against live state.
#[must_use]
pub fn plan_desired(desired: &Desired, live: &Live, options: &PlanOptions<'_>) -> Plan {
    let mut builder = Builder::default();
    let empty = LiveHost::default();
    for (host_ref, desired_host) in &desired.hosts {
        let live_host = live.hosts.get(host_ref).unwrap_or(&empty);
        let baseline = options.baseline.and_then(|b| b.hosts.get(host_ref));
        let mut cx = HostCx {
            host: host_ref,
            desired: desired_host,
            live: live_host,
            baseline,
            tenants: &desired.tenants,
            builder: &mut builder,
        };
        match desired_host.kind {
            HostKind::Dokku => dokku::diff(&mut cx),
            HostKind::Docker => docker::diff(&mut cx),
        }
    }
    for placement in &desired.placements {
        if placement.reason == PlacementReason::NoCapacity {
            builder.refuse(
                RefusalRule::NoCapacity,
                format!(
                    "no host of tenant `{}`'s environment has capacity left",
                    placement.tenant
                ),
                None,
            );
        }
    }
    apply_safety(desired, live, options, &mut builder);
    let fingerprints = fingerprint(desired.hosts.keys(), live);
    Plan {
        version: PLAN_FORMAT_VERSION,
        commit: None,
        steps: builder.steps,
        refusals: builder.refusals,
        warnings: builder.warnings,
        placements: desired.placements.iter().map(placement_view).collect(),
        fingerprints,
    }
}

fn placement_view(p: &Placement) -> PlacementView {
    PlacementView {
        tenant: p.tenant.clone(),
        host: p.host.as_ref().map(ToString::to_string),
        reason: match p.reason {
            PlacementReason::Pinned => "pinned",
            PlacementReason::Existing => "existing",
            PlacementReason::Chosen => "chosen",
            PlacementReason::NoCapacity => "no-capacity",
        }
        .to_string(),
    }
}

/// Circuit breaker, empty desired set and the data guard.
fn apply_safety(desired: &Desired, live: &Live, options: &PlanOptions<'_>, b: &mut Builder) {
    let mut destroys: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &b.steps {
        if step.change.effect() == Effect::Destroy {
            *destroys.entry(step.environment.as_str()).or_default() += 1;
        }
    }
    let mut refusals = Vec::new();
    for (env, count) in destroys {
        let max = desired
            .hosts
            .iter()
            .find(|(h, _)| h.environment == env)
            .map_or(3, |(_, d)| d.policy.max_destroys);
        if count > max as usize && !options.allow_destroys {
            refusals.push((
                RefusalRule::MaxDestroys,
                format!(
                    "plan destroys {count} objects in environment `{env}`, more than `policy.max-destroys` ({max})"
                ),
                Some("--allow-destroys".to_string()),
            ));
        }
    }
    for env in desired
        .hosts
        .keys()
        .map(|h| h.environment.as_str())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let wants_any = desired.tenants.values().any(|(e, _)| e == env);
        let holds_any = live
            .hosts
            .iter()
            .filter(|(h, _)| h.environment == env)
            .any(|(_, lh)| host_holds_managed(lh));
        if !wants_any && holds_any && !options.allow_empty {
            refusals.push((
                RefusalRule::EmptyDesired,
                format!(
                    "environment `{env}` desires no tenants but its hosts hold berth-managed objects"
                ),
                Some("--allow-empty".to_string()),
            ));
        }
    }
    for step in &b.steps {
        if step.change.destroys_data() {
            let purge = desired
                .tenants
                .get(&step.tenant)
                .is_some_and(|(_, state)| *state == TenantState::Purge);
            if !purge {
                refusals.push((
                    RefusalRule::ProtectedData,
                    format!(
                        "{} of tenant `{}` holds data and the tenant is not in `state: purge`",
                        step.change.subject(),
                        step.tenant
                    ),
                    None,
                ));
            }
        }
    }
    for (rule, message, flag) in refusals {
        b.refuse(rule, message, flag);
    }
}

fn host_holds_managed(host: &LiveHost) -> bool {
    host.dokku.apps.values().any(|a| a.owner.is_some())
        || host.dokku.services.values().any(|s| s.owner.is_some())
        || host.docker.containers.values().any(|c| c.owner.is_some())
        || host.docker.volumes.values().any(|v| v.owner.is_some())
        || host.docker.networks.values().any(|n| n.owner.is_some())
}

/// Hash every live object of every host in scope; unobserved hosts are marked so.
fn fingerprint<'h>(
    hosts: impl IntoIterator<Item = &'h HostRef>,
    live: &Live,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let hash = |v: &dyn erased::Ser| short_hash(&v.bytes());
    for host_ref in hosts {
        let Some(host) = live.hosts.get(host_ref) else {
            out.insert(format!("{host_ref}"), "unobserved".to_string());
            continue;
        };
        for (name, app) in &host.dokku.apps {
            out.insert(format!("{host_ref}/app/{name}"), hash(app));
        }
        for (name, svc) in &host.dokku.services {
            out.insert(format!("{host_ref}/service/{name}"), hash(svc));
        }
        for (name, c) in &host.docker.containers {
            out.insert(format!("{host_ref}/container/{name}"), hash(c));
        }
        for (name, n) in &host.docker.networks {
            out.insert(format!("{host_ref}/network/{name}"), hash(n));
        }
        for (name, v) in &host.docker.volumes {
            out.insert(format!("{host_ref}/volume/{name}"), hash(v));
        }
        if !host.docker.ports_in_use.is_empty() {
            out.insert(format!("{host_ref}/ports"), hash(&host.docker.ports_in_use));
        }
        out.insert(format!("{host_ref}/host"), hash(&host.dokku.global_domains));
    }
    out
}

/// The fingerprints of `live` now, for the keys a plan recorded (the stale-plan check).
/// A key whose object is gone reads `absent`.
#[must_use]
pub fn fingerprints_of(
    plan_keys: &BTreeMap<String, String>,
    live: &Live,
) -> BTreeMap<String, String> {
    let now = fingerprint(live.hosts.keys(), live);
    plan_keys
        .keys()
        .map(|k| {
            (
                k.clone(),
                now.get(k).cloned().unwrap_or_else(|| "absent".into()),
            )
        })
        .collect()
}

mod erased {
    //! A tiny object-safe serializer so one hashing closure serves every live type.
    pub(super) trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

/// Accumulates steps, refusals and warnings.
#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
    refusals: Vec<Refusal>,
    warnings: Vec<Note>,
}

impl Builder {
    fn refuse(&mut self, rule: RefusalRule, message: String, override_flag: Option<String>) {
        let refusal = Refusal {
            rule,
            message,
            override_flag,
        };
        if !self.refusals.contains(&refusal) {
            self.refusals.push(refusal);
        }
    }
}

/// Context of diffing one host.
struct HostCx<'a> {
    host: &'a HostRef,
    desired: &'a desired::DesiredHost,
    live: &'a LiveHost,
    baseline: Option<&'a desired::DesiredHost>,
    tenants: &'a BTreeMap<String, (String, TenantState)>,
    builder: &'a mut Builder,
}

impl HostCx<'_> {
    fn step(&mut self, tenant: &str, cause: Cause, change: Change, after: Vec<u32>) -> u32 {
        let id = u32::try_from(self.builder.steps.len()).unwrap_or(u32::MAX);
        let mut after = after;
        after.sort_unstable();
        after.dedup();
        self.builder.steps.push(Step {
            id,
            environment: self.host.environment.clone(),
            host: self.host.host.clone(),
            tenant: tenant.to_string(),
            cause,
            after,
            change,
        });
        id
    }

    fn warn(&mut self, tenant: Option<&str>, message: String) {
        self.builder.warnings.push(Note {
            host: Some(self.host.to_string()),
            tenant: tenant.map(str::to_string),
            message,
        });
    }

    fn refuse(&mut self, rule: RefusalRule, message: String) {
        self.builder.refuse(rule, message, None);
    }

    fn tenant_state(&self, tenant: &str) -> Option<TenantState> {
        self.tenants.get(tenant).map(|(_, s)| *s)
    }
}

/// A short stable id of any serializable value (plan ids for the journal, lease tokens).
#[must_use]
pub fn short_hash_of<T: Serialize>(value: &T) -> String {
    short_hash(&serde_json::to_vec(value).unwrap_or_default())
}

/// Restrict planning to some tenants: the fleet keeps only them (and an environment's shared
/// services when its file changed), and live objects of every other tenant become foreign —
/// still seen, so their names and ports stay taken, but never planned for.
#[must_use]
pub fn scope(
    fleet: &Fleet,
    live: &Live,
    tenants: &std::collections::BTreeSet<String>,
    environments: &std::collections::BTreeSet<String>,
) -> (Fleet, Live) {
    let mut in_scope = tenants.clone();
    for (id, tenant) in &fleet.tenants {
        if environments.contains(&tenant.environment) {
            in_scope.insert(id.clone());
        }
    }
    let mut scoped = fleet.clone();
    scoped.tenants.retain(|id, _| in_scope.contains(id));
    for (name, env) in &mut scoped.environments {
        if !environments.contains(name) {
            env.shared = None;
        }
    }
    let mut live = live.clone();
    for (host, lh) in &mut live.hosts {
        let keep = |owner: &Option<String>| match owner.as_deref() {
            Some(crate::validate::SHARED_STACK_ID) => environments.contains(&host.environment),
            Some(t) => in_scope.contains(t),
            None => false,
        };
        let forget = |owner: &mut Option<String>| {
            if !keep(owner) {
                *owner = None;
            }
        };
        lh.dokku
            .apps
            .values_mut()
            .for_each(|a| forget(&mut a.owner));
        lh.dokku
            .services
            .values_mut()
            .for_each(|s| forget(&mut s.owner));
        lh.docker
            .containers
            .values_mut()
            .for_each(|c| forget(&mut c.owner));
        lh.docker
            .networks
            .values_mut()
            .for_each(|n| forget(&mut n.owner));
        lh.docker
            .volumes
            .values_mut()
            .for_each(|v| forget(&mut v.owner));
    }
    (scoped, live)
}
