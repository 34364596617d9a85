//! Reading a berth repo from a work tree into a [`SourceSet`] (a shell: it does file I/O).
//!
//! The pure core never touches the file system; this module is the one place that turns a
//! directory into values. Files are read with a size cap and checked for UTF-8 here so that
//! the core receives either text or the reason there is none.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::spec::source::{FileKind, MAX_FILE_BYTES, SourceFile, SourceSet, Unreadable};

/// The embedded default environment: the local Docker Engine at its default socket.
pub const EMBEDDED_LOCAL_ENVIRONMENT: &str = include_str!("../environments/local.yaml");

/// Path under which the embedded default is reported when the repo has no `local.yaml`.
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

/// Read `environments/*.yaml` and `tenants/*.yaml` under `root`, sorted by path.
///
/// When the repo has no `environments/local.yaml`, the embedded default is added under
/// that path so tenants can use `environment: local` out of the box.
///
/// # Errors
/// When `root` is not a directory or a directory cannot be listed.
pub fn load_dir(root: &Path) -> Result<SourceSet, RepoError> {
    if !root.is_dir() {
        return Err(RepoError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    for (dir, kind) in [
        ("environments", FileKind::Environment),
        ("tenants", FileKind::Tenant),
    ] {
        let path = root.join(dir);
        if !path.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&path).map_err(|source| RepoError::List {
            path: path.clone(),
            source,
        })?;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RepoError::List {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if is_yaml && !name.starts_with('.') {
                names.push((name, entry.path()));
            }
        }
        names.sort();
        for (name, file_path) in names {
            files.push(SourceFile {
                path: format!("{dir}/{name}"),
                kind,
                text: read_capped(&file_path),
            });
        }
    }
    let has_local = files
        .iter()
        .any(|f| f.kind == FileKind::Environment && (f.stem() == "local"));
    if !has_local {
        files.push(embedded_local());
    }
    files.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    Ok(SourceSet { files })
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
fn read_capped(path: &Path) -> Result<String, Unreadable> {
    let file = std::fs::File::open(path).map_err(|e| Unreadable::Io(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Unreadable::Io(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(Unreadable::TooLarge { size });
    }
    String::from_utf8(bytes).map_err(|e| Unreadable::NotUtf8 {
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}
