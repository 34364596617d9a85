//! `berth import --adopt` on a Docker host: make a script's stack berth's without
//! recreating a container (docs/migrating.md, "Adoption on Docker").
//!
//! berth plans the repo as if it owned the imported containers (under berth's names, on
//! berth's network) and volumes. That plan may only create berth's own objects — the
//! tenant's network and the secret volumes that keep generated values (each adopting the
//! value a container already has) — and "recreate" the imported containers for no other
//! reason than that they carry no spec hash. Each of those is then compared field by field
//! with what the container really is ([`super::docker::differences`]); any difference, or
//! any other step, and nothing is changed. Otherwise, under the host's lease:
//!
//! 1. service containers are renamed to berth's names (`acme-db-1` → `acme-db`);
//! 2. the network and secret volumes are created (plan steps, run by the executor);
//! 3. every container is connected to the network with berth's aliases (nothing restarts);
//! 4. the adoption record is written: container ids with the spec hash they match, and the
//!    data volumes. From then on observation reports them as the tenant's, `plan` is empty,
//!    and the next real change replaces them through the normal rollout.

use std::collections::{BTreeMap, BTreeSet};

use super::ImportError;
use super::docker::{Expected, differences};
use super::translate::Imported;
use crate::driver::AnyDriver;
use crate::driver::docker::DockerDriver;
use crate::driver::docker::adopted::AdoptedContainer;
use crate::model::desired::{ConfigValue, LABEL_PREFIX, SPEC_LABEL};
use crate::model::live::{DockerInventory, HostRef};
use crate::plan::{Change, Step};
use crate::reconcile::{PlanSettings, Session, Source};

/// The steps adoption may take from the plan.
fn allowed(step: &Step, adopted: &BTreeSet<&str>) -> bool {
    match &step.change {
        Change::CreateNetwork { .. } => true,
        Change::CreateVolume { secret, .. } => secret.is_some(),
        Change::RecreateContainer { spec, reasons, .. } => {
            adopted.contains(spec.name.as_str())
                && reasons.iter().all(|r| r == "configuration changed")
        }
        _ => false,
    }
}

fn describe(step: &Step) -> String {
    let what = match &step.change {
        Change::RecreateContainer { reasons, .. } => format!(" ({})", reasons.join(", ")),
        _ => String::new(),
    };
    match step.change.object() {
        Some((_, name)) => format!("{} {name}{what}", step.change.kind_name()),
        None => step.change.kind_name().to_string(),
    }
}

/// The value a secret volume holds or will hold: its label once it exists, else the value
/// the first container the plan adopts it from has.
async fn kept_value(
    driver: &DockerDriver,
    volume: &str,
    sources: &BTreeMap<String, (String, Vec<String>)>,
    back: &BTreeMap<&str, &str>,
    inventory: &DockerInventory,
) -> Result<Expected, ImportError> {
    if let Some(value) = driver.secret_volume_value(volume).await? {
        return Ok(Ok(value));
    }
    let Some((key, holders)) = sources.get(volume) else {
        return Ok(Err(format!("secret volume `{volume}` is not planned")));
    };
    for holder in holders {
        let live = back.get(holder.as_str()).copied().unwrap_or(holder);
        if let Some(v) = inventory.containers.get(live).and_then(|c| c.env.get(key)) {
            return Ok(Ok(v.0.clone()));
        }
    }
    Ok(Err(format!(
        "no container holds `{key}`: berth would generate a new value"
    )))
}

/// Resolve one expected env value (module docs).
async fn expected(
    driver: &DockerDriver,
    value: &ConfigValue,
    sources: &BTreeMap<String, (String, Vec<String>)>,
    back: &BTreeMap<&str, &str>,
    inventory: &DockerInventory,
) -> Result<Expected, ImportError> {
    Ok(match value {
        ConfigValue::Literal { value } => Ok(value.clone()),
        ConfigValue::Secret { name } => driver.secrets().get(name).await.map_err(|_| {
            format!(
                "secret `{name}` has no value in the provider: load the secrets file (`set -a; . ./secrets.env; set +a`) and adopt again"
            )
        }),
        ConfigValue::Kept { volume } => {
            kept_value(driver, volume, sources, back, inventory).await?
        }
        ConfigValue::Generate { .. } => Err("a value berth would generate anew".into()),
        ConfigValue::Derived { template, from } => {
            let inner = match from.as_ref() {
                ConfigValue::Kept { volume } => {
                    kept_value(driver, volume, sources, back, inventory).await?
                }
                ConfigValue::Secret { name } => driver
                    .secrets()
                    .get(name)
                    .await
                    .map_err(|_| format!("secret `{name}` has no value in the provider")),
                _ => Err("an unexpected derived value".into()),
            };
            inner.map(|v| template.replace("{value}", &v))
        }
    })
}

