//! Validation layer 3: rules across files — references between files resolve, tenant ids,
//! domains, Dokku app names and published ports are unique per scope, host capacity holds.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A file a name was claimed in: an environment file whose tree is at hand, or a tenant file
/// whose tree the per-file pass dropped (parsed again through [`Trees`] when a diagnostic
/// needs a place in it).
#[derive(Clone, Copy)]
pub(super) enum Doc<'a, 's> {
    Tree(&'a Parsed<'s, EnvironmentSpec>),
    Dropped(&'s SourceFile),
}

/// What in a stack a claim is about (its path below the stack's base).
#[derive(Clone, Copy)]
enum At<'a> {
    /// The `index`th domain of an app; a default domain is not written anywhere, so it
    /// points at the tenant's `environment:` line.
    Domain { app: &'a str, index: usize },
    /// The key of an app.
    App { app: &'a str },
    /// The host port of the `index`th published port of an app or service.
    Port {
        section: &'static str,
        name: &'a str,
        index: usize,
    },
}

/// Where a claimed name was claimed; its location is made only for a diagnostic.
pub(super) struct Claim<'a, 's> {
    doc: Doc<'a, 's>,
    base: &'static [&'static str],
    at: At<'a>,
    owner: &'a str,
    name: &'a str,
}

impl<'a, 's> Claim<'a, 's> {
    fn owner(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn location(&self, trees: &Trees<'s>, label: &str) -> Location {
        let mut path: Vec<&str> = self.base.to_vec();
        let (index, key);
        match self.at {
            At::Domain { app, index: i } => {
                index = i.to_string();
                path.extend(["apps", app, "domains", &index]);
                key = false;
                if !self.doc_has(trees, &path) {
                    path = vec!["environment"];
                }
            }
            At::App { app } => {
                path.extend(["apps", app]);
                key = true;
            }
            At::Port {
                section,
                name,
                index: i,
            } => {
                index = i.to_string();
                path.extend([section, name, "ports", &index, "host"]);
                key = false;
            }
        }
        match self.doc {
            Doc::Tree(parsed) => location(parsed.file, &parsed.root, &path, key, label),
            Doc::Dropped(file) => trees.loc(file, &path, key, label),
        }
    }

    fn doc_has(&self, trees: &Trees<'s>, path: &[&str]) -> bool {
        match self.doc {
            Doc::Tree(parsed) => parsed.root.at(path).is_some(),
            Doc::Dropped(file) => trees.has(file, path),
        }
    }
}

/// Names claimed so far, across every file.
#[derive(Default)]
pub(super) struct Claims<'a, 's> {
    domains: BTreeMap<&'a str, Claim<'a, 's>>,
    dokku_apps: BTreeMap<(&'a str, &'a str, String), Claim<'a, 's>>,
    host_ports: BTreeMap<(&'a str, &'a str, u16), Claim<'a, 's>>,
}

pub(super) fn check_cross_file<'a, 's>(
    cx: &mut Cx,
    fleet: &'a Fleet,
    env_files: &BTreeMap<String, &'a Parsed<'s, EnvironmentSpec>>,
    tenant_files: &BTreeMap<String, &'s SourceFile>,
    trees: &Trees<'s>,
) {
    let mut claims = Claims::default();
    let mut load: BTreeMap<(&str, &str), Vec<&Tenant>> = BTreeMap::new();

    // Shared stacks first so tenants collide with them, not the other way round.
    for (env_name, env) in &fleet.environments {
        let (Some(stack), Some(parsed)) = (&env.shared, env_files.get(env_name)) else {
            continue;
        };
        claim_stack(
            cx,
            trees,
            Doc::Tree(parsed),
            env,
            SHARED_STACK_ID,
            stack,
            stack.host.as_deref(),
            &["shared"],
            &mut claims,
        );
    }
    for (id, tenant) in &fleet.tenants {
        let (Some(env), Some(file)) = (
            fleet.environments.get(&tenant.environment),
            tenant_files.get(id),
        ) else {
            continue;
        };
        let host = tenant.host.as_deref().or_else(|| {
            (env.hosts.len() == 1)
                .then(|| env.hosts.keys().next().map(String::as_str))
                .flatten()
        });
        if let Some(host) = host {
            load.entry((env.name.as_str(), host))
                .or_default()
                .push(tenant);
        }
        claim_stack(
            cx,
            trees,
            Doc::Dropped(file),
            env,
            id,
            &tenant.stack,
            host,
            &[],
            &mut claims,
        );
    }
    for ((env_name, host_name), tenants) in &load {
        let Some(env) = fleet.environments.get(*env_name) else {
            continue;
        };
        let Some(capacity) = env.hosts.get(*host_name).and_then(|h| h.capacity) else {
            continue;
        };
        if tenants.len() > capacity as usize {
            let Some(parsed) = env_files.get(*env_name) else {
                continue;
            };
            let over = tenants[capacity as usize];
            let mut diag = Diagnostic::error(
                "berth::capacity",
                format!(
                    "host `{host_name}` carries {} tenants but its capacity is {capacity}",
                    tenants.len()
                ),
                cx.loc(
                    parsed,
                    &["hosts", host_name, "capacity"],
                    "capacity set here",
                ),
            )
            .with_hint("raise the capacity, add a host, or move tenants elsewhere");
            if let Some(file) = tenant_files.get(&over.id) {
                let path: &[&str] = if over.host.is_some() {
                    &["host"]
                } else {
                    &["environment"]
                };
                diag.related
                    .push(trees.loc(file, path, false, "first tenant over capacity"));
            }
            cx.push(diag);
        }
    }
    // Whole-environment capacity for tenants placement has yet to put somewhere.
    for (env_name, env) in &fleet.environments {
        let hosts_with_capacity: Vec<&Host> = env.hosts.values().collect();
        if hosts_with_capacity.is_empty()
            || hosts_with_capacity.iter().any(|h| h.capacity.is_none())
        {
            continue;
        }
        let total: u64 = hosts_with_capacity
            .iter()
            .map(|h| u64::from(h.capacity.unwrap_or(0)))
            .sum();
        let members = fleet
            .tenants
            .values()
            .filter(|t| &t.environment == env_name)
            .count();
        if members as u64 > total {
            let Some(parsed) = env_files.get(env_name) else {
                continue;
            };
            cx.push(
                Diagnostic::error(
                    "berth::capacity",
                    format!(
                        "environment `{env_name}` has {members} tenants but its hosts hold {total}"
                    ),
                    cx.loc(parsed, &["hosts"], "hosts defined here"),
                )
                .with_hint("add a host or raise capacities"),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn claim_stack<'a, 's>(
    cx: &mut Cx,
    trees: &Trees<'s>,
    doc: Doc<'a, 's>,
    env: &'a Environment,
    owner: &'a str,
    stack: &'a Stack,
    host: Option<&'a str>,
    base: &'static [&'static str],
    claims: &mut Claims<'a, 's>,
) {
    let host_model = host.and_then(|h| env.hosts.get(h));
    let claim = |at, name| Claim {
        doc,
        base,
        at,
        owner,
        name,
    };
    for (app_name, app) in &stack.apps {
        for (index, domain) in app.domains.iter().enumerate() {
            let here = claim(
                At::Domain {
                    app: app_name,
                    index,
                },
                app_name.as_str(),
            );
            if let Some(first) = claims.domains.get(domain.as_str()) {
                let diag = Diagnostic::error(
                    "berth::duplicate-domain",
                    format!("domain `{domain}` is already used by `{}`", first.owner()),
                    here.location(trees, "domain used here"),
                )
                .with_related(first.location(trees, "first used here"))
                .with_hint("a domain routes to one app; remove it from one of the files");
                cx.push(diag);
            } else {
                claims.domains.insert(domain, here);
            }
        }
        if let (
            Some(host_name),
            Some(Host {
                target: HostTarget::Dokku(_),
                ..
            }),
        ) = (host, host_model)
        {
            let dokku_name = env
                .dokku_app_template
                .replace("{tenant}", owner)
                .replace("{app}", app_name);
            let here = claim(At::App { app: app_name }, app_name.as_str());
            if dokku_name.starts_with("berth-") {
                cx.push(
                    Diagnostic::error(
                        "berth::reserved-name",
                        format!("Dokku app name `{dokku_name}` is reserved for berth's own records"),
                        here.location(trees, "reserved"),
                    )
                    .with_hint("names starting with `berth-` hold berth's leases and records; rename the tenant or app"),
                );
            }
            let key = (env.name.as_str(), host_name, dokku_name);
            if let Some(first) = claims.dokku_apps.get(&key) {
                let diag = Diagnostic::error(
                    "berth::duplicate-app",
                    format!(
                        "Dokku app name `{}` on host `{host_name}` is already taken by `{}`",
                        key.2,
                        first.owner()
                    ),
                    here.location(trees, "app defined here"),
                )
                .with_related(first.location(trees, "first defined here"))
                .with_hint("tenant and app names join with `-`; rename the app or the tenant");
                cx.push(diag);
            } else {
                claims.dokku_apps.insert(key, here);
            }
        }
    }
    let Some(host_name) = host else { return };
    let published = stack.apps.iter().map(|(n, a)| ("apps", n, &a.ports)).chain(
        stack
            .services
            .iter()
            .map(|(n, s)| ("services", n, &s.ports)),
    );
    for (section, name, ports) in published {
        for (index, port) in ports.iter().enumerate() {
            let Some(host_port) = port.host else { continue };
            let here = claim(
                At::Port {
                    section,
                    name,
                    index,
                },
                name.as_str(),
            );
            let key = (env.name.as_str(), host_name, host_port);
            if let Some(first) = claims.host_ports.get(&key) {
                let diag = Diagnostic::error(
                    "berth::port-collision",
                    format!(
                        "host port {host_port} on host `{host_name}` is already published by `{}`",
                        first.owner()
                    ),
                    here.location(trees, "published here"),
                )
                .with_related(first.location(trees, "first published here"))
                .with_hint("omit `host:` to let berth allocate a free port from the host's range");
                cx.push(diag);
            } else {
                claims.host_ports.insert(key, here);
            }
        }
    }
}

pub(super) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
