//! bollard types ↔ berth's model (pure).
//!
//! Observation reads only list calls (reference/docker.md §2.3): container summaries carry
//! labels, state, image id, networks, mounts and ports, which is all the planner compares.
//! The spec → create-body conversion is the one place berth's container spec meets the
//! Engine API.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
    HealthConfig, HostConfig, Mount, MountType, NetworkingConfig, PortBinding as ApiPortBinding,
    RestartPolicy as ApiRestart, RestartPolicyNameEnum,
};

use crate::model::RestartPolicy;
use crate::model::desired::{ContainerSpec, LABEL_PREFIX, Probe};
use crate::model::live::{ContainerState, HostRef, LiveContainer, PortBinding};

/// The container's name without Docker's leading `/`.
#[must_use]
pub fn container_name(summary: &ContainerSummary) -> Option<String> {
    summary
        .names
        .as_ref()?
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
}

/// The tenant owning an object, when berth manages it *for this environment*. Objects of
/// another environment sharing the engine are foreign here: seen, never touched.
#[must_use]
pub fn managed_owner(labels: Option<&HashMap<String, String>>, host: &HostRef) -> Option<String> {
    let labels = labels?;
    let environment = host.environment.as_str();
    // Another host entry on the same engine (objects made before the host label count as
    // this host's).
    if labels
        .get(&format!("{LABEL_PREFIX}host"))
        .is_some_and(|h| *h != host.host)
    {
        return None;
    }
    let managed = labels
        .get(&format!("{LABEL_PREFIX}managed"))
        .map(String::as_str)
        == Some("true");
    let ours = labels
        .get(&format!("{LABEL_PREFIX}environment"))
        .map(String::as_str)
        == Some(environment);
    if !managed || !ours {
        return None;
    }
    labels.get(&format!("{LABEL_PREFIX}tenant")).cloned()
}

/// Health from the list's `Status` text (`Up 3 seconds (healthy)`): the list carries no
/// `Health` field before API 1.52, and inspecting every container is what we avoid.
#[must_use]
pub fn health_from_status(status: &str) -> Option<String> {
    if status.contains("(healthy)") {
        Some("healthy".into())
    } else if status.contains("(unhealthy)") {
        Some("unhealthy".into())
    } else if status.contains("(health: starting)") {
        Some("starting".into())
    } else {
        None
    }
}

/// A container summary as the live model sees it, for the host of `environment`.
#[must_use]
pub fn live_container(summary: &ContainerSummary, host: &HostRef) -> LiveContainer {
    let labels = summary.labels.as_ref();
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
        _ => ContainerState::Other,
    };
    let mut ports: Vec<PortBinding> = summary
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            p.public_port.map(|h| PortBinding {
                host: h,
                container: p.private_port,
            })
        })
        .collect();
    // A stopped container's list entry shows no ports; berth's own containers carry them
    // in a label, so a suspended tenant keeps its port.
    if let Some(label) = labels.and_then(|l| l.get(&format!("{LABEL_PREFIX}ports"))) {
        ports.extend(label.split(',').filter_map(|pair| {
            let (container, host) = pair.split_once(':')?;
            Some(PortBinding {
                host: host.parse().ok()?,
                container: container.parse().ok()?,
            })
        }));
    }
    ports.sort();
    ports.dedup();
    let mut networks: Vec<String> = summary
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let address = summary
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| {
            networks.iter().find_map(|name| {
                n.get(name)
                    .and_then(|e| e.ip_address.clone())
                    .filter(|ip| !ip.is_empty())
            })
        });
    let mut volumes: Vec<String> = summary
        .mounts
        .iter()
        .flatten()
        .filter_map(|m| m.name.clone())
        .collect();
    volumes.sort();
    LiveContainer {
        owner: managed_owner(labels, host),
        spec_hash: labels.and_then(|l| l.get(&format!("{LABEL_PREFIX}spec-hash")).cloned()),
        image_id: summary.image_id.clone(),
        image: summary.image.clone(),
        applied: labels
            .and_then(|l| l.get(crate::model::desired::SPEC_LABEL))
            .and_then(|j| serde_json::from_str(j).ok())
            .map(Box::new),
        state,
        health: summary.status.as_deref().and_then(health_from_status),
        networks,
        volumes,
        ports,
        address,
        inspected: None,
    }
}

