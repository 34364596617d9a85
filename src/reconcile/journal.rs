//! The journal of an apply: one JSON line per finished step of a plan, in
//! `.berth/journal/<plan id>.jsonl` under the repo.
//!
//! `apply --resume PLAN` skips the steps the journal records as succeeded. Correctness never
//! depends on it — a fresh plan re-observes the hosts and already skips what is done — it only
//! saves the time of steps that would be no-ops anyway. Lines are written whole and flushed;
//! a torn last line (a crash mid-write) is ignored on reading.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::execute::{Event, Reporter};
use crate::plan::{Plan, short_hash_of};

/// Journal failures.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the journal `{}`", path.display())]
pub struct JournalError {
    /// The journal file.
    pub path: PathBuf,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Where the journal of `plan` lives in `repo`.
#[must_use]
pub fn path_for(repo: &Path, plan: &Plan) -> PathBuf {
    repo.join(".berth/journal")
        .join(format!("{}.jsonl", short_hash_of(plan)))
}

/// Step ids the journal at `path` records as succeeded (none when there is no journal).
#[must_use]
pub fn succeeded(path: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "succeeded")
        .filter_map(|v| v["step"].as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// Appends finished steps to a journal file.
pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// The first write error, reported once at the end instead of on every step.
    failed: Mutex<Option<std::io::Error>>,
}

impl Journal {
    /// Open (create or append to) the journal at `path`.
    ///
    /// # Errors
    /// When the directory or file cannot be created.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let error = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failed: Mutex::new(None),
        })
    }

    /// The first write failure, if any (a full disk): the apply went on without its journal.
    pub fn take_error(&self) -> Option<JournalError> {
        self.failed
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .map(|source| JournalError {
                path: self.path.clone(),
                source,
            })
    }
}

impl Reporter for Journal {
    fn event(&self, event: &Event<'_>) {
        let (step, outcome) = match event {
            Event::StepSucceeded { step, .. } => (step.id, "succeeded"),
            Event::StepFailed { step, .. } => (step.id, "failed"),
            _ => return,
        };
        let line = serde_json::json!({"step": step, "outcome": outcome, "at": crate::clock::now_rfc3339()});
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        let written = file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.flush());
        if let Err(e) = written
            && let Ok(mut failed) = self.failed.lock()
            && failed.is_none()
        {
            *failed = Some(e);
        }
    }
}
