//! Tidy tests for the architecture invariants of docs/ARCHITECTURE.md.

use std::path::{Path, PathBuf};

use crate::support::crate_root;

/// The pure core: no I/O, no clock, no environment, no async runtime.
const PURE: &[&str] = &["spec", "model", "validate", "plan"];

/// Pure modules inside a shell: the Stripe bridge's signature check, event reading, lossless
/// edit, decision and commit messages (`billing/{git,server,refetch}.rs` are its shell).
const PURE_FILES: &[&str] = &[
    "src/billing/signature.rs",
    "src/billing/event.rs",
    "src/billing/edit.rs",
    "src/billing/decide.rs",
    "src/billing/message.rs",
];

/// What the pure core must not name, in `use` lines or anywhere in code.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "bollard::",
    "openssh::",
    "git2::",
    "axum::",
    "hyper::",
    "reqwest::",
    "async_stripe::",
    "stripe::",
    "stripe_client_core::",
    "use tokio",
    "use bollard",
    "use openssh",
    "use git2",
    "use axum",
    "use hyper",
    "use reqwest",
    "std::fs",
    "fs_err",
    "std::env",
    "std::process",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "SystemTime",
    "Instant::now",
    "rand::",
    "std::thread",
    "crate::driver",
    "crate::execute",
    "crate::reconcile",
    "crate::gitops",
    "crate::billing",
    "crate::cli",
    "crate::output",
    "crate::repo",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines of a file: comments dropped, `#[cfg(test)]` modules at the end cut off.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = strip_strings(line.split("//").next().unwrap_or_default());
        lines.push((i + 1, code));
    }
    lines
}

/// Blank out string literals so a message mentioning `openssh` is not a violation.
fn strip_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        match (in_string, c) {
            (true, '\\') if !escaped => escaped = true,
            (true, '"') if !escaped => in_string = false,
            (true, _) => escaped = false,
            (false, '"') => in_string = true,
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn pure_core_does_no_io() {
    let mut violations = Vec::new();
    let mut scanned = 0;
    let mut files = Vec::new();
    for module in PURE {
        rust_files(&crate_root().join("src").join(module), &mut files);
    }
    files.extend(PURE_FILES.iter().map(|f| crate_root().join(f)));
    for file in files {
        scanned += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            for bad in FORBIDDEN {
                if line.contains(bad) {
                    violations.push(format!(
                        "{}:{n}: `{bad}` in `{}`",
                        file.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        scanned >= 8,
        "expected to scan the core, scanned {scanned} files"
    );
    assert!(
        violations.is_empty(),
        "the pure core does I/O:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_catches_a_violation() {
    // The scan itself must be able to fail: a line that uses std::fs is flagged.
    let lines = code_lines("use std::fs::read;\n// use tokio;\nlet s = \"tokio::spawn\";\n");
    assert_eq!(lines.len(), 2);
    assert!(
        !FORBIDDEN.iter().any(|bad| lines[1].1.contains(bad)),
        "strings are not code"
    );
    assert!(FORBIDDEN.iter().any(|bad| lines[0].1.contains(bad)));
}

#[test]
fn only_output_prints() {
    let mut files = Vec::new();
    rust_files(&crate_root().join("src"), &mut files);
    let mut violations = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(crate_root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("src/output/") || rel == "src/main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text) {
            for mac in ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("] {
                if line.contains(mac) {
                    violations.push(format!("{rel}:{n}: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "printing outside output/:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_has_a_header() {
    let mut files = Vec::new();
    rust_files(&crate_root().join("src"), &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` header: {missing:?}"
    );
}
