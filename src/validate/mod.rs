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

/// Validate every file of a repo, one file after the other.
#[must_use]
pub fn validate(sources: &SourceSet) -> (Option<Fleet>, Vec<Diagnostic>) {
    validate_with(sources, &InOrder)
}

/// What one tenant file came to: its diagnostics and, when it is valid on its own, its
/// tenant. Made by the per-file work [`validate_with`] hands to a [`Spread`]; its tree and
/// spec are dropped as soon as the file is checked, so only the tenant outlives the call.
pub struct Checked {
    diags: Vec<Diagnostic>,
    tenant: Option<Tenant>,
}

/// How the per-file work of [`validate_with`] is run. Tenant files are independent once the
/// environments are read, so a shell may run them on several threads (`reconcile::Threads`);
/// the core itself never starts one. Results come back in file order whatever ran them, so
/// diagnostics stay deterministic.
pub trait Spread {
    /// `work(i)` for every `i` in `0..n`, returned in order of `i`.
    fn map(&self, n: usize, work: &(dyn Fn(usize) -> Checked + Sync)) -> Vec<Checked>;
}

/// One file after the other, on the calling thread.
pub struct InOrder;

impl Spread for InOrder {
    fn map(&self, n: usize, work: &(dyn Fn(usize) -> Checked + Sync)) -> Vec<Checked> {
        (0..n).map(work).collect()
    }
}

/// Validate every file of a repo, the tenant files run by `spread`.
///
/// Environment files are read and checked first (a handful); then each tenant file is read,
/// checked against them and dropped down to its [`Tenant`] (independent work, run by
/// `spread`); the rules across files run last, on the tenants. Their diagnostics point into
/// files whose trees are gone, so a location there is found by parsing that one file again —
/// only when a diagnostic needs it.
#[must_use]
pub fn validate_with(sources: &SourceSet, spread: &dyn Spread) -> (Option<Fleet>, Vec<Diagnostic>) {
    let environment_schema = schema_check::Compiled::new(spec::environment_schema());
    let mut cx = Cx::default();
    let mut environments = Vec::new();
    let (env_files_in, tenant_files_in): (Vec<&SourceFile>, Vec<&SourceFile>) = sources
        .files
        .iter()
        .partition(|f| f.kind == FileKind::Environment);
    for file in env_files_in {
        if let Some((root, spec)) = read::<EnvironmentSpec>(&mut cx, file, &environment_schema) {
            environments.push(Parsed { file, root, spec });
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

    let tenant_schema = schema_check::Compiled::new(spec::tenant_schema());
    let known = &fleet.environments;
    let checked = spread.map(tenant_files_in.len(), &|i| {
        let file = tenant_files_in[i];
        let mut cx = Cx::default();
        let tenant = read::<TenantSpec>(&mut cx, file, &tenant_schema)
            .and_then(|(root, spec)| check_tenant(&mut cx, &Parsed { file, root, spec }, known));
        Checked {
            diags: cx.diags,
            tenant,
        }
    });

    let trees = Trees::default();
    let mut tenant_files: BTreeMap<String, &SourceFile> = BTreeMap::new();
    for (file, checked) in tenant_files_in.iter().zip(checked) {
        cx.diags.extend(checked.diags);
        let Some(tenant) = checked.tenant else {
            continue;
        };
        if let Some(previous) = tenant_files.get(&tenant.id) {
            let diag = Diagnostic::error(
                "berth::duplicate-tenant",
                format!("tenant id `{}` is used by two files", tenant.id),
                trees.loc(file, &["id"], false, "second use"),
            )
            .with_related(trees.loc(previous, &["id"], false, "first use"))
            .with_hint("tenant ids must be unique; rename one file and its `id`");
            cx.push(diag);
            continue;
        }
        tenant_files.insert(tenant.id.clone(), file);
        fleet.tenants.insert(tenant.id.clone(), tenant);
    }
    check_cross_file(&mut cx, &fleet, &env_files, &tenant_files, &trees);

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

/// Trees of files already checked, parsed again when a diagnostic across files points into
/// one (the per-file pass dropped them). Parsing is deterministic, so the spans are the ones
/// the first parse had.
#[derive(Default)]
pub(super) struct Trees<'s> {
    parsed: std::cell::RefCell<BTreeMap<&'s str, std::rc::Rc<Node>>>,
}

impl<'s> Trees<'s> {
    fn root(&self, file: &'s SourceFile) -> std::rc::Rc<Node> {
        self.parsed
            .borrow_mut()
            .entry(file.path.as_str())
            .or_insert_with(|| {
                std::rc::Rc::new(yaml::parse(file.text()).unwrap_or(Node {
                    span: Span::default(),
                    value: yaml::Value::Empty,
                    size: 1,
                }))
            })
            .clone()
    }

    /// Whether `path` is written in the file.
    pub(super) fn has(&self, file: &'s SourceFile, path: &[&str]) -> bool {
        self.root(file).at(path).is_some()
    }

    /// The location of `path` in `file` (see [`location`]).
    pub(super) fn loc(
        &self,
        file: &'s SourceFile,
        path: &[&str],
        key: bool,
        label: &str,
    ) -> Location {
        location(file, &self.root(file), path, key, label)
    }
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
