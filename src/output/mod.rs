//! The only code that writes to the terminal.
//!
//! Data (plans, JSON, validation results) goes to stdout; chatter (status, warnings, errors)
//! to stderr. Colour is decided once, here: only on a terminal, never with `NO_COLOR`, and
//! symbols carry the meaning so nothing depends on colour. Every other module returns values
//! and lets this one render them.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod diagnostics;
pub mod events;
pub mod import;
pub mod plan;
pub mod progress;
pub mod status;

use std::io::{IsTerminal, Write};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For machines: one versioned JSON document (JSON lines for streams).
    Json,
    /// For pull-request comments (`plan` only).
    Markdown,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Writes data and messages; knows whether colour is on.
#[derive(Debug, Clone)]
pub struct Printer {
    /// Output format.
    pub format: Format,
    /// Whether stdout gets ANSI colour.
    pub color_stdout: bool,
    /// Whether stderr gets ANSI colour.
    pub color_stderr: bool,
}

impl Printer {
    /// Decide colour from the choice, the terminals and `NO_COLOR`.
    #[must_use]
    pub fn new(format: Format, color: ColorChoice) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let decide = |is_tty: bool| match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_tty && !no_color,
        };
        Printer {
            format,
            color_stdout: decide(std::io::stdout().is_terminal()) && format == Format::Text,
            color_stderr: decide(std::io::stderr().is_terminal()),
        }
    }

    /// A printer that never colours (tests).
    #[must_use]
    pub fn plain(format: Format) -> Self {
        Printer {
            format,
            color_stdout: false,
            color_stderr: false,
        }
    }

    /// Write data to stdout. A closed pipe (`berth plan | head`) is not an error: the
    /// write is dropped and the command goes on (an apply must finish its in-flight steps
    /// and release its leases whoever stopped reading).
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Write a status line to stderr (dropped when stderr is closed).
    pub fn status(&self, text: &str) {
        to_stderr(&format!("{text}\n"));
    }

    /// Write a warning to stderr.
    pub fn warn(&self, text: &str) {
        if self.color_stderr {
            to_stderr(&format!("\x1b[33mwarning\x1b[0m: {text}\n"));
        } else {
            to_stderr(&format!("warning: {text}\n"));
        }
    }

    /// Render a top-level error chain with hints, uv style.
    pub fn error(&self, error: &anyhow::Error) {
        to_stderr(&render_error(error, self.color_stderr));
    }
}

/// Write to stderr, ignoring a closed pipe (`eprintln!` would panic).
fn to_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `error: …`, indented `caused by: …` lines, then `hint: …` lines after a blank line.
#[must_use]
pub fn render_error(error: &anyhow::Error, color: bool) -> String {
    let mut text = String::new();
    let head = if color {
        "\x1b[31merror\x1b[0m"
    } else {
        "error"
    };
    text.push_str(&format!("{head}: {error}\n"));
    let mut hints = Vec::new();
    for cause in error.chain().skip(1) {
        let message = cause.to_string();
        if let Some(hint) = message.strip_prefix("hint: ") {
            hints.push(hint.to_string());
        } else {
            text.push_str(&format!("  caused by: {message}\n"));
        }
    }
    if let Some(hint) = error.downcast_ref::<Hinted>() {
        hints.push(hint.hint.clone());
    }
    for hint in hints {
        text.push_str(&format!("\nhint: {hint}\n"));
    }
    text
}

/// An error message with a hint for the user, for the CLI layer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    /// The message.
    pub message: String,
    /// What to do.
    pub hint: String,
}
