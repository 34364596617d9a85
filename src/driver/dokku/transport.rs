//! The SSH transport to one Dokku host: the system `ssh` client through the `openssh` crate,
//! one multiplexed master connection, every command a new channel on it.
//!
//! - Host keys are pinned: berth writes the environment file's `host-key` into a known_hosts
//!   file of its own and runs ssh with `StrictHostKeyChecking=yes` against it, with the user's
//!   ssh config replaced by an empty one so nothing outside the environment file applies.
//! - `BatchMode` (set by the crate), no TTY (mux channels request none), stdin closed —
//!   except for a command that carries [`RemoteCommand::stdin`] bytes (a registry password
//!   for `registry:login --password-stdin`): they are written to the channel's stdin, which
//!   is then closed, so a secret never travels in the command line.
//! - Channels are bounded per connection (sshd's `MaxSessions` defaults to 10 and refuses, not
//!   queues, the eleventh: reference/dokku.md Appendix A); each command has a timeout.
//!
//! Why a bound below `MaxSessions` is not enough (issue 13.11): sshd counts a session against
//! `MaxSessions` until the channel is closed on *its* side, but the mux master tells the client
//! a command is over as soon as the exit status and EOF arrive — before the client's
//! `CHANNEL_CLOSE` reached sshd and sshd reaped the session. A client that opens its next
//! channel the moment the previous one ended therefore runs ahead of the server's count, and
//! under load (short commands, many at once) sshd refuses: the master answers the mux request
//! with "Session open refused by peer". The refusal happens before anything runs on the host,
//! so every command — read or write — is safe to send again: [`Transport::run`] retries it with
//! exponential backoff and jitter, and each connection lowers its own channel limit by one per
//! refusal (never below one), raising it again by one after a run of clean commands. A server
//! with a low `MaxSessions` is then slower, never failing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::command::RemoteCommand;
#[cfg(doc)]
use super::command::Stdin;
use crate::model::DokkuTarget;
use crate::model::live::HostRef;

/// Most commands in flight on one connection: below sshd's default `MaxSessions` of 10, with
/// room for sessions the server is still closing. A connection starts here and lowers itself
/// on refusals.
pub const MAX_CHANNELS: usize = 6;

/// Refusals of one command before berth gives up on it (with the backoff below, about 40 s).
pub const MAX_REFUSALS: u32 = 50;

/// Clean commands on a connection before its channel limit rises by one again.
const RAISE_AFTER: usize = 64;

/// Backoff before resending a refused command: 10 ms doubling to 1 s, with jitter (half to
/// all of it) so refused commands do not come back in lockstep.
fn backoff(refusals: u32) -> Duration {
    let full = 10u64 << refusals.saturating_sub(1).min(7);
    let full = full.min(1000);
    let jitter = rand::random_range(full / 2..=full);
    Duration::from_millis(jitter)
}

/// Whether a channel failure is sshd refusing the session (`MaxSessions`): the mux master
/// answers "Session open refused by peer" (openssh-mux-client `RequestFailure`, below
/// `openssh::Error::SshMux`). The top-level message never says so, the cause does.
fn is_refusal(error: &openssh::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if e.to_string().contains("open refused") {
            return true;
        }
        cause = e.source();
    }
    false
}

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
    /// sshd kept refusing new sessions on every connection (`MaxSessions`).
    #[error(
        "`{host}` refused an SSH session for `{command}` {attempts} times in a row; hint: the server's `MaxSessions` (sshd_config) is too low or other clients use up its sessions"
    )]
    Refused {
        /// Host.
        host: HostRef,
        /// The command, redacted.
        command: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A channel failed (dropped connection).
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

/// How long a master connection may take to show it is alive after a failed command.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One master connection and its channel budget.
struct Lane {
    session: tokio::sync::RwLock<Arc<Session>>,
    channels: Semaphore,
    /// Channels the connection allows now (the semaphore's capacity): [`MAX_CHANNELS`] at
    /// first, one less per refusal, never below one.
    limit: AtomicUsize,
    /// Clean commands since the limit last changed.
    streak: AtomicUsize,
}

impl Lane {
    fn new(session: Session) -> Self {
        Lane {
            session: tokio::sync::RwLock::new(Arc::new(session)),
            channels: Semaphore::new(MAX_CHANNELS),
            limit: AtomicUsize::new(MAX_CHANNELS),
            streak: AtomicUsize::new(0),
        }
    }

    /// A refused channel: give its permit up for good (one channel less) unless the lane is
    /// down to one.
    fn refused(&self, permit: SemaphorePermit<'_>) {
        self.streak.store(0, Ordering::Relaxed);
        let lowered = self
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l > 1).then(|| l - 1)
            })
            .is_ok();
        if lowered {
            permit.forget();
        }
    }

    /// A clean command: after [`RAISE_AFTER`] of them, one channel more (up to the maximum).
    fn succeeded(&self) {
        if self.streak.fetch_add(1, Ordering::Relaxed) + 1 < RAISE_AFTER {
            return;
        }
        self.streak.store(0, Ordering::Relaxed);
        let raised = self
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l < MAX_CHANNELS).then(|| l + 1)
            })
            .is_ok();
        if raised {
            self.channels.add_permits(1);
        }
    }
}

