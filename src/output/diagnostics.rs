//! Rendering validation diagnostics: miette for people, a versioned JSON document for machines.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde_json::json;

use crate::spec::source::SourceSet;
use crate::validate::{Diagnostic, Location, Severity};

/// Version of the `validate --format json` document.
pub const VALIDATE_JSON_VERSION: u32 = 1;

/// Render diagnostics as text, miette style, followed by a summary line.
#[must_use]
pub fn render_text(sources: &SourceSet, diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let report = Report::new(sources, diagnostic);
        let mut text = String::new();
        if handler.render_report(&mut text, &report).is_err() {
            text = format!("{}: {}\n", diagnostic.location.file, diagnostic.message);
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

pub use crate::validate::summary;

/// The `validate --format json` document.
#[must_use]
pub fn render_json(sources: &SourceSet, diagnostics: &[Diagnostic]) -> serde_json::Value {
    let location = |l: &Location| {
        json!({
            "file": l.file,
            "line": l.line,
            "column": l.column,
            "span": { "start": l.span.start, "end": l.span.end },
            "label": l.label,
        })
    };
    let items: Vec<_> = diagnostics
        .iter()
        .map(|d| {
            let mut item = json!({
                "code": d.code,
                "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": d.message,
                "location": location(&d.location),
            });
            if let Some(hint) = &d.hint {
                item["hint"] = json!(hint);
            }
            if !d.related.is_empty() {
                item["related"] = d.related.iter().map(location).collect();
            }
            item
        })
        .collect();
    let valid = !diagnostics.iter().any(|d| d.severity == Severity::Error);
    json!({
        "version": VALIDATE_JSON_VERSION,
        "valid": valid,
        "files": sources.files.len(),
        "diagnostics": items,
    })
}

/// A diagnostic dressed for miette.
struct Report {
    message: String,
    code: &'static str,
    severity: miette::Severity,
    help: Option<String>,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn new(sources: &SourceSet, d: &Diagnostic) -> Self {
        let text_of = |file: &str| {
            sources
                .files
                .iter()
                .find(|f| f.path == file)
                .map(|f| f.text().to_string())
                .unwrap_or_default()
        };
        let label = |l: &Location, text: &str| {
            let start = l.span.start.min(text.len());
            let len = l.span.len().min(text.len() - start);
            LabeledSpan::new_with_span(Some(l.label.clone()), SourceSpan::new(start.into(), len))
        };
        let text = text_of(&d.location.file);
        let mut labels = vec![label(&d.location, &text)];
        let mut related = Vec::new();
        for other in &d.related {
            if other.file == d.location.file {
                labels.push(label(other, &text));
            } else {
                let other_text = text_of(&other.file);
                related.push(Report {
                    message: format!("see also {}:{}:{}", other.file, other.line, other.column),
                    code: d.code,
                    severity: miette::Severity::Advice,
                    help: None,
                    labels: vec![label(other, &other_text)],
                    source: NamedSource::new(&other.file, other_text),
                    related: Vec::new(),
                });
            }
        }
        Report {
            message: d.message.clone(),
            code: d.code,
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: d.hint.clone(),
            source: NamedSource::new(&d.location.file, text),
            labels,
            related,
        }
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}
