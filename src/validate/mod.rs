//! `validate`: spec files → the validated [`Fleet`], with every problem reported at once.
//!
//! Three layers, each collecting all its problems before the next runs on what survived:
//! 1. per file: readable, YAML syntax, structure against the schema (`spec::schema_check`);
//! 2. per file: meaning — names are DNS labels, formats parse, references inside the file;
//! 3. across files: references between files resolve, and ids, domains, Dokku app names and
//!    published ports are unique per scope; host capacity holds.
//!
//! Returns `(Some(fleet), warnings)` when there is no error, `(None, diagnostics)` otherwise;
//! bad input is never an `Err` (rust-analyzer's `(T, Vec<Error>)` shape).
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

mod cross_file;
pub mod diagnostic;
mod environment;
mod fields;
mod read;
mod tenant;

use cross_file::*;
use environment::*;
use fields::*;
use read::*;
use tenant::*;

use std::collections::BTreeMap;

use crate::model::{
    App, DokkuTarget, EnvValue, Environment, Fleet, Health, Host, HostTarget, Policy, Port,
    ProxyKind, PullPolicy, Secrets, Service, ServiceKind, Stack, Storage, Tenant, TenantState,
    Tier, is_dns_label, is_hostname, parse_memory,
};
use crate::spec::schema_check::{self, did_you_mean, ticked};
use crate::spec::source::{FileKind, SourceFile, SourceSet, Span, Unreadable};
use crate::spec::yaml::{self, Node};
use crate::spec::{
    self, AppSpec, EnvValueSpec, EnvironmentSpec, HealthSpec, HostSpec, PortSpec, ServiceSpec,
    StorageSpec, TenantSpec,
};

pub use diagnostic::{Diagnostic, Location, Severity};

use crate::model::SHARED_STACK_ID;

/// `valid: 4 files checked, 0 warnings` or `invalid: 2 errors, 0 warnings in 4 files`.
#[must_use]
pub fn summary(sources: &SourceSet, diagnostics: &[Diagnostic]) -> String {
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let files = sources.files.len();
    if errors == 0 {
        format!(
            "valid: {files} {} checked, {warnings} {}",
            plural(files, "file", "files"),
            plural(warnings, "warning", "warnings")
        )
    } else {
        format!(
            "invalid: {errors} {}, {warnings} {} in {files} {}",
            plural(errors, "error", "errors"),
            plural(warnings, "warning", "warnings"),
            plural(files, "file", "files")
        )
    }
}

/// Validate every file of a repo.
#[must_use]
pub fn validate(sources: &SourceSet) -> (Option<Fleet>, Vec<Diagnostic>) {
    let tenant_schema = spec::tenant_schema();
    let environment_schema = spec::environment_schema();
    let mut cx = Cx::default();
    let mut environments = Vec::new();
    let mut tenants = Vec::new();
    for file in &sources.files {
        match file.kind {
            FileKind::Environment => {
                if let Some((root, spec)) =
                    read::<EnvironmentSpec>(&mut cx, file, &environment_schema)
                {
                    environments.push(Parsed { file, root, spec });
                }
            }
            FileKind::Tenant => {
                if let Some((root, spec)) = read::<TenantSpec>(&mut cx, file, &tenant_schema) {
                    tenants.push(Parsed { file, root, spec });
                }
            }
        }
    }

    let mut fleet = Fleet::default();
    let mut env_files: BTreeMap<String, &Parsed<EnvironmentSpec>> = BTreeMap::new();
    for parsed in &environments {
        let name = parsed.file.stem().to_string();
        if let Some(env) = check_environment(&mut cx, parsed, &name) {
            env_files.insert(name.clone(), parsed);
            fleet.environments.insert(name, env);
        }
    }
    let mut tenant_files: BTreeMap<String, &Parsed<TenantSpec>> = BTreeMap::new();
    for parsed in &tenants {
        if let Some(tenant) = check_tenant(&mut cx, parsed, &fleet.environments) {
            if let Some(previous) = tenant_files.get(&tenant.id) {
                let diag = Diagnostic::error(
                    "berth::duplicate-tenant",
                    format!("tenant id `{}` is used by two files", tenant.id),
                    cx.loc(parsed, &["id"], "second use"),
                )
                .with_related(cx.loc(previous, &["id"], "first use"))
                .with_hint("tenant ids must be unique; rename one file and its `id`");
                cx.push(diag);
                continue;
            }
            tenant_files.insert(tenant.id.clone(), parsed);
            fleet.tenants.insert(tenant.id.clone(), tenant);
        }
    }
    check_cross_file(&mut cx, &fleet, &env_files, &tenant_files);

    let has_error = cx.diags.iter().any(|d| d.severity == Severity::Error);
    cx.diags.sort_by(|a, b| {
        (&a.location.file, a.location.span.start, a.code).cmp(&(
            &b.location.file,
            b.location.span.start,
            b.code,
        ))
    });
    (if has_error { None } else { Some(fleet) }, cx.diags)
}

