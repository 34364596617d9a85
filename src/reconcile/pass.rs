//! Daemon passes: the apply session run unattended over a scope, one tenant never blocking
//! another.
//!
//! A pass is [`Session::apply`] with four differences, all about leaving things alone rather
//! than forcing them:
//!
//! - **Per-host leases.** A host whose lease another holder has (a CI `apply`, a second
//!   daemon) is left out of this pass; its tenants wait for the next one.
//! - **Policy.** Each step is checked against its tenant's `reconcile:` mode
//!   ([`crate::model::Fleet::reconcile_mode`]): a `paused` tenant is never touched, drift of
//!   a `report` tenant is reported and never repaired (its file changes are applied).
//! - **Per-tenant independence.** A refusal that names one tenant (a name or port conflict,
//!   no capacity, retention), a preflight problem of one tenant, or a tenant the caller holds
//!   back (it is backing off after a failure) withholds that tenant's steps only — and every
//!   step waiting for a withheld one — and the rest of the plan runs. A refusal naming no
//!   tenant (the circuit breaker, an empty desired set) stops the whole pass: it is reported,
//!   never forced.
//! - **Per-host records.** A host records the commit when every step the plan had for it
//!   either ran and succeeded or was left alone by policy (drift of a `report` tenant, a
//!   `paused` tenant: un-pausing is a file change, so the tenant is planned whole in the next
//!   incremental pass), and the scope covered every change (a full pass, or one `--since`
//!   its applied commit).
//!
//! Like every session, a pass is level-triggered: it is never told why it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Hooks, Notice, PlanSettings, Rounds, Session, SessionError, StopSignal, lease_record};
use crate::driver::LeaseRecord;
use crate::execute::{ExecOptions, Outcome, Report};
use crate::model::ReconcileMode;
use crate::model::live::HostRef;
use crate::plan::{Cause, Plan, Refusal, Step};

/// How to run a pass.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// Scope (`None`: every tenant, a full pass) and depth (`deep`: the periodic drift scan).
    /// The overrides (`allow_destroys`, …) are never set by the daemon.
    pub plan: PlanSettings,
    /// Tenants left alone this pass (backing off after a failure, or waiting for a file
    /// change): observed and planned, so their drift is known, but nothing of theirs runs.
    pub hold: BTreeSet<String>,
    /// Executor knobs.
    pub exec: ExecOptions,
    /// Lease time to live.
    pub lease_ttl: Duration,
    /// Who we are, for the lease.
    pub holder: String,
    /// Skip the preflight checks.
    pub skip_preflight: bool,
}

impl Default for PassSettings {
    fn default() -> Self {
        PassSettings {
            plan: PlanSettings::default(),
            hold: BTreeSet::new(),
            exec: ExecOptions::default(),
            lease_ttl: super::lease::DEFAULT_TTL,
            holder: super::holder(),
            skip_preflight: false,
        }
    }
}

/// Why a step of the plan did not run in a pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Withheld {
    /// Drift of a tenant whose mode is `report`.
    ReportOnly,
    /// The tenant is `paused`.
    Paused,
    /// The caller held the tenant back.
    Held,
    /// Another holder has the host's lease.
    HostBusy,
    /// A refusal names the tenant.
    Refused,
    /// Preflight found a problem of the tenant.
    Blocked,
    /// It waits for a step withheld for another reason.
    Upstream,
}

/// What a pass did with one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantPass {
    /// Nothing to do.
    Synced,
    /// Every step ran and succeeded.
    Converged,
    /// Drift was found and only reported (`reconcile: report`, `policy.self-heal: false`);
    /// file changes, if any, were applied.
    Drifted,
    /// `reconcile: paused`: nothing ran (its pending steps are counted).
    Paused,
    /// The caller held it back.
    Held,
    /// Another holder has the lease of a host it is on.
    HostBusy {
        /// The host.
        host: HostRef,
        /// Who holds it.
        holder: String,
    },
    /// Refusals name it; nothing of it ran.
    Refused {
        /// Their messages.
        reasons: Vec<String>,
    },
    /// Preflight found problems; nothing of it ran.
    Blocked {
        /// What is wrong.
        problems: Vec<String>,
    },
    /// A step failed.
    Failed {
        /// Its error.
        error: String,
        /// Whether a retry may succeed without a file change.
        recoverable: bool,
    },
    /// The pass stopped (a signal, a lost lease) before its steps ran.
    Cancelled,
}

