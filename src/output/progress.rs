//! Apply progress: one line per event on stderr for people, JSON lines on stdout for
//! machines. Nothing secret is in an event: steps carry instructions, and driver errors
//! redact resolved values.

use serde_json::json;

use super::{Format, Printer};
use crate::execute::{Event, Outcome, Reporter};

/// Version of the `apply --format json` event stream.
pub const EVENTS_VERSION: u32 = 1;

/// Renders executor events.
pub struct Progress<'p> {
    printer: &'p Printer,
}

impl<'p> Progress<'p> {
    /// Progress in the printer's format.
    #[must_use]
    pub fn new(printer: &'p Printer) -> Self {
        Progress { printer }
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
                } else if *attempt == 1 {
                    self.printer.status(&format!(
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
                } else {
                    self.printer.status(&format!(
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
                    self.printer.warn(&format!(
                        "[{}] attempt {attempt} failed, retrying in {:.1}s: {error}",
                        step.id,
                        delay.as_secs_f64()
                    ));
                }
            }
            Event::StepFailed { step, error } => {
                if json_mode {
                    self.json(&json!({"event": "step-failed", "step": step.id, "tenant": step.tenant, "error": error}));
                } else {
                    self.printer.status(&format!(
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
                    self.printer.status(&format!(
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
