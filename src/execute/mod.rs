//! The executor: walks a plan's dependency graph and calls drivers. It makes no decisions.
//!
//! - A step starts when every step it waits for (`Step::after`) succeeded; a failed step
//!   skips its dependents, never unrelated tenants.
//! - Concurrency is bounded per host and overall ([`ExecOptions`]).
//! - Transient driver errors are retried with exponential backoff and jitter; permanent ones
//!   are not.
//! - Cancellation (Ctrl-C, SIGTERM) lets in-flight steps finish and starts no new ones.
//! - Every event goes to a [`Reporter`] (progress bars, JSON lines, the journal); the
//!   executor itself prints nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::driver::{AnyDriver, DriverError, Drivers};
use crate::model::live::HostRef;
use crate::plan::{Plan, Step};

/// Executor knobs.
#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// Steps in flight per host.
    pub per_host: usize,
    /// Steps in flight across hosts.
    pub total: usize,
    /// Attempts for a step with transient failures (1 = no retry).
    pub attempts: u32,
    /// First retry delay; doubles each attempt, with up to 50% jitter.
    pub backoff: Duration,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            per_host: 4,
            total: 16,
            attempts: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Failed after `attempts` tries.
    Failed {
        /// Error chain, secrets already redacted by the driver.
        error: String,
        /// Tries made.
        attempts: u32,
        /// What a re-plan should take into account.
        replan: Option<crate::driver::Replan>,
        /// Whether the same step may succeed later without a change of the files (a
        /// transient failure, a container that did not become healthy): the daemon retries
        /// it with backoff; otherwise it waits for a file change.
        recoverable: bool,
    },
    /// Not run: a step it waits for failed or was skipped.
    Skipped {
        /// The step that failed first upstream.
        because: u32,
    },
    /// Not run: the run was cancelled.
    Cancelled,
}

/// Events the executor reports.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A step started.
    StepStarted {
        /// Step.
        step: &'a Step,
        /// Try number, from 1.
        attempt: u32,
    },
    /// A step succeeded.
    StepSucceeded {
        /// Step.
        step: &'a Step,
        /// Time taken.
        took: Duration,
    },
    /// A transient failure will be retried after `delay`.
    StepRetried {
        /// Step.
        step: &'a Step,
        /// Failed try.
        attempt: u32,
        /// Error chain.
        error: String,
        /// Wait before the next try.
        delay: Duration,
    },
    /// A step failed for good.
    StepFailed {
        /// Step.
        step: &'a Step,
        /// Error chain.
        error: String,
    },
    /// A step was skipped.
    StepSkipped {
        /// Step.
        step: &'a Step,
        /// Why.
        outcome: Outcome,
    },
}

/// Receives executor events.
pub trait Reporter: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
}

/// The result of running a plan.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Outcome per step id.
    pub outcomes: BTreeMap<u32, Outcome>,
}

impl Report {
    /// Whether every step succeeded.
    #[must_use]
    pub fn success(&self) -> bool {
        self.outcomes.values().all(|o| *o == Outcome::Succeeded)
    }
}

fn jitter(attempt: u32, base: Duration) -> Duration {
    use rand::Rng as _;
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let extra = rand::rng().random_range(0.0..0.5);
    exp.mul_f64(1.0 + extra)
}

