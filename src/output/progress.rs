//! Apply progress: one line per event on stderr for people, JSON lines on stdout for
//! machines. Nothing secret is in an event: steps carry instructions, and driver errors
//! redact resolved values.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use serde_json::json;

use super::{Format, Printer};
use crate::execute::{Event, Outcome, Reporter};

/// Version of the `apply --format json` event stream.
pub const EVENTS_VERSION: u32 = 1;

/// Renders executor events.
pub struct Progress<'p> {
    printer: &'p Printer,
    /// One bar per host, on a terminal in text mode.
    bars: Option<(
        indicatif::MultiProgress,
        BTreeMap<String, indicatif::ProgressBar>,
    )>,
}

impl<'p> Progress<'p> {
    /// Progress in the printer's format: lines or JSON lines.
    #[must_use]
    pub fn new(printer: &'p Printer) -> Self {
        Progress {
            printer,
            bars: None,
        }
    }

    /// Progress with one bar per host when stderr is a terminal (text mode only).
    #[must_use]
    pub fn with_bars(printer: &'p Printer, plan: &crate::plan::Plan) -> Self {
        let tty = std::io::stderr().is_terminal();
        if printer.format != Format::Text || !tty {
            return Progress::new(printer);
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
        Progress {
            printer,
            bars: Some((multi, bars)),
        }
    }

    fn bar(&self, step: &crate::plan::Step) -> Option<&indicatif::ProgressBar> {
        let (_, bars) = self.bars.as_ref()?;
        bars.get(&format!("{}/{}", step.environment, step.host))
    }

    /// Print a line above the bars (or plainly when there are none).
    fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => self.printer.status(text),
        }
    }

    /// Emit one JSON event line (JSON format) — used for plan/summary records too.
    pub fn json(&self, value: &serde_json::Value) {
        let mut value = value.clone();
        value["version"] = json!(EVENTS_VERSION);
        self.printer.data(&format!("{value}\n"));
    }
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
        let json_mode = self.printer.format == Format::Json;
        match event {
            Event::StepStarted { step, attempt } => {
                if json_mode {
                    self.json(&json!({"event": "step-started", "step": step.id, "tenant": step.tenant, "host": format!("{}/{}", step.environment, step.host), "change": step.change.kind_name(), "attempt": attempt}));
                } else if let Some(bar) = self.bar(step) {
                    bar.set_message(format!(
                        "{} {}",
                        step.change.kind_name(),
                        step.change.subject()
                    ));
                } else if *attempt == 1 {
                    self.line(&format!(
                        "  … [{}] {} {}",
                        step.id,
                        step.change.kind_name(),
                        where_(step)
                    ));
                }
            }
            Event::StepSucceeded { step, took } => {
                if json_mode {
                    self.json(&json!({"event": "step-succeeded", "step": step.id, "tenant": step.tenant, "seconds": took.as_secs_f64()}));
                } else if let Some(bar) = self.bar(step) {
                    bar.inc(1);
                } else {
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
            } => {
                if json_mode {
                    self.json(&json!({"event": "step-retried", "step": step.id, "tenant": step.tenant, "attempt": attempt, "error": error, "delay-seconds": delay.as_secs_f64()}));
                } else {
                    self.line(&format!(
                        "warning: [{}] attempt {attempt} failed, retrying in {:.1}s: {error}",
                        step.id,
                        delay.as_secs_f64()
                    ));
                }
            }
            Event::StepFailed { step, error } => {
                if json_mode {
                    self.json(&json!({"event": "step-failed", "step": step.id, "tenant": step.tenant, "error": error}));
                } else {
                    if let Some(bar) = self.bar(step) {
                        bar.inc(1);
                    }
                    self.line(&format!(
                        "  ✗ [{}] {} {}: {error}",
                        step.id,
                        step.change.kind_name(),
                        where_(step)
                    ));
                }
            }
            Event::StepSkipped { step, outcome } => {
                let why = match outcome {
                    Outcome::Skipped { because } => format!("step {because} failed"),
                    _ => "cancelled".to_string(),
                };
                if json_mode {
                    self.json(&json!({"event": "step-skipped", "step": step.id, "tenant": step.tenant, "reason": why}));
                } else {
                    if let Some(bar) = self.bar(step) {
                        bar.inc(1);
                    }
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
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
    }
}
