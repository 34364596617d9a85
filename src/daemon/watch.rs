//! Watching a local repo with `notify` (inotify on Linux). Events only wake the daemon; it
//! debounces them itself (a `git pull` or an editor's save is a burst of events) and then
//! reads the whole repo again — a pass never learns which file moved.

use std::path::Path;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// A running watch; dropping it stops watching.
pub(super) struct Watch {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// Watch `path` recursively; every relevant event sends `()` on the returned channel.
/// Git's object store and lock files are ignored (a commit shows as a ref change anyway).
///
/// # Errors
/// The watch cannot be set up (no inotify instances left, unreadable path).
pub(super) fn watch(path: &Path) -> Result<(Watch, mpsc::UnboundedReceiver<()>), notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let text = p.to_string_lossy();
            !(text.contains("/.git/objects/") || text.ends_with(".lock"))
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(path, RecursiveMode::Recursive)?;
    Ok((Watch { _watcher: watcher }, rx))
}
