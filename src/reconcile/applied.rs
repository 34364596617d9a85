//! The commit each host last had applied, recorded on the host itself.
//!
//! Dokku: a key `APPLIED_<ENV>` in the config of berth's record app (`berth-state`). Docker:
//! a volume `berth-applied-<env>` labelled with the commit (volumes cannot be relabelled, so
//! recording replaces it; the apply holds the host's lease while it does).

use std::collections::{BTreeMap, HashMap};

use bollard::models::VolumeCreateRequest;

use crate::driver::dokku::command::{STATE_APP, Tolerate, command, config_set};
use crate::driver::dokku::parse;
use crate::execute::AnyDriver;
use crate::model::live::HostRef;

fn key(host: &HostRef) -> String {
    format!(
        "APPLIED_{}",
        host.environment.to_uppercase().replace('-', "_")
    )
}

fn volume(host: &HostRef) -> String {
    format!("berth-applied-{}", host.environment)
}

/// Record `commit` as applied on `host`.
///
/// # Errors
/// A message when the driver fails.
pub async fn record(driver: &AnyDriver, host: &HostRef, commit: &str) -> Result<(), String> {
    match driver {
        AnyDriver::Dokku(d) => {
            let mut create = command(&["apps:create", STATE_APP]).map_err(|e| e.to_string())?;
            create.tolerate = Tolerate::AlreadyExists;
            let _ = d.run(&create).await.map_err(|e| e.to_string())?;
            let write = config_set(
                STATE_APP,
                &BTreeMap::from([(key(host), commit.to_string())]),
            )
            .map_err(|e| e.to_string())?;
            let out = d.run(&write).await.map_err(|e| e.to_string())?;
            if out.code == Some(0) {
                Ok(())
            } else {
                Err(parse::tail(&out.stderr, 3))
            }
        }
        AnyDriver::Docker(d) => {
            let _ = d
                .client()
                .remove_volume(
                    &volume(host),
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
            d.client()
                .create_volume(VolumeCreateRequest {
                    name: Some(volume(host)),
                    labels: Some(HashMap::from([(
                        "io.berth.applied-commit".to_string(),
                        commit.to_string(),
                    )])),
                    ..VolumeCreateRequest::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        AnyDriver::Memory(..) => Ok(()),
    }
}

/// The commit recorded on `host`, if any.
///
/// # Errors
/// A message when the driver fails.
pub async fn read(driver: &AnyDriver, host: &HostRef) -> Result<Option<String>, String> {
    match driver {
        AnyDriver::Dokku(d) => {
            let cmd = command(&["config:export", "--format", "json", STATE_APP])
                .map_err(|e| e.to_string())?;
            let out = d.run(&cmd).await.map_err(|e| e.to_string())?;
            if out.code != Some(0) {
                return Ok(None);
            }
            Ok(parse::config_export(&out.stdout)
                .map_err(|e| e.to_string())?
                .remove(&key(host)))
        }
        AnyDriver::Docker(d) => match d.client().inspect_volume(&volume(host)).await {
            Ok(v) => Ok(v.labels.get("io.berth.applied-commit").cloned()),
            Err(_) => Ok(None),
        },
        AnyDriver::Memory(..) => Ok(None),
    }
}
