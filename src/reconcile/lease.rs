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

/// Transient failures of a claim retried before the lease is given up on.
const CLAIM_RETRIES: u32 = 3;

/// How long a claimant that broke an expired lease waits before it reads the lease back.
/// Breaking is "clear, then claim": two claimants that both read the same expired lease both
/// clear it, and the slower one's clear can remove the faster one's fresh claim. Reading back
/// after longer than a claim's round trip shows which of them the host really holds.
pub const BREAK_SETTLE: Duration = Duration::from_secs(2);

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
    let mut changed_hands = 0;
    let mut failures = 0u32;
    while changed_hands < 3 {
        // A claim is safe to send again: one whose answer was lost reads back as ours
        // (below). So a transient failure (a cut connection, which the transport replaces)
        // is retried a few times before the lease is given up on.
        let claim = match driver.lease_claim(record).await {
            Err(e) if e.is_transient() && failures < CLAIM_RETRIES => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200) * failures).await;
                continue;
            }
            other => other.map_err(driver_error(host))?,
        };
        match claim {
            Claim::Taken if changed_hands > 0 => {
                tokio::time::sleep(BREAK_SETTLE).await;
                let read = match driver.lease_read().await {
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        driver.lease_read().await
                    }
                    other => other,
                };
                let read = match read {
                    Ok(read) => read,
                    Err(e) => {
                        // Our claim is most likely there: never leave it behind.
                        let _ = release(driver, &record.token).await;
                        return Err(driver_error(host)(e));
                    }
                };
                match read {
                    Some(current) if current.token == record.token => return Ok(()),
                    // Another claimant broke the same expired lease after us: theirs.
                    Some(current) if current.expires > now => {
                        return Err(LeaseError::Held {
                            host: host.clone(),
                            held: current,
                        });
                    }
                    // Cleared again (or expired meanwhile): go round.
                    _ => changed_hands += 1,
                }
            }
            Claim::Taken => return Ok(()),
            // Ours already (a retried claim whose answer was lost).
            Claim::Held(current) if current.token == record.token => return Ok(()),
            Claim::Held(current) if current.expires <= now => {
                driver.lease_clear().await.map_err(driver_error(host))?;
                changed_hands += 1;
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
    // Reading and clearing are both safe to repeat: a transient failure (a cut
    // connection) is retried, so a lease is not left for its whole time to live by one.
    let mut failures = 0u32;
    loop {
        let attempt = async {
            match status(driver).await? {
                Some(info) if info.token == token => release_any(driver).await,
                _ => Ok(()),
            }
        };
        match attempt.await {
            Err(e) if e.is_transient() && failures < CLAIM_RETRIES => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200) * failures).await;
            }
            other => return other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::memory::{MemoryDriver, World};
    use crate::driver::secrets::SecretProvider;

    fn record(holder: &str, expires: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            purpose: "test".into(),
            started: 1,
            expires,
            token: format!("token-{holder}"),
        }
    }

    /// Two claimants find the same expired lease; the slower one's clear (at 36 ms) removes
    /// the faster one's fresh claim (made at 30 ms), then it claims too. Exactly one of them
    /// may come out holding the host.
    #[tokio::test(start_paused = true)]
    async fn two_claimants_breaking_one_expired_lease_never_both_hold_it() {
        let host = HostRef::new("prod", "h1");
        let world = World::with_latency(Duration::from_millis(10));
        let slower = world.sharing_with_latency(Duration::from_millis(18));
        let secrets = SecretProvider::for_environment(&crate::model::Secrets::default());
        let fast = AnyDriver::Memory(MemoryDriver::new(
            host.clone(),
            world.clone(),
            secrets.clone(),
        ));
        let slow = AnyDriver::Memory(MemoryDriver::new(host.clone(), slower, secrets));
        world
            .state()
            .leases
            .insert(host.clone(), record("crashed", 5));
        let now = 100;
        let (ra, rb) = (record("a", now + 60), record("b", now + 60));
        let (a, b) = tokio::join!(acquire(&fast, &ra, now), acquire(&slow, &rb, now));
        let holder = world.state().leases.get(&host).map(|l| l.holder.clone());
        match (a.is_ok(), b.is_ok()) {
            (true, false) => assert_eq!(holder.as_deref(), Some("a")),
            (false, true) => assert_eq!(holder.as_deref(), Some("b")),
            other => panic!("both or neither hold the lease: {other:?}, host has {holder:?}"),
        }
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(loser, Err(LeaseError::Held { .. })),
            "the other is told who holds it: {loser:?}"
        );
    }
}
