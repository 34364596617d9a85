//! Git as the source of truth: desired state at any commit (no checkout needed), the tenants
//! a range of commits touched, and the commit a host last had applied.
//!
//! Built on git2 (libgit2), read-only: CI clones, berth reads. (The network transports that
//! feature `bridge-remotes` enables are for the Stripe bridge's push, `billing::git`.)

pub mod remote;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{Delta, DiffFindOptions, DiffOptions, ObjectType, Repository};

use crate::spec::source::{Found, FoundEntry, MAX_FILE_BYTES, SourceSet, build_source_set};

/// Git failures.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// Not inside a git repository.
    #[error("`{}` is not inside a git repository", path.display())]
    NotARepo {
        /// Where we looked.
        path: PathBuf,
        /// Cause.
        #[source]
        source: git2::Error,
    },
    /// A revision does not resolve to a commit.
    #[error("`{rev}` is not a commit in this repository")]
    BadRevision {
        /// The revision given.
        rev: String,
        /// Cause.
        #[source]
        source: git2::Error,
    },
    /// Reading objects failed.
    #[error("cannot read `{what}` from git")]
    Read {
        /// What.
        what: String,
        /// Cause.
        #[source]
        source: git2::Error,
    },
}

/// A berth repo in git, possibly in a subdirectory of the git work tree.
pub struct GitRepo {
    repo: Repository,
    /// The berth repo's path relative to the git root (`""` at the root).
    prefix: String,
}

/// What changed between two commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Tenant ids (file stems) added, modified, deleted or renamed (old and new ids).
    pub tenants: BTreeSet<String>,
    /// Environment names whose files changed.
    pub environments: BTreeSet<String>,
}

/// What a commit is, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full id.
    pub id: String,
    /// Subject line.
    pub summary: String,
    /// Commit time, unix seconds.
    pub time: i64,
}

fn stem(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .map(str::to_string)
}