pub(super) struct Parsed<'s, T> {
    file: &'s SourceFile,
    root: Node,
    spec: T,
}

#[derive(Default)]
pub(super) struct Cx {
    diags: Vec<Diagnostic>,
}

impl Cx {
    fn push(&mut self, diag: Diagnostic) {
        self.diags.push(diag);
    }

    /// The location of the node at `path`, or of the deepest existing parent.
    fn loc<T>(&self, parsed: &Parsed<'_, T>, path: &[&str], label: &str) -> Location {
        location(parsed.file, &parsed.root, path, false, label)
    }

    /// The location of the key at the end of `path` (for problems with a name).
    fn key_loc<T>(&self, parsed: &Parsed<'_, T>, path: &[&str], label: &str) -> Location {
        location(parsed.file, &parsed.root, path, true, label)
    }

    fn error<T>(
        &mut self,
        parsed: &Parsed<'_, T>,
        code: &'static str,
        path: &[&str],
        message: String,
        label: &str,
        hint: Option<String>,
    ) {
        let mut diag = Diagnostic::error(code, message, self.loc(parsed, path, label));
        diag.hint = hint;
        self.push(diag);
    }

    fn name_error<T>(&mut self, parsed: &Parsed<'_, T>, path: &[&str], what: &str, name: &str) {
        let diag = Diagnostic::error(
            "berth::invalid-name",
            format!("{what} `{}` is not a valid name", printable(name)),
            self.key_loc(parsed, path, "not a DNS label"),
        )
        .with_hint(
            "names are DNS labels: 1-63 lowercase letters, digits and `-`, not starting or ending with `-`",
        );
        self.push(diag);
    }
}

pub(super) fn location(
    file: &SourceFile,
    root: &Node,
    path: &[&str],
    key: bool,
    label: &str,
) -> Location {
    let text = file.text();
    let mut node = root;
    let mut span = Span::new(root.span.start, root.span.start);
    for (i, part) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if key
            && last
            && let Some(k) = node.key(part)
        {
            span = k.span;
            break;
        }
        match node.at(&[part]) {
            Some(next) => {
                span = if matches!(next.value, yaml::Value::Empty) {
                    node.key(part).map_or(next.span, |k| k.span)
                } else {
                    next.span
                };
                node = next;
            }
            None => break,
        }
    }
    // Point at the first line of a multi-line node: labels under a whole mapping are noise.
    if let Some(nl) = text.get(span.start..span.end).and_then(|s| s.find('\n')) {
        span = Span::new(span.start, span.start + nl);
    }
    Location::new(&file.path, text, span, label)
}

/// Make a name printable in a message: control characters escaped.
pub(super) fn printable(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 80 {
        format!("{}…", escaped.chars().take(80).collect::<String>())
    } else {
        escaped
    }
}

/// What checking a stack needs to know about its owner.
pub(super) struct StackCx<'a> {
    owner: &'a str,
    environment_domain: Option<&'a str>,
    tier: Option<&'a Tier>,
    secrets: &'a Secrets,
    host: Option<&'a Host>,
    /// The stack can only land on Dokku hosts (its host is one, or every host of its
    /// environment is): keys that do nothing there are refused.
    dokku: bool,
    /// Path prefix of the stack inside its file (`[]` for tenants, `["shared"]`).
    base: &'a [&'a str],
}

impl StackCx<'_> {
    fn path<'p>(&'p self, rest: &[&'p str]) -> Vec<&'p str> {
        self.base
            .iter()
            .copied()
            .chain(rest.iter().copied())
            .collect()
    }

    fn on_dokku(&self) -> bool {
        self.dokku
    }
}
