//! Scoped plans: restrict planning to some tenants (`plan --since`, `plan --tenant`).
//!
//! The fleet keeps only the tenants in scope (and an environment's shared services when its
//! file changed); live objects of every other tenant become foreign — still seen, so their
//! names and ports stay taken, but never planned for. The scope travels inside the plan, so a
//! saved scoped plan is checked and applied with the same scope.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Fleet;
use crate::model::live::Live;

/// The tenants a plan is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Scope {
    /// Tenant ids in scope (from `--since` and `--tenant`, plus every tenant of a changed
    /// environment).
    pub tenants: BTreeSet<String>,
    /// Environments whose files changed (their shared services are in scope).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub environments: BTreeSet<String>,
    /// The ids given with `--tenant`, which must exist.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub named: BTreeSet<String>,
    /// The commit `--since` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The fleet and live state as a scoped plan sees them.
#[must_use]
pub fn scope(fleet: &Fleet, live: &Live, scope: &Scope) -> (Fleet, Live) {
    let mut scoped = fleet.clone();
    scoped.tenants.retain(|id, _| scope.tenants.contains(id));
    for (name, env) in &mut scoped.environments {
        if !scope.environments.contains(name) {
            env.shared = None;
        }
    }
    (scoped, scope_live(live, scope))
}

/// Live state with the owners of objects out of scope forgotten.
#[must_use]
pub fn scope_live(live: &Live, scope: &Scope) -> Live {
    let mut live = live.clone();
    for (host, lh) in &mut live.hosts {
        let env_in_scope = scope.environments.contains(&host.environment);
        for owner in lh.owners_mut() {
            let keep = match owner.as_deref() {
                Some(crate::model::SHARED_STACK_ID) => env_in_scope,
                Some(t) => scope.tenants.contains(t),
                None => false,
            };
            if !keep {
                *owner = None;
            }
        }
    }
    live
}