impl GitRepo {
    /// Open the repository containing `path`.
    ///
    /// # Errors
    /// When `path` is not in a git repository.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        let repo = Repository::discover(path).map_err(|source| GitError::NotARepo {
            path: path.to_path_buf(),
            source,
        })?;
        let root = repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.to_path_buf());
        let here = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let prefix = here
            .strip_prefix(&root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        Ok(GitRepo { repo, prefix })
    }

    fn commit(&self, rev: &str) -> Result<git2::Commit<'_>, GitError> {
        self.repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|source| GitError::BadRevision {
                rev: rev.to_string(),
                source,
            })
    }

    /// Full id of a revision.
    ///
    /// # Errors
    /// When it does not resolve.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        Ok(self.commit(rev)?.id().to_string())
    }

    fn in_repo(&self, dir: &str) -> String {
        if self.prefix.is_empty() {
            dir.to_string()
        } else {
            format!("{}/{dir}", self.prefix)
        }
    }

    /// The berth files at a commit, read with the same rules as the work tree
    /// ([`build_source_set`]).
    ///
    /// # Errors
    /// Unresolvable revisions and unreadable objects.
    pub fn sources_at(&self, rev: &str) -> Result<SourceSet, GitError> {
        let tree = self.commit(rev)?.tree().map_err(|source| GitError::Read {
            what: format!("tree of {rev}"),
            source,
        })?;
        let mut found = Vec::new();
        for dir in ["environments", "tenants"] {
            let Ok(entry) = tree.get_path(Path::new(&self.in_repo(dir))) else {
                continue;
            };
            let object = entry
                .to_object(&self.repo)
                .map_err(|source| GitError::Read {
                    what: dir.to_string(),
                    source,
                })?;
            let Some(subtree) = object.as_tree() else {
                continue;
            };
            for item in subtree {
                let Some(name) = item.name().map(str::to_string) else {
                    continue;
                };
                // Regular blobs only (mode 100644/100755); a symlink blob is `Other`.
                let regular = item.kind() == Some(ObjectType::Blob)
                    && matches!(item.filemode(), 0o100_644 | 0o100_755);
                let entry = if regular {
                    let blob = self
                        .repo
                        .find_blob(item.id())
                        .map_err(|source| GitError::Read {
                            what: format!("{dir}/{name}"),
                            source,
                        })?;
                    let size = blob.size() as u64;
                    let bytes = if size > MAX_FILE_BYTES {
                        Vec::new()
                    } else {
                        blob.content().to_vec()
                    };
                    FoundEntry::File { bytes, size }
                } else {
                    FoundEntry::Other
                };
                found.push(Found {
                    dir: dir.to_string(),
                    name,
                    entry,
                });
            }
        }
        Ok(build_source_set(found, Some(crate::repo::embedded_local())))
    }

    /// Tenants and environments whose files differ between `from` and the work tree
    /// (uncommitted and untracked edits included).
    ///
    /// # Errors
    /// Unresolvable revisions.
    pub fn changes_to_workdir(&self, from: &str) -> Result<Changes, GitError> {
        let read = |source| GitError::Read {
            what: format!("diff {from}..(work tree)"),
            source,
        };
        let old = self.commit(from)?.tree().map_err(read)?;
        let mut options = self.berth_diff_options();
        options.include_untracked(true).recurse_untracked_dirs(true);
        let mut diff = self
            .repo
            .diff_tree_to_workdir_with_index(Some(&old), Some(&mut options))
            .map_err(read)?;
        diff.find_similar(Some(DiffFindOptions::new().renames(true)))
            .map_err(read)?;
        Ok(self.changes_of(&diff))
    }

    fn berth_diff_options(&self) -> DiffOptions {
        let mut options = DiffOptions::new();
        options
            .pathspec(self.in_repo("tenants"))
            .pathspec(self.in_repo("environments"));
        options
    }

    fn changes_of(&self, diff: &git2::Diff<'_>) -> Changes {
        let mut changes = Changes::default();
        let tenants_dir = format!("{}/", self.in_repo("tenants"));
        let envs_dir = format!("{}/", self.in_repo("environments"));
        for delta in diff.deltas() {
            let mut paths = Vec::new();
            if delta.status() != Delta::Added && delta.status() != Delta::Untracked {
                paths.extend(
                    delta
                        .old_file()
                        .path()
                        .map(|p| p.to_string_lossy().into_owned()),
                );
            }
            if delta.status() != Delta::Deleted {
                paths.extend(
                    delta
                        .new_file()
                        .path()
                        .map(|p| p.to_string_lossy().into_owned()),
                );
            }
            for path in paths {
                if let Some(rest) = path.strip_prefix(&tenants_dir) {
                    changes.tenants.extend(stem(rest));
                } else if let Some(rest) = path.strip_prefix(&envs_dir) {
                    changes.environments.extend(stem(rest));
                }
            }
        }
        changes
    }

    /// Tenants and environments whose files changed from `from` to `to` (renames detected).
    ///
    /// # Errors
    /// Unresolvable revisions.
    pub fn changes(&self, from: &str, to: &str) -> Result<Changes, GitError> {
        let read = |source| GitError::Read {
            what: format!("diff {from}..{to}"),
            source,
        };
        let old = self.commit(from)?.tree().map_err(read)?;
        let new = self.commit(to)?.tree().map_err(read)?;
        let mut options = self.berth_diff_options();
        let mut diff = self
            .repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut options))
            .map_err(read)?;
        diff.find_similar(Some(DiffFindOptions::new().renames(true)))
            .map_err(read)?;
        Ok(self.changes_of(&diff))
    }

    /// A commit's id, subject line and commit time (unix seconds).
    ///
    /// # Errors
    /// When `rev` does not resolve.
    pub fn describe(&self, rev: &str) -> Result<CommitInfo, GitError> {
        let commit = self.commit(rev)?;
        Ok(CommitInfo {
            id: commit.id().to_string(),
            summary: commit.summary().unwrap_or_default().to_string(),
            time: commit.time().seconds(),
        })
    }

    /// How many commits `to` has that `from` lacks.
    ///
    /// # Errors
    /// Unresolvable revisions.
    pub fn behind(&self, from: &str, to: &str) -> Result<usize, GitError> {
        let a = self.commit(from)?.id();
        let b = self.commit(to)?.id();
        let (_, behind) = self
            .repo
            .graph_ahead_behind(a, b)
            .map_err(|source| GitError::Read {
                what: format!("history {from}..{to}"),
                source,
            })?;
        Ok(behind)
    }
}