/// Nanoseconds from seconds, for health check timings.
fn nanos(secs: u32) -> i64 {
    i64::from(secs) * 1_000_000_000
}

/// The create body for a spec whose env values are resolved (`env` maps key → value).
#[must_use]
pub fn create_body(spec: &ContainerSpec, env: &BTreeMap<String, String>) -> ContainerCreateBody {
    let mut port_bindings = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container);
        exposed.push(key.clone());
        if let Some(host) = p.host {
            port_bindings.insert(
                key,
                Some(vec![ApiPortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some(host.to_string()),
                }]),
            );
        }
    }
    let restart = match spec.restart {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };
    let mounts = spec
        .mounts
        .iter()
        .map(|(volume, path)| Mount {
            typ: Some(MountType::VOLUME),
            source: Some(volume.clone()),
            target: Some(path.clone()),
            ..Mount::default()
        })
        .collect();
    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
        nano_cpus: spec.nano_cpus,
        restart_policy: Some(ApiRestart {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        mounts: Some(mounts),
        network_mode: Some(spec.network.clone()),
        ..HostConfig::default()
    };
    let endpoints = HashMap::from([(
        spec.network.clone(),
        EndpointSettings {
            aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
            ..EndpointSettings::default()
        },
    )]);
    ContainerCreateBody {
        // The container's name, also while a replacement runs under a temporary one (a
        // hostname is at most 63 characters).
        hostname: Some(spec.name.chars().take(63).collect()),
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        // Only the exec form is Docker's; berth probes the HTTP form itself.
        healthcheck: spec.health.as_ref().and_then(|h| match &h.probe {
            Probe::Command { test } => Some(HealthConfig {
                test: Some(test.clone()),
                interval: Some(nanos(h.interval)),
                timeout: Some(nanos(h.timeout)),
                retries: Some(i64::from(h.retries)),
                start_period: None,
                start_interval: None,
            }),
            Probe::Http { .. } => None,
        }),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..ContainerCreateBody::default()
    }
}

/// `KEY=VALUE` lines (inspect's `Config.Env`) → map. Later keys win, as in Docker.
#[must_use]
pub fn env_map(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// berth's routes as Caddy holds them, with each dial that is a container's address on this
/// host read back as the container's name.
#[must_use]
pub fn live_routes(
    routes: Vec<super::caddy::CaddyRoute>,
    containers: &std::collections::BTreeMap<String, LiveContainer>,
) -> std::collections::BTreeMap<String, crate::model::live::LiveRoute> {
    let by_address: std::collections::BTreeMap<&str, &str> = containers
        .iter()
        .filter_map(|(name, c)| c.address.as_deref().map(|a| (a, name.as_str())))
        .collect();
    routes
        .into_iter()
        .map(|r| {
            let mut ports = std::collections::BTreeSet::new();
            let mut upstreams: Vec<String> = r
                .dials
                .iter()
                .map(|dial| match dial.rsplit_once(':') {
                    Some((address, port)) => {
                        ports.insert(port.parse::<u16>().ok());
                        by_address
                            .get(address)
                            .map_or_else(|| dial.clone(), |n| (*n).to_string())
                    }
                    None => {
                        ports.insert(None);
                        dial.clone()
                    }
                })
                .collect();
            upstreams.sort();
            let port = match ports.len() {
                1 => ports.into_iter().next().flatten(),
                _ => None,
            };
            let owner = r.name.split_once('.').map(|(t, _)| t.to_string());
            (
                r.name,
                crate::model::live::LiveRoute {
                    owner,
                    hosts: r.hosts,
                    upstreams,
                    port,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_read_from_status_text() {
        assert_eq!(
            health_from_status("Up 5 seconds (healthy)").as_deref(),
            Some("healthy")
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)").as_deref(),
            Some("starting")
        );
        assert_eq!(
            health_from_status("Up 2 minutes (unhealthy)").as_deref(),
            Some("unhealthy")
        );
        assert_eq!(health_from_status("Exited (0) 3 seconds ago"), None);
    }

    #[test]
    fn env_lines_split_on_the_first_equals() {
        let env = env_map(&["A=1".into(), "URL=postgres://u:p@h/db?x=y".into()]);
        assert_eq!(env["URL"], "postgres://u:p@h/db?x=y");
    }
}
