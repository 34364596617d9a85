//! Apply progress: one line per event on stderr for people (a bar per host on a terminal),
//! the typed JSON-lines stream of [`super::events`] on stdout for machines. Nothing secret is
//! in an event: steps carry instructions, and driver errors redact resolved values.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use super::events::{self, EventBody, EventRecord};
use super::{Format, Printer};
use crate::execute::{Event, Outcome, Reporter};
use crate::reconcile::{ApplyOutcome, Notice, Stopped, TenantOutcome};

type Bars = (
    indicatif::MultiProgress,
    BTreeMap<String, indicatif::ProgressBar>,
);

/// Renders a session's events and notices.
pub struct Progress<'p> {
    printer: &'p Printer,
    /// One bar per host, on a terminal in text mode, made when the plan is known.
    bars: Mutex<Option<Bars>>,
}

impl<'p> Progress<'p> {
    /// Progress in the printer's format: lines (bars on a terminal) or JSON lines.
    #[must_use]
    pub fn new(printer: &'p Printer) -> Self {
        Progress {
            printer,
            bars: Mutex::new(None),
        }
    }

    fn make_bars(&self, plan: &crate::plan::Plan) {
        let tty = std::io::stderr().is_terminal();
        if self.printer.format != Format::Text || !tty || plan.steps.is_empty() {
            return;
        }
        let multi = indicatif::MultiProgress::new();
        let mut per_host: BTreeMap<String, u64> = BTreeMap::new();
        for step in &plan.steps {
            *per_host
                .entry(format!("{}/{}", step.environment, step.host))
                .or_default() += 1;
        }
        let style =
            indicatif::ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bars = per_host
            .into_iter()
            .map(|(host, n)| {
                let bar = multi.add(indicatif::ProgressBar::new(n));
                bar.set_style(style.clone());
                bar.set_prefix(host.clone());
                (host, bar)
            })
            .collect();
        if let Ok(mut slot) = self.bars.lock() {
            *slot = Some((multi, bars));
        }
    }

    fn with_bar(&self, step: &crate::plan::Step, f: impl FnOnce(&indicatif::ProgressBar)) -> bool {
        let Ok(bars) = self.bars.lock() else {
            return false;
        };
        let Some((_, bars)) = bars.as_ref() else {
            return false;
        };
        match bars.get(&format!("{}/{}", step.environment, step.host)) {
            Some(bar) => {
                f(bar);
                true
            }
            None => false,
        }
    }

    /// Print a line above the bars (or plainly when there are none).
    fn line(&self, text: &str) {
        if let Ok(bars) = self.bars.lock()
            && let Some((multi, _)) = bars.as_ref()
        {
            let _ = multi.println(text);
            return;
        }
        self.printer.status(text);
    }

    /// Emit one JSON event line.
    fn json(&self, body: EventBody) {
        let record = EventRecord::now(body);
        let line = serde_json::to_string(&record).unwrap_or_default();
        self.printer.data(&format!("{line}\n"));
    }

