//! Placement: which host each tenant is on. Pinned tenants go where they say; a tenant that
//! already has objects on a host stays there; a new one goes to the host with the most free
//! capacity (ties by name). Derived from live state, never recorded.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::BTreeMap;

use super::{Placement, PlacementReason};
use crate::model::Fleet;
use crate::model::live::{HostRef, Live};

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
            let present = live.hosts.get(&host).is_some_and(|lh| lh.has_tenant(id));
            placements.push(Placement {
                tenant: id.clone(),
                host: Some(host),
                reason: PlacementReason::Pinned,
                present,
            });
            continue;
        }
        let existing = env.hosts.keys().find(|h| {
            live.hosts
                .get(&HostRef::new(&env.name, h))
                .is_some_and(|lh| lh.has_tenant(id))
        });
        if let Some(host) = existing {
            let host = HostRef::new(&env.name, host);
            *load.entry(host.clone()).or_default() += 1;
            placements.push(Placement {
                tenant: id.clone(),
                host: Some(host),
                reason: PlacementReason::Existing,
                present: true,
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
                    present: false,
                });
            }
            None => placements.push(Placement {
                tenant: id,
                host: None,
                reason: PlacementReason::NoCapacity,
                present: false,
            }),
        }
    }
    placements.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    placements
}
