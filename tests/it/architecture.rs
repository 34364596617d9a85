//! Tidy tests for the architecture invariants of docs/ARCHITECTURE.md.
//!
//! Every `src/` file is parsed with `syn`; every `use` tree (grouped or not) and every path in
//! code (`std::fs::read(…)`, `tokio::select!`) is resolved to the crate or top-level module it
//! names, and checked against [`LAYERS`]: which `crate::` modules and which external crates
//! each module may use. A new arrow up a layer fails with the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

use crate::support::crate_root;

/// A module's allowed dependencies.
struct Layer {
    /// Top-level module (`plan`) or root file (`main`, `lib`).
    module: &'static str,
    /// Why it sits where it does (the message of a violation).
    rule: &'static str,
    /// `crate::` modules it may use (its own is always allowed).
    crate_modules: &'static [&'static str],
    /// External crates it may use (`std`, `core` and `alloc` are checked separately).
    crates: &'static [&'static str],
    /// Whether it belongs to the pure core (no I/O, clock, environment, threads).
    pure: bool,
}

const CORE_CRATES: &[&str] = &["serde", "serde_json", "schemars", "sha2", "thiserror"];

/// The floors, bottom up.
const LAYERS: &[Layer] = &[
    Layer {
        module: "spec",
        rule: "spec is the file format: pure, it knows nothing above it",
        crate_modules: &["model"],
        crates: &[
            "serde",
            "serde_json",
            "schemars",
            "saphyr_parser",
            "strsim",
            "thiserror",
        ],
        pure: true,
    },
    Layer {
        module: "model",
        rule: "model holds validated types: pure, below validate and plan",
        crate_modules: &["spec"],
        crates: CORE_CRATES,
        pure: true,
    },
    Layer {
        module: "validate",
        rule: "validate turns spec into model: pure, below plan",
        crate_modules: &["spec", "model"],
        crates: &["serde", "serde_json", "schemars", "strsim", "thiserror"],
        pure: true,
    },
    Layer {
        module: "plan",
        rule: "the planner is pure: desired + live in, plan out",
        crate_modules: &["spec", "model"],
        crates: CORE_CRATES,
        pure: true,
    },
    Layer {
        module: "clock",
        rule: "clock is the shells' wall clock",
        crate_modules: &[],
        crates: &["jiff"],
        pure: false,
    },
    Layer {
        module: "repo",
        rule: "repo reads a work tree into values",
        crate_modules: &["spec"],
        crates: &["thiserror"],
        pure: false,
    },
    Layer {
        module: "gitops",
        rule: "gitops reads and fetches git; it knows files, not hosts",
        crate_modules: &["spec", "repo"],
        crates: &["git2", "thiserror", "base64"],
        pure: false,
    },
    Layer {
        module: "driver",
        rule: "only driver/ talks to hosts (bollard, openssh); it knows plans, not sessions",
        crate_modules: &["model", "plan", "clock"],
        crates: &[
            "bollard",
            "openssh",
            "tokio",
            "futures_util",
            "base64",
            "rand",
            "tempfile",
            "serde",
            "serde_json",
            "thiserror",
            "tracing",
            "hyper",
            "hyper_util",
            "hyper_tls",
            "http_body_util",
            "sha2",
        ],
        pure: false,
    },
    Layer {
        module: "execute",
        rule: "the executor walks a plan through the driver face; no backend crate",
        crate_modules: &["driver", "model", "plan"],
        crates: &["tokio", "futures_util", "rand", "tracing", "thiserror"],
        pure: false,
    },
    Layer {
        module: "reconcile",
        rule: "the session uses the driver face, never a backend crate, and never prints",
        crate_modules: &[
            "clock", "driver", "execute", "gitops", "model", "plan", "repo", "spec", "validate",
        ],
        crates: &[
            "tokio",
            "futures_util",
            "serde_json",
            "thiserror",
            "tracing",
        ],
        pure: false,
    },
    Layer {
        module: "billing",
        rule: "the bridge writes git; it never touches a host",
        crate_modules: &[
            "clock", "gitops", "model", "repo", "spec", "validate", "driver",
        ],
        crates: &[
            "axum",
            // The server's own accept loop (header read timeout); see billing/server.rs.
            "hyper",
            "hyper_util",
            "tokio",
            "git2",
            "hmac",
            "sha2",
            "serde",
            "serde_json",
            "thiserror",
            "tracing",
            "hex",
            "futures_util",
            "rand",
            "stripe",
            "stripe_client_core",
            "miniserde",
            "base64",
        ],
        pure: false,
    },
    Layer {
        module: "daemon",
        rule: "the daemon is a loop around the session: it never names a backend or prints",
        crate_modules: &[
            "billing",
            "clock",
            "driver",
            "execute",
            "gitops",
            "model",
            "plan",
            "reconcile",
            "spec",
        ],
        crates: &[
            "axum",
            "tokio",
            "notify",
            "hmac",
            "sha2",
            "hex",
            "rand",
            "serde",
            "serde_json",
            "thiserror",
            "tracing",
        ],
        pure: false,
    },
    Layer {
        module: "import",
        rule: "import reads a host through the session and writes tenant files; it never prints",
        crate_modules: &[
            "clock",
            "driver",
            "execute",
            "model",
            "plan",
            "reconcile",
            "spec",
            "validate",
        ],
        crates: &["tokio", "serde_json", "thiserror"],
        pure: false,
    },
    Layer {
        module: "output",
        rule: "output renders values; it is the only code that prints",
        crate_modules: &[
            "clock",
            "driver",
            "execute",
            "import",
            "model",
            "plan",
            "reconcile",
            "spec",
            "validate",
        ],
        crates: &[
            "miette",
            "indicatif",
            "serde",
            "serde_json",
            "schemars",
            "similar",
            "anyhow",
            "clap",
            "thiserror",
        ],
        pure: false,
    },
    Layer {
        module: "cli",
        rule: "the CLI parses, confirms and renders; everything else is below it",
        crate_modules: &[
            "billing",
            "clock",
            "daemon",
            "driver",
            "execute",
            "gitops",
            "import",
            "model",
            "output",
            "plan",
            "reconcile",
            "repo",
            "spec",
            "validate",
        ],
        crates: &[
            "anyhow",
            "clap",
            "tokio",
            "serde_json",
            "thiserror",
            "tracing",
            "tracing_subscriber",
        ],
        pure: false,
    },
];

