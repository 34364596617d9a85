//! The caller's side of a session: [`Hooks`] (rendering executor events and notices, asking
//! for approval) and the [`StopSignal`] that stops an apply between steps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::driver::LeaseRecord;
use crate::execute::Reporter;
use crate::model::live::HostRef;
use crate::plan::Plan;

/// What a session reports while it works, besides executor events.
#[derive(Debug, Clone)]
pub enum Notice<'a> {
    /// The plan about to be executed (or refused).
    Planned(&'a Plan),
    /// Waiting for another holder's lease.
    WaitingForLease {
        /// Host.
        host: &'a HostRef,
        /// Who holds it.
        held: &'a LeaseRecord,
    },
    /// The lease of a host was taken.
    LeaseTaken {
        /// Host.
        host: &'a HostRef,
    },
    /// A pass took back a lease in its own name that an earlier pass could not release.
    LeaseReclaimed {
        /// Host.
        host: &'a HostRef,
    },
    /// The lease of a host is no longer ours: no new step starts.
    LeaseLost {
        /// Host.
        host: &'a HostRef,
    },
    /// Steps failed on host ports another process holds; the plan was made again with them
    /// taken and is executed now.
    Replanned {
        /// Host.
        host: &'a HostRef,
        /// The ports found held.
        ports: &'a std::collections::BTreeSet<u16>,
        /// The new plan.
        plan: &'a Plan,
    },
    /// The applied commit could not be recorded on a host.
    RecordFailed {
        /// Host.
        host: &'a HostRef,
        /// Why.
        error: String,
    },
    /// The journal could not be written (the apply went on without it).
    JournalFailed {
        /// Why.
        error: String,
    },
}

/// Whether to go ahead with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Execute it.
    Approved,
    /// Do not.
    Declined,
    /// Confirmation cannot be asked (no terminal).
    Impossible {
        /// Why.
        message: String,
        /// What to do.
        hint: String,
    },
}

/// The caller's side of a session: rendering and questions.
pub trait Hooks: Reporter {
    /// Something happened.
    fn notice(&self, notice: &Notice<'_>);
    /// Ask whether to execute `plan` (called only for plans with steps and no refusals).
    fn approve(&self, plan: &Plan) -> Approval;
}

/// Hooks that approve everything and show nothing (daemon passes, tests).
pub struct Unattended;

impl Reporter for Unattended {
    fn event(&self, _: &crate::execute::Event<'_>) {}
}

impl Hooks for Unattended {
    fn notice(&self, _: &Notice<'_>) {}
    fn approve(&self, _: &Plan) -> Approval {
        Approval::Approved
    }
}

/// Stops an apply: a signal sets the flag; a lease deadline passing (the holder was paused
/// past its lease) trips it too. In-flight steps finish; no new step starts.
#[derive(Debug)]
pub struct StopSignal {
    flag: AtomicBool,
    /// Unix seconds after which the leases may no longer be ours (`u64::MAX`: no deadline).
    /// Shared with the drivers while steps run ([`crate::driver::fenced`]).
    deadline: std::sync::Arc<AtomicU64>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal {
            flag: AtomicBool::new(false),
            deadline: std::sync::Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl StopSignal {
    /// Ask the apply to stop.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether the apply was asked to stop (a signal, not a lease deadline).
    #[must_use]
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Whether no new step may start.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.requested() || crate::clock::now_unix() >= self.deadline.load(Ordering::SeqCst)
    }

    pub(super) fn set_deadline(&self, unix: u64) {
        self.deadline.store(unix, Ordering::SeqCst);
    }

    /// The lease deadline, for drivers to check between the commands of a step.
    pub(super) fn deadline_handle(&self) -> std::sync::Arc<AtomicU64> {
        self.deadline.clone()
    }
}
