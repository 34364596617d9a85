//! Shared helpers: temporary berth repos and running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary berth repo on disk.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        Repo {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (text) relative to the repo root.
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        self.write_bytes(rel, text.as_bytes())
    }

    pub fn write_bytes(&self, rel: &str, bytes: &[u8]) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }
}

/// Path of the built `berth` binary.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Run `berth` with args; NO_COLOR set so output is stable.
pub fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run berth")
}

/// Run `berth <args> --repo <repo>` with no stdin (never a TTY) and NO_COLOR.
pub fn berth_in(repo: &Repo, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The repo root of this crate.
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run git in `dir` as `identity` (name, e-mail), unsigned; panics on failure; stdout.
pub fn git_as(dir: &Path, identity: (&str, &str), args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-c")
        .arg(format!("user.name={}", identity.0))
        .arg("-c")
        .arg(format!("user.email={}", identity.1))
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run git in `dir` with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) {
    git_as(dir, ("t", "t@example.test"), args);
}

/// Stage everything and commit.
pub fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// The full id of `HEAD` in `dir`.
pub fn head(dir: &Path) -> String {
    git_as(dir, ("t", "t@example.test"), &["rev-parse", "HEAD"])
        .trim()
        .to_string()
}
