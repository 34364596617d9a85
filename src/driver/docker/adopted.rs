//! Adopted containers: what `berth import --adopt` records so that a stack a script made
//! becomes berth's without being recreated.
//!
//! An Engine cannot add labels to a running container or to a volume, so the ownership
//! berth reads from `io.berth.*` labels elsewhere is kept, for adopted objects, in one
//! labelled record volume per tenant, `berth-adopted.<env>.<tenant>` (like the lease and
//! cancellation records):
//!
//! - `io.berth.adopted.container.<name>` = the container's id, with
//!   `io.berth.adopted.hash.<name>` (the spec hash the files compile to) and
//!   `io.berth.adopted.spec.<name>` (that spec, for field-level plans);
//! - `io.berth.adopted.volume.<name>` = `true` for each data volume.
//!
//! Observation reads the record from the volume list it makes anyway (no extra call): a
//! container whose name *and id* match is the tenant's, with the recorded hash; once berth
//! replaces it (a new id, its own labels) the entry no longer applies. The tenants with a
//! record are reported too (`LiveHost::adopted`): the planner removes a record once nothing
//! it names is left (`clear-adoption`, after a purge). The inventory and the
//! adoption calls (network connect, record) live here too: `berth import` is their only
//! user (renames are the lifecycle's `rename_container`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::{DockerDriver, DockerError, convert, not_found};
use crate::model::live::{ContainerDetail, DockerInventory, ImageDefaults, LiveDocker, LiveValue};

/// Name prefix of adoption records.
pub(super) const PREFIX: &str = "berth-adopted.";
const TENANT_LABEL: &str = "io.berth.adopted-tenant";
const CONTAINER: &str = "io.berth.adopted.container.";
const HASH: &str = "io.berth.adopted.hash.";
const SPEC: &str = "io.berth.adopted.spec.";
const VOLUME: &str = "io.berth.adopted.volume.";
/// The tenant field of errors about import reads.
const IMPORT: &str = "(import)";

/// Name of a tenant's adoption record.
#[must_use]
pub fn record_name(environment: &str, tenant: &str) -> String {
    format!("{PREFIX}{environment}.{tenant}")
}

/// One adopted container, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedContainer {
    /// Its name (berth's, after any rename).
    pub name: String,
    /// Its id.
    pub id: String,
    /// The spec hash the files compile to.
    pub hash: String,
    /// That spec as JSON (the `io.berth.spec` label's text).
    pub spec: String,
}

/// Apply the adoption records among `volumes` (name → labels) to an observation: adopted
/// containers (same name and id) and volumes become `tenant`'s. Returns the tenants with
/// a record here.
pub(super) fn apply_records(
    environment: &str,
    host: &str,
    volumes: &BTreeMap<String, HashMap<String, String>>,
    ids: &BTreeMap<String, String>,
    live: &mut LiveDocker,
) -> BTreeSet<String> {
    let mut tenants = BTreeSet::new();
    for (name, labels) in volumes {
        let Some(tenant) = labels.get(TENANT_LABEL) else {
            continue;
        };
        if *name != record_name(environment, tenant)
            || labels.get("io.berth.host").is_some_and(|h| h != host)
        {
            continue;
        }
        tenants.insert(tenant.clone());
        for (key, value) in labels {
            if let Some(container) = key.strip_prefix(CONTAINER) {
                let Some(c) = live.containers.get_mut(container) else {
                    continue;
                };
                if c.owner.is_some() || ids.get(container) != Some(value) {
                    continue;
                }
                c.owner = Some(tenant.clone());
                c.spec_hash = labels.get(&format!("{HASH}{container}")).cloned();
                c.applied = labels
                    .get(&format!("{SPEC}{container}"))
                    .and_then(|j| serde_json::from_str(j).ok())
                    .map(Box::new);
            } else if let Some(volume) = key.strip_prefix(VOLUME)
                && let Some(v) = live.volumes.get_mut(volume)
                && v.owner.is_none()
            {
                v.owner = Some(tenant.clone());
            }
        }
    }
    tenants
}