/// Pure files inside a shell module: the Stripe bridge's signature check, event reading,
/// lossless edit, decision and commit messages (`billing/{git,server,refetch}.rs` are its
/// shell), and the daemon's pure files ([`DAEMON_PURE`]). They keep the pure core's rules.
const PURE_FILES: &[&str] = &[
    "billing/signature.rs",
    "billing/event.rs",
    "billing/edit.rs",
    "billing/decide.rs",
    "billing/message.rs",
    "daemon/webhook.rs",
    "daemon/metrics.rs",
    "daemon/status.rs",
    "daemon/page.rs",
    "import/translate.rs",
    "import/docker.rs",
];

/// The layer of the pure bridge files.
const BILLING_PURE: Layer = Layer {
    module: "billing",
    rule: "the bridge's decisions are pure: event and file text in, new text out",
    crate_modules: &["spec", "model"],
    crates: &["serde", "serde_json", "hmac", "sha2", "hex", "thiserror"],
    pure: true,
};

/// The layer of import's pure translation: a host observation in, tenant file text out
/// (`import/mod.rs` is its shell).
const IMPORT_PURE: Layer = Layer {
    module: "import",
    rule: "import's translation is pure: observed host in, tenant file text out",
    crate_modules: &["spec", "model", "plan"],
    crates: &["serde_json", "thiserror"],
    pure: true,
};

/// The layer of the daemon's pure files: push webhook verification, the status values, the
/// metrics text and the status page (`daemon/{mod,http,follow,watch,backoff}.rs` are its
/// shell).
const DAEMON_PURE: Layer = Layer {
    module: "daemon",
    rule: "the daemon's verification, status, metrics and page are pure: values in, text out",
    crate_modules: &[],
    crates: &["serde", "serde_json", "hmac", "sha2", "hex", "thiserror"],
    pure: true,
};

/// std paths the pure core must not name.
const IMPURE_STD: &[&str] = &[
    "std::fs",
    "std::io",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::net::ToSocketAddrs",
    "std::os",
    "std::process",
    "std::env",
    "std::thread",
    "std::time::SystemTime",
    "std::time::Instant",
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

/// The module path of a file under `src/` (`plan/docker.rs` → `["plan", "docker"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    parts
}

/// Every path a file names, resolved to absolute form (`crate::plan::Plan`, `std::fs`,
/// `tokio::spawn`), with the line it is on. `#[cfg(test)]` items are skipped.
struct Paths {
    here: Vec<String>,
    /// Names bound by `use` at file level (`BTreeMap` → `std::collections::BTreeMap`).
    found: Vec<(String, usize)>,
}

fn is_test_item(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl Paths {
    fn absolute(&self, segments: &[String]) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut rest = segments;
        match segments.first().map(String::as_str) {
            Some("crate") => {
                out.push("crate".into());
                rest = &segments[1..];
            }
            Some("super") => {
                let mut base = self.here.clone();
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                out.push("crate".into());
                out.extend(base);
            }
            Some("self") => {
                out.push("crate".into());
                out.extend(self.here.clone());
                rest = &segments[1..];
            }
            _ => {}
        }
        out.extend(rest.iter().cloned());
        out.join("::")
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                let path = self.absolute(&full);
                self.found.push((path, line));
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                let path = self.absolute(&full);
                self.found.push((path, line));
            }
            syn::UseTree::Glob(_) => {
                let path = self.absolute(prefix);
                self.found.push((path, line));
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, line);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            _ => &[],
        };
        if is_test_item(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = item.use_token.span.start().line;
        self.use_tree(&mut Vec::new(), &item.tree, line);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() >= 2 || path.leading_colon.is_some() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = path
                .segments
                .first()
                .map_or(0, |s| s.ident.span().start().line);
            let abs = self.absolute(&segments);
            self.found.push((abs, line));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        let name = mac.path.segments.last().map(|s| s.ident.to_string());
        if let Some(name) = name
            && ["println", "eprintln", "print", "eprint", "dbg"].contains(&name.as_str())
        {
            let line = mac.path.segments[0].ident.span().start().line;
            self.found.push((format!("!print::{name}"), line));
        }
    }
}

