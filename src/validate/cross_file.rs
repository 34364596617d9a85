//! Validation layer 3: rules across files — references between files resolve, tenant ids,
//! domains, Dokku app names and published ports are unique per scope, host capacity holds.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Where a claimed name was claimed.
pub(super) struct Claim {
    location: Location,
    owner: String,
}

pub(super) fn check_cross_file(
    cx: &mut Cx,
    fleet: &Fleet,
    env_files: &BTreeMap<String, &Parsed<'_, EnvironmentSpec>>,
    tenant_files: &BTreeMap<String, &Parsed<'_, TenantSpec>>,
) {
    let mut domains: BTreeMap<String, Claim> = BTreeMap::new();
    let mut dokku_apps: BTreeMap<(String, String, String), Claim> = BTreeMap::new();
    let mut host_ports: BTreeMap<(String, String, u16), Claim> = BTreeMap::new();
    let mut load: BTreeMap<(String, String), Vec<&Tenant>> = BTreeMap::new();

    // Shared stacks first so tenants collide with them, not the other way round.
    for (env_name, env) in &fleet.environments {
        let (Some(stack), Some(parsed)) = (&env.shared, env_files.get(env_name)) else {
            continue;
        };
        claim_stack(
            cx,
            parsed,
            env,
            SHARED_STACK_ID,
            stack,
            stack.host.as_deref(),
            &["shared"],
            &mut domains,
            &mut dokku_apps,
            &mut host_ports,
        );
    }
    for (id, tenant) in &fleet.tenants {
        let (Some(env), Some(parsed)) = (
            fleet.environments.get(&tenant.environment),
            tenant_files.get(id),
        ) else {
            continue;
        };
        let host = tenant.host.clone().or_else(|| {
            (env.hosts.len() == 1)
                .then(|| env.hosts.keys().next().cloned())
                .flatten()
        });
        if let Some(host) = &host {
            load.entry((env.name.clone(), host.clone()))
                .or_default()
                .push(tenant);
        }
        claim_stack(
            cx,
            parsed,
            env,
            id,
            &tenant.stack,
            host.as_deref(),
            &[],
            &mut domains,
            &mut dokku_apps,
            &mut host_ports,
        );
    }
    for ((env_name, host_name), tenants) in &load {
        let Some(env) = fleet.environments.get(env_name) else {
            continue;
        };
        let Some(capacity) = env.hosts.get(host_name).and_then(|h| h.capacity) else {
            continue;
        };
        if tenants.len() > capacity as usize {
            let Some(parsed) = env_files.get(env_name) else {
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
            if let Some(tenant_parsed) = tenant_files.get(&over.id) {
                let path: &[&str] = if over.host.is_some() {
                    &["host"]
                } else {
                    &["environment"]
                };
                diag.related
                    .push(cx.loc(tenant_parsed, path, "first tenant over capacity"));
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
        let members: Vec<&Tenant> = fleet
            .tenants
            .values()
            .filter(|t| &t.environment == env_name)
            .collect();
        if members.len() as u64 > total {
            let Some(parsed) = env_files.get(env_name) else {
                continue;
            };
            cx.push(
                Diagnostic::error(
                    "berth::capacity",
                    format!(
                        "environment `{env_name}` has {} tenants but its hosts hold {total}",
                        members.len()
                    ),
                    cx.loc(parsed, &["hosts"], "hosts defined here"),
                )
                .with_hint("add a host or raise capacities"),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn claim_stack<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    env: &Environment,
    owner: &str,
    stack: &Stack,
    host: Option<&str>,
    base: &[&str],
    domains: &mut BTreeMap<String, Claim>,
    dokku_apps: &mut BTreeMap<(String, String, String), Claim>,
    host_ports: &mut BTreeMap<(String, String, u16), Claim>,
) {
    let host_model = host.and_then(|h| env.hosts.get(h));
    for (app_name, app) in &stack.apps {
        for (i, domain) in app.domains.iter().enumerate() {
            let index = i.to_string();
            let mut path: Vec<&str> = base.to_vec();
            path.extend(["apps", app_name, "domains", &index]);
            if parsed.root.at(&path).is_none() {
                // A default domain: point at the tenant's environment line.
                path = vec!["environment"];
            }
            let location = cx.loc(parsed, &path, "domain used here");
            if let Some(first) = domains.get(domain) {
                let diag = Diagnostic::error(
                    "berth::duplicate-domain",
                    format!("domain `{domain}` is already used by `{}`", first.owner),
                    location,
                )
                .with_related(Location {
                    label: "first used here".into(),
                    ..first.location.clone()
                })
                .with_hint("a domain routes to one app; remove it from one of the files");
                cx.push(diag);
            } else {
                domains.insert(
                    domain.clone(),
                    Claim {
                        location,
                        owner: format!("{owner}/{app_name}"),
                    },
                );
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
            if dokku_name.starts_with("berth-") {
                let mut path: Vec<&str> = base.to_vec();
                path.extend(["apps", app_name]);
                cx.push(
                    Diagnostic::error(
                        "berth::reserved-name",
                        format!("Dokku app name `{dokku_name}` is reserved for berth's own records"),
                        cx.key_loc(parsed, &path, "reserved"),
                    )
                    .with_hint("names starting with `berth-` hold berth's leases and records; rename the tenant or app"),
                );
            }
            let mut path: Vec<&str> = base.to_vec();
            path.extend(["apps", app_name]);
            let location = cx.key_loc(parsed, &path, "app defined here");
            let key = (env.name.clone(), host_name.to_string(), dokku_name.clone());
            if let Some(first) = dokku_apps.get(&key) {
                let diag = Diagnostic::error(
                    "berth::duplicate-app",
                    format!(
                        "Dokku app name `{dokku_name}` on host `{host_name}` is already taken by `{}`",
                        first.owner
                    ),
                    location,
                )
                .with_related(Location {
                    label: "first defined here".into(),
                    ..first.location.clone()
                })
                .with_hint("tenant and app names join with `-`; rename the app or the tenant");
                cx.push(diag);
            } else {
                dokku_apps.insert(
                    key,
                    Claim {
                        location,
                        owner: format!("{owner}/{app_name}"),
                    },
                );
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
        for (i, port) in ports.iter().enumerate() {
            let Some(host_port) = port.host else { continue };
            let index = i.to_string();
            let mut path: Vec<&str> = base.to_vec();
            path.extend([section, name.as_str(), "ports", &index, "host"]);
            let location = cx.loc(parsed, &path, "published here");
            let key = (env.name.clone(), host_name.to_string(), host_port);
            if let Some(first) = host_ports.get(&key) {
                let diag = Diagnostic::error(
                    "berth::port-collision",
                    format!(
                        "host port {host_port} on host `{host_name}` is already published by `{}`",
                        first.owner
                    ),
                    location,
                )
                .with_related(Location {
                    label: "first published here".into(),
                    ..first.location.clone()
                })
                .with_hint("omit `host:` to let berth allocate a free port from the host's range");
                cx.push(diag);
            } else {
                host_ports.insert(
                    key,
                    Claim {
                        location,
                        owner: format!("{owner}/{name}"),
                    },
                );
            }
        }
    }
}

pub(super) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
