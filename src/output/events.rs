//! The `apply --format json` event stream: one JSON object per line on stdout, each a typed
//! [`EventRecord`] with the stream's version and an RFC 3339 timestamp.
//!
//! The types here are the contract (`schema/events.schema.json` is generated from them and
//! checked for staleness, like the plan schema); docs/ci.md shows a stream. Nothing secret
//! is in an event: steps carry instructions, and driver errors redact resolved values.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::execute::{Event, Outcome};
use crate::reconcile::{ApplyOutcome, Notice, Stopped, TenantOutcome};

/// Version of the event stream.
pub const EVENTS_VERSION: u32 = 1;

/// One line of the stream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EventRecord {
    /// [`EVENTS_VERSION`].
    pub version: u32,
    /// When it happened, RFC 3339 in UTC (`2026-12-02T05:07:57.123Z`).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened, tagged by `event`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(
    tag = "event",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum EventBody {
    /// The plan about to be executed (the `plan --format json` document).
    Plan {
        /// The plan.
        plan: serde_json::Value,
    },
    /// Waiting for another holder's lease.
    LeaseWaiting {
        /// `environment/host`.
        host: String,
        /// Who holds it.
        holder: String,
        /// For what.
        purpose: String,
        /// When it expires (RFC 3339).
        expires: String,
    },
    /// A lease stopped being ours; no new step starts.
    LeaseLost {
        /// `environment/host`.
        host: String,
    },
    /// A step started.
    StepStarted {
        /// Step id.
        step: u32,
        /// Tenant.
        tenant: String,
        /// `environment/host`.
        host: String,
        /// Change kind (`create-app`).
        change: String,
        /// Try number, from 1.
        attempt: u32,
    },
    /// A step succeeded.
    StepSucceeded {
        /// Step id.
        step: u32,
        /// Tenant.
        tenant: String,
        /// Time taken.
        seconds: f64,
    },
    /// A try failed transiently; another follows after `delay-seconds`.
    StepRetried {
        /// Step id.
        step: u32,
        /// Tenant.
        tenant: String,
        /// Failed try.
        attempt: u32,
        /// Error chain.
        error: String,
        /// Wait before the next try.
        delay_seconds: f64,
    },
    /// A step failed for good.
    StepFailed {
        /// Step id.
        step: u32,
        /// Tenant.
        tenant: String,
        /// Error chain.
        error: String,
    },
    /// A step did not run.
    StepSkipped {
        /// Step id.
        step: u32,
        /// Tenant.
        tenant: String,
        /// `step 3 failed` or `cancelled`.
        reason: String,
    },
    /// Steps failed on host ports another process holds; a new plan with them taken runs now.
    Replanned {
        /// `environment/host`.
        host: String,
        /// The ports found held.
        ports: Vec<u16>,
        /// The new plan.
        plan: serde_json::Value,
    },
    /// The applied commit could not be recorded on a host.
    RecordFailed {
        /// `environment/host`.
        host: String,
        /// Why.
        error: String,
    },
    /// The journal could not be written.
    JournalFailed {
        /// Why.
        error: String,
    },
    /// The last line: what the apply did.
    Summary {
        /// Steps in the plan.
        steps: usize,
        /// Steps that succeeded.
        succeeded: usize,
        /// Per tenant with steps.
        tenants: BTreeMap<String, TenantOutcome>,
        /// Stopped by a signal or a lost lease.
        cancelled: bool,
        /// Why nothing ran: `nothing-to-do`, `refused`, `declined`.
        #[serde(skip_serializing_if = "Option::is_none")]
        stopped: Option<String>,
        /// Hosts whose applied commit was recorded.
        recorded: Vec<String>,
    },
}

impl EventRecord {
    /// A record stamped now.
    #[must_use]
    pub fn now(body: EventBody) -> Self {
        EventRecord {
            version: EVENTS_VERSION,
            at: crate::clock::now_rfc3339(),
            body,
        }
    }
}

fn host_of(step: &crate::plan::Step) -> String {
    format!("{}/{}", step.environment, step.host)
}

/// The record of an executor event.
#[must_use]
pub fn step_body(event: &Event<'_>) -> EventBody {
    match event {
        Event::StepStarted { step, attempt } => EventBody::StepStarted {
            step: step.id,
            tenant: step.tenant.clone(),
            host: host_of(step),
            change: step.change.kind_name().to_string(),
            attempt: *attempt,
        },
        Event::StepSucceeded { step, took } => EventBody::StepSucceeded {
            step: step.id,
            tenant: step.tenant.clone(),
            seconds: took.as_secs_f64(),
        },
        Event::StepRetried {
            step,
            attempt,
            error,
            delay,
        } => EventBody::StepRetried {
            step: step.id,
            tenant: step.tenant.clone(),
            attempt: *attempt,
            error: error.clone(),
            delay_seconds: delay.as_secs_f64(),
        },
        Event::StepFailed { step, error } => EventBody::StepFailed {
            step: step.id,
            tenant: step.tenant.clone(),
            error: error.clone(),
        },
        Event::StepSkipped { step, outcome } => EventBody::StepSkipped {
            step: step.id,
            tenant: step.tenant.clone(),
            reason: skip_reason(outcome),
        },
    }
}

/// Why a step was skipped, in words.
#[must_use]
pub fn skip_reason(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Skipped { because } => format!("step {because} failed"),
        _ => "cancelled".to_string(),
    }
}

/// The record of a session notice, when it has one (taking a lease is not news).
#[must_use]
pub fn notice_body(notice: &Notice<'_>) -> Option<EventBody> {
    Some(match notice {
        Notice::Planned(plan) => EventBody::Plan {
            plan: super::plan::render_json(plan),
        },
        Notice::WaitingForLease { host, held } => EventBody::LeaseWaiting {
            host: host.to_string(),
            holder: held.holder.clone(),
            purpose: held.purpose.clone(),
            expires: crate::clock::rfc3339(held.expires),
        },
        Notice::LeaseLost { host } => EventBody::LeaseLost {
            host: host.to_string(),
        },
        Notice::RecordFailed { host, error } => EventBody::RecordFailed {
            host: host.to_string(),
            error: error.clone(),
        },
        Notice::JournalFailed { error } => EventBody::JournalFailed {
            error: error.clone(),
        },
        Notice::Replanned { host, ports, plan } => EventBody::Replanned {
            host: host.to_string(),
            ports: ports.iter().copied().collect(),
            plan: super::plan::render_json(plan),
        },
        Notice::LeaseTaken { .. } | Notice::LeaseReclaimed { .. } => return None,
    })
}

/// The summary record of an apply.
#[must_use]
pub fn summary_body(outcome: &ApplyOutcome) -> EventBody {
    EventBody::Summary {
        steps: outcome.plan.steps.len(),
        succeeded: outcome.succeeded(),
        tenants: outcome.tenants.clone(),
        cancelled: outcome.cancelled,
        stopped: outcome.stopped.as_ref().map(|s| {
            match s {
                Stopped::NothingToDo => "nothing-to-do",
                Stopped::Refused => "refused",
                Stopped::Declined => "declined",
            }
            .to_string()
        }),
        recorded: outcome.recorded.iter().map(ToString::to_string).collect(),
    }
}

/// The JSON Schema of one line of the stream.
#[must_use]
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(EventRecord)).unwrap_or_default()
}
