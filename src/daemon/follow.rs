//! What the daemon follows: a local path (read as `berth apply` reads a work tree) or a remote
//! branch (fetched with git2 into a bare mirror in the state directory, then read at its tip
//! without a checkout).

use std::path::PathBuf;

use crate::gitops::remote::{Auth, FetchError, Mirror};
use crate::gitops::{CommitInfo, GitRepo};
use crate::reconcile::Source;

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum Follow {
    /// A berth repo on this machine (a git work tree or a plain directory), watched for
    /// changes.
    Local(PathBuf),
    /// A branch of a remote repository.
    Remote {
        /// URL (or path) of the remote.
        url: String,
        /// Branch to follow.
        branch: String,
        /// Credentials (ssh key or agent with a pinned host key, https token).
        auth: Auth,
    },
}

/// The desired state as the daemon reads it now.
#[derive(Debug, Clone)]
pub struct Head {
    /// Where the session reads it.
    pub source: Source,
    /// The commit it reflects, when it reflects one exactly (a clean work tree, a fetched tip):
    /// recorded on hosts after a pass.
    pub commit: Option<CommitInfo>,
}

/// Why the followed repo could not be read now.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The remote could not be fetched (transient: retried with backoff).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The local path is missing.
    #[error("`{}` does not exist", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
}

/// Follows a [`Follow`] source.
#[derive(Debug)]
pub enum Follower {
    /// A local path.
    Local(PathBuf),
    /// A remote mirrored in the state directory.
    Remote(Mirror),
}

impl Follower {
    /// Set up: for a remote, open (or create) its mirror under `state_dir`.
    ///
    /// # Errors
    /// The mirror cannot be created.
    pub fn new(follow: &Follow, state_dir: &std::path::Path) -> Result<Self, FollowError> {
        Ok(match follow {
            Follow::Local(path) => Follower::Local(path.clone()),
            Follow::Remote { url, branch, auth } => {
                Follower::Remote(Mirror::open(state_dir, url, branch, auth.clone())?)
            }
        })
    }

    /// Read what the source says now: fetch a remote, look at a local path.
    ///
    /// # Errors
    /// A failed fetch, a missing path.
    pub fn refresh(&self) -> Result<Head, FollowError> {
        match self {
            Follower::Local(path) => {
                if !path.exists() {
                    return Err(FollowError::Missing { path: path.clone() });
                }
                // The work tree, as `berth apply` reads it; it reflects HEAD only when no
                // berth file differs from it.
                let commit = GitRepo::open(path).ok().and_then(|git| {
                    let clean = git
                        .changes_to_workdir("HEAD")
                        .is_ok_and(|c| c.tenants.is_empty() && c.environments.is_empty());
                    clean.then(|| git.describe("HEAD").ok()).flatten()
                });
                Ok(Head {
                    source: Source {
                        repo: path.clone(),
                        rev: None,
                    },
                    commit,
                })
            }
            Follower::Remote(mirror) => {
                let tip = mirror.fetch()?;
                let commit = GitRepo::open(mirror.path())
                    .ok()
                    .and_then(|g| g.describe(&tip).ok());
                Ok(Head {
                    source: Source {
                        repo: mirror.path().to_path_buf(),
                        rev: Some(tip),
                    },
                    commit,
                })
            }
        }
    }

    /// The repository to read history from (baselines, commits behind), if any.
    #[must_use]
    pub fn history(&self) -> Option<PathBuf> {
        match self {
            Follower::Local(path) => GitRepo::open(path).ok().map(|_| path.clone()),
            Follower::Remote(mirror) => Some(mirror.path().to_path_buf()),
        }
    }
}