/// Adopt the imported stacks (module docs).
#[allow(clippy::too_many_lines)]
pub(super) async fn adopt(
    session: &mut Session,
    source: &Source,
    host: &HostRef,
    imported: &Imported,
    inventory: &DockerInventory,
) -> Result<Vec<String>, ImportError> {
    let loaded = crate::reconcile::load(source)?;
    session.reload(loaded.fleet, loaded.commit, None);
    let mut live = session.observe(None).await?;
    let ids: BTreeSet<&str> = imported.tenants.iter().map(|t| t.id.as_str()).collect();
    let mut not_exact: Vec<String> = Vec::new();
    // Which containers sit on which network, before the overlay (for shared networks).
    let members: BTreeMap<String, BTreeSet<String>> = live
        .hosts
        .get(host)
        .map(|h| {
            let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (name, c) in &h.docker.containers {
                for n in &c.networks {
                    m.entry(n.clone()).or_default().insert(name.clone());
                }
            }
            m
        })
        .unwrap_or_default();
    let mut adopted: BTreeSet<&str> = BTreeSet::new();
    let mut back: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(observed) = live.hosts.get_mut(host) {
        let docker = &mut observed.docker;
        for t in &imported.tenants {
            let network = format!("{}_net", t.id);
            for (from, to) in &t.containers {
                if from != to && docker.containers.contains_key(to) {
                    not_exact.push(format!(
                        "container `{from}` would be renamed `{to}`, but a container `{to}` exists"
                    ));
                    continue;
                }
                let Some(mut c) = docker.containers.remove(from) else {
                    continue;
                };
                c.owner = Some(t.id.clone());
                c.spec_hash = None;
                c.applied = None;
                if !c.networks.contains(&network) {
                    c.networks.push(network.clone());
                }
                docker.containers.insert(to.clone(), c);
                adopted.insert(to);
                back.insert(to, from);
            }
            for v in &t.volumes {
                if let Some(l) = docker.volumes.get_mut(v)
                    && l.owner.is_none()
                {
                    l.owner = Some(t.id.clone());
                }
            }
        }
    }
    let plan = session.plan_against(&live, &PlanSettings::default());
    not_exact.extend(
        plan.refusals
            .iter()
            .filter(|r| r.tenant.as_deref().is_some_and(|t| ids.contains(t)))
            .map(|r| format!("refused: {}", r.message)),
    );
    not_exact.extend(
        plan.steps
            .iter()
            .filter(|s| ids.contains(s.tenant.as_str()) && !allowed(s, &adopted))
            .map(describe),
    );
    let Some(AnyDriver::Docker(driver)) = session.drivers.hosts.get(host) else {
        return Err(ImportError::UnknownHost { host: host.clone() });
    };
    // Where each planned secret volume takes its value from.
    let sources: BTreeMap<String, (String, Vec<String>)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.change {
            Change::CreateVolume {
                volume,
                secret: Some(secret),
                ..
            } => Some((
                volume.clone(),
                (secret.key.clone(), secret.adopt_from.clone()),
            )),
            _ => None,
        })
        .collect();
    let mut records: BTreeMap<String, Vec<AdoptedContainer>> = BTreeMap::new();
    let mut connects: Vec<(String, String, String, Vec<String>)> = Vec::new();
    let recreated: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| ids.contains(s.tenant.as_str()))
        .filter(|s| matches!(s.change, Change::RecreateContainer { .. }))
        .collect();
    for step in &recreated {
        let Change::RecreateContainer { spec, .. } = &step.change else {
            continue;
        };
        let Some(from) = back.get(spec.name.as_str()) else {
            continue;
        };
        let Some(detail) = inventory.containers.get(*from) else {
            continue;
        };
        let mut env = BTreeMap::new();
        for (key, value) in &spec.env {
            env.insert(
                key.clone(),
                expected(driver, value, &sources, &back, inventory).await?,
            );
        }
        let stack: BTreeSet<&str> = adopted
            .iter()
            .copied()
            .chain(back.values().copied())
            .collect();
        let outside: BTreeSet<String> = detail
            .networks
            .keys()
            .filter(|n| **n != spec.network)
            .filter(|n| {
                members
                    .get(*n)
                    .is_some_and(|m| m.iter().any(|c| !stack.contains(c.as_str())))
            })
            .cloned()
            .collect();
        for d in differences(spec, &env, detail, &outside) {
            not_exact.push(format!("container `{from}`: {d}"));
        }
        records
            .entry(step.tenant.clone())
            .or_default()
            .push(AdoptedContainer {
                name: spec.name.clone(),
                id: detail.id.clone(),
                hash: spec
                    .labels
                    .get(&format!("{LABEL_PREFIX}spec-hash"))
                    .cloned()
                    .unwrap_or_default(),
                spec: spec.labels.get(SPEC_LABEL).cloned().unwrap_or_default(),
            });
        if !detail.networks.contains_key(&spec.network) {
            connects.push((
                step.tenant.clone(),
                spec.network.clone(),
                spec.name.clone(),
                spec.aliases.clone(),
            ));
        }
    }
    for t in &imported.tenants {
        for to in t.containers.values() {
            if !records
                .get(&t.id)
                .is_some_and(|r| r.iter().any(|c| c.name == *to))
            {
                not_exact.push(format!(
                    "container `{to}` of `{}` is not in the plan as berth's",
                    t.id
                ));
            }
        }
    }
    if !not_exact.is_empty() {
        not_exact.sort();
        not_exact.dedup();
        return Err(ImportError::NotExact { steps: not_exact });
    }
    let (made, _) = plan.retain(|s| {
        ids.contains(s.tenant.as_str())
            && matches!(
                s.change,
                Change::CreateNetwork { .. } | Change::CreateVolume { .. }
            )
    });
    let defects = crate::plan::check::check(&made, &live);
    if !defects.is_empty() {
        return Err(crate::reconcile::SessionError::Malformed { defects }.into());
    }
    let driver_any = session
        .drivers
        .hosts
        .get(host)
        .ok_or_else(|| ImportError::UnknownHost { host: host.clone() })?;
    let record = super::acquire_lease(driver_any).await?;
    let result = async {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for t in &imported.tenants {
            for (from, to) in &t.containers {
                if from != to {
                    match driver.rename_container(&t.id, from, to).await {
                        Ok(()) => done.push(format!("rename container {from} → {to}")),
                        Err(e) => failed.push(crate::driver::error_chain(&e)),
                    }
                }
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        done.extend(super::execute_steps(&made, session).await?);
        for (tenant, network, container, aliases) in &connects {
            match driver
                .connect_container(tenant, network, container, aliases)
                .await
            {
                Ok(()) => done.push(format!("connect container {container} to {network}")),
                Err(e) => failed.push(crate::driver::error_chain(&e)),
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        for t in &imported.tenants {
            let containers = records.get(&t.id).cloned().unwrap_or_default();
            let volumes: BTreeSet<String> = t.volumes.iter().cloned().collect();
            match driver.record_adoption(&t.id, &containers, &volumes).await {
                Ok(()) => done.push(format!(
                    "record adoption {}",
                    crate::driver::docker::adopted::record_name(&host.environment, &t.id)
                )),
                Err(e) => failed.push(crate::driver::error_chain(&e)),
            }
        }
        if failed.is_empty() {
            Ok(done)
        } else {
            Err(failed)
        }
    }
    .await;
    let _ = crate::reconcile::lease::release(driver_any, &record.token).await;
    result.map_err(|failed| ImportError::AdoptFailed {
        host: host.clone(),
        failed,
    })
}
