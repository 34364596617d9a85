//! Leases: one per environment + host, living on the target itself, so CI and a daemon on
//! different machines exclude each other.
//!
//! - Dokku: an app `berth-lease-<env>` (`apps:create` is atomic: a second create answers
//!   "Name is already taken"); holder, purpose, start and expiry are its config; renewing
//!   rewrites the expiry.
//! - Docker: a volume `berth-lease-<env>` whose labels hold the same fields and a random token.
//!   The Engine creates volumes under a per-name lock and returns the existing volume to a
//!   second creator, so reading the token back tells who won. Volume labels cannot change, so
//!   renewing adds a volume `berth-lease-<env>-until-<unix>` with the holder's token; the
//!   lease's expiry is the latest renewal by its own holder.
//!
//! A lease whose expiry has passed belongs to nobody (its holder crashed): the next acquirer
//! removes it and takes it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::VolumeCreateRequest;

use crate::driver::dokku::DokkuDriver;
use crate::driver::dokku::command::{Tolerate, command, config_set};
use crate::driver::dokku::parse;
use crate::execute::AnyDriver;
use crate::model::live::HostRef;

/// Default time to live of a lease.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// `user@machine pid N`.
    pub holder: String,
    /// `apply`, `daemon`.
    pub purpose: String,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds.
    pub expires: u64,
    /// Random token of the holder.
    pub token: String,
}

/// Lease failures.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error("host `{host}` is locked by {} for `{}` until {} (unix time)", info.holder, info.purpose, info.expires)]
    Held {
        /// Host.
        host: HostRef,
        /// The holder.
        info: LeaseInfo,
    },
    /// The driver failed.
    #[error("cannot manage the lease on `{host}`: {message}")]
    Driver {
        /// Host.
        host: HostRef,
        /// What failed.
        message: String,
    },
}

fn lease_name(host: &HostRef) -> String {
    format!("berth-lease-{}", host.environment)
}

fn driver_error(host: &HostRef, message: impl std::fmt::Display) -> LeaseError {
    LeaseError::Driver {
        host: host.clone(),
        message: message.to_string(),
    }
}

fn from_fields(fields: &BTreeMap<String, String>) -> Option<LeaseInfo> {
    let get = |k: &str| fields.get(k).cloned();
    Some(LeaseInfo {
        holder: get("HOLDER")?,
        purpose: get("PURPOSE").unwrap_or_default(),
        started: get("STARTED")?.parse().ok()?,
        expires: get("EXPIRES")?.parse().ok()?,
        token: get("TOKEN").unwrap_or_default(),
    })
}

fn fields(info: &LeaseInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOLDER".to_string(), info.holder.clone()),
        ("PURPOSE".to_string(), info.purpose.clone()),
        ("STARTED".to_string(), info.started.to_string()),
        ("EXPIRES".to_string(), info.expires.to_string()),
        ("TOKEN".to_string(), info.token.clone()),
    ])
}

/// The lease on a host, if any.
///
/// # Errors
/// Driver failures.
pub async fn status(driver: &AnyDriver, host: &HostRef) -> Result<Option<LeaseInfo>, LeaseError> {
    match driver {
        AnyDriver::Dokku(d) => dokku_status(d, host).await,
        AnyDriver::Docker(d) => match d.client().inspect_volume(&lease_name(host)).await {
            Ok(volume) => match docker_info(&volume.labels) {
                Some(info) => Ok(Some(extended(d, host, info).await?)),
                None => Ok(None),
            },
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(driver_error(host, e)),
        },
        AnyDriver::Memory(..) => Ok(None),
    }
}

