//! Docker inventory → tenant file text (pure): what `berth import` writes for stacks a
//! script made on a Docker host, and the check that decides whether adopting them in place
//! is exact.
//!
//! Rules (docs/migrating.md has them for users):
//!
//! - **Tenants.** A container made by `docker compose -p <project>` belongs to tenant
//!   `<project>` and plays role `<service>` (its `com.docker.compose.*` labels); replicas are
//!   its container number. A container without compose labels is read from its name,
//!   `<tenant>-<role>` or `<tenant>-<role>-<n>` (split at the last `-`), and only when named
//!   with `--container`. Tenant ids and roles must be DNS labels.
//! - **Services or apps.** A role whose image is `postgres` or `redis` (the last path
//!   component of the repository) is a service of that kind; every other role is an app
//!   whose `web` process runs `<replicas>` times — so berth's container names
//!   (`<tenant>-<app>-<n>`) are compose's. A role `<app>-<process>` configured as the app is
//!   its process type (berth's `<tenant>-<app>-<process>-<n>`, `process_roles`). Service
//!   containers are renamed to berth's `<tenant>-<service>` on adoption.
//! - **Routing.** Traefik and caddy-docker-proxy labels are read as `domains:`, `port:`
//!   and `tls:` ([`read_routing`]); adoption compares them with berth's own labels by what
//!   they route. What they say beyond that is named, label by label.
//! - **Tier.** The environment's one tier that gives every app its formation and limits
//!   is written instead of them (the Dokku import's rule, `translate::matching_tier`).
//! - **Volumes.** A named volume `<tenant>_<name>` (compose's naming) becomes storage
//!   `{ volume: <name>, path }`, the one berth would make; other mounts cannot be said.
//! - **Env.** What the image sets is not tenant env. A link env value that is exactly what
//!   `uses:` would build (`DATABASE_URL` from the Postgres password, `REDIS_URL`) becomes
//!   `uses:`. Secret-looking values follow [`super::translate::secret_value`]: a Postgres
//!   password, or a value berth's generator could have made, is `{ generate: N }` (berth
//!   keeps the value it finds in a secret volume on adoption); others are `{ secret: … }`.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::{BTreeMap, BTreeSet};

use super::translate::{
    ImportedSecret, ImportedTenant, Problem, SecretSource, cpus_text, flow_list, looks_secret,
    quoted, scalar, secret_value,
};
use crate::model::desired::{
    ConfigValue, ContainerSpec, LABEL_PREFIX, Probe, container_name, db_name, url_key,
};
use crate::model::live::{ContainerDetail, DockerInventory, LiveValue};
use crate::model::{Environment, ProxyKind, ServiceKind, is_dns_label, is_hostname};

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const NUMBER: &str = "com.docker.compose.container-number";
const ONEOFF: &str = "com.docker.compose.oneoff";

/// What to import from one Docker host.
#[derive(Debug, Clone)]
pub struct DockerInput<'a> {
    /// The environment the host belongs to.
    pub environment: &'a Environment,
    /// The host's name in that environment.
    pub host: &'a str,
    /// What the engine holds.
    pub inventory: &'a DockerInventory,
    /// Container names to import; empty: every compose project berth does not manage.
    pub containers: &'a [String],
    /// The `$schema` path for the editor comment, when the repo has the schema.
    pub schema: Option<&'a str>,
}

/// One container of a stack being imported.
#[derive(Debug, Clone)]
struct Member<'a> {
    name: &'a str,
    role: String,
    number: u32,
    detail: &'a ContainerDetail,
    /// Read from its name (no compose labels).
    plain: bool,
}