/// What the connections to one host went through (benchmarks and tests read it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Commands sent (each attempt of a refused one counted once).
    pub commands: u64,
    /// Session refusals retried.
    pub refusals: u64,
    /// The lowest channel limit any connection went down to.
    pub lowest_limit: usize,
    /// Master connections replaced after they died.
    pub reconnects: u64,
}

/// The connections to one Dokku host.
pub struct Transport {
    host: HostRef,
    target: DokkuTarget,
    lanes: Vec<Lane>,
    next: AtomicUsize,
    commands: AtomicU64,
    refusals: AtomicU64,
    reconnects: AtomicU64,
    lowest_limit: AtomicUsize,
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
            lanes.push(Lane::new(session));
        }
        Ok(Transport {
            host: host.clone(),
            target: target.clone(),
            lanes,
            next: AtomicUsize::new(0),
            commands: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            lowest_limit: AtomicUsize::new(MAX_CHANNELS),
            timeout: Duration::from_secs(u64::from(target.timeout_secs.max(1))),
            _files: files,
        })
    }

    /// The host this transport reaches.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        &self.host
    }

    /// What the connections went through so far.
    #[must_use]
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            commands: self.commands.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            lowest_limit: self.lowest_limit.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    /// A permit on a lane with a free channel, else on the next lane in turn.
    async fn channel(
        &self,
        command: &RemoteCommand,
    ) -> Result<(&Lane, SemaphorePermit<'_>), TransportError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.lanes.len();
        let free = (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .find_map(|lane| lane.channels.try_acquire().ok().map(|p| (lane, p)));
        if let Some(found) = free {
            return Ok(found);
        }
        let lane = &self.lanes[start % n];
        let permit = lane
            .channels
            .acquire()
            .await
            .map_err(|_| TransportError::Timeout {
                host: self.host.clone(),
                command: command.display.clone(),
                secs: 0,
            })?;
        Ok((lane, permit))
    }

    /// Run one command (no TTY; stdin closed, or the command's [`Stdin`] bytes then EOF)
    /// within the channel bound and the timeout.
    /// A session sshd refuses is sent again (see the module header): the command never ran.
    ///
    /// # Errors
    /// Channel failures, timeouts, refusals beyond [`MAX_REFUSALS`]; a non-zero exit is not
    /// an error here.
    pub async fn run(&self, command: &RemoteCommand) -> Result<Output, TransportError> {
        let mut refused = 0u32;
        let output = loop {
            let (lane, permit) = self.channel(command).await?;
            let session = lane.session.read().await.clone();
            let mut words = command.wire.iter();
            let first = words.next().cloned().unwrap_or_default();
            let mut cmd = session.raw_command(first);
            cmd.raw_args(words)
                .stdin(if command.stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            self.commands.fetch_add(1, Ordering::Relaxed);
            let exec = async {
                let Some(input) = &command.stdin else {
                    return cmd.output().await;
                };
                // The bytes go down the same multiplexed channel; closing the pipe is the
                // command's EOF. A refused session fails at `spawn`, before anything ran.
                let mut child = cmd.spawn().await?;
                if let Some(mut pipe) = child.stdin().take() {
                    pipe.write_all(&input.0)
                        .await
                        .map_err(openssh::Error::ChildIo)?;
                    pipe.shutdown().await.map_err(openssh::Error::ChildIo)?;
                }
                child.wait_with_output().await
            };
            let Ok(result) = tokio::time::timeout(self.timeout, exec).await else {
                self.replace_if_dead(lane, &session).await;
                return Err(TransportError::Timeout {
                    host: self.host.clone(),
                    command: command.display.clone(),
                    secs: self.timeout.as_secs(),
                });
            };
            match result {
                Ok(output) => {
                    lane.succeeded();
                    break output;
                }
                Err(source) if is_refusal(&source) => {
                    refused += 1;
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    lane.refused(permit);
                    self.lowest_limit
                        .fetch_min(lane.limit.load(Ordering::Relaxed), Ordering::Relaxed);
                    if refused >= MAX_REFUSALS {
                        return Err(TransportError::Refused {
                            host: self.host.clone(),
                            command: command.display.clone(),
                            attempts: refused,
                        });
                    }
                    tokio::time::sleep(backoff(refused)).await;
                    // Refused for a long while: the server holds on to sessions of this
                    // connection; a fresh master connection starts with none.
                    if refused.is_multiple_of(10) {
                        self.reconnect(lane, &session).await?;
                    }
                }
                Err(source) => {
                    // This command failed for good (whether it ran cannot be told), but a
                    // dead master connection would fail every later one as well.
                    self.replace_if_dead(lane, &session).await;
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

    /// After a failed command: when the master connection `session` no longer answers (the
    /// network path was cut, sshd restarted), open a fresh one for the commands that follow,
    /// so a long-lived driver (the daemon's) recovers by itself once the host is reachable
    /// again. A failed reconnect leaves the lane as it was: the next failure tries again.
    async fn replace_if_dead(&self, lane: &Lane, session: &Arc<Session>) {
        let alive = tokio::time::timeout(CHECK_TIMEOUT, session.check())
            .await
            .is_ok_and(|r| r.is_ok());
        if !alive {
            let reconnected = self.reconnect(lane, session).await.is_ok();
            self.reconnects
                .fetch_add(u64::from(reconnected), Ordering::Relaxed);
            tracing::debug!(host = %self.host, reconnected, "master connection lost");
        }
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
