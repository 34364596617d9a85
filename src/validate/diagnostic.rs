//! Diagnostics: one problem in the input, with the place it is at.
//!
//! A diagnostic is a value: `validate` collects them all and `output` renders them (with
//! miette for people, as JSON for machines). Line and column are computed here once, so both
//! renderings agree.

use crate::spec::source::{Span, line_col};

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The repo is invalid.
    Error,
    /// Worth a look; does not fail validation.
    Warning,
}

/// A place in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Repo-relative path.
    pub file: String,
    /// Byte span.
    pub span: Span,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// Label under the text.
    pub label: String,
}

impl Location {
    /// A location in `file` whose text is `text`.
    #[must_use]
    pub fn new(file: &str, text: &str, span: Span, label: impl Into<String>) -> Self {
        let (line, column) = line_col(text, span.start);
        Location {
            file: file.to_string(),
            span,
            line,
            column,
            label: label.into(),
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable machine code, `berth::unknown-key`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Lowercase message naming the subject.
    pub message: String,
    /// The primary place.
    pub location: Location,
    /// Other places involved (the other file of a duplicate).
    pub related: Vec<Location>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `location`.
    #[must_use]
    pub fn error(code: &'static str, message: impl Into<String>, location: Location) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            location,
            related: Vec::new(),
            hint: None,
        }
    }

    /// Add a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Add a related location.
    #[must_use]
    pub fn with_related(mut self, location: Location) -> Self {
        self.related.push(location);
        self
    }

    /// Make it a warning.
    #[must_use]
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}
