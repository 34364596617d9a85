//! Fingerprints: a short hash of every live object a plan read, so `apply PLANFILE` can tell
//! whether the hosts moved since the plan was made (Terraform checks only its own state
//! serial; berth checks the live objects).
//!
//! A plan fingerprints what it is about: the objects berth owns on every host it planned for
//! (for a plan scoped with `--since`/`--tenant`, those of the tenants in scope), the objects
//! whose names the plan wants, and (unscoped) the ports in use and host-wide settings. An
//! object of another tenant moving does not make a scoped plan stale; an object of another
//! environment or nobody's, with a name the plan does not want, never does. Hosts the plan
//! did not observe are marked [`UNOBSERVED`].
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::{BTreeMap, BTreeSet};

use super::Plan;
use crate::model::desired::{Desired, short_hash};
use crate::model::live::{HostRef, Live, ObjectKind};

/// Fingerprint of a host the plan did not observe (offline, or not in use).
pub const UNOBSERVED: &str = "unobserved";
/// Fingerprint of an object that is gone.
pub const ABSENT: &str = "absent";

/// Names each host's desired state claims, by kind (scoped plans fingerprint these too).
fn desired_names(desired: &Desired) -> BTreeSet<(HostRef, ObjectKind, String)> {
    let mut out = BTreeSet::new();
    for (host, d) in &desired.hosts {
        let mut add = |kind, name: &String| {
            out.insert((host.clone(), kind, name.clone()));
        };
        d.dokku_apps.keys().for_each(|n| add(ObjectKind::App, n));
        d.dokku_services
            .keys()
            .for_each(|n| add(ObjectKind::Service, n));
        d.containers
            .keys()
            .for_each(|n| add(ObjectKind::Container, n));
        d.networks.keys().for_each(|n| add(ObjectKind::Network, n));
        d.volumes.keys().for_each(|n| add(ObjectKind::Volume, n));
        d.routes.keys().for_each(|n| add(ObjectKind::Route, n));
    }
    out
}

/// Hash the objects of the planned hosts. With `scoped`, `live` is already scoped (owners
/// out of scope forgotten), so "owned" means "owned by a tenant in scope".
pub(super) fn fingerprint(
    desired: &Desired,
    live: &Live,
    scoped: bool,
) -> BTreeMap<String, String> {
    // Objects nobody here owns matter only where they hold a name the plan wants (their
    // ports are fingerprinted below): another environment's objects on a shared engine
    // moving does not make this plan stale.
    let wanted = desired_names(desired);
    let mut out = BTreeMap::new();
    for host_ref in desired.hosts.keys() {
        let Some(host) = live.hosts.get(host_ref) else {
            out.insert(format!("{host_ref}"), UNOBSERVED.to_string());
            continue;
        };
        for object in host.objects() {
            let keep = object.owner.is_some()
                || wanted.contains(&(host_ref.clone(), object.kind, object.name.to_string()));
            if keep {
                let bytes = serde_json::to_vec(&object.value).unwrap_or_default();
                out.insert(
                    format!("{host_ref}/{}/{}", object.kind.word(), object.name),
                    short_hash(&bytes),
                );
            }
        }
        if !scoped {
            if !host.docker.ports_in_use.is_empty() {
                let bytes = serde_json::to_vec(&host.docker.ports_in_use).unwrap_or_default();
                out.insert(format!("{host_ref}/ports"), short_hash(&bytes));
            }
            let bytes = serde_json::to_vec(&host.dokku.global_domains).unwrap_or_default();
            out.insert(format!("{host_ref}/host"), short_hash(&bytes));
        }
    }
    out
}

/// The fingerprints of `live` now, for the keys `plan` recorded, read the way the plan read
/// them (scoped plans scope `live` first). A key whose object is gone reads [`ABSENT`].
#[must_use]
pub fn fingerprints_of(plan: &Plan, live: &Live) -> BTreeMap<String, String> {
    let scoped;
    let live = match &plan.scope {
        Some(scope) => {
            scoped = super::scope::scope_live(live, scope);
            &scoped
        }
        None => live,
    };
    let mut now = BTreeMap::new();
    for (host_ref, host) in &live.hosts {
        for object in host.objects() {
            let bytes = serde_json::to_vec(&object.value).unwrap_or_default();
            now.insert(
                format!("{host_ref}/{}/{}", object.kind.word(), object.name),
                short_hash(&bytes),
            );
        }
        let bytes = serde_json::to_vec(&host.docker.ports_in_use).unwrap_or_default();
        if !host.docker.ports_in_use.is_empty() {
            now.insert(format!("{host_ref}/ports"), short_hash(&bytes));
        }
        let bytes = serde_json::to_vec(&host.dokku.global_domains).unwrap_or_default();
        now.insert(format!("{host_ref}/host"), short_hash(&bytes));
    }
    plan.fingerprints
        .keys()
        .map(|k| {
            (
                k.clone(),
                now.get(k).cloned().unwrap_or_else(|| ABSENT.into()),
            )
        })
        .collect()
}