/// One tenant's line of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    /// What happened.
    pub result: TenantPass,
    /// The host it is placed on (`environment/host`), when known.
    pub host: Option<String>,
    /// Steps the plan found caused by drift.
    pub drift: usize,
    /// Steps that ran and succeeded.
    pub applied: usize,
    /// Steps left undone (withheld, failed, skipped).
    pub pending: usize,
}

/// One host's line of a pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPass {
    /// Another holder's lease kept this pass off the host.
    pub busy: Option<LeaseRecord>,
    /// The commit was recorded as applied.
    pub recorded: bool,
    /// Drift steps the plan found on it.
    pub drift: usize,
}

/// The outcome of a pass.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The plan as made (every step, withheld ones included).
    pub plan: Plan,
    /// The part of it that ran (the last re-plan's, when steps were re-planned).
    pub executed: Plan,
    /// What happened to the steps that ran (the last round's).
    pub report: Report,
    /// Refusals that stopped the whole pass (they name no tenant).
    pub refused: Vec<Refusal>,
    /// Per tenant in scope (and per owner of a step).
    pub tenants: BTreeMap<String, TenantReport>,
    /// Per connected host.
    pub hosts: BTreeMap<HostRef, HostPass>,
    /// Steps by kind and result (`("create-app", "succeeded")`), every round counted.
    pub steps: BTreeMap<(String, &'static str), usize>,
    /// Stopped early by a signal or a lost lease.
    pub cancelled: bool,
}

impl PassOutcome {
    /// Whether nothing failed, was refused or withheld for a reason other than policy.
    #[must_use]
    pub fn clean(&self) -> bool {
        self.refused.is_empty()
            && !self.cancelled
            && self.tenants.values().all(|t| {
                matches!(
                    t.result,
                    TenantPass::Synced
                        | TenantPass::Converged
                        | TenantPass::Drifted
                        | TenantPass::Paused
                )
            })
    }
}

/// A step's outcome as a metric label.
fn result_label(outcome: Option<&Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::Succeeded) => "succeeded",
        Some(Outcome::Failed { .. }) => "failed",
        Some(Outcome::Skipped { .. }) => "skipped",
        Some(Outcome::Cancelled) | None => "cancelled",
    }
}

impl Session {
    /// One unattended pass (see the module docs): leases of the hosts that are free, observe,
    /// plan, withhold by policy and per tenant, check, preflight, execute with renewal, record
    /// per host, release.
    ///
    /// # Errors
    /// Unreadable hosts, a malformed plan, lease failures other than a busy host.
    pub async fn pass(
        &self,
        settings: &PassSettings,
        hooks: &dyn Hooks,
        stop: &StopSignal,
    ) -> Result<PassOutcome, SessionError> {
        let record = lease_record(&settings.holder, "daemon");
        let (held, busy) = match self
            .take_leases_of(&record, settings.lease_ttl, Duration::ZERO, hooks, true)
            .await
        {
            Ok(taken) => taken,
            Err((e, held)) => {
                self.release(&held, &record.token).await;
                return Err(e);
            }
        };
        stop.set_deadline(crate::clock::now_unix() + settings.lease_ttl.as_secs());
        // Renewed for the whole pass, observing and planning included: a big fleet's plan can
        // take longer than a daemon's short lease lives.
        let renewing = self.renew_while_running(&held, &record, settings.lease_ttl, stop, hooks);
        let result = tokio::select! {
            result = self.pass_locked(settings, hooks, stop, &held, &busy) => result,
            () = renewing => unreachable!("renewal never ends"),
        };
        self.release(&held, &record.token).await;
        result
    }

