//! Validation layer 1: read one file — text, YAML with spans, structure against the schema,
//! serde — and check its format version. Problems become diagnostics.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Read one file: text, YAML, structure, serde. Problems become diagnostics.
pub(super) fn read<T: serde::de::DeserializeOwned>(
    cx: &mut Cx,
    file: &SourceFile,
    schema: &schema_check::Compiled,
) -> Option<(Node, T)> {
    let text = match &file.text {
        Ok(text) => text,
        Err(problem) => {
            let (message, hint) = match problem {
                Unreadable::TooLarge { size } => (
                    format!(
                        "file is too large ({size} bytes; the limit is {} bytes)",
                        spec::source::MAX_FILE_BYTES
                    ),
                    Some("berth files describe one tenant or environment; split or trim it".into()),
                ),
                Unreadable::NotUtf8 { valid_up_to } => (
                    format!("file is not valid UTF-8 (first bad byte at offset {valid_up_to})"),
                    Some("save the file as UTF-8".into()),
                ),
                Unreadable::Io(err) => (format!("cannot read file: {err}"), None),
                Unreadable::NotAFile => (
                    "not a regular file (a symlink or special file)".to_string(),
                    Some("berth reads regular files only; copy the file into the repo".into()),
                ),
            };
            let mut diag = Diagnostic::error(
                "berth::unreadable",
                message,
                Location::new(&file.path, "", Span::default(), "here"),
            );
            diag.hint = hint;
            cx.push(diag);
            return None;
        }
    };
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(err) => {
            cx.push(
                Diagnostic::error(
                    "berth::yaml",
                    err.message,
                    Location::new(&file.path, text, err.span, err.label),
                )
                .with_hint("check indentation and quoting around this point"),
            );
            return None;
        }
    };
    if matches!(root.value, yaml::Value::Empty) {
        cx.push(
            Diagnostic::error(
                "berth::empty-file",
                "file is empty",
                Location::new(&file.path, text, Span::default(), "expected a mapping"),
            )
            .with_hint(match file.kind {
                FileKind::Tenant => "a tenant file needs at least `environment:`",
                FileKind::Environment => "an environment file needs at least `hosts:`",
            }),
        );
        return None;
    }
    let (json, problems) = schema_check::check(&root, schema);
    if !problems.is_empty() {
        for problem in problems {
            let mut diag = Diagnostic::error(
                if problem.message.starts_with("unknown key") {
                    "berth::unknown-key"
                } else if problem.message.starts_with("missing") {
                    "berth::missing-key"
                } else {
                    "berth::schema"
                },
                problem.message,
                Location::new(&file.path, text, problem.span, problem.label),
            );
            diag.hint = problem.hint;
            if let Some((span, label)) = problem.related {
                diag.related
                    .push(Location::new(&file.path, text, span, label));
            }
            cx.push(diag);
        }
        // Every problem at once: what parsed around the structural problems (an unknown
        // key is dropped) still gets its meaning checked; when too little parsed for that,
        // the report says so instead of staying silent.
        return match serde_json::from_value::<T>(json) {
            Ok(spec) => Some((root, spec)),
            Err(err) => {
                cx.push(
                    Diagnostic::error(
                        "berth::checks-skipped",
                        format!(
                            "the other checks of this file were skipped: its structure must be fixed first ({err})"
                        ),
                        Location::new(&file.path, text, Span::default(), "whole file"),
                    )
                    .with_hint("fix the problems above, then validate again")
                    .warning(),
                );
                None
            }
        };
    }
    match serde_json::from_value::<T>(json) {
        Ok(spec) => Some((root, spec)),
        Err(err) => {
            // The schema walk accepted what serde refused: a bug in berth, said so plainly.
            cx.push(
                Diagnostic::error(
                    "berth::internal",
                    format!("berth could not read this file although it matches the schema: {err}"),
                    Location::new(&file.path, text, Span::default(), "here"),
                )
                .with_hint("this is a bug in berth; please report it with the file"),
            );
            None
        }
    }
}

pub(super) fn check_version<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, version: Option<u32>) {
    if let Some(version) = version
        && version != spec::FORMAT_VERSION
    {
        cx.error(
            parsed,
            "berth::version",
            &["version"],
            format!("unsupported format version {version}"),
            "unknown version",
            Some(format!(
                "this berth reads version {}; upgrade berth or change the file",
                spec::FORMAT_VERSION
            )),
        );
    }
}