/// Paths named in `text`, a file of module `here`.
fn paths_of(text: &str, here: &[String]) -> Vec<(String, usize)> {
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("cannot parse: {e}"));
    let mut v = Paths {
        here: here.to_vec(),
        found: Vec::new(),
    };
    v.visit_file(&file);
    v.found
}

/// Extern crates known to the crate (from Cargo.toml's dependencies), so a path like
/// `bollard::Docker` is told apart from a local `desired::Container`.
fn extern_crates() -> BTreeSet<String> {
    let toml = std::fs::read_to_string(crate_root().join("Cargo.toml")).unwrap();
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.insert(name.replace('-', "_"));
            }
        }
    }
    out.extend(["std", "core", "alloc"].map(String::from));
    out
}

/// Violations of the layer table in one file's paths.
fn violations(
    module: &str,
    file: &str,
    paths: &[(String, usize)],
    externs: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let pure_file = PURE_FILES.iter().any(|f| file.ends_with(f));
    let layer = if pure_file && module == "daemon" {
        Some(&DAEMON_PURE)
    } else if pure_file && module == "import" {
        Some(&IMPORT_PURE)
    } else if pure_file {
        Some(&BILLING_PURE)
    } else {
        LAYERS.iter().find(|l| l.module == module)
    };
    for (path, line) in paths {
        let at = format!("{file}:{line}: `{path}`");
        if let Some(name) = path.strip_prefix("!print::") {
            if module != "output" && module != "main" {
                out.push(format!("{at}: only output/ prints (`{name}!`)"));
            }
            continue;
        }
        let Some(layer) = layer else { continue };
        let mut parts = path.split("::");
        let first = parts.next().unwrap_or_default();
        if first == "crate" {
            let target = parts.next().unwrap_or_default();
            let known_module = LAYERS.iter().any(|l| l.module == target);
            if known_module && target != module && !layer.crate_modules.contains(&target) {
                out.push(format!(
                    "{at}: `{module}` may not use `crate::{target}` ({})",
                    layer.rule
                ));
            }
        } else if ["std", "core", "alloc"].contains(&first) {
            if layer.pure && IMPURE_STD.iter().any(|bad| path.starts_with(bad)) {
                out.push(format!("{at}: the pure core does no I/O ({})", layer.rule));
            }
        } else if externs.contains(first) && !layer.crates.contains(&first) {
            out.push(format!(
                "{at}: `{module}` may not use the crate `{first}` ({})",
                layer.rule
            ));
        }
    }
    out
}

#[test]
fn every_module_keeps_to_its_layer() {
    let externs = extern_crates();
    let src = crate_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let here = module_path(rel);
        let module = here
            .first()
            .cloned()
            .unwrap_or_else(|| rel.to_string_lossy().trim_end_matches(".rs").to_string());
        let text = std::fs::read_to_string(file).unwrap();
        let paths = paths_of(&text, &here);
        *seen.entry(module.clone()).or_default() += paths.len();
        all.extend(violations(
            &module,
            &format!("src/{}", rel.display()),
            &paths,
            &externs,
        ));
    }
    for layer in LAYERS {
        {
            assert!(
                seen.get(layer.module).copied().unwrap_or(0) > 0,
                "the scan found no paths in `{}`",
                layer.module
            );
        }
    }
    assert!(all.is_empty(), "layer violations:\n{}", all.join("\n"));
}

#[test]
fn the_checker_catches_grouped_and_inline_violations() {
    let externs = extern_crates();
    let here = vec!["plan".to_string(), "docker".to_string()];
    let text = "use std::{collections::BTreeMap, fs};\n\
                use super::super::reconcile::Session;\n\
                fn f() { let _ = std::process::id(); bollard::Docker::x(); println!(\"x\"); }\n\
                #[cfg(test)]\nmod tests { use std::fs; }\n";
    let paths = paths_of(text, &here);
    let found = violations("plan", "x.rs", &paths, &externs);
    let joined = found.join("\n");
    for expected in [
        "`std::fs`",
        "crate::reconcile",
        "`std::process::id`",
        "crate `bollard`",
        "only output/ prints",
    ] {
        assert!(joined.contains(expected), "missed {expected}:\n{joined}");
    }
    assert_eq!(found.len(), 5, "the test module is not scanned:\n{joined}");
    // Strings are not code.
    let quiet = paths_of("fn f() { let s = \"tokio::spawn\"; }", &here);
    assert!(violations("plan", "x.rs", &quiet, &externs).is_empty());
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