    async fn pass_locked(
        &self,
        settings: &PassSettings,
        hooks: &dyn Hooks,
        stop: &StopSignal,
        held: &[HostRef],
        busy: &BTreeMap<HostRef, LeaseRecord>,
    ) -> Result<PassOutcome, SessionError> {
        let mut plan_settings = settings.plan.clone();
        plan_settings.offline = false;
        let live = self.observe_for(&plan_settings).await?;
        let plan = self.plan_against(&live, &plan_settings);
        let defects = crate::plan::check::check(&plan, &live);
        if !defects.is_empty() {
            return Err(SessionError::Malformed { defects });
        }
        hooks.notice(&Notice::Planned(&plan));
        let refused: Vec<Refusal> = plan
            .refusals
            .iter()
            .filter(|r| r.tenant.is_none())
            .cloned()
            .collect();
        let mut policy = Policy {
            session: self,
            hold: &settings.hold,
            busy,
            refused: plan
                .refusals
                .iter()
                .filter_map(|r| r.tenant.clone())
                .collect(),
            blocked: BTreeMap::new(),
        };
        let mut outcome = PassOutcome {
            plan: plan.clone(),
            executed: Plan {
                steps: Vec::new(),
                ..plan.clone()
            },
            report: Report::default(),
            refused,
            tenants: BTreeMap::new(),
            hosts: self
                .drivers
                .hosts
                .keys()
                .map(|h| {
                    let pass = HostPass {
                        busy: busy.get(h).cloned(),
                        ..HostPass::default()
                    };
                    (h.clone(), pass)
                })
                .collect(),
            steps: BTreeMap::new(),
            cancelled: false,
        };
        if !outcome.refused.is_empty() {
            self.summarise(&mut outcome, &policy, &BTreeMap::new(), true);
            return Ok(outcome);
        }
        let (mut runnable, _) = plan.retain(|s| policy.why(s).is_none());
        if !settings.skip_preflight && !runnable.is_empty() {
            for problem in self.preflight(&runnable).await {
                policy
                    .blocked
                    .entry(problem.tenant.clone())
                    .or_default()
                    .push(problem.message);
            }
            if !policy.blocked.is_empty() {
                runnable = plan.retain(|s| policy.why(s).is_none()).0;
            }
        }
        let defects = crate::plan::check::check(&runnable, &live);
        if !defects.is_empty() {
            return Err(SessionError::Malformed { defects });
        }
        let mut rounds: Vec<(Plan, Report)> = Vec::new();
        if !runnable.is_empty() {
            let narrow = |p: Plan| p.retain(|s| policy.why(s).is_none()).0;
            let nothing_done = BTreeSet::new();
            let executing = self.execute_rounds(
                runnable,
                Rounds {
                    exec: &settings.exec,
                    plan: &plan_settings,
                    reporter: hooks,
                    stop,
                    skip: &nothing_done,
                    hooks,
                    narrow: &narrow,
                },
            );
            let (first, report, replans) = executing.await?;
            rounds.push((first, report));
            rounds.extend(replans);
        }
        for (p, r) in &rounds {
            for step in &p.steps {
                *outcome
                    .steps
                    .entry((
                        step.change.kind_name().to_string(),
                        result_label(r.outcomes.get(&step.id)),
                    ))
                    .or_default() += 1;
            }
        }
        outcome.cancelled = stop.is_stopped();
        // Per tenant: the last outcome of its steps over all rounds.
        let mut last: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        for (p, r) in &rounds {
            let mut this_round: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
            for step in &p.steps {
                let o = r
                    .outcomes
                    .get(&step.id)
                    .cloned()
                    .unwrap_or(Outcome::Cancelled);
                this_round.entry(step.tenant.clone()).or_default().push(o);
            }
            last.extend(this_round);
        }
        if let Some((p, r)) = rounds.pop() {
            outcome.executed = p;
            outcome.report = r;
        }
        self.summarise(&mut outcome, &policy, &last, false);
        self.record_hosts(&mut outcome, &policy, &last, held, hooks)
            .await;
        Ok(outcome)
    }