async fn dokku_status(d: &DokkuDriver, host: &HostRef) -> Result<Option<LeaseInfo>, LeaseError> {
    let cmd = command(&["config:export", "--format", "json", &lease_name(host)])
        .map_err(|e| driver_error(host, e))?;
    let out = d.run(&cmd).await.map_err(|e| driver_error(host, e))?;
    if out.code == Some(20) {
        return Ok(None);
    }
    let config = parse::config_export(&out.stdout).map_err(|e| driver_error(host, e))?;
    // An app without fields: a holder that crashed between create and write. Treat it as
    // held by an unknown holder that expired at once; `break` or the next acquire clears it.
    Ok(Some(from_fields(&config).unwrap_or(LeaseInfo {
        holder: "(unknown: incomplete lease)".into(),
        purpose: String::new(),
        started: 0,
        expires: 0,
        token: String::new(),
    })))
}

/// Renewals of a Docker lease: volumes `berth-lease-<env>-until-<unix>` carrying the
/// holder's token (a lease volume's own labels cannot change).
async fn renewals(
    d: &crate::driver::docker::DockerDriver,
    host: &HostRef,
) -> Result<Vec<(String, LeaseInfo)>, LeaseError> {
    let prefix = format!("{}-until-", lease_name(host));
    let filters = HashMap::from([("name".to_string(), vec![prefix.clone()])]);
    let list = d
        .client()
        .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| driver_error(host, e))?;
    Ok(list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.name.starts_with(&prefix))
        .filter_map(|v| docker_info(&v.labels).map(|i| (v.name, i)))
        .collect())
}

/// A Docker lease with the latest renewal by its own holder applied.
async fn extended(
    d: &crate::driver::docker::DockerDriver,
    host: &HostRef,
    mut info: LeaseInfo,
) -> Result<LeaseInfo, LeaseError> {
    for (_, renewal) in renewals(d, host).await? {
        if renewal.token == info.token {
            info.expires = info.expires.max(renewal.expires);
        }
    }
    Ok(info)
}

fn docker_info(labels: &HashMap<String, String>) -> Option<LeaseInfo> {
    let map: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("io.berth.lease.")
                .map(|k| (k.to_uppercase(), v.clone()))
        })
        .collect();
    from_fields(&map)
}

/// Take the lease, breaking an expired one. Fails with [`LeaseError::Held`] when it is held.
///
/// # Errors
/// Held by someone else, or driver failures.
pub async fn acquire(
    driver: &AnyDriver,
    host: &HostRef,
    info: &LeaseInfo,
    now: u64,
) -> Result<(), LeaseError> {
    for _ in 0..3 {
        match try_acquire(driver, host, info).await? {
            None => return Ok(()),
            Some(current) if current.expires <= now => release_any(driver, host).await?,
            Some(current) => {
                return Err(LeaseError::Held {
                    host: host.clone(),
                    info: current,
                });
            }
        }
    }
    Err(driver_error(
        host,
        "the lease changed hands repeatedly while acquiring it",
    ))
}

/// `None` when acquired; the current holder otherwise.
async fn try_acquire(
    driver: &AnyDriver,
    host: &HostRef,
    info: &LeaseInfo,
) -> Result<Option<LeaseInfo>, LeaseError> {
    let name = lease_name(host);
    match driver {
        AnyDriver::Dokku(d) => {
            let create = command(&["apps:create", &name]).map_err(|e| driver_error(host, e))?;
            let out = d.run(&create).await.map_err(|e| driver_error(host, e))?;
            if out.code == Some(0) {
                let write = config_set(&name, &fields(info)).map_err(|e| driver_error(host, e))?;
                let out = d.run(&write).await.map_err(|e| driver_error(host, e))?;
                if out.code != Some(0) {
                    return Err(driver_error(host, parse::tail(&out.stderr, 3)));
                }
                return Ok(None);
            }
            let taken = format!("{}{}", out.stdout, out.stderr).contains("Name is already taken");
            if !taken {
                return Err(driver_error(host, parse::tail(&out.stderr, 3)));
            }
            Ok(Some(
                dokku_status(d, host).await?.unwrap_or_else(|| info.clone()),
            ))
        }
        AnyDriver::Docker(d) => {
            let labels: HashMap<String, String> = fields(info)
                .into_iter()
                .map(|(k, v)| (format!("io.berth.lease.{}", k.to_lowercase()), v))
                .chain([("io.berth.lease".to_string(), "true".to_string())])
                .collect();
            let volume = d
                .client()
                .create_volume(VolumeCreateRequest {
                    name: Some(name),
                    labels: Some(labels),
                    ..VolumeCreateRequest::default()
                })
                .await
                .map_err(|e| driver_error(host, e))?;
            let current = match docker_info(&volume.labels) {
                Some(c) => Some(extended(d, host, c).await?),
                None => None,
            };
            match current {
                Some(c) if c.token == info.token => Ok(None),
                Some(c) => Ok(Some(c)),
                None => Err(driver_error(
                    host,
                    "a volume with the lease name exists but is not a lease",
                )),
            }
        }
        AnyDriver::Memory(..) => Ok(None),
    }
}

