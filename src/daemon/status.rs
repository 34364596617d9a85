//! What the daemon knows about the fleet, as served by `/api/status` and rendered by the
//! status page: per host the applied commit, how far behind it is and its drift; per tenant
//! its state, drift, last error and when.
//!
//! Tenant states:
//! - `synced`: the last pass found nothing to do, or applied everything;
//! - `out-of-sync`: steps are pending that the daemon leaves by policy or for now (drift of a
//!   `report` tenant, a `paused` tenant with changes, a busy host, a refused plan, a global
//!   pause);
//! - `progressing`: its steps are running in the current pass;
//! - `degraded`: its last try failed in a way that may go away (a transient error, a container
//!   that did not become healthy, a preflight problem): retried with backoff;
//! - `failed`: a refusal or a permanent error: nothing is retried until its file (or its
//!   environment's file) changes.
//!
//! Architecture invariant: pure. Values only; the daemon fills them in.

use std::collections::BTreeMap;

use serde::Serialize;

/// Version of the `/api/status` format.
pub const STATUS_FORMAT_VERSION: u32 = 1;

/// A tenant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Nothing pending.
    Synced,
    /// Pending steps the daemon leaves by policy or for now.
    OutOfSync,
    /// Steps running now.
    Progressing,
    /// Failing, retried with backoff.
    Degraded,
    /// Failing, waits for a file change.
    Failed,
}

impl State {
    /// Every state, in display order.
    pub const ALL: [State; 5] = [
        State::Synced,
        State::OutOfSync,
        State::Progressing,
        State::Degraded,
        State::Failed,
    ];

    /// The kebab-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            State::Synced => "synced",
            State::OutOfSync => "out-of-sync",
            State::Progressing => "progressing",
            State::Degraded => "degraded",
            State::Failed => "failed",
        }
    }

    /// Parse a name (`?state=` filters).
    #[must_use]
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A commit as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitView {
    /// Full id.
    pub id: String,
    /// Subject line.
    pub summary: String,
    /// Commit time, RFC 3339.
    pub time: String,
    /// Commit time, unix seconds.
    pub unix: i64,
}

/// The last pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PassView {
    /// When it ended, RFC 3339.
    pub at: String,
    /// What woke the daemon (`start`, `poll`, `webhook`, `watch`, `drift-scan`, `retry`,
    /// `resume`). The pass itself is never told.
    pub trigger: String,
    /// `full` or `incremental`.
    pub kind: String,
    /// A deep scan.
    pub deep: bool,
    /// `ok`, `partial` (some tenants failed or wait), `refused`, `error`, `cancelled`.
    pub result: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Tenants in its scope.
    pub tenants: usize,
    /// The commit it planned from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// An error the daemon is waiting out (a fetch, invalid files, an unreachable host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorView {
    /// Message (no secret ever).
    pub message: String,
    /// When, RFC 3339.
    pub at: String,
    /// `transient` (retried with backoff) or `permanent` (waits for a new commit).
    pub kind: String,
}

/// The daemon itself.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct DaemonView {
    /// What it follows (a path, or a remote URL).
    pub source: String,
    /// The branch of a remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Globally paused (`berth daemon pause`).
    pub paused: bool,
    /// The commit it follows now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<CommitView>,
    /// The last pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<PassView>,
    /// The error it is waiting out, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// Passes run since start.
    pub passes: u64,
    /// Started, RFC 3339.
    pub started_at: String,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct HostView {
    /// Environment.
    pub environment: String,
    /// Host name.
    pub host: String,
    /// The commit recorded as applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<CommitView>,
    /// Commits the followed head has that the applied commit lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_behind: Option<usize>,
    /// Drift steps the last pass found on it.
    pub drift: usize,
    /// Who held its lease when the last pass wanted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy: Option<String>,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TenantView {
    /// Environment.
    pub environment: String,
    /// `environment/host` it is placed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `heal`, `report` or `paused`.
    pub mode: String,
    /// State.
    pub state: State,
    /// Drift steps found by its last pass.
    pub drift: usize,
    /// Steps left undone by its last pass.
    pub pending: usize,
    /// When a pass last looked at it, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<String>,
    /// Its last error (or refusal), redacted by the drivers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// When it is tried again (backing off), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<String>,
    /// It waits for a change of its file (or its environment's).
    pub waiting_for_change: bool,
    /// Why it is out of sync, in a few words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything `/api/status` serves.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    /// [`STATUS_FORMAT_VERSION`].
    pub version: u32,
    /// The daemon.
    pub daemon: DaemonView,
    /// Hosts by `environment/host`.
    pub hosts: BTreeMap<String, HostView>,
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantView>,
    /// Tenants per state.
    pub counts: BTreeMap<State, usize>,
}

impl Status {
    /// Recount [`Status::counts`].
    pub fn recount(&mut self) {
        self.counts = State::ALL.iter().map(|s| (*s, 0)).collect();
        for t in self.tenants.values() {
            *self.counts.entry(t.state).or_default() += 1;
        }
    }
}