    /// Fill in the per-tenant and per-host lines.
    fn summarise(
        &self,
        outcome: &mut PassOutcome,
        policy: &Policy<'_>,
        ran: &BTreeMap<String, Vec<Outcome>>,
        refused_whole: bool,
    ) {
        let plan = &outcome.plan;
        let withheld = policy.classify(plan);
        let mut owners: BTreeSet<String> = match &plan.scope {
            Some(scope) => scope.tenants.clone(),
            None => self.fleet.tenants.keys().cloned().collect(),
        };
        owners.extend(plan.steps.iter().map(|s| s.tenant.clone()));
        let placements: BTreeMap<&str, &str> = plan
            .placements
            .iter()
            .filter_map(|p| Some((p.tenant.as_str(), p.host.as_deref()?)))
            .collect();
        for owner in owners {
            let steps: Vec<&Step> = plan.steps.iter().filter(|s| s.tenant == owner).collect();
            let drift = steps.iter().filter(|s| s.cause == Cause::Drift).count();
            let outcomes = ran.get(&owner).map_or(&[][..], Vec::as_slice);
            let applied = outcomes
                .iter()
                .filter(|o| **o == Outcome::Succeeded)
                .count();
            let environment = steps.first().map_or_else(
                || {
                    self.fleet
                        .tenants
                        .get(&owner)
                        .map(|t| t.environment.clone())
                        .unwrap_or_default()
                },
                |s| s.environment.clone(),
            );
            let reasons: Vec<&Withheld> =
                steps.iter().filter_map(|s| withheld.get(&s.id)).collect();
            let result = if refused_whole {
                TenantPass::Refused {
                    reasons: outcome.refused.iter().map(|r| r.message.clone()).collect(),
                }
            } else if policy.refused.contains(&owner) {
                TenantPass::Refused {
                    reasons: plan
                        .refusals
                        .iter()
                        .filter(|r| r.tenant.as_deref() == Some(owner.as_str()))
                        .map(|r| r.message.clone())
                        .collect(),
                }
            } else if self.fleet.reconcile_mode(&environment, &owner) == ReconcileMode::Paused {
                TenantPass::Paused
            } else if let Some(problems) = policy.blocked.get(&owner) {
                TenantPass::Blocked {
                    problems: problems.clone(),
                }
            } else if policy.hold.contains(&owner) && !steps.is_empty() {
                TenantPass::Held
            } else if let Some(step) = steps
                .iter()
                .find(|s| withheld.get(&s.id) == Some(&Withheld::HostBusy))
            {
                let host = HostRef::new(&step.environment, &step.host);
                let holder = policy
                    .busy
                    .get(&host)
                    .map(|r| r.holder.clone())
                    .unwrap_or_default();
                TenantPass::HostBusy { host, holder }
            } else if let Some(Outcome::Failed {
                error, recoverable, ..
            }) = outcomes
                .iter()
                .find(|o| matches!(o, Outcome::Failed { .. }))
            {
                TenantPass::Failed {
                    error: error.clone(),
                    recoverable: *recoverable,
                }
            } else if outcomes.iter().any(|o| *o != Outcome::Succeeded) {
                TenantPass::Cancelled
            } else if reasons.contains(&&Withheld::ReportOnly) {
                TenantPass::Drifted
            } else if applied > 0 {
                TenantPass::Converged
            } else {
                TenantPass::Synced
            };
            let pending = steps.len().saturating_sub(applied);
            let host = placements
                .get(owner.as_str())
                .map(|h| (*h).to_string())
                .or_else(|| {
                    steps
                        .first()
                        .map(|s| format!("{}/{}", s.environment, s.host))
                });
            outcome.tenants.insert(
                owner,
                TenantReport {
                    result,
                    host,
                    drift,
                    applied,
                    pending,
                },
            );
        }
        for step in &plan.steps {
            if step.cause == Cause::Drift
                && let Some(h) = outcome
                    .hosts
                    .get_mut(&HostRef::new(&step.environment, &step.host))
            {
                h.drift += 1;
            }
        }
    }

