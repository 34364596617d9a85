//! Reading a berth repo from a work tree into a [`SourceSet`] (a shell: it does file I/O).
//!
//! The pure core never touches the file system; this module lists the two directories and
//! reads each entry (regular files only, at most the size cap), then hands the listing to
//! [`build_source_set`] — the same rules the git reader (`gitops`) uses.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::spec::source::{
    FileKind, Found, FoundEntry, MAX_FILE_BYTES, SourceFile, SourceSet, build_source_set,
};

/// The embedded default environment: the local Docker Engine at its default socket.
pub const EMBEDDED_LOCAL_ENVIRONMENT: &str = include_str!("../environments/local.yaml");

/// Path under which the embedded default is reported.
pub const EMBEDDED_LOCAL_PATH: &str = "environments/local.yaml";

/// Failures to read a repo as a whole (single unreadable files become diagnostics instead).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The directory does not exist or is not a directory.
    #[error("`{}` is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// `environments/` or `tenants/` is a symlink: berth reads files inside the repo only,
    /// so a link cannot pull another directory's files into a plan.
    #[error("`{}` is a symlink; berth reads only files inside the repo", path.display())]
    SymlinkedDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Listing a directory failed.
    #[error("cannot list `{}`", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A digest of what `environments/` and `tenants/` hold — every entry's name, type, size,
/// inode and modification and change times, no file opened — so a follower can tell that a
/// re-read would find the same files.
///
/// `None` (read the files) when a directory cannot be listed, or when an entry changed
/// within the last 2 seconds: file times are only as fine as the kernel's clock tick, so a
/// second write of the same size just after a read could otherwise go unseen (git's "racy
/// clean" rule).
#[must_use]
pub fn listing_fingerprint(root: &Path) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    use std::os::unix::fs::MetadataExt as _;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let now = std::time::SystemTime::now();
    let recent = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(2))
    };
    for dir in ["environments", "tenants"] {
        let path = root.join(dir);
        let Ok(meta) = path.symlink_metadata() else {
            dir.hash(&mut hasher);
            continue;
        };
        (dir, meta.ino(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
        if !meta.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&path)
            .ok()?
            .map(|e| e.ok().map(|e| e.file_name()))
            .collect::<Option<_>>()?;
        entries.sort();
        for name in entries {
            let meta = path.join(&name).symlink_metadata().ok()?;
            if recent(&meta) {
                return None;
            }
            (
                name,
                meta.file_type().is_file(),
                meta.len(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            )
                .hash(&mut hasher);
        }
    }
    Some(hasher.finish())
}

/// Read `environments/*.yaml` and `tenants/*.yaml` under `root`.
///
/// When the repo has no environment file at all, the embedded default is added as
/// `environments/local.yaml` so the sample tenants work out of the box.
///
/// # Errors
/// When `root` is not a directory or a directory cannot be listed.
pub fn load_dir(root: &Path) -> Result<SourceSet, RepoError> {
    if !root.is_dir() {
        return Err(RepoError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut listed = Vec::new();
    for dir in ["environments", "tenants"] {
        let path = root.join(dir);
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(RepoError::SymlinkedDirectory { path });
        }
        if !path.is_dir() {
            continue;
        }
        let list = |source| RepoError::List {
            path: path.clone(),
            source,
        };
        for entry in std::fs::read_dir(&path).map_err(list)? {
            let entry = entry.map_err(list)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `file_type` does not follow symlinks: a link is `Other`, never read.
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            listed.push((dir, name, is_file.then(|| entry.path())));
        }
    }
    // Reading 10,000 small files is mostly system calls: spread over the cores.
    let found = parallel_map(listed.len(), &|i| {
        let (dir, name, path) = &listed[i];
        Found {
            dir: (*dir).to_string(),
            name: name.clone(),
            entry: path.as_deref().map_or(FoundEntry::Other, read_capped),
        }
    });
    Ok(build_source_set(found, Some(embedded_local())))
}

/// Items handed to each thread at a time by [`parallel_map`].
const BATCH: usize = 64;
/// Most threads [`parallel_map`] starts.
const MAX_THREADS: usize = 16;

/// `work(i)` for every `i` in `0..n` on the available cores (scoped threads taking batches
/// of indexes), returned in order of `i` whatever thread ran it. Small inputs stay on the
/// calling thread. Used for reading files here and, by `reconcile`, for checking them.
pub fn parallel_map<R: Send>(n: usize, work: &(dyn Fn(usize) -> R + Sync)) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_THREADS)
        .min(n.div_ceil(BATCH));
    if threads <= 1 {
        return (0..n).map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if start >= n {
                            break mine;
                        }
                        let end = (start + BATCH).min(n);
                        mine.push((start, (start..end).map(work).collect::<Vec<R>>()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    parts.sort_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

/// The embedded default environment as a source file.
#[must_use]
pub fn embedded_local() -> SourceFile {
    SourceFile {
        path: EMBEDDED_LOCAL_PATH.to_string(),
        kind: FileKind::Environment,
        text: Ok(EMBEDDED_LOCAL_ENVIRONMENT.to_string()),
    }
}

/// Read at most [`MAX_FILE_BYTES`] + 1 bytes, so a huge file costs no more than the cap.
fn read_capped(path: &Path) -> FoundEntry {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return FoundEntry::Failed(e.to_string()),
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::new();
    match file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        Ok(_) => FoundEntry::File { bytes, size },
        Err(e) => FoundEntry::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::listing_fingerprint;
    use std::time::{Duration, SystemTime};

    fn write_old(path: &std::path::Path, text: &str, when: SystemTime) {
        std::fs::write(path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn a_listing_changes_with_any_file_and_is_not_trusted_while_young() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("tenants")).unwrap();
        std::fs::create_dir_all(root.join("environments")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        write_old(&root.join("tenants/acme.yaml"), "tier: pro\n", old);
        write_old(&root.join("environments/prod.yaml"), "hosts: {}\n", old);
        let first = listing_fingerprint(root).expect("old files are trusted");
        assert_eq!(listing_fingerprint(root), Some(first), "nothing changed");
        // Same size, same modification time put back: the change time still moves.
        std::thread::sleep(Duration::from_millis(20));
        write_old(&root.join("tenants/acme.yaml"), "tier: max\n", old);
        let second = listing_fingerprint(root).expect("still old");
        assert_ne!(second, first, "a same-size rewrite is seen");
        // A new file, then a just-written one: not trusted, the caller reads the files.
        write_old(&root.join("tenants/bolt.yaml"), "tier: pro\n", old);
        assert_ne!(listing_fingerprint(root), Some(second));
        std::fs::write(root.join("tenants/cogs.yaml"), "tier: pro\n").unwrap();
        assert_eq!(listing_fingerprint(root), None);
    }
}