/// `(tenant, role, number)` of a container, and whether compose made it.
fn reading(name: &str, c: &ContainerDetail) -> Option<(String, String, u32, bool)> {
    if let Some(project) = c.labels.get(PROJECT) {
        let role = c.labels.get(SERVICE)?.clone();
        let number = c.labels.get(NUMBER).map_or(Some(1), |n| n.parse().ok())?;
        return Some((project.clone(), role, number, true));
    }
    let (rest, number) = match name.rsplit_once('-') {
        Some((rest, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (rest, n.parse().ok()?)
        }
        _ => (name, 1),
    };
    let (tenant, role) = rest.rsplit_once('-')?;
    Some((tenant.to_string(), role.to_string(), number, false))
}

/// The service kind an image stands for: `postgres` or `redis` as the repository's last
/// path component (`postgres:16`, `library/redis:7`, `registry.example/x/postgres:16`).
#[must_use]
pub fn service_kind_of(image: &str) -> Option<ServiceKind> {
    let repo = image.split('@').next().unwrap_or(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name = last.split(':').next().unwrap_or(last);
    match name {
        "postgres" => Some(ServiceKind::Postgres),
        "redis" => Some(ServiceKind::Redis),
        _ => None,
    }
}

/// The `PATH` the Engine gives a container whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Env a container has that neither its image nor the Engine gave it.
fn own_env(c: &ContainerDetail) -> BTreeMap<&String, &LiveValue> {
    c.env
        .iter()
        .filter(|(k, v)| c.from_image.env.get(*k) != Some(*v))
        .filter(|(k, v)| {
            !(*k == "PATH" && v.0 == DEFAULT_PATH && !c.from_image.env.contains_key("PATH"))
        })
        .collect()
}

/// Labels a container has that neither its image, compose nor berth gave it.
fn own_labels(
    labels: &BTreeMap<String, String>,
    image: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, v)| {
            !k.starts_with(LABEL_PREFIX)
                && !k.starts_with("com.docker.compose.")
                && image.get(*k) != Some(*v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The command a container runs when it is not its image's.
fn own_command(c: &ContainerDetail) -> Option<&Vec<String>> {
    c.command
        .as_ref()
        .filter(|cmd| Some(*cmd) != c.from_image.command.as_ref())
}

/// An argument that looks like it carries a credential (`--requirepass x`,
/// `--password=x`, a URL with a password): never written into a tenant file.
fn credential_argument(args: &[String]) -> Option<&str> {
    const WORDS: [&str; 6] = [
        "password",
        "passwd",
        "requirepass",
        "secret",
        "token",
        "credential",
    ];
    args.iter()
        .find(|a| {
            let lower = a.to_ascii_lowercase();
            WORDS.iter().any(|w| lower.contains(w)) || super::translate::url_with_credentials(a)
        })
        .map(String::as_str)
}

fn command_text(cmd: &[String]) -> String {
    let items: Vec<String> = cmd.iter().map(|c| quoted(c)).collect();
    format!("[{}]", items.join(", "))
}

fn memory_text(bytes: i64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        quoted(&bytes.to_string())
    }
}

#[allow(clippy::cast_precision_loss)]
fn cpus_of(nano: i64) -> String {
    cpus_text(nano as f64 / 1e9)
}

/// `docker inspect` restart names → the file's spelling (`None`: the default).
fn restart_text(restart: &(String, i64)) -> Option<&'static str> {
    match restart.0.as_str() {
        "unless-stopped" => None,
        "" | "no" => Some("no"),
        "always" => Some("always"),
        "on-failure" => Some("on-failure"),
        _ => Some("?"),
    }
}

/// The link env a service gives an app that uses it, as the value berth would build from
/// what the service container holds.
fn link_value(
    tenant: &str,
    role: &str,
    kind: ServiceKind,
    c: &ContainerDetail,
) -> Option<(String, String)> {
    match kind {
        ServiceKind::Postgres => {
            let password = c.env.get("POSTGRES_PASSWORD")?;
            let db = c
                .env
                .get("POSTGRES_DB")
                .map_or_else(|| db_name(tenant), |v| v.0.clone());
            Some((
                url_key("DATABASE", role, kind),
                format!("postgres://postgres:{}@{role}:5432/{db}", password.0),
            ))
        }
        ServiceKind::Redis => Some((url_key("REDIS", role, kind), format!("redis://{role}:6379"))),
        ServiceKind::Container => None,
    }
}

/// Translate the stacks of one Docker host into tenant files.
///
/// # Errors
/// Every container or stack that cannot be described, at once.
#[allow(clippy::too_many_lines)]
pub fn docker(input: &DockerInput<'_>) -> Result<super::translate::Imported, Vec<Problem>> {
    let inv = input.inventory;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut tenants: BTreeMap<String, Vec<Member<'_>>> = BTreeMap::new();
    let selected: BTreeSet<&str> = input.containers.iter().map(String::as_str).collect();
    for name in &selected {
        if inv.managed.contains(*name) {
            problems.push(Problem {
                subject: format!("container `{name}`"),
                message: format!("container `{name}` is already berth's"),
                hint: "berth already manages it: there is nothing to import".into(),
            });
        } else if !inv.containers.contains_key(*name) {
            let known: Vec<&str> = inv.containers.keys().map(String::as_str).collect();
            problems.push(Problem {
                subject: format!("container `{name}`"),
                message: format!("there is no container `{name}` on host `{}`", input.host),
                hint: match crate::spec::schema_check::did_you_mean(name, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "the containers berth does not manage are: {}",
                        known.join(", ")
                    ),
                },
            });
        }
    }
    for (name, c) in &inv.containers {
        let chosen = selected.contains(name.as_str());
        let compose = c.labels.contains_key(PROJECT);
        if !(chosen || (selected.is_empty() && compose)) {
            continue;
        }
        if c.labels.get(ONEOFF).is_some_and(|v| v == "True") {
            warnings.push(format!(
                "container `{name}` is a one-off (`docker compose run`): left out"
            ));
            continue;
        }
        let Some((tenant, role, number, compose)) = reading(name, c) else {
            problems.push(Problem {
                subject: format!("container `{name}`"),
                message: format!("container `{name}` does not read as `<tenant>-<role>[-<n>]` and carries no compose labels"),
                hint: format!("rename it (`docker rename {name} <tenant>-<role>`), or leave it out"),
            });
            continue;
        };
        if !is_dns_label(&tenant) || !is_dns_label(&role) {
            problems.push(Problem {
                subject: format!("container `{name}`"),
                message: format!(
                    "container `{name}` reads as tenant `{tenant}`, role `{role}`: both must be DNS labels (lowercase letters, digits, `-`)"
                ),
                hint: "berth names containers, networks and volumes from them; move this stack with the \"beside the old ones\" path (docs/migrating.md), or leave it out".into(),
            });
            continue;
        }
        tenants.entry(tenant).or_default().push(Member {
            name,
            role,
            number,
            detail: c,
            plain: !compose,
        });
    }
    regroup_process_names(&mut tenants);
    // A compose stack is imported whole: berth moves it to its own network.
    if !selected.is_empty() {
        for (tenant, members) in &tenants {
            let missing: Vec<&str> = inv
                .containers
                .iter()
                .filter(|(n, c)| {
                    c.labels.get(PROJECT) == Some(tenant)
                        && !members.iter().any(|m| m.name == n.as_str())
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() {
                problems.push(Problem {
                    subject: format!("stack `{tenant}`"),
                    message: format!(
                        "compose project `{tenant}` has containers not named with `--container`: {}",
                        missing.join(", ")
                    ),
                    hint: "a stack is imported whole (its replacements share berth's network): name them too, or leave out `--container`".into(),
                });
            }
        }
    }
    let mut out = Vec::new();
    for (tenant, members) in &tenants {
        match tenant_file(input, tenant, members, &mut warnings) {
            Ok(t) => out.push(t),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(super::translate::Imported {
        tenants: out,
        warnings,
    })
}

/// Plain names split at the last `-` read berth's name of a process type,
/// `acme-web-worker-1`, as tenant `acme-web`, role `worker`. When `acme` is a tenant of the
/// containers named too, with a plain container of role `web`, the name is `acme`'s role
/// `web-worker` (process `worker` of app `web`, see [`process_roles`]).
fn regroup_process_names(tenants: &mut BTreeMap<String, Vec<Member<'_>>>) {
    let ids: Vec<String> = tenants.keys().cloned().collect();
    for id in ids {
        let Some((owner, app)) = id.rsplit_once('-') else {
            continue;
        };
        let owner_has_app = tenants
            .get(owner)
            .is_some_and(|ms| ms.iter().any(|m| m.plain && m.role == app));
        let all_plain = tenants[&id].iter().all(|m| m.plain);
        let roles_fit = tenants[&id]
            .iter()
            .all(|m| is_dns_label(&format!("{app}-{}", m.role)));
        if !(owner_has_app && all_plain && roles_fit) {
            continue;
        }
        let (owner, app) = (owner.to_string(), app.to_string());
        let moved = tenants.remove(&id).unwrap_or_default();
        let into = tenants.entry(owner).or_default();
        for mut m in moved {
            m.role = format!("{app}-{}", m.role);
            into.push(m);
        }
    }
}

/// One role of a stack: its kind and replicas.
struct Role<'a> {
    kind: Option<ServiceKind>,
    replicas: Vec<&'a Member<'a>>,
}

/// What tier inference compares of an app: its formation and its `web` container.
type Shape<'a> = (&'a BTreeMap<String, u32>, &'a ContainerDetail);

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether two containers share what berth gives every container of one app: image,
/// entrypoint, env, limits, restart policy and mounts.
fn same_app_settings(a: &ContainerDetail, b: &ContainerDetail) -> bool {
    a.image == b.image
        && a.entrypoint == b.entrypoint
        && a.env == b.env
        && a.memory == b.memory
        && a.nano_cpus == b.nano_cpus
        && a.restart == b.restart
        && a.mounts == b.mounts
}

/// A role berth runs as a process type of another role's app.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Join<'a> {
    /// The app (`web` for role `web-worker`).
    app: &'a str,
    /// The process type (`worker`).
    process: &'a str,
    /// Its `commands:` entry, when the app's command is not its.
    command: Option<Vec<String>>,
}

/// Roles named `<app>-<process>` (berth's container names for process types,
/// `<tenant>-<app>-<process>-<n>`, and compose service `<app>-<process>`) whose containers
/// are the app's in everything a process type shares: image, env, limits, restart policy,
/// mounts — publishing nothing, carrying no labels of their own and no health check but the
/// image's (berth gives those to `web` only). A role read two ways, or unlike its app,
/// stays an app of its own: its containers already carry the names berth would give it.
fn process_roles<'a>(roles: &BTreeMap<&'a str, Role<'a>>) -> BTreeMap<&'a str, Join<'a>> {
    let apps: Vec<&'a str> = roles
        .iter()
        .filter(|(_, r)| r.kind.is_none())
        .map(|(n, _)| *n)
        .collect();
    let mut joins = BTreeMap::new();
    for role in &apps {
        let readings: Vec<(&'a str, &'a str)> = apps
            .iter()
            .filter_map(|app| {
                role.strip_prefix(*app)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .filter(|p| is_dns_label(p) && *p != "web")
                    .map(|p| (*app, p))
            })
            .collect();
        let [(app, process)] = readings[..] else {
            continue;
        };
        let web = roles[app].replicas[0].detail;
        let other = roles[role].replicas[0].detail;
        let alike = same_app_settings(web, other)
            && other.ports.is_empty()
            && other.health == other.from_image.health
            && own_labels(&other.labels, &other.from_image.labels).is_empty();
        if !alike {
            continue;
        }
        // berth runs `commands[process]`, else the app's `command`, else the image's.
        let default = own_command(web).or(web.from_image.command.as_ref());
        let command = match (&other.command, default) {
            (c, d) if c.as_ref() == d => None,
            (Some(c), _) => Some(c.clone()),
            (None, _) => continue,
        };
        joins.insert(
            *role,
            Join {
                app,
                process,
                command,
            },
        );
    }
    joins
}

/// What an import must say about a routed container beyond its `domains:`.
fn route_warnings(
    container: &str,
    r: &Routing,
    routes_by_api: bool,
    host_proxy: ProxyKind,
    host: &str,
    warnings: &mut Vec<String>,
) {
    let word = |p: ProxyKind| match p {
        ProxyKind::Traefik => "traefik",
        ProxyKind::Caddy => "caddy",
    };
    if routes_by_api {
        warnings.push(format!(
            "container `{container}` is routed by {} labels, but host `{host}` routes through Caddy's admin API (`caddy:`): berth would drop the labels, so the stack cannot be adopted as it is (docs/migrating.md, \"Routed stacks\")",
            word(r.proxy)
        ));
    } else if r.proxy != host_proxy {
        warnings.push(format!(
            "container `{container}` is routed by {} labels, but host `{host}` says `proxy: {}`: set the host's `proxy:` to the proxy that runs before adopting",
            word(r.proxy),
            word(host_proxy)
        ));
    }
    if r.proxy == ProxyKind::Traefik {
        if !r.enabled {
            warnings.push(format!(
                "container `{container}` has no `traefik.enable=true`; berth sets it, so the stack cannot be adopted as it is"
            ));
        }
        if r.port.is_none() {
            warnings.push(format!(
                "container `{container}`'s router names no `loadbalancer.server.port`; berth names one (`port:`, default 8080), so the stack cannot be adopted as it is"
            ));
        }
        if let Some(resolver) = r
            .resolver
            .as_deref()
            .filter(|r| *r != crate::model::desired::TRAEFIK_CERT_RESOLVER)
        {
            warnings.push(format!(
                "container `{container}`'s router takes certificates from resolver `{resolver}`; berth's `tls: true` names `letsencrypt`, so the stack cannot be adopted as it is"
            ));
        }
    }
}

#[allow(clippy::too_many_lines)]
fn tenant_file(
    input: &DockerInput<'_>,
    tenant: &str,
    members: &[Member<'_>],
    warnings: &mut Vec<String>,
) -> Result<ImportedTenant, Vec<Problem>> {
    let env = input.environment;
    let mut problems = Vec::new();
    let mut roles: BTreeMap<&str, Role<'_>> = BTreeMap::new();
    for m in members {
        let role = roles.entry(m.role.as_str()).or_insert(Role {
            kind: service_kind_of(&m.detail.image),
            replicas: Vec::new(),
        });
        role.replicas.push(m);
    }
    let mut containers = BTreeMap::new();
    let mut apps_map = BTreeMap::new();
    let mut service_names = Vec::new();
    for (name, role) in &mut roles {
        role.replicas.sort_by_key(|m| m.number);
        let numbers: Vec<u32> = role.replicas.iter().map(|m| m.number).collect();
        let want: Vec<u32> = (1..=u32::try_from(numbers.len()).unwrap_or(u32::MAX)).collect();
        if numbers != want || (role.kind.is_some() && numbers.len() > 1) {
            problems.push(Problem {
                subject: format!("role `{name}` of `{tenant}`"),
                message: format!(
                    "`{name}` of `{tenant}` runs replicas {numbers:?}; berth numbers an app's replicas 1…n and runs one container per service"
                ),
                hint: "scale the stack to a contiguous count first (`docker compose up --scale`), or leave it out".into(),
            });
            continue;
        }
        let first = role.replicas[0].detail;
        for m in &role.replicas[1..] {
            let d = m.detail;
            let same = same_app_settings(d, first)
                && d.command == first.command
                && d.health == first.health
                && d.ports.len() == first.ports.len()
                && own_labels(&d.labels, &d.from_image.labels)
                    == own_labels(&first.labels, &first.from_image.labels);
            if !same {
                problems.push(Problem {
                    subject: format!("container `{}`", m.name),
                    message: format!(
                        "`{}` is configured unlike `{}` (both replicas of `{name}`); berth's replicas of an app are identical",
                        m.name, role.replicas[0].name
                    ),
                    hint: format!("make the replicas alike on the host, or leave the stack out; a process with its own command is a compose service of its own named `<app>-<process>` (`{name}-worker`), which import reads as a process type of app `<app>`"),
                });
            }
        }
        if role.kind.is_some() {
            service_names.push((*name).to_string());
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Roles `<app>-<process>` that berth runs as process types of `<app>`.
    let joins = process_roles(&roles);
    for (name, role) in &roles {
        for m in &role.replicas {
            let (app, berth) = match (role.kind, joins.get(name)) {
                (Some(_), _) => (*name, format!("{tenant}-{name}")),
                (None, Some(j)) => (j.app, container_name(tenant, j.app, j.process, m.number)),
                (None, None) => (*name, container_name(tenant, name, "web", m.number)),
            };
            containers.insert(m.name.to_string(), berth);
            apps_map.insert(m.name.to_string(), app.to_string());
        }
    }
    // Each app's formation: `web` (its own role) and the roles joined to it.
    let formations: BTreeMap<&str, BTreeMap<String, u32>> = roles
        .iter()
        .filter(|(n, r)| r.kind.is_none() && !joins.contains_key(*n))
        .map(|(n, r)| {
            let mut f = BTreeMap::from([("web".to_string(), count(r.replicas.len()))]);
            for (joined, j) in &joins {
                if j.app == *n {
                    f.insert(j.process.to_string(), count(roles[joined].replicas.len()));
                }
            }
            (*n, f)
        })
        .collect();
    let shapes: Vec<(&str, Shape<'_>)> = formations
        .iter()
        .map(|(n, f)| (*n, (f, roles[n].replicas[0].detail)))
        .collect();
    let tier = super::translate::matching_tier(env, &shapes, |(formation, c), processes, tier| {
        *formation == processes
            && c.memory == tier.memory.and_then(|m| i64::try_from(m).ok()).unwrap_or(0)
            && c.nano_cpus == tier.cpus.map_or(0, crate::model::desired::nano_cpus)
    });
    let host = env.hosts.get(input.host);
    let routes_by_api = host.is_some_and(|h| h.caddy.is_some());
    let host_proxy = host.map_or(ProxyKind::Traefik, |h| h.proxy);
    // Links an app's env holds exactly as `uses:` would build them.
    let links: BTreeMap<&str, (String, String)> = roles
        .iter()
        .filter_map(|(name, r)| {
            r.kind
                .and_then(|k| link_value(tenant, name, k, r.replicas[0].detail))
                .map(|l| (*name, l))
        })
        .collect();
    let mut secrets: Vec<ImportedSecret> = Vec::new();
    let mut volumes: BTreeSet<String> = BTreeSet::new();
    let mut text = String::new();
    if let Some(schema) = input.schema {
        text.push_str(&format!("# yaml-language-server: $schema={schema}\n"));
    }
    // Roles, not container names: adoption renames containers, and importing again after
    // a review (or a failed adoption) must write the very same text.
    let listed: Vec<&str> = roles.keys().copied().collect();
    text.push_str(&format!(
        "# Imported by `berth import` from Docker host `{}/{}` (stack `{tenant}`: {}).\n",
        env.name,
        input.host,
        listed.join(", ")
    ));
    text.push_str("version: 1\n");
    text.push_str(&format!("environment: {}\n", scalar(&env.name)));
    if let Some(tier) = tier {
        text.push_str(&format!("tier: {}\n", scalar(tier)));
    }
    text.push_str(&format!("host: {}\n", scalar(input.host)));
    let mut sections = [(false, String::new()), (true, String::new())];
    for (name, role) in &roles {
        if joins.contains_key(name) {
            continue;
        }
        let m = role.replicas[0];
        let c = m.detail;
        let mut body = String::new();
        let indent = "    ";
        let labels = own_labels(&c.labels, &c.from_image.labels);
        if let Some(kind) = role.kind {
            body.push_str(&format!(
                "{indent}kind: {}\n",
                crate::model::live::service_kind_word(kind)
            ));
        }
        body.push_str(&format!("{indent}image: {}\n", quoted(&c.image)));
        let mut other_labels = labels.clone();
        if role.kind.is_none() {
            let formation = &formations[name];
            if tier.is_none() && *formation != BTreeMap::from([("web".to_string(), 1)]) {
                body.push_str(&format!(
                    "{indent}processes: {}\n",
                    super::translate::flow_map(formation)
                ));
            }
            let proxy: BTreeMap<String, String> = labels
                .iter()
                .filter(|(k, _)| is_proxy_label(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            other_labels.retain(|k, _| !is_proxy_label(k));
            let read = read_routing(&proxy);
            let routing = read.routing.as_ref();
            let domains: Vec<String> = routing.map(|r| r.domains.clone()).unwrap_or_default();
            body.push_str(&format!("{indent}domains: {}\n", flow_list(&domains)));
            if let Some(r) = routing {
                if r.resolver.is_some() {
                    body.push_str(&format!("{indent}tls: true\n"));
                }
                if let Some(port) = r.port {
                    body.push_str(&format!("{indent}port: {port}\n"));
                }
                route_warnings(m.name, r, routes_by_api, host_proxy, input.host, warnings);
            }
            for (label, why) in &read.unread {
                warnings.push(format!(
                    "container `{}`'s label `{label}` is not read as routing: {why}; a replacement drops it, so the stack cannot be adopted as it is",
                    m.name
                ));
            }
        }
        if c.entrypoint != c.from_image.entrypoint {
            warnings.push(format!(
                "container `{}` overrides its image's entrypoint, which a tenant file cannot say; a replacement would run the image's",
                m.name
            ));
        }
        if let Some(cmd) = own_command(c) {
            if let Some(arg) = credential_argument(cmd) {
                let word: String = arg.chars().take_while(|c| *c != '=').take(24).collect();
                problems.push(Problem {
                    subject: format!("container `{}`", m.name),
                    message: format!(
                        "the command of `{}` carries what looks like a credential (`{word}…`); berth would have to write it into the tenant file",
                        m.name
                    ),
                    hint: "pass it through the env on the host (`REDIS_PASSWORD`, …), or leave the stack out".into(),
                });
                continue;
            }
            body.push_str(&format!("{indent}command: {}\n", command_text(cmd)));
        }
        let mut commands = String::new();
        for (joined, j) in &joins {
            if j.app != *name {
                continue;
            }
            if let Some(cmd) = &j.command {
                if let Some(arg) = credential_argument(cmd) {
                    let word: String = arg.chars().take_while(|c| *c != '=').take(24).collect();
                    problems.push(Problem {
                        subject: format!("container `{}`", roles[joined].replicas[0].name),
                        message: format!(
                            "the command of `{}` carries what looks like a credential (`{word}…`); berth would have to write it into the tenant file",
                            roles[joined].replicas[0].name
                        ),
                        hint: "pass it through the env on the host, or leave the stack out".into(),
                    });
                    continue;
                }
                commands.push_str(&format!(
                    "{indent}  {}: {}\n",
                    scalar(j.process),
                    command_text(cmd)
                ));
            }
        }
        if !commands.is_empty() {
            body.push_str(&format!("{indent}commands:\n{commands}"));
        }
        let from_tier = tier.is_some() && role.kind.is_none();
        if c.memory > 0 && !from_tier {
            body.push_str(&format!("{indent}memory: {}\n", memory_text(c.memory)));
        }
        if c.nano_cpus > 0 && !from_tier {
            body.push_str(&format!("{indent}cpus: {}\n", cpus_of(c.nano_cpus)));
        }
        match (restart_text(&c.restart), role.kind) {
            (None, _) => {}
            (Some("?"), _) => warnings.push(format!(
                "container `{}`'s restart policy `{}` has no spelling in the file; adoption needs `docker update --restart unless-stopped {}` first",
                m.name, c.restart.0, m.name
            )),
            (Some(_), Some(_)) => warnings.push(format!(
                "container `{}` restarts `{}`; berth runs services `unless-stopped`: adoption needs `docker update --restart unless-stopped {}` first",
                m.name,
                if c.restart.0.is_empty() { "no" } else { &c.restart.0 },
                m.name
            )),
            (Some("on-failure"), None) if c.restart.1 != 0 => warnings.push(format!(
                "container `{}` restarts `on-failure:{}`; berth's `on-failure` has no retry limit",
                m.name, c.restart.1
            )),
            (Some(word), None) => body.push_str(&format!("{indent}restart: {word}\n")),
        }
        let mut ports: Vec<String> = Vec::new();
        for (port, proto, ip, _) in &c.ports {
            if proto != "tcp" || !(ip.is_empty() || ip == "0.0.0.0") {
                warnings.push(format!(
                    "container `{}` publishes {port}/{proto} on `{ip}`; berth publishes TCP on every address only",
                    m.name
                ));
                continue;
            }
            let entry = format!("{{ container: {port} }}");
            if !ports.contains(&entry) {
                ports.push(entry);
            }
        }
        if !ports.is_empty() {
            body.push_str(&format!("{indent}ports: [{}]\n", ports.join(", ")));
        }
        if let Some(h) = &c.health
            && Some(h) != c.from_image.health.as_ref()
        {
            match h.0.split_first() {
                _ if credential_argument(&h.0).is_some() => warnings.push(format!(
                    "container `{}`'s health check carries what looks like a credential: left out of the file",
                    m.name
                )),
                Some((cmd, rest)) if cmd == "CMD" && !rest.is_empty() => body.push_str(&format!(
                    "{indent}health: {{ command: {}, interval: {}, timeout: {}, retries: {} }}\n",
                    command_text(rest),
                    h.1,
                    h.2,
                    h.3
                )),
                _ => warnings.push(format!(
                    "container `{}`'s health check `{}` is not an exec form (`CMD …`); the file cannot say it",
                    m.name,
                    h.0.join(" ")
                )),
            }
        }
        // Env.
        let mut env_lines = String::new();
        let mut uses = Vec::new();
        for (key, value) in own_env(c) {
            if role.kind.is_none()
                && let Some((service, _)) =
                    links.iter().find(|(_, (k, v))| k == key && *v == value.0)
            {
                uses.push((*service).to_string());
                continue;
            }
            if role.kind == Some(ServiceKind::Postgres)
                && key == "POSTGRES_DB"
                && value.0 == db_name(tenant)
            {
                continue;
            }
            // A data service's own password: berth would generate it itself.
            let data_credential = matches!(
                (role.kind, key.as_str()),
                (Some(ServiceKind::Postgres), "POSTGRES_PASSWORD")
                    | (Some(ServiceKind::Redis), "REDIS_PASSWORD")
            );
            let written = if data_credential || looks_secret(key, &value.0) {
                match secret_value(
                    &SecretSource {
                        tenant,
                        scope: name,
                        object: m.name,
                        key,
                        data_credential,
                    },
                    value,
                    &mut secrets,
                ) {
                    Ok(t) => {
                        if data_credential
                            && t.starts_with("{ generate")
                            && !super::translate::looks_generated(&value.0)
                        {
                            warnings.push(format!(
                                "`{key}` of `{}` is kept as berth's generated value, but it does not look random: rotate it by hand",
                                m.name
                            ));
                        }
                        t
                    }
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                }
            } else {
                quoted(&value.0)
            };
            env_lines.push_str(&format!("{indent}  {}: {written}\n", scalar(key)));
        }
        if role.kind == Some(ServiceKind::Postgres) && !c.env.contains_key("POSTGRES_DB") {
            warnings.push(format!(
                "`{}` has no `POSTGRES_DB`; berth sets `POSTGRES_DB={}`, so it cannot be adopted as it is",
                m.name,
                db_name(tenant)
            ));
        }
        if !env_lines.is_empty() {
            body.push_str(&format!("{indent}env:\n{env_lines}"));
        }
        if role.kind.is_none() && !uses.is_empty() {
            uses.sort();
            body.push_str(&format!("{indent}uses: {}\n", flow_list(&uses)));
        }
        // Storage.
        let mut storage = Vec::new();
        for (kind, source, dest) in &c.mounts {
            let short = source
                .strip_prefix(&format!("{tenant}_"))
                .filter(|v| kind == "volume" && is_dns_label(v));
            match short {
                Some(v) => {
                    storage.push((v.to_string(), dest.clone()));
                    volumes.insert(source.clone());
                }
                None if kind == "volume" && source.len() == 64 => warnings.push(format!(
                    "container `{}` has an anonymous volume at `{dest}`; a replacement gets a new, empty one",
                    m.name
                )),
                None => warnings.push(format!(
                    "container `{}` mounts {kind} `{source}` at `{dest}`, which is not a volume `{tenant}_<name>`: the file cannot say it",
                    m.name
                )),
            }
        }
        let default_storage = match role.kind {
            Some(ServiceKind::Postgres) => Some("/var/lib/postgresql/data"),
            Some(ServiceKind::Redis) => Some("/data"),
            _ => None,
        }
        .map(|path| vec![(format!("{name}-data"), path.to_string())]);
        if !storage.is_empty() && Some(&storage) != default_storage.as_ref() {
            body.push_str(&format!("{indent}storage:\n"));
            for (v, p) in &storage {
                body.push_str(&format!(
                    "{indent}  - {{ volume: {}, path: {} }}\n",
                    scalar(v),
                    quoted(p)
                ));
            }
        }
        if storage.is_empty() && default_storage.is_some() {
            warnings.push(format!(
                "`{}` mounts no volume `{tenant}_{name}-data`; berth gives a {} service one, so it cannot be adopted as it is",
                m.name,
                crate::model::live::service_kind_word(role.kind.unwrap_or(ServiceKind::Container))
            ));
        }
        if !other_labels.is_empty() {
            let keys: Vec<&str> = other_labels.keys().map(String::as_str).collect();
            warnings.push(format!(
                "container `{}` carries labels berth does not write ({}); a replacement drops them",
                m.name,
                keys.join(", ")
            ));
        }
        if !c.running {
            warnings.push(format!(
                "container `{}` is stopped; the next plan starts it",
                m.name
            ));
        }
        let section = &mut sections[usize::from(role.kind.is_some())].1;
        section.push_str(&format!("  {}:\n{body}", scalar(name)));
    }
    for (is_service, section) in &sections {
        if !section.is_empty() {
            text.push_str(if *is_service {
                "services:\n"
            } else {
                "apps:\n"
            });
            text.push_str(section);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ImportedTenant {
        id: tenant.to_string(),
        text,
        apps: apps_map,
        services: service_names,
        secrets,
        containers,
        volumes: volumes.into_iter().collect(),
    })
}

/// An env value adoption expects in a container: the value, or why it cannot be known.
pub type Expected = Result<String, String>;

/// Where the spec and the container differ, field by field (names only: values may be
/// secret). Empty: recording the spec's hash for this container tells the truth.
#[must_use]
pub fn differences(
    spec: &ContainerSpec,
    env: &BTreeMap<String, Expected>,
    c: &ContainerDetail,
    outside: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if spec.image != c.image {
        out.push(format!(
            "image: `{}` on the host, `{}` in the file",
            c.image, spec.image
        ));
    }
    let command = spec.command.as_ref().or(c.from_image.command.as_ref());
    if command != c.command.as_ref() {
        out.push("command differs".into());
    }
    if c.entrypoint != c.from_image.entrypoint {
        out.push("entrypoint is not the image's".into());
    }
    for (key, want) in env {
        match (want, c.env.get(key)) {
            (Err(why), _) => out.push(format!("env {key}: {why}")),
            (Ok(_), None) => out.push(format!("env {key}: not set on the host")),
            (Ok(v), Some(have)) if *v != have.0 => out.push(format!("env {key} differs")),
            _ => {}
        }
    }
    for key in own_env(c).keys() {
        if !spec.env.contains_key(*key) {
            out.push(format!("env {key}: set on the host, not in the file"));
        }
    }
    let mut want_ports: Vec<(u16, u16)> = spec
        .ports
        .iter()
        .map(|p| (p.container, p.host.unwrap_or(0)))
        .collect();
    want_ports.sort_unstable();
    let mut have_ports: Vec<(u16, u16)> = c
        .ports
        .iter()
        .filter(|(_, proto, ip, _)| proto == "tcp" && (ip.is_empty() || ip == "0.0.0.0"))
        .map(|(p, _, _, h)| (*p, *h))
        .collect();
    have_ports.dedup();
    if want_ports != have_ports || have_ports.len() != c.ports.len() {
        out.push("published ports differ".into());
    }
    let memory = spec.memory.and_then(|m| i64::try_from(m).ok()).unwrap_or(0);
    if memory != c.memory {
        out.push("memory limit differs".into());
    }
    if spec.nano_cpus.unwrap_or(0) != c.nano_cpus {
        out.push("cpu limit differs".into());
    }
    let restart = match spec.restart {
        crate::model::RestartPolicy::No => "no",
        crate::model::RestartPolicy::Always => "always",
        crate::model::RestartPolicy::UnlessStopped => "unless-stopped",
        crate::model::RestartPolicy::OnFailure => "on-failure",
    };
    let have = if c.restart.0.is_empty() {
        "no"
    } else {
        c.restart.0.as_str()
    };
    if restart != have || c.restart.1 != 0 {
        out.push(format!("restart policy: `{have}` on the host, `{restart}` in the file (`docker update --restart {restart}` changes it in place)"));
    }
    let health = match spec.health.as_ref().map(|h| (&h.probe, h)) {
        Some((Probe::Command { test }, h)) => Some((
            test.clone(),
            u64::from(h.interval),
            u64::from(h.timeout),
            i64::from(h.retries),
        )),
        // berth probes the HTTP form itself; the image's own check stays.
        _ => c.from_image.health.clone(),
    };
    if health != c.health {
        out.push("health check differs".into());
    }
    let mut want_mounts: Vec<(String, String)> = spec.mounts.clone();
    want_mounts.sort();
    let mut have_mounts: Vec<(String, String)> = c
        .mounts
        .iter()
        .map(|(_, s, d)| (s.clone(), d.clone()))
        .collect();
    have_mounts.sort();
    if want_mounts != have_mounts {
        out.push("mounts differ".into());
    }
    // Routing labels are compared by what they route (berth names its routers and
    // networks its own way); every other label must be there as berth writes it.
    let (want_proxy, want_labels): (BTreeMap<_, _>, BTreeMap<_, _>) =
        own_labels(&spec.labels, &BTreeMap::new())
            .into_iter()
            .partition(|(k, _)| is_proxy_label(k));
    let (have_proxy, have_labels): (BTreeMap<_, _>, BTreeMap<_, _>) =
        own_labels(&c.labels, &c.from_image.labels)
            .into_iter()
            .partition(|(k, _)| is_proxy_label(k));
    if want_labels != have_labels {
        let keys: BTreeSet<&String> = want_labels
            .iter()
            .chain(have_labels.iter())
            .filter(|(k, v)| want_labels.get(*k) != Some(v) || have_labels.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
        out.push(format!(
            "labels differ ({}: berth does not write them)",
            keys.join(", ")
        ));
    }
    let want = read_routing(&want_proxy);
    let have = read_routing(&have_proxy);
    for (label, why) in &have.unread {
        out.push(format!(
            "labels differ: `{label}` is not read as routing ({why})"
        ));
    }
    out.extend(routing_differences(
        want.routing.as_ref(),
        have.routing.as_ref(),
    ));
    for network in c.networks.keys() {
        if outside.contains(network) {
            out.push(format!(
                "attached to network `{network}`, shared with containers outside the stack: a replacement would not be"
            ));
        }
    }
    if !c.running {
        out.push("not running".into());
    }
    out
}

/// Secret volumes and the env values a spec's generated and derived entries stand for:
/// `(key, volume)` for `Kept` and `Derived` from `Kept`.
#[must_use]
pub fn kept_volumes(spec: &ContainerSpec) -> Vec<(String, String)> {
    spec.env
        .iter()
        .filter_map(|(k, v)| match v {
            ConfigValue::Kept { volume } => Some((k.clone(), volume.clone())),
            ConfigValue::Derived { from, .. } => match from.as_ref() {
                ConfigValue::Kept { volume } => Some((k.clone(), volume.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Routing labels: what Traefik and caddy-docker-proxy labels say, read as berth's
// `domains:` / `port:` / `tls:` (and compared with the labels berth itself writes).

/// Whether a label belongs to a proxy berth knows (Traefik, caddy-docker-proxy).
#[must_use]
pub fn is_proxy_label(key: &str) -> bool {
    key.starts_with("traefik.")
        || key == "caddy"
        || key.starts_with("caddy.")
        || key.starts_with("caddy_")
}

/// The routing a container's proxy labels give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Whose labels.
    pub proxy: ProxyKind,
    /// Host names routed, in the labels' order.
    pub domains: Vec<String>,
    /// The container port requests go to (`None`: the labels name none).
    pub port: Option<u16>,
    /// Traefik: `traefik.enable=true` is set (always true for Caddy).
    pub enabled: bool,
    /// Traefik: the router's TLS certificate resolver.
    pub resolver: Option<String>,
}

/// What the proxy labels of one container say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingLabels {
    /// The routing read (`None`: the labels route nothing berth can name).
    pub routing: Option<Routing>,
    /// Labels that could not be read as berth's routing, each with why.
    pub unread: Vec<(String, String)>,
}

/// `Host(`a`) || Host(`b`, `c`)` → `[a, b, c]`; anything but host matches joined by `||`
/// is an error saying what.
///
/// # Errors
/// The part of the rule berth cannot say.
pub fn rule_hosts(rule: &str) -> Result<Vec<String>, String> {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        Text(String),
        Open,
        Close,
        Comma,
        Or,
        Other(String),
    }
    let mut toks = Vec::new();
    let mut chars = rule.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                toks.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Comma,
                });
            }
            '`' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(e) if e == c => break,
                        Some(x) => s.push(x),
                        None => return Err(format!("an unclosed {c}…{c} string")),
                    }
                }
                toks.push(Tok::Text(s));
            }
            '|' => {
                chars.next();
                if chars.next() != Some('|') {
                    return Err("a single `|`".into());
                }
                toks.push(Tok::Or);
            }
            c if c.is_ascii_alphanumeric() => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if !x.is_ascii_alphanumeric() {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
                toks.push(Tok::Word(w));
            }
            _ => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if x.is_whitespace() || x.is_ascii_alphanumeric() || "()`\",|".contains(x) {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
                toks.push(Tok::Other(w));
            }
        }
    }
    // expr := term ('||' term)* ; term := '(' expr ')' | 'Host' '(' text (',' text)* ')'
    fn expr(toks: &[Tok], at: &mut usize, hosts: &mut Vec<String>) -> Result<(), String> {
        term(toks, at, hosts)?;
        while toks.get(*at) == Some(&Tok::Or) {
            *at += 1;
            term(toks, at, hosts)?;
        }
        Ok(())
    }
    fn term(toks: &[Tok], at: &mut usize, hosts: &mut Vec<String>) -> Result<(), String> {
        match toks.get(*at) {
            Some(Tok::Open) => {
                *at += 1;
                expr(toks, at, hosts)?;
                if toks.get(*at) != Some(&Tok::Close) {
                    return Err("an unclosed `(`".into());
                }
                *at += 1;
                Ok(())
            }
            Some(Tok::Word(w)) if w == "Host" => {
                *at += 1;
                if toks.get(*at) != Some(&Tok::Open) {
                    return Err("`Host` without `(`".into());
                }
                *at += 1;
                loop {
                    match toks.get(*at) {
                        Some(Tok::Text(h)) => {
                            if !is_hostname(h) {
                                return Err(format!("`{h}` is not a lowercase host name"));
                            }
                            if !hosts.contains(h) {
                                hosts.push(h.clone());
                            }
                            *at += 1;
                        }
                        _ => return Err("`Host(…)` takes quoted host names".into()),
                    }
                    match toks.get(*at) {
                        Some(Tok::Comma) => *at += 1,
                        Some(Tok::Close) => {
                            *at += 1;
                            return Ok(());
                        }
                        _ => return Err("an unclosed `Host(`".into()),
                    }
                }
            }
            Some(Tok::Word(w)) => Err(format!(
                "`{w}(…)` matches something other than a host name; berth routes whole host names"
            )),
            Some(Tok::Other(o)) if o.starts_with("&&") => {
                Err("`&&` narrows the match; berth routes whole host names".into())
            }
            Some(Tok::Other(o)) if o.starts_with('!') => {
                Err("`!` negates a match; berth routes whole host names".into())
            }
            Some(t) => Err(format!("unexpected {t:?} in the rule")),
            None => Err("the rule ends early".into()),
        }
    }
    let mut hosts = Vec::new();
    let mut at = 0;
    expr(&toks, &mut at, &mut hosts)?;
    match toks.get(at) {
        None => Ok(hosts),
        Some(Tok::Other(o)) if o.starts_with("&&") => {
            Err("`&&` narrows the match; berth routes whole host names".into())
        }
        Some(_) => Err("more after the host matches than `||`".into()),
    }
}

/// `{{upstreams 8080}}`, `{{ upstreams http 8080 }}` → the port (80 when none is named,
/// as Caddy's `reverse_proxy` dials).
fn upstreams_port(value: &str) -> Result<u16, String> {
    let inner = value
        .trim()
        .strip_prefix("{{")
        .and_then(|v| v.strip_suffix("}}"))
        .ok_or_else(|| "not `{{upstreams PORT}}`: berth writes only that".to_string())?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        ["upstreams"] | ["upstreams", "http"] => Ok(80),
        ["upstreams", port] | ["upstreams", "http", port] => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{port}` is not a port")),
        ["upstreams", "https", ..] => {
            Err("upstreams over HTTPS: berth's proxy dials plain HTTP".into())
        }
        _ => Err("not `{{upstreams PORT}}`: berth writes only that".into()),
    }
}

/// Read the proxy labels among `labels` (others are ignored).
#[must_use]
pub fn read_routing(labels: &BTreeMap<String, String>) -> RoutingLabels {
    let mut out = RoutingLabels::default();
    let traefik: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(k, _)| k.starts_with("traefik."))
        .collect();
    let caddy: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(k, _)| is_proxy_label(k) && !k.starts_with("traefik."))
        .collect();
    let t = (!traefik.is_empty()).then(|| read_traefik(&traefik, &mut out.unread));
    let c = (!caddy.is_empty()).then(|| read_caddy(&caddy, &mut out.unread));
    match (t.flatten(), c.flatten()) {
        (Some(t), Some(_)) => {
            for (k, _) in &caddy {
                out.unread.push((
                    (*k).clone(),
                    "the container is routed by Traefik labels too; berth writes one proxy's"
                        .into(),
                ));
            }
            out.routing = Some(t);
        }
        (t, c) => out.routing = t.or(c),
    }
    out.unread.sort();
    out
}

fn read_traefik(
    labels: &[(&String, &String)],
    unread: &mut Vec<(String, String)>,
) -> Option<Routing> {
    let mut enabled = None;
    let mut rules: BTreeMap<&str, (&String, &String)> = BTreeMap::new();
    let mut router_service: BTreeMap<&str, &String> = BTreeMap::new();
    let mut resolvers: BTreeMap<&str, &String> = BTreeMap::new();
    let mut ports: BTreeMap<&str, (&String, &String)> = BTreeMap::new();
    let mut router_labels: Vec<&String> = Vec::new();
    let skip = "berth does not write it (berth's Traefik labels are `enable`, one router's `rule` and `tls.certresolver`, its service's `loadbalancer.server.port`, and `docker.network`)";
    for (key, value) in labels {
        let rest = &key["traefik.".len()..];
        if rest == "enable" {
            match value.as_str() {
                "true" => enabled = Some(true),
                "false" => {
                    enabled = Some(false);
                    unread.push(((*key).clone(), "`traefik.enable=false`: the container is not routed, and berth does not write it".into()));
                }
                _ => unread.push((
                    (*key).clone(),
                    format!("`{value}` is not `true` or `false`"),
                )),
            }
            continue;
        }
        if rest == "docker.network" {
            // berth writes its own (`<tenant>_net`): the proxy dials the tenant network.
            continue;
        }
        if let Some(r) = rest.strip_prefix("http.routers.") {
            let (router, field) = r.split_once('.').unwrap_or((r, ""));
            router_labels.push(key);
            match field {
                "rule" => {
                    rules.insert(router, (key, value));
                }
                "service" => {
                    router_service.insert(router, value);
                }
                "tls.certresolver" => {
                    resolvers.insert(router, value);
                }
                _ => unread.push(((*key).clone(), skip.into())),
            }
            continue;
        }
        if let Some(s) = rest.strip_prefix("http.services.") {
            match s.split_once('.') {
                Some((service, "loadbalancer.server.port")) => {
                    ports.insert(service, (key, value));
                }
                _ => unread.push(((*key).clone(), skip.into())),
            }
            continue;
        }
        unread.push(((*key).clone(), skip.into()));
    }
    if enabled == Some(false) {
        return None;
    }
    let routers: BTreeSet<&str> = rules
        .keys()
        .chain(router_service.keys())
        .chain(resolvers.keys())
        .copied()
        .collect();
    let router = match routers.len() {
        0 => {
            if ports.is_empty()
                && let Some((key, _)) = labels.iter().find(|(k, _)| k.as_str() == "traefik.enable")
            {
                unread.push(((*key).clone(), "no router rule: Traefik would route the container by its `defaultRule`; berth writes explicit host rules".into()));
            }
            for (key, _) in ports.values() {
                unread.push(((*key).clone(), "a service without a router rule".into()));
            }
            return None;
        }
        1 => *routers.iter().next().unwrap_or(&""),
        _ => {
            for key in router_labels {
                unread.push((
                    key.clone(),
                    "more than one router; berth writes one per app".into(),
                ));
            }
            return None;
        }
    };
    let Some((rule_key, rule)) = rules.get(router) else {
        unread.push((
            format!("traefik.http.routers.{router}.rule"),
            "router without a rule (this label is missing)".into(),
        ));
        return None;
    };
    let domains = match rule_hosts(rule) {
        Ok(d) => d,
        Err(why) => {
            unread.push(((*rule_key).clone(), why));
            return None;
        }
    };
    let service = match router_service.get(router) {
        Some(s) => Some(s.as_str()),
        None if ports.len() <= 1 => ports.keys().next().copied(),
        None => None,
    };
    let mut port = None;
    for (name, (key, value)) in &ports {
        if Some(*name) != service {
            unread.push(((*key).clone(), "a service the router does not use".into()));
            continue;
        }
        match value.parse::<u16>() {
            Ok(p) if p > 0 => port = Some(p),
            _ => unread.push(((*key).clone(), format!("`{value}` is not a port"))),
        }
    }
    if let (Some(s), None) = (service, port)
        && !ports.contains_key(s)
        && let Some(key) = labels
            .iter()
            .map(|(k, _)| *k)
            .find(|k| k.ends_with(".service"))
    {
        unread.push((
            key.clone(),
            format!("service `{s}` has no `loadbalancer.server.port` label here"),
        ));
    }
    Some(Routing {
        proxy: ProxyKind::Traefik,
        domains,
        port,
        enabled: enabled == Some(true),
        resolver: resolvers.get(router).map(|r| (*r).clone()),
    })
}

fn read_caddy(
    labels: &[(&String, &String)],
    unread: &mut Vec<(String, String)>,
) -> Option<Routing> {
    // Site blocks: `caddy` / `caddy_<n>` with their subdirectives.
    let mut blocks: BTreeMap<&str, BTreeMap<&str, (&String, &String)>> = BTreeMap::new();
    for (key, value) in labels {
        let (block, sub) = key.split_once('.').unwrap_or((key.as_str(), ""));
        let indexed = block
            .strip_prefix("caddy_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if block != "caddy" && !indexed {
            unread.push((
                (*key).clone(),
                "not a caddy-docker-proxy site label (`caddy`, `caddy_<n>`)".into(),
            ));
            continue;
        }
        blocks.entry(block).or_default().insert(sub, (key, value));
    }
    let mut domains: Vec<String> = Vec::new();
    let mut port: Option<u16> = None;
    let mut any = false;
    for (block, subs) in &blocks {
        let mut ok = true;
        for (sub, (key, _)) in subs {
            if !["", "reverse_proxy"].contains(sub) {
                unread.push(((*key).clone(), "berth does not write it (berth's caddy labels are the site's addresses and `reverse_proxy {{upstreams PORT}}`)".into()));
                ok = false;
            }
        }
        let Some((key, addresses)) = subs.get("") else {
            for (key, _) in subs.values() {
                unread.push((
                    (*key).clone(),
                    format!("site `{block}` has no addresses (label `{block}`)"),
                ));
            }
            continue;
        };
        let mut hosts = Vec::new();
        for a in addresses
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|a| !a.is_empty())
        {
            if is_hostname(a) {
                hosts.push(a.to_string());
            } else {
                unread.push((
                    (*key).clone(),
                    format!(
                        "`{a}` is not a lowercase host name (berth's addresses are bare host names)"
                    ),
                ));
                ok = false;
            }
        }
        match subs.get("reverse_proxy") {
            Some((rkey, value)) => match upstreams_port(value) {
                Ok(p) if port.is_none_or(|q| q == p) => port = Some(p),
                Ok(_) => {
                    unread.push((
                        (*rkey).clone(),
                        "sites with different ports: berth routes one app to one port".into(),
                    ));
                    ok = false;
                }
                Err(why) => {
                    unread.push(((*rkey).clone(), why));
                    ok = false;
                }
            },
            None => {
                unread.push((
                    (*key).clone(),
                    format!("site `{block}` has no `reverse_proxy`"),
                ));
                ok = false;
            }
        }
        let _ = ok;
        any = true;
        for h in hosts {
            if !domains.contains(&h) {
                domains.push(h);
            }
        }
    }
    any.then_some(Routing {
        proxy: ProxyKind::Caddy,
        domains,
        port,
        enabled: true,
        resolver: None,
    })
}

/// The words a difference between two routings is said in (values are host names and
/// ports: never secret).
fn routing_differences(want: Option<&Routing>, have: Option<&Routing>) -> Vec<String> {
    let word = |p: ProxyKind| match p {
        ProxyKind::Traefik => "Traefik",
        ProxyKind::Caddy => "caddy-docker-proxy",
    };
    match (want, have) {
        (None, None) => Vec::new(),
        (None, Some(h)) => vec![format!(
            "routed by {} labels ({}), which berth does not write for this container (a host with `caddy` routes through Caddy's admin API; only an app's `web` process is routed)",
            word(h.proxy),
            h.domains.join(", ")
        )],
        (Some(w), None) => vec![format!(
            "not routed on the host; the file routes {} to it",
            w.domains.join(", ")
        )],
        (Some(w), Some(h)) => {
            let mut out = Vec::new();
            if w.proxy != h.proxy {
                out.push(format!(
                    "routed by {} labels on the host; the host's `proxy:` is {} (set `proxy:` in the environment to the proxy that runs)",
                    word(h.proxy),
                    word(w.proxy)
                ));
                return out;
            }
            if w.domains != h.domains {
                out.push(format!(
                    "routing: hosts {} on the host, {} in the file",
                    h.domains.join(", "),
                    w.domains.join(", ")
                ));
            }
            if w.port != h.port {
                let p =
                    |p: Option<u16>| p.map_or_else(|| "none named".to_string(), |p| p.to_string());
                out.push(format!(
                    "routing: port {} on the host, {} in the file",
                    p(h.port),
                    p(w.port)
                ));
            }
            if w.enabled != h.enabled {
                out.push("routing: no `traefik.enable=true` on the host; berth sets it".into());
            }
            if w.resolver != h.resolver {
                let r = |r: &Option<String>| {
                    r.clone()
                        .map_or_else(|| "none".to_string(), |r| format!("`{r}`"))
                };
                out.push(format!(
                    "routing: TLS certificate resolver {} on the host, {} in the file",
                    r(&h.resolver),
                    r(&w.resolver)
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_service_kinds_by_their_last_path_component() {
        assert_eq!(service_kind_of("postgres:16"), Some(ServiceKind::Postgres));
        assert_eq!(service_kind_of("library/redis:7"), Some(ServiceKind::Redis));
        assert_eq!(
            service_kind_of("registry.example:5000/x/postgres:16@sha256:ab"),
            Some(ServiceKind::Postgres)
        );
        assert_eq!(service_kind_of("postgres-exporter:1"), None);
        assert_eq!(service_kind_of("app:postgres"), None);
    }

    #[test]
    fn plain_container_names_split_at_the_last_dash() {
        let c = ContainerDetail::default();
        assert_eq!(
            reading("acme-corp-web-2", &c),
            Some(("acme-corp".into(), "web".into(), 2, false))
        );
        assert_eq!(
            reading("acme-db", &c),
            Some(("acme".into(), "db".into(), 1, false))
        );
        assert_eq!(reading("legacy", &c), None);
        let mut compose = ContainerDetail::default();
        compose.labels.insert(PROJECT.into(), "acme".into());
        compose.labels.insert(SERVICE.into(), "worker".into());
        compose.labels.insert(NUMBER.into(), "3".into());
        assert_eq!(
            reading("whatever", &compose),
            Some(("acme".into(), "worker".into(), 3, true))
        );
    }

    use crate::import::translate::tests::environment;
    use crate::model::live::ImageDefaults;

    fn container(image: &str, env: &[(&str, &str)]) -> ContainerDetail {
        ContainerDetail {
            id: format!("id-{image}"),
            image: image.into(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), LiveValue((*v).to_string())))
                .collect(),
            running: true,
            restart: ("unless-stopped".into(), 0),
            ..ContainerDetail::default()
        }
    }

    #[test]
    fn plain_containers_named_with_container_become_a_tenant_with_berths_names() {
        let mut inventory = DockerInventory::default();
        let pw = "Qm7xT2pLw9Rk4ZsV8nB3yH6cJ1dF5gA0";
        let mut db = container(
            "postgres:16",
            &[("POSTGRES_PASSWORD", pw), ("POSTGRES_DB", "acme")],
        );
        db.mounts = vec![(
            "volume".into(),
            "acme_db-data".into(),
            "/var/lib/postgresql/data".into(),
        )];
        inventory.containers.insert("acme-db".into(), db);
        let mut web = container(
            "registry.example/app:2",
            &[
                (
                    "DATABASE_URL",
                    &format!("postgres://postgres:{pw}@db:5432/acme"),
                ),
                ("MODE", "live"),
            ],
        );
        web.restart = (String::new(), 0);
        web.mounts = vec![("bind".into(), "/srv/uploads".into(), "/app/uploads".into())];
        inventory.containers.insert("acme-web".into(), web);
        inventory
            .containers
            .insert("other-web".into(), container("x:1", &[]));
        let env = environment();
        let names = vec!["acme-web".to_string(), "acme-db".to_string()];
        let out = docker(&DockerInput {
            environment: &env,
            host: "docker-1",
            inventory: &inventory,
            containers: &names,
            schema: None,
        })
        .unwrap();
        assert_eq!(out.tenants.len(), 1);
        let t = &out.tenants[0];
        assert_eq!(t.id, "acme");
        assert_eq!(t.containers["acme-web"], "acme-web-1");
        assert_eq!(t.containers["acme-db"], "acme-db");
        assert_eq!(t.volumes, ["acme_db-data"]);
        assert!(t.secrets.is_empty());
        for line in [
            "  web:\n    image: \"registry.example/app:2\"\n    domains: []\n    restart: no\n    env:\n      MODE: \"live\"\n    uses: [db]\n",
            "  db:\n    kind: postgres\n    image: \"postgres:16\"\n    env:\n      POSTGRES_PASSWORD: { generate: 32 }\n",
        ] {
            assert!(t.text.contains(line), "{line:?} not in\n{}", t.text);
        }
        assert!(
            !t.text.contains(pw) && !t.text.contains("storage"),
            "{}",
            t.text
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("mounts bind `/srv/uploads`")),
            "{:?}",
            out.warnings
        );
        // Unnamed plain containers are never swept in; a bad reading is a problem.
        let out = docker(&DockerInput {
            containers: &["other-web".to_string(), "nope".to_string()],
            ..DockerInput {
                environment: &env,
                host: "docker-1",
                inventory: &inventory,
                containers: &[],
                schema: None,
            }
        })
        .unwrap_err();
        assert!(
            out.iter()
                .any(|p| p.message.contains("no container `nope`")),
            "{out:?}"
        );
    }

    #[test]
    fn differences_name_fields_never_values() {
        let c = container("app:1", &[("KEY", "live-value")]);
        let spec = ContainerSpec {
            name: "acme-web-1".into(),
            image: "app:1".into(),
            command: None,
            env: BTreeMap::from([("KEY".to_string(), ConfigValue::literal("file-value"))]),
            ports: Vec::new(),
            memory: Some(64 << 20),
            nano_cpus: None,
            restart: crate::model::RestartPolicy::Always,
            health: None,
            network: "acme_net".into(),
            aliases: Vec::new(),
            mounts: Vec::new(),
            labels: BTreeMap::new(),
        };
        let env = BTreeMap::from([("KEY".to_string(), Ok("file-value".to_string()))]);
        let d = differences(&spec, &env, &c, &BTreeSet::new());
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().any(|x| x == "env KEY differs"));
        assert!(d.iter().any(|x| x == "memory limit differs"));
        assert!(
            d.iter()
                .any(|x| x.contains("docker update --restart always"))
        );
        assert!(
            !d.iter()
                .any(|x| x.contains("live-value") || x.contains("file-value"))
        );
    }

    #[test]
    fn credentials_on_a_command_line_are_never_written() {
        let mut inventory = DockerInventory::default();
        let mut redis = container("redis:7", &[("REDIS_PASSWORD", "letmein-please")]);
        redis.command = Some(vec![
            "redis-server".into(),
            "--requirepass".into(),
            "letmein-please".into(),
        ]);
        redis.labels.insert(PROJECT.into(), "acme".into());
        redis.labels.insert(SERVICE.into(), "cache".into());
        inventory.containers.insert("acme-cache-1".into(), redis);
        let env = environment();
        let problems = docker(&DockerInput {
            environment: &env,
            host: "docker-1",
            inventory: &inventory,
            containers: &[],
            schema: None,
        })
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("carries what looks like a credential")),
            "{problems:?}"
        );
        assert!(!format!("{problems:?}").contains("letmein"), "{problems:?}");
        // Without it on the command line, the env password is the service's own: generated.
        inventory
            .containers
            .get_mut("acme-cache-1")
            .unwrap()
            .command = None;
        let out = docker(&DockerInput {
            environment: &env,
            host: "docker-1",
            inventory: &inventory,
            containers: &[],
            schema: None,
        })
        .unwrap();
        let text = &out.tenants[0].text;
        assert!(text.contains("REDIS_PASSWORD: { generate: 14 }"), "{text}");
        assert!(!text.contains("letmein"), "{text}");
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("does not look random")),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn a_compose_stack_is_imported_whole_or_not_at_all() {
        let mut inventory = DockerInventory::default();
        for role in ["web", "worker"] {
            let mut c = container("app:1", &[]);
            c.labels.insert(PROJECT.into(), "acme".into());
            c.labels.insert(SERVICE.into(), role.into());
            inventory.containers.insert(format!("acme-{role}-1"), c);
        }
        inventory.managed.insert("bolt-web-1".into());
        let env = environment();
        let input = |containers: &'static [&'static str]| {
            let names: Vec<String> = containers.iter().map(|c| (*c).to_string()).collect();
            docker(&DockerInput {
                environment: &env,
                host: "docker-1",
                inventory: &inventory,
                containers: &names,
                schema: None,
            })
        };
        let problems = input(&["acme-web-1"]).unwrap_err();
        assert!(
            problems.iter().any(|p| p
                .message
                .contains("not named with `--container`: acme-worker-1")),
            "{problems:?}"
        );
        let problems = input(&["bolt-web-1"]).unwrap_err();
        assert!(
            problems[0].message.contains("is already berth's"),
            "{problems:?}"
        );
        let out = input(&["acme-web-1", "acme-worker-1"]).unwrap();
        assert_eq!(out.tenants[0].containers.len(), 2);
        // Without `--container`: every compose project.
        let out = input(&[]).unwrap();
        assert_eq!(out.tenants[0].apps.len(), 2);
    }
    /// Import every compose stack of `inventory`.
    fn every_stack(
        env: &Environment,
        inventory: &DockerInventory,
    ) -> Result<super::super::translate::Imported, Vec<Problem>> {
        docker(&DockerInput {
            environment: env,
            host: "docker-1",
            inventory,
            containers: &[],
            schema: None,
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn traefik_host_rules_read_every_spelling_scripts_use() {
        assert_eq!(
            rule_hosts("Host(`a.example.com`)").unwrap(),
            ["a.example.com"]
        );
        assert_eq!(
            rule_hosts("Host(`a.example.com`) || Host(`b.example.com`)").unwrap(),
            ["a.example.com", "b.example.com"]
        );
        assert_eq!(
            rule_hosts("Host(`a.example.com`, `b.example.com`)").unwrap(),
            ["a.example.com", "b.example.com"]
        );
        assert_eq!(
            rule_hosts("( Host(\"a.example.com\") || Host(`a.example.com`) )").unwrap(),
            ["a.example.com"]
        );
    }

    #[test]
    fn malformed_or_narrower_rules_say_why_and_never_panic() {
        for (rule, why) in [
            ("Host(`a.example.com`) && PathPrefix(`/api`)", "`&&`"),
            ("PathPrefix(`/api`)", "`PathPrefix(…)`"),
            ("HostRegexp(`{sub:[a-z]+}.example.com`)", "`HostRegexp(…)`"),
            ("Host(`A.Example.com`)", "not a lowercase host name"),
            ("Host(`a.example.com`", "unclosed"),
            ("Host(`a.example.com)", "unclosed"),
            ("Host()", "quoted host names"),
            ("Host(`a`) |", "single `|`"),
            ("", "ends early"),
            ("!Host(`a.example.com`)", "negates"),
            ("Host(`a.example.com`) Host(`b.example.com`)", "more after"),
            ("((((", "ends early"),
            ("Host(`ä.example.com`)", "not a lowercase host name"),
        ] {
            let err = rule_hosts(rule).unwrap_err();
            assert!(err.contains(why), "{rule:?}: {err}");
        }
        // Arbitrary bytes: an answer, never a panic.
        for junk in ["`", "\"", ")", "||", "Host", "Host(`x`,", "&&&", "\u{0}"] {
            let _ = rule_hosts(junk);
        }
    }

    #[test]
    fn traefik_labels_become_domains_port_and_tls_and_the_rest_is_named() {
        let read = read_routing(&labels(&[
            ("traefik.enable", "true"),
            (
                "traefik.http.routers.shop.rule",
                "Host(`shop.example.com`) || Host(`www.shop.example.com`)",
            ),
            ("traefik.http.routers.shop.tls.certresolver", "letsencrypt"),
            (
                "traefik.http.services.shop.loadbalancer.server.port",
                "3000",
            ),
            ("traefik.docker.network", "proxy"),
        ]));
        assert_eq!(read.unread, []);
        assert_eq!(
            read.routing,
            Some(Routing {
                proxy: ProxyKind::Traefik,
                domains: vec!["shop.example.com".into(), "www.shop.example.com".into()],
                port: Some(3000),
                enabled: true,
                resolver: Some("letsencrypt".into()),
            })
        );
        // Middlewares, entrypoints, a bad port, a second router: each named, with why.
        let read = read_routing(&labels(&[
            ("traefik.enable", "true"),
            ("traefik.http.routers.shop.rule", "Host(`shop.example.com`)"),
            ("traefik.http.routers.shop.entrypoints", "websecure"),
            ("traefik.http.routers.shop.middlewares", "auth"),
            (
                "traefik.http.services.shop.loadbalancer.server.port",
                "http",
            ),
        ]));
        let keys: Vec<&str> = read.unread.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "traefik.http.routers.shop.entrypoints",
                "traefik.http.routers.shop.middlewares",
                "traefik.http.services.shop.loadbalancer.server.port",
            ]
        );
        assert_eq!(read.routing.unwrap().domains, ["shop.example.com"]);
        let read = read_routing(&labels(&[
            ("traefik.http.routers.a.rule", "Host(`a.example.com`)"),
            ("traefik.http.routers.b.rule", "Host(`b.example.com`)"),
        ]));
        assert!(read.routing.is_none());
        assert_eq!(read.unread.len(), 2);
        assert!(read.unread[0].1.contains("more than one router"));
        // A malformed rule: the label is named, nothing is guessed.
        let read = read_routing(&labels(&[(
            "traefik.http.routers.a.rule",
            "Host(`a.example.com`) && Path(`/x`)",
        )]));
        assert!(read.routing.is_none());
        assert_eq!(read.unread[0].0, "traefik.http.routers.a.rule");
        // Only `enable`: Traefik's default rule, which berth does not write.
        let read = read_routing(&labels(&[("traefik.enable", "true")]));
        assert!(read.routing.is_none());
        assert!(
            read.unread[0].1.contains("defaultRule"),
            "{:?}",
            read.unread
        );
    }

    #[test]
    fn caddy_docker_proxy_labels_become_domains_and_port() {
        let read = read_routing(&labels(&[
            ("caddy", "a.example.com, b.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 8080}}"),
        ]));
        assert_eq!(read.unread, []);
        let r = read.routing.unwrap();
        assert_eq!(r.proxy, ProxyKind::Caddy);
        assert_eq!(r.domains, ["a.example.com", "b.example.com"]);
        assert_eq!(r.port, Some(8080));
        // Indexed sites with one port: one app.
        let read = read_routing(&labels(&[
            ("caddy_0", "a.example.com"),
            ("caddy_0.reverse_proxy", "{{ upstreams http 9000 }}"),
            ("caddy_1", "b.example.com"),
            ("caddy_1.reverse_proxy", "{{upstreams 9000}}"),
        ]));
        assert_eq!(read.unread, []);
        let r = read.routing.unwrap();
        assert_eq!((r.domains.len(), r.port), (2, Some(9000)));
        // `{{upstreams}}` dials port 80; other directives and addresses are named.
        let read = read_routing(&labels(&[
            ("caddy", "http://a.example.com"),
            ("caddy.reverse_proxy", "{{upstreams}}"),
            ("caddy.tls", "internal"),
        ]));
        assert_eq!(read.routing.as_ref().unwrap().port, Some(80));
        assert!(read.routing.unwrap().domains.is_empty());
        let keys: Vec<&str> = read.unread.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["caddy", "caddy.tls"]);
        let read = read_routing(&labels(&[
            ("caddy", "a.example.com"),
            ("caddy.reverse_proxy", "localhost:9000"),
        ]));
        assert_eq!(read.unread[0].0, "caddy.reverse_proxy");
    }

    #[test]
    fn berths_own_routing_labels_read_back_as_the_app_that_made_them() {
        let mut app = crate::model::App {
            name: "web".into(),
            image: "x:1".into(),
            processes: BTreeMap::from([("web".to_string(), 1)]),
            command: None,
            commands: BTreeMap::new(),
            domains: vec!["a.example.com".into(), "b.example.com".into()],
            tls: true,
            health: None,
            env: BTreeMap::new(),
            uses: Vec::new(),
            ports: Vec::new(),
            port: Some(3000),
            memory: None,
            cpus: None,
            storage: Vec::new(),
            restart: None,
            pull: crate::model::PullPolicy::default(),
        };
        for proxy in [ProxyKind::Traefik, ProxyKind::Caddy] {
            let mut l = BTreeMap::new();
            crate::model::desired::proxy_labels(&mut l, proxy, "acme", &app, "acme_net");
            let read = read_routing(&l);
            assert_eq!(read.unread, [], "{l:?}");
            let r = read.routing.unwrap();
            assert_eq!(r.domains, app.domains);
            assert_eq!(r.port, Some(3000));
            assert_eq!(r.proxy, proxy);
        }
        app.tls = false;
        let mut l = BTreeMap::new();
        crate::model::desired::proxy_labels(&mut l, ProxyKind::Traefik, "acme", &app, "n");
        assert_eq!(read_routing(&l).routing.unwrap().resolver, None);
    }

    fn compose(c: &mut ContainerDetail, project: &str, service: &str, n: u32) {
        c.labels.insert(PROJECT.into(), project.into());
        c.labels.insert(SERVICE.into(), service.into());
        c.labels.insert(NUMBER.into(), n.to_string());
    }

    #[test]
    fn a_routed_app_is_written_with_its_domains_port_and_tls() {
        let mut inventory = DockerInventory::default();
        let mut web = container("shop:1", &[]);
        compose(&mut web, "acme", "web", 1);
        for (k, v) in [
            ("traefik.enable", "true"),
            (
                "traefik.http.routers.acme.rule",
                "Host(`acme.example.com`, `www.acme.example.com`)",
            ),
            ("traefik.http.routers.acme.tls.certresolver", "le"),
            ("traefik.http.routers.acme.middlewares", "gzip"),
            (
                "traefik.http.services.acme.loadbalancer.server.port",
                "3000",
            ),
        ] {
            web.labels.insert(k.into(), v.into());
        }
        inventory.containers.insert("acme-web-1".into(), web);
        let env = environment();
        let out = every_stack(&env, &inventory).unwrap();
        let text = &out.tenants[0].text;
        assert!(
            text.contains(
                "    domains: [acme.example.com, www.acme.example.com]\n    tls: true\n    port: 3000\n"
            ),
            "{text}"
        );
        let warned = out.warnings.join("\n");
        assert!(
            warned.contains("`traefik.http.routers.acme.middlewares`"),
            "{warned}"
        );
        assert!(warned.contains("resolver `le`"), "{warned}");
        assert!(!warned.contains("carries labels"), "{warned}");
    }

    #[test]
    fn roles_named_app_dash_process_are_process_types_of_the_app() {
        let mut inventory = DockerInventory::default();
        let serve = vec!["/app".to_string(), "serve".to_string()];
        let image = ImageDefaults {
            command: Some(serve.clone()),
            ..ImageDefaults::default()
        };
        for (name, service, n, cmd) in [
            ("acme-web-1", "web", 1, serve.clone()),
            ("acme-web-2", "web", 2, serve.clone()),
            (
                "acme-web-worker-1",
                "web-worker",
                1,
                vec!["/app".into(), "work".into()],
            ),
            ("acme-web-cron-1", "web-cron", 1, serve.clone()),
        ] {
            let mut c = container("app:1", &[("MODE", "live")]);
            c.from_image = image.clone();
            c.command = Some(cmd);
            compose(&mut c, "acme", service, n);
            inventory.containers.insert(name.into(), c);
        }
        // Unlike its app (another memory limit): an app of its own, as named.
        let mut other = container("app:1", &[("MODE", "live")]);
        other.from_image = image.clone();
        other.command = Some(serve.clone());
        other.memory = 64 << 20;
        compose(&mut other, "acme", "web-mailer", 1);
        inventory
            .containers
            .insert("acme-web-mailer-1".into(), other);
        let env = environment();
        let out = every_stack(&env, &inventory).unwrap();
        let t = &out.tenants[0];
        assert!(
            t.text.contains(
                "  web:\n    image: \"app:1\"\n    processes: { cron: 1, web: 2, worker: 1 }\n    domains: []\n    commands:\n      worker: [\"/app\", \"work\"]\n"
            ),
            "{}",
            t.text
        );
        assert!(t.text.contains("  web-mailer:\n"), "{}", t.text);
        assert_eq!(t.containers["acme-web-worker-1"], "acme-web-worker-1");
        assert_eq!(t.apps["acme-web-worker-1"], "web");
        assert_eq!(t.apps["acme-web-mailer-1"], "web-mailer");
        // Plain names (`--container`) read the same way.
        let mut plain = DockerInventory::default();
        for (name, cmd) in [
            ("bolt-web-1", serve.clone()),
            ("bolt-web-worker-1", vec!["/app".into(), "work".into()]),
        ] {
            let mut c = container("app:1", &[]);
            c.from_image = image.clone();
            c.command = Some(cmd);
            plain.containers.insert(name.into(), c);
        }
        let names = vec!["bolt-web-1".to_string(), "bolt-web-worker-1".to_string()];
        let out = docker(&DockerInput {
            environment: &env,
            host: "docker-1",
            inventory: &plain,
            containers: &names,
            schema: None,
        })
        .unwrap();
        assert_eq!(out.tenants.len(), 1, "{:?}", out.tenants);
        assert!(
            out.tenants[0]
                .text
                .contains("processes: { web: 1, worker: 1 }"),
            "{}",
            out.tenants[0].text
        );
    }

    #[test]
    fn a_tier_is_written_when_exactly_one_gives_every_app_its_values() {
        let mut env = environment();
        let mut inventory = DockerInventory::default();
        for (name, service) in [
            ("acme-web-1", "web"),
            ("acme-web-worker-1", "web-worker"),
            ("acme-api-1", "api"),
        ] {
            let mut c = container("app:1", &[]);
            c.memory = 512 << 20;
            compose(&mut c, "acme", service, 1);
            inventory.containers.insert(name.into(), c);
        }
        let input = |env: &Environment| {
            every_stack(env, &inventory).unwrap().tenants[0]
                .text
                .clone()
        };
        // `starter` gives `web` one `web` process: this stack also runs a worker.
        let text = input(&env);
        assert!(
            !text.contains("tier:") && text.contains("memory: 512M"),
            "{text}"
        );
        env.tiers.insert(
            "pro".into(),
            crate::model::Tier {
                processes: BTreeMap::from([("web".to_string(), 1), ("worker".to_string(), 1)]),
                memory: Some(512 << 20),
                cpus: None,
            },
        );
        let text = input(&env);
        assert!(text.contains("tier: pro\n"), "{text}");
        assert!(
            !text.contains("memory:") && !text.contains("processes:"),
            "{text}"
        );
        // Two tiers that fit: none is guessed.
        env.tiers.insert("pro2".into(), env.tiers["pro"].clone());
        let text = input(&env);
        assert!(
            !text.contains("tier:") && text.contains("processes: { web: 1, worker: 1 }"),
            "{text}"
        );
    }
}
