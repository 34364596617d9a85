//! Which tenants a plan is about: all of them, or those `--since REV` (files changed since a
//! revision) and `--tenant ID` name, plus every tenant of an environment whose file changed.
//!
//! `--since` compares against what is being planned: the revision given with `--rev`, or —
//! when the work tree is read — the work tree itself, uncommitted edits included (a plan that
//! reads an edited file must count it as changed, or it would say "no changes" while a full
//! plan shows one).

use std::collections::{BTreeMap, BTreeSet};

use super::{Loaded, SessionError, Source};
use crate::gitops::GitRepo;
use crate::model::Fleet;
use crate::model::live::HostRef;
use crate::plan::Scope;

/// The flags that narrow a plan.
#[derive(Debug, Clone, Default)]
pub struct ScopeRequest {
    /// `--since REV`.
    pub since: Option<String>,
    /// `--tenant ID` (repeatable).
    pub tenants: Vec<String>,
}

pub(super) fn resolve(
    source: &Source,
    loaded: &Loaded,
    request: &ScopeRequest,
) -> Result<Option<Scope>, SessionError> {
    let mut scope = match &request.since {
        Some(since) => {
            let git = GitRepo::open(&source.repo)?;
            let changes = match &source.rev {
                Some(rev) => git.changes(since, rev)?,
                None => git.changes_to_workdir(since)?,
            };
            Scope {
                tenants: changes.tenants,
                environments: changes.environments,
                named: BTreeSet::new(),
                since: Some(git.resolve(since)?),
            }
        }
        None if request.tenants.is_empty() => return Ok(None),
        None => Scope::default(),
    };
    scope.named = request.tenants.iter().cloned().collect();
    scope.tenants.extend(request.tenants.iter().cloned());
    // Every tenant of a changed environment is in scope.
    for (id, tenant) in &loaded.fleet.tenants {
        if scope.environments.contains(&tenant.environment) {
            scope.tenants.insert(id.clone());
        }
    }
    Ok(Some(scope))
}

/// The scope of a daemon's incremental pass: the tenants whose files changed since the
/// commit each host records as applied (the `--since` machinery, once per distinct commit),
/// plus `extra` (tenants due for a retry). `None` — a full pass — when a host records no
/// commit or one this repo does not have (history rewritten): only a full pass is safe then.
///
/// # Errors
/// Unreadable git history.
pub fn since_applied(
    source: &Source,
    loaded: &Loaded,
    applied: &BTreeMap<HostRef, Option<String>>,
    extra: &BTreeSet<String>,
) -> Result<Option<Scope>, SessionError> {
    let Ok(git) = GitRepo::open(&source.repo) else {
        return Ok(None);
    };
    let mut commits = BTreeSet::new();
    for commit in applied.values() {
        match commit {
            Some(c) if git.resolve(c).is_ok() => {
                commits.insert(c.clone());
            }
            _ => return Ok(None),
        }
    }
    let mut merged: Option<Scope> = None;
    for commit in commits {
        let request = ScopeRequest {
            since: Some(commit),
            tenants: Vec::new(),
        };
        let Some(scope) = resolve(source, loaded, &request)? else {
            continue;
        };
        match &mut merged {
            None => merged = Some(scope),
            Some(m) => {
                m.tenants.extend(scope.tenants);
                m.environments.extend(scope.environments);
            }
        }
    }
    Ok(merged.map(|mut scope| {
        scope.tenants.extend(extra.iter().cloned());
        scope
    }))
}

/// Name prefixes of the Dokku apps and services of the tenants in scope, for a scoped scan;
/// `[""]` (read everything) when the naming template does not start with the tenant or an
/// environment (with its shared services) is in scope.
#[must_use]
pub fn dokku_prefixes(fleet: &Fleet, scope: &Scope) -> Vec<String> {
    let templates_ok = fleet
        .environments
        .values()
        .all(|e| e.dokku_app_template.starts_with("{tenant}-"));
    if !templates_ok || !scope.environments.is_empty() {
        // Shared services or custom names: read everything rather than guess.
        return vec![String::new()];
    }
    scope.tenants.iter().map(|t| format!("{t}-")).collect()
}
