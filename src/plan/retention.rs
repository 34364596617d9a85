//! Data retention: `state: purge` destroys a tenant's data only once `policy.retain-data` has
//! passed since berth applied its cancellation on the host.
//!
//! - A cancelled tenant gets a `record-cancellation` step on its host (after its own steps):
//!   the driver stamps the time there, so the clock that counts retention is the host's
//!   record, not anybody's laptop.
//! - A purge whose data steps come before the retention has passed — or for a tenant that was
//!   never cancelled — is refused (`retention-not-passed`). `--allow-destroys` does not
//!   override it; `--purge-now <tenant>` does, and names the tenant.
//! - The record is cleared when the tenant is active or suspended again, when its data is
//!   purged (in the same plan, after the purge), or when it has no file and nothing is left.
//! - An adoption record (`berth import --adopt` on Docker) is removed on the same terms as
//!   the data it names: after a purge, or when the tenant has no file and nothing is left.
//!
//! Time is an input (`PlanOptions::now`); without one (pure tests, views that never apply)
//! retention is not judged.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::BTreeSet;

use super::{Builder, Cause, Change, PlanOptions, RefusalRule, Step};
use crate::model::TenantState;
use crate::model::desired::Desired;
use crate::model::live::{HostRef, Live, LiveHost};

const DAY: u64 = 86_400;

/// Judge every purging tenant; returns those whose data may go (`Plan::purging`).
pub(super) fn judge(
    desired: &Desired,
    live: &Live,
    options: &PlanOptions<'_>,
    b: &mut Builder,
) -> BTreeSet<String> {
    let empty = LiveHost::default();
    let mut allowed = BTreeSet::new();
    for placement in &desired.placements {
        let Some((_, TenantState::Purge)) = desired.tenants.get(&placement.tenant) else {
            continue;
        };
        let tenant = &placement.tenant;
        let destroys_data = b
            .steps
            .iter()
            .any(|s| s.tenant == *tenant && s.change.destroys_data());
        let Some(now) = options.now else {
            allowed.insert(tenant.clone());
            continue;
        };
        if !destroys_data || options.purge_now.iter().any(|t| t == tenant) {
            allowed.insert(tenant.clone());
            continue;
        }
        let Some(host) = &placement.host else {
            continue;
        };
        let days = desired
            .hosts
            .get(host)
            .map_or(30, |d| d.policy.retain_data_days);
        let cancelled = live.hosts.get(host).unwrap_or(&empty).cancelled.get(tenant);
        let flag = Some(format!("--purge-now {tenant}"));
        match cancelled {
            None => b.refuse_for(
                Some(tenant),
                RefusalRule::RetentionNotPassed,
                format!(
                    "tenant `{tenant}` is in `state: purge` but its cancellation was never applied on `{host}`: data is kept for `policy.retain-data` ({days} days) after a cancellation"
                ),
                flag,
            ),
            Some(at) if now < at + u64::from(days) * DAY => {
                let left = (at + u64::from(days) * DAY - now).div_ceil(DAY);
                b.refuse_for(
                    Some(tenant),
                    RefusalRule::RetentionNotPassed,
                    format!(
                        "tenant `{tenant}` was cancelled {} days ago on `{host}`; `policy.retain-data` keeps its data for {days} days, {left} more",
                        now.saturating_sub(*at) / DAY
                    ),
                    flag,
                );
            }
            Some(_) => {
                allowed.insert(tenant.clone());
            }
        }
    }
    allowed
}

/// Steps of `tenant` on `host` so far.
fn steps_of(steps: &[Step], host: &HostRef, tenant: &str) -> Vec<u32> {
    steps
        .iter()
        .filter(|s| s.tenant == tenant && s.environment == host.environment && s.host == host.host)
        .map(|s| s.id)
        .collect()
}

/// Whether no object of `tenant` is left on the host once `steps` ran.
fn all_removed(observed: &LiveHost, steps: &[Step], host: &HostRef, tenant: &str) -> bool {
    observed
        .objects()
        .filter(|o| o.owner == Some(tenant))
        .all(|o| {
            steps.iter().any(|s| {
                s.environment == host.environment
                    && s.host == host.host
                    && s.change.effect() == super::Effect::Destroy
                    && s.change
                        .object()
                        .is_some_and(|(kind, name)| kind == o.kind && name == o.name)
            })
        })
}

/// Record new cancellations and clear records that no longer apply.
pub(super) fn records(
    desired: &Desired,
    live: &Live,
    purging: &BTreeSet<String>,
    scope: Option<&crate::plan::scope::Scope>,
    b: &mut Builder,
) {
    // A scoped plan desires only the tenants in scope: a record of any other tenant looks
    // like one whose file is gone, and must be left alone.
    let in_scope = |tenant: &String| scope.is_none_or(|s| s.tenants.contains(tenant));
    let empty = LiveHost::default();
    for (host, desired_host) in &desired.hosts {
        let observed = live.hosts.get(host).unwrap_or(&empty);
        for tenant in &desired_host.tenants {
            let state = desired.tenants.get(tenant).map(|(_, s)| *s);
            // Only where the tenant has something: retention is about kept data.
            if state == Some(TenantState::Cancelled)
                && !observed.cancelled.contains_key(tenant)
                && observed.has_tenant(tenant)
            {
                let after = steps_of(&b.steps, host, tenant);
                b.push_step(
                    host,
                    tenant,
                    Cause::Intended,
                    Change::RecordCancellation {
                        tenant: tenant.clone(),
                    },
                    after,
                );
            }
        }
        for tenant in observed.cancelled.keys().filter(|t| in_scope(t)) {
            let state = desired.tenants.get(tenant).map(|(_, s)| *s);
            let clear = match state {
                Some(TenantState::Active | TenantState::Suspended) => true,
                Some(TenantState::Purge) => purging.contains(tenant),
                Some(TenantState::Cancelled) => false,
                // No file any more: the record goes with the tenant's last object.
                None => all_removed(observed, &b.steps, host, tenant),
            };
            if clear {
                let after = steps_of(&b.steps, host, tenant);
                b.push_step(
                    host,
                    tenant,
                    Cause::Intended,
                    Change::ClearCancellation {
                        tenant: tenant.clone(),
                    },
                    after,
                );
            }
        }
        // An adoption record (Docker) names a tenant's adopted containers and data
        // volumes; it goes once they are all gone — purged, or (no file) removed with
        // nothing kept — so nothing of the tenant is left on the host.
        for tenant in observed.adopted.iter().filter(|t| in_scope(t)) {
            let gone = match desired.tenants.get(tenant).map(|(_, s)| *s) {
                Some(TenantState::Purge) => purging.contains(tenant),
                None => true,
                Some(_) => false,
            };
            if gone && all_removed(observed, &b.steps, host, tenant) {
                let after = steps_of(&b.steps, host, tenant);
                b.push_step(
                    host,
                    tenant,
                    Cause::Intended,
                    Change::ClearAdoption {
                        tenant: tenant.clone(),
                    },
                    after,
                );
            }
        }
    }
}
