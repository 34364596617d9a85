//! Leases: one per environment + host, living on the target itself, so CI and a daemon on
//! different machines exclude each other.
//!
//! The protocol is here; the storage is the driver's ([`AnyDriver::lease_claim`] and
//! friends: a Dokku app, a Docker volume, an entry of the in-memory world). Creating the lease
//! object is atomic on every backend, so two claimants cannot both win. A lease whose expiry
//! has passed belongs to nobody (its holder crashed): the next claimant removes it and takes
//! it. A holder renews its lease every third of the time to live while it works.

use std::time::Duration;

pub use crate::driver::LeaseRecord;
use crate::driver::{AnyDriver, Claim, DriverError};
use crate::model::live::HostRef;

/// Default time to live of a lease.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// Lease failures.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error("host `{host}` is locked by {} for `{}` until {}", held.holder, held.purpose, crate::clock::describe_unix(held.expires))]
    Held {
        /// Host.
        host: HostRef,
        /// The holder.
        held: LeaseRecord,
    },
    /// The lease changed hands between our reads, three times in a row.
    #[error("the lease on host `{host}` changed hands repeatedly while berth was taking it")]
    Contended {
        /// Host.
        host: HostRef,
    },
    /// The driver failed.
    #[error("cannot manage the lease on host `{host}`")]
    Driver {
        /// Host.
        host: HostRef,
        /// Cause.
        #[source]
        source: DriverError,
    },
}

impl LeaseError {
    /// Whether waiting may help (held or contended, or a transient driver failure).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Held { .. } | LeaseError::Contended { .. } => true,
            LeaseError::Driver { source, .. } => source.is_transient(),
        }
    }
}

fn driver_error(host: &HostRef) -> impl Fn(DriverError) -> LeaseError + '_ {
    move |source| LeaseError::Driver {
        host: host.clone(),
        source,
    }
}

/// The lease on a host, if any.
///
/// # Errors
/// Driver failures.
pub async fn status(driver: &AnyDriver) -> Result<Option<LeaseRecord>, LeaseError> {
    driver
        .lease_read()
        .await
        .map_err(driver_error(driver.host()))
}

/// Take the lease, breaking an expired one. Fails with [`LeaseError::Held`] when it is held
/// by someone else.
///
/// # Errors
/// Held by someone else, or driver failures.
pub async fn acquire(driver: &AnyDriver, record: &LeaseRecord, now: u64) -> Result<(), LeaseError> {
    let host = driver.host();
    for _ in 0..3 {
        match driver
            .lease_claim(record)
            .await
            .map_err(driver_error(host))?
        {
            Claim::Taken => return Ok(()),
            // Ours already (a retried claim whose answer was lost).
            Claim::Held(current) if current.token == record.token => return Ok(()),
            Claim::Held(current) if current.expires <= now => {
                driver.lease_clear().await.map_err(driver_error(host))?;
            }
            Claim::Held(current) => {
                return Err(LeaseError::Held {
                    host: host.clone(),
                    held: current,
                });
            }
        }
    }
    Err(LeaseError::Contended { host: host.clone() })
}

/// Extend a held lease to `record.expires`.
///
/// # Errors
/// Driver failures.
pub async fn renew(driver: &AnyDriver, record: &LeaseRecord) -> Result<(), LeaseError> {
    driver
        .lease_extend(record)
        .await
        .map_err(driver_error(driver.host()))
}

/// Whether the lease on the host is still ours (the holder's token) and unexpired at `now`.
///
/// # Errors
/// Driver failures.
pub async fn still_ours(driver: &AnyDriver, token: &str, now: u64) -> Result<bool, LeaseError> {
    Ok(status(driver)
        .await?
        .is_some_and(|r| r.token == token && r.expires > now))
}

/// Release a lease we hold (only if the token is ours).
///
/// # Errors
/// Driver failures.
pub async fn release(driver: &AnyDriver, token: &str) -> Result<(), LeaseError> {
    match status(driver).await? {
        Some(info) if info.token == token => release_any(driver).await,
        _ => Ok(()),
    }
}

/// Remove whatever lease is there (`berth lock break`, expired leases).
///
/// # Errors
/// Driver failures.
pub async fn release_any(driver: &AnyDriver) -> Result<(), LeaseError> {
    driver
        .lease_clear()
        .await
        .map_err(driver_error(driver.host()))
}