    /// Record the commit on every held host that reflects it now.
    async fn record_hosts(
        &self,
        outcome: &mut PassOutcome,
        policy: &Policy<'_>,
        ran: &BTreeMap<String, Vec<Outcome>>,
        held: &[HostRef],
        hooks: &dyn Hooks,
    ) {
        let Some(commit) = &self.commit else { return };
        // Only a scope that covers every change up to the commit: a full pass or `--since`.
        if outcome
            .plan
            .scope
            .as_ref()
            .is_some_and(|s| !s.named.is_empty() || s.since.is_none())
            || outcome.cancelled
        {
            return;
        }
        let withheld = policy.classify(&outcome.plan);
        let mut blocked: BTreeSet<HostRef> = BTreeSet::new();
        for step in &outcome.plan.steps {
            let host = HostRef::new(&step.environment, &step.host);
            let undone = match withheld.get(&step.id) {
                // Left alone by policy (drift of a `report` tenant, a `paused` tenant): the
                // host reflects every change berth is to apply. Un-pausing is itself a file
                // change, so the tenant is in the next incremental scope and planned whole.
                Some(Withheld::ReportOnly | Withheld::Paused) => false,
                Some(_) => true,
                None => ran
                    .get(&step.tenant)
                    .is_none_or(|o| o.iter().any(|o| *o != Outcome::Succeeded)),
            };
            if undone {
                blocked.insert(host);
            }
        }
        let unblocked: Vec<HostRef> = held
            .iter()
            .filter(|h| !blocked.contains(*h))
            .cloned()
            .collect();
        for host in self.record_on(&unblocked, commit, hooks).await {
            if let Some(h) = outcome.hosts.get_mut(&host) {
                h.recorded = true;
            }
        }
    }
}

/// What decides whether a step of a pass runs.
struct Policy<'a> {
    session: &'a Session,
    hold: &'a BTreeSet<String>,
    busy: &'a BTreeMap<HostRef, LeaseRecord>,
    /// Tenants a refusal names.
    refused: BTreeSet<String>,
    /// Tenants preflight found problems of, with the problems.
    blocked: BTreeMap<String, Vec<String>>,
}

impl Policy<'_> {
    /// Why each step of `plan` that does not run is withheld, by step id: its own reason, or
    /// [`Withheld::Upstream`] when it waits for a withheld step.
    fn classify(&self, plan: &Plan) -> BTreeMap<u32, Withheld> {
        let mut out = BTreeMap::new();
        for step in &plan.steps {
            let why = self.why(step).or_else(|| {
                step.after
                    .iter()
                    .any(|a| out.contains_key(a))
                    .then_some(Withheld::Upstream)
            });
            if let Some(why) = why {
                out.insert(step.id, why);
            }
        }
        out
    }

    /// Why `step` must not run in this pass (`None`: it runs, unless it waits for a step
    /// that does not).
    fn why(&self, step: &Step) -> Option<Withheld> {
        let tenant = step.tenant.as_str();
        let mode = self.session.fleet.reconcile_mode(&step.environment, tenant);
        if self.refused.contains(tenant) {
            Some(Withheld::Refused)
        } else if mode == ReconcileMode::Paused {
            Some(Withheld::Paused)
        } else if self.blocked.contains_key(tenant) {
            Some(Withheld::Blocked)
        } else if self.hold.contains(tenant) {
            Some(Withheld::Held)
        } else if self
            .busy
            .contains_key(&HostRef::new(&step.environment, &step.host))
        {
            Some(Withheld::HostBusy)
        } else if step.cause == Cause::Drift && mode == ReconcileMode::Report {
            Some(Withheld::ReportOnly)
        } else {
            None
        }
    }
}
