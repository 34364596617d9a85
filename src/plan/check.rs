//! The plan checker (omicron's "blippy"): proves a plan well-formed before anything runs.
//!
//! Run in tests over every fixture and random fleet, and by the reconcile session before
//! every execute — a saved plan file may have been edited by hand, and a planner bug must
//! become an internal error naming the rule, never a half-applied fleet. Rules:
//!
//! 1. step ids are their positions, and every `after` id names an earlier step (so the
//!    dependency graph has no cycles and every dependency exists);
//! 2. no object gets two conflicting steps (create and destroy, start and stop, two of the
//!    same kind);
//! 3. data (a Postgres/Redis service, a volume) is destroyed only for a tenant the plan lists
//!    as purging (`state: purge`, with its retention passed or overridden);
//! 4. every step's tenant owns the object it touches: the same tenant for every step of one
//!    object, the live owner where the object exists, and nothing berth does not own is
//!    destroyed.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment, no randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Change, Effect, Plan};
use crate::model::live::Live;

/// A rule a plan breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    /// Rule 1: a step's id is not its position.
    MisnumberedStep {
        /// Position.
        index: usize,
        /// Id found.
        id: u32,
    },
    /// Rule 1: an `after` id that names no earlier step.
    BadDependency {
        /// Step.
        step: u32,
        /// The dependency.
        after: u32,
    },
    /// Rule 2: two steps that cannot both be right.
    Conflict {
        /// The object (`prod/dokku-1 app acme-web`).
        subject: String,
        /// The two step ids.
        steps: (u32, u32),
    },
    /// Rule 3: data destroyed for a tenant that is not purging.
    UnprotectedData {
        /// Step.
        step: u32,
        /// Tenant.
        tenant: String,
    },
    /// Rule 4: steps of one object name different tenants.
    MixedOwners {
        /// The object.
        subject: String,
        /// Tenants named.
        tenants: (String, String),
    },
    /// Rule 4: a step acts on an object another tenant owns.
    WrongOwner {
        /// Step.
        step: u32,
        /// The step's tenant.
        tenant: String,
        /// The live owner.
        owner: String,
    },
    /// Rule 4: a step destroys an object berth does not manage.
    ForeignDestroy {
        /// Step.
        step: u32,
        /// The object.
        subject: String,
    },
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::MisnumberedStep { index, id } => {
                write!(
                    f,
                    "rule 1 (step order): step at position {index} has id {id}"
                )
            }
            Defect::BadDependency { step, after } => write!(
                f,
                "rule 1 (dependencies): step {step} waits for {after}, which is not an earlier step"
            ),
            Defect::Conflict { subject, steps } => write!(
                f,
                "rule 2 (conflicts): steps {} and {} both act on {subject} and contradict each other",
                steps.0, steps.1
            ),
            Defect::UnprotectedData { step, tenant } => write!(
                f,
                "rule 3 (data): step {step} destroys data of tenant `{tenant}`, which is not purging"
            ),
            Defect::MixedOwners { subject, tenants } => write!(
                f,
                "rule 4 (ownership): steps on {subject} name tenants `{}` and `{}`",
                tenants.0, tenants.1
            ),
            Defect::WrongOwner {
                step,
                tenant,
                owner,
            } => write!(
                f,
                "rule 4 (ownership): step {step} of tenant `{tenant}` acts on an object of tenant `{owner}`"
            ),
            Defect::ForeignDestroy { step, subject } => write!(
                f,
                "rule 4 (ownership): step {step} destroys {subject}, which berth does not manage"
            ),
        }
    }
}

/// Change kinds that contradict each other on one object: the same kind twice (mounts of
/// different paths aside), a destroy beside anything, or one of the opposite pairs.
fn contradicts(a: &Change, b: &Change) -> bool {
    let same_mount = match (a, b) {
        (
            Change::MountStorage { mount: m, .. } | Change::UnmountStorage { mount: m, .. },
            Change::MountStorage { mount: n, .. } | Change::UnmountStorage { mount: n, .. },
        ) => Some(m == n),
        _ => None,
    };
    if let Some(same) = same_mount {
        return same;
    }
    let (x, y) = (a.kind_name(), b.kind_name());
    let pair = |p: &str, q: &str| (x == p && y == q) || (x == q && y == p);
    x == y
        || a.effect() == Effect::Destroy
        || b.effect() == Effect::Destroy
        || pair("enable-tls", "disable-tls")
        || pair("start-container", "stop-container")
        || pair("create-container", "recreate-container")
        || pair("create-container", "start-container")
        || pair("recreate-container", "start-container")
        || pair("deploy-image", "restart")
}

/// Every rule `plan` breaks, judged against the live state it will be applied to.
#[must_use]
pub fn check(plan: &Plan, live: &Live) -> Vec<Defect> {
    let mut defects = Vec::new();
    for (index, step) in plan.steps.iter().enumerate() {
        if step.id as usize != index {
            defects.push(Defect::MisnumberedStep { index, id: step.id });
        }
        for after in &step.after {
            if *after >= step.id {
                defects.push(Defect::BadDependency {
                    step: step.id,
                    after: *after,
                });
            }
        }
    }
    let purging: BTreeSet<&str> = plan.purging.iter().map(String::as_str).collect();
    let mut by_subject: BTreeMap<String, Vec<&super::Step>> = BTreeMap::new();
    for step in &plan.steps {
        let subject = format!(
            "{}/{} {}",
            step.environment,
            step.host,
            step.change.subject()
        );
        by_subject.entry(subject).or_default().push(step);
        // A refused plan never runs; what its refusals are about is not a defect.
        if step.change.destroys_data()
            && !purging.contains(step.tenant.as_str())
            && plan.refusals.is_empty()
        {
            defects.push(Defect::UnprotectedData {
                step: step.id,
                tenant: step.tenant.clone(),
            });
        }
        let host = crate::model::live::HostRef::new(&step.environment, &step.host);
        let Some((kind, name)) = step.change.object() else {
            continue;
        };
        let Some(live_host) = live.hosts.get(&host) else {
            continue;
        };
        let Some(found) = live_host
            .objects()
            .find(|o| o.kind == kind && o.name == name)
        else {
            continue;
        };
        match found.owner {
            Some(owner) if owner != step.tenant => defects.push(Defect::WrongOwner {
                step: step.id,
                tenant: step.tenant.clone(),
                owner: owner.to_string(),
            }),
            None if step.change.effect() == Effect::Destroy => {
                defects.push(Defect::ForeignDestroy {
                    step: step.id,
                    subject: step.change.subject(),
                });
            }
            _ => {}
        }
    }
    for (subject, steps) in &by_subject {
        for (i, a) in steps.iter().enumerate() {
            for b in &steps[i + 1..] {
                if a.tenant != b.tenant {
                    defects.push(Defect::MixedOwners {
                        subject: subject.clone(),
                        tenants: (a.tenant.clone(), b.tenant.clone()),
                    });
                } else if contradicts(&a.change, &b.change) {
                    defects.push(Defect::Conflict {
                        subject: subject.clone(),
                        steps: (a.id, b.id),
                    });
                }
            }
        }
    }
    defects
}
