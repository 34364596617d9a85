//! Diffing one Docker host: networks, volumes, containers, published ports.
//!
//! Compose's rule decides recreation: a container is recreated when the spec hash label
//! differs, when the image id behind its tag changed, or when it is off its network or lacks
//! a volume. Published ports are allocated here, deterministically: a container keeps the
//! host port it already has; new ones take the lowest free port of the host's range that
//! nothing on the host (managed or not) holds.

use std::collections::BTreeSet;

use super::change::{FieldChange, NewSecret, Rollout};
use super::{Cause, Change, HostCx, RefusalRule};
use crate::model::TenantState;
use crate::model::desired::{ConfigValue, Container, LABEL_PREFIX, SPEC_LABEL};
use crate::model::live::{ContainerState, LiveContainer};

pub(super) fn diff(cx: &mut HostCx<'_>) {
    let live = &cx.live.docker;
    let desired = cx.desired;
    let mut infra: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    // /24s already taken by any network on the engine, for the allocation below.
    let mut taken: BTreeSet<String> = live
        .networks
        .values()
        .flat_map(|n| n.subnets.iter().cloned())
        .collect();
    for (name, network) in &desired.networks {
        match live.networks.get(name) {
            None => {
                let subnet = match desired.subnets {
                    Some(block) => {
                        let found = free_subnet(block, &taken);
                        if found.is_none() {
                            cx.refuse(
                                &network.tenant,
                                RefusalRule::PortsExhausted,
                                format!("no free /24 left in the `subnets` block of host `{}` for network `{name}`", cx.host),
                            );
                        }
                        found.inspect(|s| {
                            taken.insert(s.clone());
                        })
                    }
                    None => None,
                };
                let id = cx.step(
                    &network.tenant,
                    Cause::Intended,
                    Change::CreateNetwork {
                        network: name.clone(),
                        internal: network.internal,
                        subnet,
                        labels: network.labels.clone(),
                    },
                    Vec::new(),
                );
                infra.insert(name.clone(), id);
            }
            Some(l) if l.owner.as_deref() != Some(network.tenant.as_str()) => {
                cx.refuse(
                    &network.tenant,
                    RefusalRule::NameConflict,
                    format!(
                        "network `{name}` on host `{}` exists but is not berth's",
                        cx.host
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (name, volume) in &desired.volumes {
        match live.volumes.get(name) {
            None => {
                let secret = volume.secret.as_ref().map(|s| NewSecret {
                    key: s.key.clone(),
                    length: s.length,
                    adopt_from: holders(cx, name),
                });
                let id = cx.step(
                    &volume.tenant,
                    Cause::Intended,
                    Change::CreateVolume {
                        volume: name.clone(),
                        labels: volume.labels.clone(),
                        secret,
                    },
                    Vec::new(),
                );
                infra.insert(name.clone(), id);
            }
            Some(l) if l.owner.as_deref() != Some(volume.tenant.as_str()) => {
                cx.refuse(
                    &volume.tenant,
                    RefusalRule::NameConflict,
                    format!(
                        "volume `{name}` on host `{}` exists but is not berth's",
                        cx.host
                    ),
                );
            }
            Some(_) => {}
        }
    }

    // Routes nothing desires any more go first: Caddy stops sending requests to containers
    // before they stop or go.
    let mut route_removals: std::collections::BTreeMap<String, Vec<u32>> =
        std::collections::BTreeMap::new();
    for (name, l) in &live.routes {
        let Some(owner) = &l.owner else { continue };
        if !desired.routes.contains_key(name) {
            let id = cx.step(
                owner,
                Cause::Intended,
                Change::RemoveRoute {
                    route: name.clone(),
                },
                Vec::new(),
            );
            route_removals.entry(owner.clone()).or_default().push(id);
        }
    }

    let containers = allocate_ports(cx);
    // Services before apps so that dependency ids exist when apps are planned.
    let mut ordered: Vec<&Container> = containers.iter().collect();
    ordered.sort_by_key(|c| (c.depends_on.len(), c.spec.name.clone()));
    let mut container_steps: std::collections::BTreeMap<String, u32> =
        std::collections::BTreeMap::new();
    for container in ordered {
        let name = &container.spec.name;
        let mut after: Vec<u32> = Vec::new();
        after.extend(infra.get(&container.spec.network).copied());
        for (volume, _) in &container.spec.mounts {
            after.extend(infra.get(volume).copied());
        }
        for volume in secret_volumes(&container.spec) {
            after.extend(infra.get(volume).copied());
        }
        for dep in &container.depends_on {
            after.extend(container_steps.get(dep).copied());
        }
        // Compared as compiled, before ports were allocated: the baseline never had any.
        let in_baseline = cx
            .baseline
            .and_then(|b| b.containers.get(name))
            .zip(cx.desired.containers.get(name))
            .is_some_and(|(b, d)| b.spec.hash() == d.spec.hash());
        match live.containers.get(name) {
            None => {
                let id = cx.step(
                    &container.tenant,
                    if in_baseline {
                        Cause::Drift
                    } else {
                        Cause::Intended
                    },
                    Change::CreateContainer {
                        spec: container.spec.clone(),
                        start: container.running,
                        pull: container.pull,
                    },
                    after,
                );
                container_steps.insert(name.clone(), id);
            }
            Some(l) if l.owner.as_deref() != Some(container.tenant.as_str()) => {
                cx.refuse(
                    &container.tenant,
                    RefusalRule::NameConflict,
                    format!(
                        "container `{name}` on host `{}` exists but is not berth's",
                        cx.host
                    ),
                );
            }
            Some(l) => {
                // Stamped by `allocate_ports` (the same hash `ContainerSpec::hash` computes).
                let hash = container
                    .spec
                    .labels
                    .get(&format!("{LABEL_PREFIX}spec-hash"))
                    .cloned()
                    .unwrap_or_else(|| container.spec.hash());
                let (reasons, changes) = recreate_reasons(cx, container, l, &hash);
                let drift = l.spec_hash.as_deref() == Some(hash.as_str()) || in_baseline;
                let cause = if drift { Cause::Drift } else { Cause::Intended };
                if !reasons.is_empty() {
                    let ports: Vec<u16> =
                        container.spec.ports.iter().filter_map(|p| p.host).collect();
                    let rollout = if ports.is_empty() {
                        Rollout::StartFirst
                    } else {
                        Rollout::StopFirst { ports }
                    };
                    let id = cx.step(
                        &container.tenant,
                        cause,
                        Change::RecreateContainer {
                            spec: container.spec.clone(),
                            start: container.running,
                            reasons,
                            changes,
                            rollout,
                            pull: container.pull,
                        },
                        after,
                    );
                    container_steps.insert(name.clone(), id);
                } else if container.running && l.state != ContainerState::Running {
                    // Stopped by berth (a recorded cancellation, or stopped in the last
                    // applied state): starting it again is the files' doing, not drift.
                    let stopped_by_berth = cx.live.cancelled.contains_key(&container.tenant)
                        || cx
                            .baseline
                            .and_then(|b| b.containers.get(name))
                            .is_some_and(|b| !b.running);
                    let id = cx.step(
                        &container.tenant,
                        if stopped_by_berth {
                            Cause::Intended
                        } else {
                            cause
                        },
                        Change::StartContainer {
                            container: name.clone(),
                        },
                        after,
                    );
                    container_steps.insert(name.clone(), id);
                } else if !container.running && l.state == ContainerState::Running {
                    cx.step(
                        &container.tenant,
                        if l.spec_hash.as_deref() == Some(hash.as_str())
                            && cx.tenant_state(&container.tenant) == Some(TenantState::Active)
                        {
                            Cause::Drift
                        } else {
                            Cause::Intended
                        },
                        Change::StopContainer {
                            container: name.clone(),
                        },
                        route_removals
                            .get(&container.tenant)
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }

    let route_steps = diff_routes(cx, &container_steps);

    // Managed objects nothing desires any more: containers after the routes stop naming
    // them.
    let mut removed: Vec<u32> = Vec::new();
    for (name, l) in &live.containers {
        let Some(owner) = &l.owner else { continue };
        if !desired.containers.contains_key(name) {
            let mut after = route_removals.get(owner).cloned().unwrap_or_default();
            after.extend(route_steps.iter().copied());
            removed.push(cx.step(
                owner,
                Cause::Intended,
                Change::RemoveContainer {
                    container: name.clone(),
                },
                after,
            ));
        }
    }
    for (name, l) in &live.networks {
        let Some(owner) = &l.owner else { continue };
        if !desired.networks.contains_key(name) {
            cx.step(
                owner,
                Cause::Intended,
                Change::RemoveNetwork {
                    network: name.clone(),
                },
                removed.clone(),
            );
        }
    }
    for (name, l) in &live.volumes {
        let Some(owner) = &l.owner else { continue };
        if desired.volumes.contains_key(name) {
            continue;
        }
        if cx.tenant_state(owner) == Some(TenantState::Purge) {
            cx.step(
                owner,
                Cause::Intended,
                Change::RemoveVolume {
                    volume: name.clone(),
                },
                removed.clone(),
            );
        } else {
            cx.warn(
                Some(owner),
                format!("volume `{name}` is kept: its data is only removed by `state: purge`"),
            );
        }
    }
}

/// Caddy routes to create or replace, each after the steps of the containers it names.
/// Returns the step ids.
fn diff_routes(
    cx: &mut HostCx<'_>,
    container_steps: &std::collections::BTreeMap<String, u32>,
) -> Vec<u32> {
    let mut ids = Vec::new();
    let desired = cx.desired;
    for (name, route) in &desired.routes {
        let after: Vec<u32> = route
            .upstreams
            .iter()
            .filter_map(|c| container_steps.get(c).copied())
            .collect();
        let in_baseline = cx
            .baseline
            .and_then(|b| b.routes.get(name))
            .is_some_and(|b| b == route);
        let cause = if in_baseline {
            Cause::Drift
        } else {
            Cause::Intended
        };
        match cx.live.docker.routes.get(name) {
            None => ids.push(cx.step(
                &route.tenant,
                cause,
                Change::CreateRoute {
                    route: name.clone(),
                    hosts: route.hosts.clone(),
                    upstreams: route.upstreams.clone(),
                    port: route.port,
                },
                after,
            )),
            Some(l) if l.owner.as_deref() != Some(route.tenant.as_str()) => cx.refuse(
                &route.tenant,
                RefusalRule::NameConflict,
                format!(
                    "route `{name}` in the Caddy of host `{}` exists but is not berth's",
                    cx.host
                ),
            ),
            Some(l) => {
                let changes = route_changes(l, route);
                if !changes.is_empty() {
                    ids.push(cx.step(
                        &route.tenant,
                        cause,
                        Change::UpdateRoute {
                            route: name.clone(),
                            hosts: route.hosts.clone(),
                            upstreams: route.upstreams.clone(),
                            port: route.port,
                            changes,
                        },
                        after,
                    ));
                }
            }
        }
    }
    ids
}

/// Field by field, how a route in Caddy differs from the one wanted.
fn route_changes(
    live: &crate::model::live::LiveRoute,
    want: &crate::model::desired::Route,
) -> Vec<FieldChange> {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.join(", ")
    };
    let mut out = Vec::new();
    for (field, before, after) in [
        ("hosts", sorted(&live.hosts), sorted(&want.hosts)),
        (
            "upstreams",
            sorted(&live.upstreams),
            sorted(&want.upstreams),
        ),
        (
            "port",
            live.port.map(|p| p.to_string()).unwrap_or_default(),
            want.port.to_string(),
        ),
    ] {
        if before != after {
            out.push(FieldChange {
                field: field.to_string(),
                before: Some(before).filter(|s| !s.is_empty()),
                after: Some(after),
            });
        }
    }
    out
}

/// Label prefix of a referenced secret's digest, per env key.
const SECRET_DIGEST_PREFIX: &str = "io.berth.secret-digest.";

/// The secret volumes a container's env reads (`Kept`, or `Derived` from `Kept`).
pub(super) fn secret_volumes(spec: &crate::model::desired::ContainerSpec) -> Vec<&String> {
    use crate::model::desired::ConfigValue;
    spec.env
        .values()
        .filter_map(|v| match v {
            ConfigValue::Kept { volume } => Some(volume),
            ConfigValue::Derived { from, .. } => match from.as_ref() {
                ConfigValue::Kept { volume } => Some(volume),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Live containers that may already hold the value of secret volume `volume` in their env
/// (containers made before berth kept generated values in secret volumes).
fn holders(cx: &HostCx<'_>, volume: &str) -> Vec<String> {
    use crate::model::desired::ConfigValue;
    cx.desired
        .containers
        .values()
        .filter(|c| {
            c.spec
                .env
                .values()
                .any(|v| matches!(v, ConfigValue::Kept { volume: v } if v == volume))
        })
        .map(|c| c.spec.name.clone())
        .filter(|name| cx.live.docker.containers.contains_key(name))
        .collect()
}

/// The first /24 of `block` that no network uses.
fn free_subnet((base, prefix): (u32, u8), taken: &BTreeSet<String>) -> Option<String> {
    let count = 1u32 << (24 - prefix.min(24));
    (0..count)
        .map(|i| {
            let net = std::net::Ipv4Addr::from(base + (i << 8));
            format!("{net}/24")
        })
        .find(|s| !taken.contains(s))
}

/// Why a container must be replaced: the fields that changed since berth created it (from
/// its spec label; "configuration changed" for containers made before that label existed),
/// and what the host did (image moved behind an unchanged tag, network, volumes, deep-scan
/// edits). Returns the short reasons and the field changes.
fn recreate_reasons(
    cx: &HostCx<'_>,
    c: &Container,
    l: &LiveContainer,
    hash: &str,
) -> (Vec<String>, Vec<FieldChange>) {
    let mut reasons = Vec::new();
    let mut changes = Vec::new();
    if l.spec_hash.as_deref() != Some(hash) {
        match &l.applied {
            Some(before) => {
                changes = spec_changes(before, &c.spec);
                let mut fields: Vec<String> =
                    changes.iter().map(|f| field_group(&f.field)).collect();
                fields.dedup();
                if fields.is_empty() {
                    fields.push("berth's labels".to_string());
                }
                reasons.extend(fields);
            }
            None => reasons.push("configuration changed".to_string()),
        }
    }
    // The same reference now names another image: only when the reference is unchanged
    // (a changed tag is a tag change, listed above).
    let same_reference = l
        .applied
        .as_ref()
        .map(|a| a.image.as_str())
        .or(l.image.as_deref())
        .is_none_or(|r| r == c.spec.image);
    if same_reference
        && let (Some(want), Some(have)) = (cx.live.docker.images.get(&c.spec.image), &l.image_id)
        && want != have
    {
        reasons.push("image changed behind its tag".to_string());
        changes.push(FieldChange {
            field: "image id".into(),
            before: Some(short_id(have)),
            after: Some(short_id(want)),
        });
    }
    if !l.networks.contains(&c.spec.network) {
        reasons.push(format!("not attached to network {}", c.spec.network));
    }
    for (volume, _) in &c.spec.mounts {
        if !l.volumes.contains(volume) {
            reasons.push(format!("does not mount volume {volume}"));
        }
    }
    if let Some(seen) = &l.inspected {
        reasons.extend(deep_differences(&c.spec, seen));
    }
    (reasons, changes)
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex[..hex.len().min(12)].to_string()
}

/// `env LOG_LEVEL` → `env`, `label traefik…` → `routing`: the short reason of a field.
fn field_group(field: &str) -> String {
    field.split_whitespace().next().unwrap_or(field).to_string()
}

/// How a config value reads in a plan: literals as themselves, instructions by what they
/// are (never a value).
fn shown(value: &ConfigValue) -> String {
    match value {
        ConfigValue::Literal { value } => format!("{value:?}"),
        ConfigValue::Generate { length } => format!("(generated, {length} characters)"),
        ConfigValue::Secret { name } => format!("(secret {name})"),
        ConfigValue::Kept { volume } => format!("(generated, kept in {volume})"),
        ConfigValue::Derived { from, .. } => format!("(built from {})", shown(from)),
    }
}

fn memory(bytes: Option<u64>) -> Option<String> {
    bytes.map(|b| {
        if b % (1 << 30) == 0 {
            format!("{}G", b >> 30)
        } else {
            format!("{}M", b.div_ceil(1 << 20))
        }
    })
}

fn cpus(nano: Option<i64>) -> Option<String> {
    #[allow(clippy::cast_precision_loss)]
    nano.map(|n| {
        let text = format!("{:.3}", n as f64 / 1e9);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    })
}

fn health(h: Option<&crate::model::desired::ContainerHealth>) -> Option<String> {
    use crate::model::desired::Probe;
    h.map(|h| {
        let probe = match &h.probe {
            Probe::Http { path, port } => format!("GET {path} on port {port}"),
            Probe::Command { test } => test.join(" "),
        };
        format!(
            "{probe} every {}s, timeout {}s, {} retries",
            h.interval, h.timeout, h.retries
        )
    })
}

/// Field by field, what differs between the spec a container was made from and the new one.
fn spec_changes(
    before: &crate::model::desired::ContainerSpec,
    after: &crate::model::desired::ContainerSpec,
) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut field = |name: &str, b: Option<String>, a: Option<String>| {
        if b != a {
            out.push(FieldChange {
                field: name.to_string(),
                before: b,
                after: a,
            });
        }
    };
    field(
        "image",
        Some(before.image.clone()),
        Some(after.image.clone()),
    );
    field(
        "command",
        before.command.as_ref().map(|c| c.join(" ")),
        after.command.as_ref().map(|c| c.join(" ")),
    );
    let ports = |s: &crate::model::desired::ContainerSpec| {
        (!s.ports.is_empty()).then(|| {
            s.ports
                .iter()
                .map(|p| match p.host {
                    Some(h) => format!("{h}→{}", p.container),
                    None => p.container.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    field("ports", ports(before), ports(after));
    field("memory", memory(before.memory), memory(after.memory));
    field("cpus", cpus(before.nano_cpus), cpus(after.nano_cpus));
    field(
        "restart",
        Some(format!("{:?}", before.restart).to_lowercase()),
        Some(format!("{:?}", after.restart).to_lowercase()),
    );
    field(
        "health",
        health(before.health.as_ref()),
        health(after.health.as_ref()),
    );
    field(
        "network",
        Some(before.network.clone()),
        Some(after.network.clone()),
    );
    field(
        "aliases",
        Some(before.aliases.join(", ")).filter(|s| !s.is_empty()),
        Some(after.aliases.join(", ")).filter(|s| !s.is_empty()),
    );
    let mounts = |s: &crate::model::desired::ContainerSpec| {
        (!s.mounts.is_empty()).then(|| {
            s.mounts
                .iter()
                .map(|(v, p)| format!("{v} at {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    field("volumes", mounts(before), mounts(after));
    let keys: BTreeSet<&String> = before.env.keys().chain(after.env.keys()).collect();
    for key in keys {
        let (b, a) = (before.env.get(key), after.env.get(key));
        let digest = |s: &crate::model::desired::ContainerSpec| {
            s.labels
                .get(&format!("{SECRET_DIGEST_PREFIX}{key}"))
                .cloned()
        };
        if b != a {
            field(&format!("env {key}"), b.map(shown), a.map(shown));
        } else if digest(before).is_some() && digest(before) != digest(after) {
            // Same reference, another value in the provider: rotated.
            field(
                &format!("env {key}"),
                Some("(sensitive)".into()),
                Some("(sensitive, changed)".into()),
            );
        }
    }
    // Routing and other non-berth labels (berth's own records change with everything).
    let visible =
        |s: &crate::model::desired::ContainerSpec| -> std::collections::BTreeMap<String, String> {
            s.labels
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with(LABEL_PREFIX) && !k.starts_with("com.docker.compose.")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
    let (lb, la) = (visible(before), visible(after));
    let keys: BTreeSet<&String> = lb.keys().chain(la.keys()).collect();
    for key in keys {
        if lb.get(key) != la.get(key) {
            field(
                &format!("routing {key}"),
                lb.get(key).cloned(),
                la.get(key).cloned(),
            );
        }
    }
    out
}

/// What a deep scan found changed outside berth (names only: values may be secret).
fn deep_differences(
    spec: &crate::model::desired::ContainerSpec,
    seen: &crate::model::live::InspectedContainer,
) -> Vec<String> {
    use crate::model::RestartPolicy;
    let mut out = Vec::new();
    if seen.image.as_deref().is_some_and(|i| i != spec.image) {
        out.push("image changed outside berth".to_string());
    }
    let memory = spec.memory.and_then(|m| i64::try_from(m).ok()).unwrap_or(0);
    if seen.memory.is_some_and(|m| m != memory) {
        out.push("memory limit changed outside berth".to_string());
    }
    if seen
        .nano_cpus
        .is_some_and(|n| n != spec.nano_cpus.unwrap_or(0))
    {
        out.push("cpu limit changed outside berth".to_string());
    }
    let restart = match spec.restart {
        RestartPolicy::No => "no",
        RestartPolicy::Always => "always",
        RestartPolicy::UnlessStopped => "unless-stopped",
        RestartPolicy::OnFailure => "on-failure",
    };
    if seen.restart.as_deref().is_some_and(|r| r != restart) {
        out.push("restart policy changed outside berth".to_string());
    }
    for (key, value) in &spec.env {
        let differs = match (value, seen.env.get(key)) {
            (_, None) => true,
            (crate::model::desired::ConfigValue::Literal { value }, Some(live)) => live.0 != *value,
            _ => false,
        };
        if differs {
            out.push(format!("env {key} changed outside berth"));
        }
    }
    out
}

/// Give every published port a host port and stamp the final spec hash label.
fn allocate_ports(cx: &mut HostCx<'_>) -> Vec<Container> {
    let live = &cx.live.docker;
    let mut used: BTreeSet<u16> = live.ports_in_use.clone();
    // Ports something other than a container holds (a start failed on them this apply).
    used.extend(live.ports_held.iter().copied());
    let mut containers: Vec<Container> = cx.desired.containers.values().cloned().collect();
    let mut conflicts = Vec::new();
    // Fixed ports first: they are the file's word.
    for c in &containers {
        for p in &c.spec.ports {
            let Some(host_port) = p.host else { continue };
            let ours = live
                .containers
                .get(&c.spec.name)
                .filter(|l| l.owner.as_deref() == Some(c.tenant.as_str()))
                .is_some_and(|l| l.ports.iter().any(|b| b.host == host_port));
            if (live.ports_in_use.contains(&host_port) && !ours)
                || live.ports_held.contains(&host_port)
            {
                conflicts.push((
                    c.tenant.clone(),
                    format!(
                        "host port {host_port} wanted by container `{}` on host `{}` is already in use",
                        c.spec.name, cx.host
                    ),
                ));
            }
            used.insert(host_port);
        }
    }
    // Ports a container already holds stay with it.
    for c in &mut containers {
        let Some(l) = live
            .containers
            .get(&c.spec.name)
            .filter(|l| l.owner.as_deref() == Some(c.tenant.as_str()))
        else {
            continue;
        };
        for p in &mut c.spec.ports {
            if p.host.is_none()
                && let Some(b) = l.ports.iter().find(|b| b.container == p.container)
                && !live.ports_held.contains(&b.host)
            {
                p.host = Some(b.host);
                used.insert(b.host);
            }
        }
    }
    let range = cx.desired.ports;
    let mut exhausted = Vec::new();
    for c in &mut containers {
        for p in &mut c.spec.ports {
            if p.host.is_some() {
                continue;
            }
            let free = range.and_then(|(low, high)| (low..=high).find(|port| !used.contains(port)));
            match free {
                Some(port) => {
                    used.insert(port);
                    p.host = Some(port);
                }
                None => exhausted.push((c.tenant.clone(), c.spec.name.clone())),
            }
        }
        // The ports are recorded on the container too: the list call shows a stopped
        // container's ports only through this label, and they stay its own.
        let published: Vec<String> = c
            .spec
            .ports
            .iter()
            .filter_map(|p| p.host.map(|h| format!("{}:{h}", p.container)))
            .collect();
        if !published.is_empty() {
            c.spec
                .labels
                .insert(format!("{LABEL_PREFIX}ports"), published.join(","));
        }
        // The provider's value of each referenced secret, as a digest: a rotated value
        // changes the spec, so the container is replaced with the new value.
        for (key, value) in &c.spec.env {
            let name = match value {
                ConfigValue::Secret { name } => Some(name),
                ConfigValue::Derived { from, .. } => match from.as_ref() {
                    ConfigValue::Secret { name } => Some(name),
                    _ => None,
                },
                _ => None,
            };
            if let Some(digest) = name.and_then(|n| cx.live.secret_digests.get(n)) {
                c.spec
                    .labels
                    .insert(format!("{SECRET_DIGEST_PREFIX}{key}"), digest.clone());
            }
        }
        // The label is the very text the hash covers: serialize once.
        let view = serde_json::to_string(&c.spec.without_records()).unwrap_or_default();
        let hash = crate::model::desired::short_hash(view.as_bytes());
        c.spec.labels.insert(SPEC_LABEL.to_string(), view);
        c.spec
            .labels
            .insert(format!("{LABEL_PREFIX}spec-hash"), hash);
    }
    for (tenant, message) in conflicts {
        cx.refuse(&tenant, RefusalRule::PortConflict, message);
    }
    for (tenant, name) in exhausted {
        let message = match range {
            None => format!(
                "container `{name}` publishes a port but host `{}` has no `ports` range",
                cx.host
            ),
            Some((low, high)) => format!(
                "no free port in {low}-{high} on host `{}` for container `{name}`",
                cx.host
            ),
        };
        cx.refuse(&tenant, RefusalRule::PortsExhausted, message);
    }
    containers
}