fn strings(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

fn values(lines: Option<Vec<String>>) -> BTreeMap<String, LiveValue> {
    convert::env_map(&lines.unwrap_or_default())
        .into_iter()
        .map(|(k, v)| (k, LiveValue(v)))
        .collect()
}

fn health(h: Option<bollard::models::HealthConfig>) -> Option<(Vec<String>, u64, u64, i64)> {
    let h = h?;
    let test = h.test.filter(|t| !t.is_empty() && t[0] != "NONE")?;
    let secs = |n: Option<i64>| u64::try_from(n.unwrap_or(0) / 1_000_000_000).unwrap_or(0);
    Some((
        test,
        secs(h.interval),
        secs(h.timeout),
        h.retries.unwrap_or(0),
    ))
}

impl DockerDriver {
    /// Everything `berth import` needs: every container berth does not manage here,
    /// inspected, with its image's defaults; every volume and network. Reads only.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn inventory(&self) -> Result<DockerInventory, DockerError> {
        self.count();
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(self.api(IMPORT, "list containers".into()))?;
        let live = self.observe().await?;
        let mut out = DockerInventory::default();
        let mut images: BTreeMap<String, ImageDefaults> = BTreeMap::new();
        for summary in &list {
            let Some(name) = convert::container_name(summary) else {
                continue;
            };
            // berth's, for this environment or another one sharing the engine.
            let berths = summary
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("io.berth.managed"));
            if berths
                || live
                    .docker
                    .containers
                    .get(&name)
                    .is_some_and(|c| c.owner.is_some())
            {
                out.managed.insert(name);
                continue;
            }
            self.count();
            let info = match self.docker.inspect_container(&name, None).await {
                Ok(info) => info,
                // Removed since the list: nothing to import.
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(self.api(IMPORT, format!("inspect container {name}"))(e)),
            };
            let config = info.config.unwrap_or_default();
            let host = info.host_config.unwrap_or_default();
            let image_id = info.image.unwrap_or_default();
            if !images.contains_key(&image_id) {
                self.count();
                let image = self
                    .docker
                    .inspect_image(&image_id)
                    .await
                    .map_err(self.api(IMPORT, format!("inspect image {image_id}")))?
                    .config
                    .unwrap_or_default();
                images.insert(
                    image_id.clone(),
                    ImageDefaults {
                        entrypoint: image.entrypoint,
                        command: image.cmd,
                        env: values(image.env),
                        labels: strings(image.labels),
                        health: health(image.healthcheck),
                    },
                );
            }
            let mut ports: Vec<(u16, String, String, u16)> = Vec::new();
            for (key, bindings) in host.port_bindings.unwrap_or_default() {
                let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                for b in bindings.unwrap_or_default() {
                    ports.push((
                        port,
                        proto.to_string(),
                        b.host_ip.unwrap_or_default(),
                        b.host_port.and_then(|p| p.parse().ok()).unwrap_or(0),
                    ));
                }
            }
            ports.sort();
            let mut mounts: Vec<(String, String, String)> = info
                .mounts
                .unwrap_or_default()
                .into_iter()
                .map(|m| {
                    let kind = m.typ.unwrap_or_default();
                    let source = if kind == "volume" {
                        m.name.unwrap_or_default()
                    } else {
                        m.source.unwrap_or_default()
                    };
                    (kind, source, m.destination.unwrap_or_default())
                })
                .collect();
            mounts.sort();
            let networks = info
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_iter()
                .map(|(net, e)| {
                    let mut aliases = e.aliases.unwrap_or_default();
                    aliases.sort();
                    (net, aliases)
                })
                .collect();
            let restart = host.restart_policy.unwrap_or_default();
            out.containers.insert(
                name,
                ContainerDetail {
                    id: info.id.unwrap_or_default(),
                    image: config.image.unwrap_or_default(),
                    from_image: images[&image_id].clone(),
                    image_id,
                    entrypoint: config.entrypoint,
                    command: config.cmd,
                    env: values(config.env),
                    labels: strings(config.labels),
                    running: info.state.and_then(|s| s.running).unwrap_or(false),
                    restart: (
                        restart.name.map(|n| n.to_string()).unwrap_or_default(),
                        restart.maximum_retry_count.unwrap_or(0),
                    ),
                    memory: host.memory.unwrap_or(0),
                    nano_cpus: host.nano_cpus.unwrap_or(0),
                    ports,
                    mounts,
                    networks,
                    health: health(config.healthcheck),
                },
            );
        }
        self.count();
        let volumes = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(self.api(IMPORT, "list volumes".into()))?;
        for v in volumes.volumes.unwrap_or_default() {
            if super::records::is_record_volume(&v.name) {
                continue;
            }
            let owned = live
                .docker
                .volumes
                .get(&v.name)
                .is_some_and(|l| l.owner.is_some());
            let mut labels: BTreeMap<String, String> = v.labels.into_iter().collect();
            if owned {
                labels.insert("io.berth.managed".into(), "true".into());
            }
            out.volumes.insert(v.name, labels);
        }
        for (name, n) in &live.docker.networks {
            out.networks.insert(name.clone(), n.owner.is_some());
        }
        Ok(out)
    }

    /// The value a secret volume holds, `None` when there is no such volume.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn secret_volume_value(&self, volume: &str) -> Result<Option<String>, DockerError> {
        self.count();
        match self.docker.inspect_volume(volume).await {
            Ok(v) => Ok(v.labels.get(super::lifecycle::SECRET_VALUE_LABEL).cloned()),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.api(IMPORT, format!("inspect volume {volume}"))(e)),
        }
    }

    /// Attach a running container to `network` with `aliases` (nothing restarts).
    ///
    /// # Errors
    /// Engine failures.
    pub async fn connect_container(
        &self,
        tenant: &str,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), DockerError> {
        self.count();
        self.docker
            .connect_network(
                network,
                NetworkConnectRequest {
                    container: container.to_string(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                        ..EndpointSettings::default()
                    }),
                },
            )
            .await
            .map_err(self.api(
                tenant,
                format!("connect container {container} to {network}"),
            ))
    }

    /// Remove `tenant`'s adoption record (a purge removed everything it names).
    ///
    /// # Errors
    /// Engine failures.
    pub(super) async fn clear_adoption(&self, tenant: &str) -> Result<(), DockerError> {
        self.remove_volume_if_there(&record_name(&self.host.environment, tenant))
            .await
    }

    /// Write (or replace) `tenant`'s adoption record.
    ///
    /// # Errors
    /// Engine failures.
    pub async fn record_adoption(
        &self,
        tenant: &str,
        containers: &[AdoptedContainer],
        volumes: &BTreeSet<String>,
    ) -> Result<(), DockerError> {
        let name = record_name(&self.host.environment, tenant);
        let mut labels = HashMap::from([
            (TENANT_LABEL.to_string(), tenant.to_string()),
            ("io.berth.host".to_string(), self.host.host.clone()),
        ]);
        for c in containers {
            labels.insert(format!("{CONTAINER}{}", c.name), c.id.clone());
            labels.insert(format!("{HASH}{}", c.name), c.hash.clone());
            labels.insert(format!("{SPEC}{}", c.name), c.spec.clone());
        }
        for v in volumes {
            labels.insert(format!("{VOLUME}{v}"), "true".into());
        }
        // Volume labels cannot change: a new record replaces the old one.
        self.remove_volume_if_there(&name).await?;
        self.create_labelled(&name, labels).await?;
        Ok(())
    }
}
