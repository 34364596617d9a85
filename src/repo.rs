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
