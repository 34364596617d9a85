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
//! Seams: [`change`] (what steps do), [`safety`] (refusals), [`fingerprint`] (stale-plan
//! detection), [`scope`] (plans about some tenants), [`check`] (the plan checker run before
//! every execute); `dokku` and `docker` diff one host of each kind.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

mod cause;
mod change;
pub mod check;
mod docker;
mod dokku;
mod fingerprint;
mod retention;
mod safety;
mod scope;

pub use cause::Because;
pub use change::{Change, ConfigChange, Effect, FieldChange, NewSecret, OldValue, Rollout};
pub use dokku::dokku_managed_key;
pub use fingerprint::{ABSENT, UNOBSERVED, fingerprints_of};
pub use scope::{Scope, scope, scope_live};

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::desired::{self, Desired, HostKind, Placement, PlacementReason, short_hash};
use crate::model::live::{HostRef, Live, LiveHost};
use crate::model::{Fleet, TenantState};

/// Version of the plan format (plan files and `plan --format json`).
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// Knobs of one planning run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// Override the circuit breaker (`policy.max-destroys`).
    pub allow_destroys: bool,
    /// Allow a plan whose desired set is empty while the hosts hold berth's objects.
    pub allow_empty: bool,
    /// Allow Dokku services to move to another image through `<kind>:upgrade`.
    pub allow_upgrades: bool,
    /// Desired state of the last applied commit, to tell drift from intended change.
    pub baseline: Option<&'a Desired>,
    /// Plan only these tenants (`plan --since`, `--tenant`); `None` = all.
    pub scope: Option<&'a Scope>,
    /// Now, in unix seconds, to judge data retention; `None` = retention not judged (tests,
    /// views that are never applied).
    pub now: Option<u64>,
    /// Tenants whose data may be purged before the retention has passed (`--purge-now`).
    pub purge_now: &'a [String],
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
    /// The tenants the plan is about, when it was scoped (`--since`, `--tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Tenants whose data the plan may destroy (`state: purge`, retention passed or
    /// overridden); the plan checker refuses any other data-destroying step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purging: Vec<String>,
    /// Made without observing the hosts (`plan --offline`): shown, never applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
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
    /// Why, in detail: the file edited, drift, a policy, or a removed file.
    pub because: Because,
    /// Ids of the steps that must succeed first.
    pub after: Vec<u32>,
    /// What to do.
    pub change: Change,
    /// Things a reviewer should know about this step that change nothing it does (a Dokku
    /// deploy without health checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// The one tenant the refusal is about, when it is about one (a name or port conflict,
    /// no capacity, retention): the daemon leaves that tenant alone and goes on with the
    /// others. A refusal without a tenant (circuit breaker, empty desired set) stops the
    /// whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
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
    /// `state: purge` before `policy.retain-data` has passed since the applied cancellation.
    RetentionNotPassed,
    /// A Dokku service's image would change (`<kind>:upgrade`) without the override.
    ServiceUpgrade,
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

    /// The part of the plan whose steps `keep` accepts, with every step that waits for a
    /// dropped one dropped too; ids are renumbered (they are positions) and `after` lists
    /// follow. Refusals about a tenant none of whose steps are kept go with them. Returns the
    /// new plan and the ids (in `self`) of every step dropped.
    #[must_use]
    pub fn retain(&self, keep: impl Fn(&Step) -> bool) -> (Plan, std::collections::BTreeSet<u32>) {
        let mut dropped = std::collections::BTreeSet::new();
        let mut renumbered: BTreeMap<u32, u32> = BTreeMap::new();
        let mut steps = Vec::new();
        // Steps come in dependency order: a step's `after` ids are settled before it.
        for step in &self.steps {
            if !keep(step) || step.after.iter().any(|a| dropped.contains(a)) {
                dropped.insert(step.id);
                continue;
            }
            let id = u32::try_from(steps.len()).unwrap_or(u32::MAX);
            renumbered.insert(step.id, id);
            let mut kept = step.clone();
            kept.id = id;
            kept.after = step
                .after
                .iter()
                .filter_map(|a| renumbered.get(a).copied())
                .collect();
            steps.push(kept);
        }
        let kept_tenants: std::collections::BTreeSet<&str> =
            steps.iter().map(|s| s.tenant.as_str()).collect();
        let refusals = self
            .refusals
            .iter()
            .filter(|r| r.tenant.as_deref().is_none_or(|t| kept_tenants.contains(t)))
            .cloned()
            .collect();
        let plan = Plan {
            steps,
            refusals,
            ..self.clone()
        };
        (plan, dropped)
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
    let Some(in_scope) = options.scope else {
        let placements = desired::place(fleet, live);
        let desired = desired::compile(fleet, &placements);
        return plan_desired(&desired, live, options);
    };
    let (fleet_in_scope, live) = scope(fleet, live, in_scope);
    // A scoped plan may desire no tenant (only deletions); the empty-set breaker is about
    // the whole fleet, which is judged on the full file set.
    let options = PlanOptions {
        allow_empty: options.allow_empty || !fleet.tenants.is_empty(),
        ..*options
    };
    let placements = desired::place(&fleet_in_scope, &live);
    let desired = desired::compile(&fleet_in_scope, &placements);
    plan_desired(&desired, &live, &options)
}

