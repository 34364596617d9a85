//! The plan's safety rules, applied as refusals inside the plan: the circuit breaker
//! (`policy.max-destroys`), the empty desired set, and the data guard (data is destroyed only
//! for tenants in `state: purge`).
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::{BTreeMap, BTreeSet};

use super::{Builder, Effect, PlanOptions, RefusalRule};
use crate::model::TenantState;
use crate::model::desired::Desired;
use crate::model::live::Live;

/// Circuit breaker, empty desired set and the data guard.
pub(super) fn apply_safety(
    desired: &Desired,
    live: &Live,
    options: &PlanOptions<'_>,
    b: &mut Builder,
) {
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
        .collect::<BTreeSet<_>>()
    {
        let wants_any = desired.tenants.values().any(|(e, _)| e == env);
        let holds_any = live
            .hosts
            .iter()
            .filter(|(h, _)| h.environment == env)
            .any(|(_, lh)| lh.holds_managed());
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