/// Extend a held lease (Dokku: rewrite its expiry; Docker: add a renewal volume).
///
/// # Errors
/// Driver failures.
pub async fn renew(driver: &AnyDriver, host: &HostRef, info: &LeaseInfo) -> Result<(), LeaseError> {
    if let AnyDriver::Docker(d) = driver {
        let labels: HashMap<String, String> = fields(info)
            .into_iter()
            .map(|(k, v)| (format!("io.berth.lease.{}", k.to_lowercase()), v))
            .collect();
        let name = format!("{}-until-{}", lease_name(host), info.expires);
        d.client()
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels),
                ..VolumeCreateRequest::default()
            })
            .await
            .map_err(|e| driver_error(host, e))?;
        // Older renewals of ours are superseded.
        for (old, renewal) in renewals(d, host).await? {
            if old != name && renewal.token == info.token {
                let _ = d
                    .client()
                    .remove_volume(&old, None::<bollard::query_parameters::RemoveVolumeOptions>)
                    .await;
            }
        }
    }
    if let AnyDriver::Dokku(d) = driver {
        let write =
            config_set(&lease_name(host), &fields(info)).map_err(|e| driver_error(host, e))?;
        let out = d.run(&write).await.map_err(|e| driver_error(host, e))?;
        if out.code != Some(0) {
            return Err(driver_error(host, parse::tail(&out.stderr, 3)));
        }
    }
    Ok(())
}

/// Release a lease we hold (only if the token is ours).
///
/// # Errors
/// Driver failures.
pub async fn release(driver: &AnyDriver, host: &HostRef, token: &str) -> Result<(), LeaseError> {
    match status(driver, host).await? {
        Some(info) if info.token == token => release_any(driver, host).await,
        _ => Ok(()),
    }
}

/// Remove whatever lease is there (`berth lock break`, expired leases).
///
/// # Errors
/// Driver failures.
pub async fn release_any(driver: &AnyDriver, host: &HostRef) -> Result<(), LeaseError> {
    let name = lease_name(host);
    match driver {
        AnyDriver::Dokku(d) => {
            let mut destroy =
                command(&["--force", "apps:destroy", &name]).map_err(|e| driver_error(host, e))?;
            destroy.tolerate = Tolerate::Nothing;
            let out = d.run(&destroy).await.map_err(|e| driver_error(host, e))?;
            if out.code != Some(0) && out.code != Some(20) {
                return Err(driver_error(host, parse::tail(&out.stderr, 3)));
            }
            Ok(())
        }
        AnyDriver::Docker(d) => {
            for (renewal, _) in renewals(d, host).await? {
                let _ = d
                    .client()
                    .remove_volume(
                        &renewal,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
            match d
                .client()
                .remove_volume(
                    &name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                Err(e) => Err(driver_error(host, e)),
            }
        }
        AnyDriver::Memory(..) => Ok(()),
    }
}