    /// Render a session notice.
    pub fn notice(&self, notice: &Notice<'_>) {
        if self.printer.format == Format::Json {
            if let Some(body) = events::notice_body(notice) {
                self.json(body);
            }
            return;
        }
        match notice {
            Notice::Planned(plan) => {
                self.printer
                    .data(&super::plan::render_text(plan, self.printer.color_stdout));
                self.make_bars(plan);
            }
            Notice::WaitingForLease { host, held } => self.printer.status(&format!(
                "waiting for the lease on {host} held by {} for `{}` (expires {})",
                held.holder,
                held.purpose,
                crate::clock::describe_unix(held.expires)
            )),
            Notice::LeaseTaken { .. } => {}
            Notice::LeaseReclaimed { host } => self.printer.status(&format!(
                "took back the lease on {host} that an earlier pass could not release"
            )),
            Notice::LeaseLost { host } => self.printer.warn(&format!(
                "the lease on {host} is no longer ours: in-flight steps finish, nothing new starts"
            )),
            Notice::Replanned { host, ports, plan } => {
                self.printer.warn(&format!(
                    "host port {} on {host} is held by another process: planned again with other ports",
                    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
                self.printer
                    .data(&super::plan::render_text(plan, self.printer.color_stdout));
            }
            Notice::RecordFailed { host, error } => self.printer.warn(&format!(
                "could not record the applied commit on {host}: {error}"
            )),
            Notice::JournalFailed { error } => self.printer.warn(&format!(
                "the journal could not be written (the apply went on without it): {error}"
            )),
        }
    }

    /// Render the end of an apply: a summary record, or per-tenant lines and a total.
    pub fn finish(&self, outcome: &ApplyOutcome) {
        self.clear();
        if self.printer.format == Format::Json {
            self.json(events::summary_body(outcome));
            return;
        }
        self.printer.status(&summary_text(outcome));
    }

    fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some((_, bars)) = bars.take()
        {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The text summary of an apply (per-tenant lines, then the total).
#[must_use]
pub fn summary_text(outcome: &ApplyOutcome) -> String {
    let mut lines = Vec::new();
    match outcome.stopped {
        Some(Stopped::NothingToDo) => return "apply: nothing to do".into(),
        Some(Stopped::Declined) => return "apply cancelled".into(),
        Some(Stopped::Refused) => {
            return format!(
                "apply: refused ({} reasons above), nothing was changed",
                outcome.plan.refusals.len()
            );
        }
        None => {}
    }
    let (mut failed, mut skipped) = (0, 0);
    for (tenant, result) in &outcome.tenants {
        lines.push(match result {
            TenantOutcome::Converged => format!("tenant {tenant}: converged"),
            TenantOutcome::Failed { step, error } => {
                failed += 1;
                format!("tenant {tenant}: failed at step {step}: {error}")
            }
            TenantOutcome::Skipped => {
                skipped += 1;
                format!("tenant {tenant}: skipped")
            }
            TenantOutcome::Refused => format!("tenant {tenant}: refused"),
        });
    }
    let steps: usize = outcome.plan.steps.len()
        + outcome
            .replans
            .iter()
            .map(|(p, _)| p.steps.len())
            .sum::<usize>();
    lines.push(format!(
        "apply: {} of {steps} steps done, {failed} tenants failed, {skipped} skipped{}",
        outcome.succeeded(),
        if outcome.lease_expired {
            " (stopped: the lease could not be renewed before it expired)"
        } else if outcome.cancelled {
            " (stopped by a signal)"
        } else {
            ""
        }
    ));
    lines.join("\n")
}

fn where_(step: &crate::plan::Step) -> String {
    format!(
        "{}/{} {}",
        step.environment,
        step.host,
        step.change.subject()
    )
}

impl Reporter for Progress<'_> {
    fn event(&self, event: &Event<'_>) {
        if self.printer.format == Format::Json {
            self.json(events::step_body(event));
            return;
        }
        match event {
            Event::StepStarted { step, attempt } => {
                let shown = self.with_bar(step, |bar| {
                    bar.set_message(format!(
                        "{} {}",
                        step.change.kind_name(),
                        step.change.subject()
                    ));
                });
                if !shown && *attempt == 1 {
                    self.line(&format!(
                        "  … [{}] {} {}",
                        step.id,
                        step.change.kind_name(),
                        where_(step)
                    ));
                }
            }
            Event::StepSucceeded { step, took } => {
                if !self.with_bar(step, |bar| bar.inc(1)) {
                    self.line(&format!(
                        "  ✓ [{}] {} {} ({:.1}s)",
                        step.id,
                        step.change.kind_name(),
                        where_(step),
                        took.as_secs_f64()
                    ));
                }
            }
            Event::StepRetried {
                step,
                attempt,
                error,
                delay,
            } => self.line(&format!(
                "warning: [{}] attempt {attempt} failed, retrying in {:.1}s: {error}",
                step.id,
                delay.as_secs_f64()
            )),
            Event::StepFailed { step, error } => {
                self.with_bar(step, |bar| bar.inc(1));
                self.line(&format!(
                    "  ✗ [{}] {} {}: {error}",
                    step.id,
                    step.change.kind_name(),
                    where_(step)
                ));
            }
            Event::StepSkipped { step, outcome } => {
                self.with_bar(step, |bar| bar.inc(1));
                let why = match outcome {
                    Outcome::Skipped { .. } | Outcome::Cancelled => events::skip_reason(outcome),
                    _ => String::new(),
                };
                self.line(&format!(
                    "  - [{}] {} {}: skipped ({why})",
                    step.id,
                    step.change.kind_name(),
                    where_(step)
                ));
            }
        }
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}