/// Run a plan.
///
/// `stopped` is asked before each step starts: once it says yes (a signal, a lost lease),
/// in-flight steps finish and nothing new starts. `skip` lists steps already done (a resumed
/// run); they count as succeeded.
pub async fn execute(
    plan: &Plan,
    drivers: &Drivers,
    options: &ExecOptions,
    reporter: &dyn Reporter,
    stopped: &(dyn Fn() -> bool + Sync),
    skip: &BTreeSet<u32>,
) -> Report {
    let steps: BTreeMap<u32, &Step> = plan.steps.iter().map(|s| (s.id, s)).collect();
    let mut report = Report::default();
    for id in skip {
        if steps.contains_key(id) {
            report.outcomes.insert(*id, Outcome::Succeeded);
        }
    }
    let mut running: BTreeMap<u32, HostRef> = BTreeMap::new();
    let mut in_flight = FuturesUnordered::new();
    loop {
        // Settle steps whose upstream failed.
        let mut changed = true;
        while changed {
            changed = false;
            for step in &plan.steps {
                if report.outcomes.contains_key(&step.id) || running.contains_key(&step.id) {
                    continue;
                }
                let blocked = step
                    .after
                    .iter()
                    .find_map(|dep| match report.outcomes.get(dep) {
                        Some(Outcome::Failed { .. }) => Some(*dep),
                        Some(Outcome::Skipped { because }) => Some(*because),
                        Some(Outcome::Cancelled) => Some(*dep),
                        _ => None,
                    });
                if let Some(because) = blocked {
                    let outcome = Outcome::Skipped { because };
                    reporter.event(&Event::StepSkipped {
                        step,
                        outcome: outcome.clone(),
                    });
                    report.outcomes.insert(step.id, outcome);
                    changed = true;
                }
            }
        }
        if !stopped() {
            for step in &plan.steps {
                if running.len() >= options.total {
                    break;
                }
                if report.outcomes.contains_key(&step.id) || running.contains_key(&step.id) {
                    continue;
                }
                let ready = step
                    .after
                    .iter()
                    .all(|d| report.outcomes.get(d) == Some(&Outcome::Succeeded));
                let host = HostRef::new(&step.environment, &step.host);
                let on_host = running.values().filter(|h| **h == host).count();
                if ready && on_host < options.per_host {
                    running.insert(step.id, host.clone());
                    in_flight.push(run_step(
                        step,
                        drivers.hosts.get(&host),
                        host,
                        options,
                        reporter,
                    ));
                }
            }
        }
        if in_flight.is_empty() {
            break;
        }
        if let Some((id, outcome)) = in_flight.next().await {
            running.remove(&id);
            report.outcomes.insert(id, outcome);
        }
    }
    for step in &plan.steps {
        if let std::collections::btree_map::Entry::Vacant(slot) = report.outcomes.entry(step.id) {
            reporter.event(&Event::StepSkipped {
                step,
                outcome: Outcome::Cancelled,
            });
            slot.insert(Outcome::Cancelled);
        }
    }
    report
}

async fn run_step(
    step: &Step,
    driver: Option<&AnyDriver>,
    host: HostRef,
    options: &ExecOptions,
    reporter: &dyn Reporter,
) -> (u32, Outcome) {
    let Some(driver) = driver else {
        let error = DriverError::NoDriver { host }.chain();
        reporter.event(&Event::StepFailed {
            step,
            error: error.clone(),
        });
        return (
            step.id,
            Outcome::Failed {
                error,
                attempts: 0,
                replan: None,
                recoverable: false,
            },
        );
    };
    let mut attempt = 1;
    loop {
        tracing::info!(tenant = %step.tenant, host = %host, step = step.id, change = step.change.kind_name(), attempt, "step started");
        reporter.event(&Event::StepStarted { step, attempt });
        let started = Instant::now();
        match driver.apply(step).await {
            Ok(()) => {
                tracing::info!(tenant = %step.tenant, host = %host, step = step.id, seconds = started.elapsed().as_secs_f64(), "step succeeded");
                reporter.event(&Event::StepSucceeded {
                    step,
                    took: started.elapsed(),
                });
                return (step.id, Outcome::Succeeded);
            }
            Err(e) if e.is_transient() && attempt < options.attempts => {
                let delay = jitter(attempt, options.backoff);
                reporter.event(&Event::StepRetried {
                    step,
                    attempt,
                    error: e.chain(),
                    delay,
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => {
                let error = e.chain();
                let replan = e.replan();
                let recoverable = e.is_recoverable();
                tracing::warn!(tenant = %step.tenant, host = %host, step = step.id, error = %error, "step failed");
                reporter.event(&Event::StepFailed {
                    step,
                    error: error.clone(),
                });
                return (
                    step.id,
                    Outcome::Failed {
                        error,
                        attempts: attempt,
                        replan,
                        recoverable,
                    },
                );
            }
        }
    }
}

/// Sends every event to several reporters (progress output and the journal).
pub struct Tee<'a>(pub Vec<&'a dyn Reporter>);

impl Reporter for Tee<'_> {
    fn event(&self, event: &Event<'_>) {
        for reporter in &self.0 {
            reporter.event(event);
        }
    }
}
