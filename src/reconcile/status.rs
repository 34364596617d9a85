//! `berth status` and `berth lock`: what each host records (applied commit, lease) and what a
//! fresh plan finds there.

use std::collections::{BTreeMap, BTreeSet};

use super::{PlanSettings, Session, SessionError, Source, lease, load};
use crate::driver::{Connector, LeaseRecord};
use crate::gitops::GitRepo;
use crate::model::Fleet;
use crate::model::live::HostRef;

/// One host's line of `berth status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// Host.
    pub host: HostRef,
    /// The commit recorded as applied.
    pub applied: Option<String>,
    /// Commits `HEAD` has that the applied commit lacks (`None`: unknown).
    pub behind: Option<usize>,
    /// Steps a fresh plan makes because the host moved.
    pub drifted: usize,
    /// Steps a fresh plan makes because the files changed.
    pub pending: usize,
}

/// `berth status`: per host in use, the applied commit, how far behind `HEAD` it is, and
/// what a fresh plan finds there.
///
/// # Errors
/// Invalid files, unreachable hosts.
pub async fn status(
    source: &Source,
    connector: &Connector,
) -> Result<Vec<HostStatus>, SessionError> {
    let loaded = load(source)?;
    let git = GitRepo::open(&source.repo).ok();
    let session = Session::connect(loaded.fleet, loaded.commit, connector, None)
        .await?
        .with_history(&source.repo);
    let plan = session
        .plan(&PlanSettings {
            allow_destroys: true,
            allow_empty: true,
            ..PlanSettings::default()
        })
        .await?;
    let mut counts: BTreeMap<HostRef, (usize, usize)> = BTreeMap::new();
    for step in &plan.steps {
        let entry = counts
            .entry(HostRef::new(&step.environment, &step.host))
            .or_default();
        match step.cause {
            crate::plan::Cause::Drift => entry.0 += 1,
            _ => entry.1 += 1,
        }
    }
    let applied = session.applied_commits().await;
    Ok(applied
        .into_iter()
        .map(|(host, applied)| {
            let behind = match (&git, &applied) {
                (Some(g), Some(commit)) => g.behind(commit, "HEAD").ok(),
                _ => None,
            };
            let (drifted, pending) = counts.get(&host).copied().unwrap_or_default();
            HostStatus {
                host,
                applied,
                behind,
                drifted,
                pending,
            }
        })
        .collect())
}

/// `berth lock status`: the lease of every host of the repo's environments.
///
/// # Errors
/// Invalid files, unreachable hosts.
pub async fn lock_status(
    fleet: &Fleet,
    connector: &Connector,
) -> Result<Vec<(HostRef, Option<LeaseRecord>)>, SessionError> {
    let drivers = connector.connect(fleet, None).await?;
    let mut out = Vec::new();
    for (host, driver) in &drivers.hosts {
        out.push((host.clone(), lease::status(driver).await?));
    }
    Ok(out)
}

/// `berth lock break --host H`: remove the lease of one host; returns who held it.
///
/// # Errors
/// Unreachable host.
pub async fn lock_break(
    fleet: &Fleet,
    host: &HostRef,
    connector: &Connector,
) -> Result<Option<LeaseRecord>, SessionError> {
    let only = BTreeSet::from([host.clone()]);
    let drivers = connector.connect(fleet, Some(&only)).await?;
    let Some(driver) = drivers.hosts.get(host) else {
        return Ok(None);
    };
    let before = lease::status(driver).await?;
    lease::release_any(driver).await?;
    Ok(before)
}