/// Read a plan from its JSON form (a plan file), checking the format version first.
///
/// # Errors
/// Not JSON, another format version, or not a plan.
pub fn from_json(text: &str) -> Result<Plan, PlanFileError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PlanFileError::NotJson(e.to_string()))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(PLAN_FORMAT_VERSION)) {
        return Err(PlanFileError::Version {
            found: version.map_or("(none)".into(), |v| v.to_string()),
        });
    }
    serde_json::from_value(value).map_err(|e| PlanFileError::NotAPlan(e.to_string()))
}

/// Why a plan file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanFileError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Another format version.
    #[error("plan format {found}, this berth reads {PLAN_FORMAT_VERSION}")]
    Version {
        /// Version found.
        found: String,
    },
    /// JSON, but not a berth plan.
    #[error("not a berth plan: {0}")]
    NotAPlan(String),
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
            allow_upgrades: options.allow_upgrades,
            builder: &mut builder,
        };
        match desired_host.kind {
            HostKind::Dokku => dokku::diff(&mut cx),
            HostKind::Docker => docker::diff(&mut cx),
        }
    }
    for placement in &desired.placements {
        if placement.reason == PlacementReason::NoCapacity {
            builder.refuse_for(
                Some(&placement.tenant),
                RefusalRule::NoCapacity,
                format!(
                    "no host of tenant `{}`'s environment has capacity left",
                    placement.tenant
                ),
                None,
            );
        }
    }
    let purging = retention::judge(desired, live, options, &mut builder);
    retention::records(desired, live, &purging, options.scope, &mut builder);
    safety::apply_safety(desired, live, options, &mut builder);
    cause::explain(desired, &mut builder);
    let fingerprints = fingerprint::fingerprint(desired, live, options.scope.is_some());
    Plan {
        version: PLAN_FORMAT_VERSION,
        commit: None,
        steps: builder.steps,
        refusals: builder.refusals,
        warnings: builder.warnings,
        placements: desired.placements.iter().map(placement_view).collect(),
        fingerprints,
        scope: options.scope.cloned(),
        purging: purging.into_iter().collect(),
        offline: false,
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

/// Accumulates steps, refusals and warnings.
#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
    refusals: Vec<Refusal>,
    warnings: Vec<Note>,
}

impl Builder {
    fn push_step(
        &mut self,
        host: &HostRef,
        tenant: &str,
        cause: Cause,
        change: Change,
        mut after: Vec<u32>,
    ) -> u32 {
        let id = u32::try_from(self.steps.len()).unwrap_or(u32::MAX);
        after.sort_unstable();
        after.dedup();
        self.steps.push(Step {
            id,
            environment: host.environment.clone(),
            host: host.host.clone(),
            tenant: tenant.to_string(),
            cause,
            because: Because::Drift,
            after,
            change,
            notes: Vec::new(),
        });
        id
    }

    fn refuse(&mut self, rule: RefusalRule, message: String, override_flag: Option<String>) {
        self.refuse_for(None, rule, message, override_flag);
    }

    fn refuse_for(
        &mut self,
        tenant: Option<&str>,
        rule: RefusalRule,
        message: String,
        override_flag: Option<String>,
    ) {
        let refusal = Refusal {
            rule,
            message,
            override_flag,
            tenant: tenant.map(str::to_string),
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
    allow_upgrades: bool,
    builder: &'a mut Builder,
}

impl HostCx<'_> {
    fn step(&mut self, tenant: &str, cause: Cause, change: Change, after: Vec<u32>) -> u32 {
        self.builder
            .push_step(self.host, tenant, cause, change, after)
    }

    fn warn(&mut self, tenant: Option<&str>, message: String) {
        self.builder.warnings.push(Note {
            host: Some(self.host.to_string()),
            tenant: tenant.map(str::to_string),
            message,
        });
    }

    fn refuse(&mut self, tenant: &str, rule: RefusalRule, message: String) {
        self.builder.refuse_for(Some(tenant), rule, message, None);
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
