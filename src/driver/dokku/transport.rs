//! The SSH transport to one Dokku host: the system `ssh` client through the `openssh` crate,
//! one multiplexed master connection, every command a new channel on it.
//!
//! - Host keys are pinned: berth writes the environment file's `host-key` into a known_hosts
//!   file of its own and runs ssh with `StrictHostKeyChecking=yes` against it, with the user's
//!   ssh config replaced by an empty one so nothing outside the environment file applies.
//! - `BatchMode` (set by the crate), no TTY (mux channels request none), stdin closed.
//! - Channels are bounded per connection (sshd's `MaxSessions` defaults to 10 and refuses, not
//!   queues, the eleventh: reference/dokku.md Appendix A); each command has a timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::sync::Semaphore;

use super::command::RemoteCommand;
use crate::model::DokkuTarget;
use crate::model::live::HostRef;

/// Most commands in flight on one connection: below sshd's default `MaxSessions` of 10, with
/// room for sessions the server is still closing.
pub const MAX_CHANNELS: usize = 6;

/// What a remote command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when the process was killed.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server presented a key other than the pinned one.
    #[error("host key of `{host}` does not match the pinned `host-key`")]
    HostKey {
        /// Host.
        host: HostRef,
    },
    /// Connecting failed.
    #[error("cannot connect to `{host}` over SSH")]
    Connect {
        /// Host.
        host: HostRef,
        /// Cause.
        #[source]
        source: openssh::Error,
    },
    /// A channel failed (dropped connection, refused session).
    #[error("SSH channel to `{host}` failed while running `{command}`")]
    Channel {
        /// Host.
        host: HostRef,
        /// The command, redacted.
        command: String,
        /// Cause.
        #[source]
        source: openssh::Error,
    },
    /// The command took longer than the host's timeout.
    #[error("`{command}` on `{host}` timed out after {secs} s")]
    Timeout {
        /// Host.
        host: HostRef,
        /// The command, redacted.
        command: String,
        /// Timeout.
        secs: u64,
    },
    /// Setting up local files (known_hosts, control directory) failed.
    #[error("cannot prepare SSH files for `{host}`")]
    Local {
        /// Host.
        host: HostRef,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Worth retrying: network-level trouble, not a refused host key.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            TransportError::HostKey { .. } | TransportError::Local { .. }
        )
    }
}

/// Master connections per host: sshd caps sessions per connection (MaxSessions), not per
/// client, so a few connections multiply the reads a wave can run at once.
pub const CONNECTIONS: usize = 3;

/// One master connection and its channel budget.
struct Lane {
    session: tokio::sync::RwLock<Arc<Session>>,
    channels: Semaphore,
}

/// The connections to one Dokku host.
pub struct Transport {
    host: HostRef,
    target: DokkuTarget,
    lanes: Vec<Lane>,
    next: std::sync::atomic::AtomicUsize,
    timeout: Duration,
    _files: tempfile::TempDir,
}

/// The known_hosts line for a target: `[addr]:port key` (plain `addr key` on port 22).
#[must_use]
pub fn known_hosts_line(target: &DokkuTarget) -> String {
    let who = if target.port == 22 {
        target.address.clone()
    } else {
        format!("[{}]:{}", target.address, target.port)
    };
    let key: Vec<&str> = target.host_key.split_whitespace().take(2).collect();
    format!("{who} {}\n", key.join(" "))
}

/// Open a master connection with the pinned host key and an empty ssh config.
async fn open(
    host: &HostRef,
    target: &DokkuTarget,
    files: &tempfile::TempDir,
) -> Result<Session, TransportError> {
    let known_hosts = files.path().join("known_hosts");
    let config = files.path().join("config");
    let mut builder = SessionBuilder::default();
    builder
        .user(target.user.clone())
        .port(target.port)
        .known_hosts_check(KnownHosts::Strict)
        .user_known_hosts_file(&known_hosts)
        .config_file(&config)
        .control_directory(files.path())
        .connect_timeout(Duration::from_secs(15))
        .server_alive_interval(Duration::from_secs(15));
    if let Some(identity) = &target.identity {
        builder.keyfile(PathBuf::from(identity));
    }
    // Native mux: commands travel over the control socket, so no local `ssh` process (and no
    // argv visible in `ps`) exists per command.
    builder
        .connect_mux(&target.address)
        .await
        .map_err(|source| {
            let text = format!("{source:?} {source}");
            if text.contains("Host key verification failed")
                || text.contains("HOST IDENTIFICATION HAS CHANGED")
            {
                TransportError::HostKey { host: host.clone() }
            } else {
                TransportError::Connect {
                    host: host.clone(),
                    source,
                }
            }
        })
}

