//! Why each step exists, in words every plan format shows: a file edit (naming the file),
//! drift (the host moved away from what berth applied; the step's fields say how), a policy
//! (a tenant state's effect: a cancelled tenant's processes stop and its data is kept), or a
//! removal (the tenant's file is gone).
//!
//! The diff decides drift versus intended change; this pass only names the intended ones, so
//! the per-kind diffing code stays about hosts and objects.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Builder, Cause, Change};
use crate::model::desired::Desired;
use crate::model::{SHARED_STACK_ID, TenantState};

/// Why a step exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Because {
    /// A file says so.
    FileEdit {
        /// The file (`tenants/acme.yaml`, `environments/prod.yaml`).
        file: String,
    },
    /// The host moved away from what berth applied (the step's fields say how).
    Drift,
    /// A tenant state's effect.
    Policy {
        /// `cancelled: processes stop, data is kept`.
        rule: String,
    },
    /// The tenant's file is gone.
    Removal {
        /// The file that was removed.
        file: String,
    },
}

impl Because {
    /// A short label for text and Markdown (`[drift]`, `[policy: …]`, `[removed: …]`), or
    /// `None` for a file edit (the common case, said once per tenant).
    #[must_use]
    pub fn label(&self) -> Option<String> {
        match self {
            Because::FileEdit { .. } => None,
            Because::Drift => Some("[drift]".into()),
            Because::Policy { rule } => Some(format!("[policy: {rule}]")),
            Because::Removal { file } => Some(format!("[removal: {file} deleted]")),
        }
    }
}

fn state_rule(state: TenantState) -> Option<&'static str> {
    match state {
        TenantState::Suspended => Some("suspended: processes stop, data is kept"),
        TenantState::Cancelled => Some("cancelled: processes stop, data is kept"),
        _ => None,
    }
}

/// Name the cause of every step.
pub(super) fn explain(desired: &Desired, b: &mut Builder) {
    for step in &mut b.steps {
        step.because = if step.cause == Cause::Drift {
            Because::Drift
        } else if step.tenant == SHARED_STACK_ID {
            let file = desired
                .files
                .get(&format!("{SHARED_STACK_ID}@{}", step.environment))
                .cloned()
                .unwrap_or_else(|| format!("environments/{}.yaml", step.environment));
            Because::FileEdit { file }
        } else {
            match desired.tenants.get(&step.tenant) {
                None => Because::Removal {
                    file: format!("tenants/{}.yaml", step.tenant),
                },
                Some((_, state)) => {
                    let stops = matches!(
                        step.change,
                        Change::StopContainer { .. }
                            | Change::Scale { .. }
                            | Change::RecordCancellation { .. }
                    );
                    match (state_rule(*state), stops) {
                        (Some(rule), true) => Because::Policy { rule: rule.into() },
                        _ => Because::FileEdit {
                            file: desired
                                .files
                                .get(&step.tenant)
                                .cloned()
                                .unwrap_or_else(|| format!("tenants/{}.yaml", step.tenant)),
                        },
                    }
                }
            }
        };
    }
}