impl Transport {
    /// Connect (one master connection) with the host key pinned.
    ///
    /// # Errors
    /// Host key mismatch, unreachable host, local file trouble.
    pub async fn connect(host: &HostRef, target: &DokkuTarget) -> Result<Self, TransportError> {
        let local = |source| TransportError::Local {
            host: host.clone(),
            source,
        };
        let files = tempfile::Builder::new()
            .prefix("berth-ssh-")
            .tempdir()
            .map_err(local)?;
        let known_hosts = files.path().join("known_hosts");
        std::fs::write(&known_hosts, known_hosts_line(target)).map_err(local)?;
        let config = files.path().join("config");
        std::fs::write(&config, "").map_err(local)?;
        let mut lanes = Vec::new();
        for _ in 0..CONNECTIONS {
            let session = open(host, target, &files).await?;
            lanes.push(Lane {
                session: tokio::sync::RwLock::new(Arc::new(session)),
                channels: Semaphore::new(MAX_CHANNELS),
            });
        }
        Ok(Transport {
            host: host.clone(),
            target: target.clone(),
            lanes,
            next: std::sync::atomic::AtomicUsize::new(0),
            timeout: Duration::from_secs(u64::from(target.timeout_secs.max(1))),
            _files: files,
        })
    }

    /// The host this transport reaches.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        &self.host
    }

    /// Run one command (stdin closed, no TTY) within the channel bound and the timeout.
    ///
    /// # Errors
    /// Channel failures and timeouts; a non-zero exit is not an error here.
    pub async fn run(&self, command: &RemoteCommand) -> Result<Output, TransportError> {
        // A lane with a free channel, else wait on the next one in turn.
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.lanes.len();
        let free = (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .find_map(|lane| lane.channels.try_acquire().ok().map(|p| (lane, p)));
        let (lane, _permit) = match free {
            Some(found) => found,
            None => {
                let lane = &self.lanes[start % n];
                let permit =
                    lane.channels
                        .acquire()
                        .await
                        .map_err(|_| TransportError::Timeout {
                            host: self.host.clone(),
                            command: command.display.clone(),
                            secs: 0,
                        })?;
                (lane, permit)
            }
        };
        // sshd refuses (does not queue) sessions beyond MaxSessions, and closes finished
        // ones a little after the client sees them end: a refusal means "try again shortly".
        let mut refused = 0u32;
        let output = loop {
            let session = lane.session.read().await.clone();
            let mut words = command.wire.iter();
            let first = words.next().cloned().unwrap_or_default();
            let mut cmd = session.raw_command(first);
            cmd.raw_args(words)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let result = tokio::time::timeout(self.timeout, cmd.output())
                .await
                .map_err(|_| TransportError::Timeout {
                    host: self.host.clone(),
                    command: command.display.clone(),
                    secs: self.timeout.as_secs(),
                })?;
            match result {
                Ok(output) => break output,
                Err(source) if refused < 200 && format!("{source}").contains("refused") => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(u64::from(refused.min(10)) * 5)).await;
                    // Refused for a long while: the server holds on to sessions of this
                    // connection; a fresh master connection starts with none.
                    if refused.is_multiple_of(40) {
                        self.reconnect(lane, &session).await?;
                    }
                }
                Err(source) => {
                    return Err(TransportError::Channel {
                        host: self.host.clone(),
                        command: command.display.clone(),
                        source,
                    });
                }
            }
        };
        Ok(Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Replace the master connection `stale` with a new one (unless another task already did).
    async fn reconnect(&self, lane: &Lane, stale: &Arc<Session>) -> Result<(), TransportError> {
        let mut current = lane.session.write().await;
        if Arc::ptr_eq(&current, stale) {
            let fresh = open(&self.host, &self.target, &self._files).await?;
            *current = Arc::new(fresh);
        }
        Ok(())
    }

    /// Close the master connections.
    pub async fn close(self) {
        for lane in self.lanes {
            if let Ok(session) = Arc::try_unwrap(lane.session.into_inner()) {
                let _ = session.close().await;
            }
        }
    }
}
