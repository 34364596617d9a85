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
//!   component of the repository) is a service of that kind; every other role is an app with
//!   one process type, `web`, run `<replicas>` times — so berth's container names
//!   (`<tenant>-<app>-<n>`) are compose's. Service containers are renamed to berth's
//!   `<tenant>-<service>` on adoption.
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
use crate::model::{Environment, ServiceKind, is_dns_label};

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
        let Some((tenant, role, number, _)) = reading(name, c) else {
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
        });
    }
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

/// One role of a stack: its kind and replicas.
struct Role<'a> {
    kind: Option<ServiceKind>,
    replicas: Vec<&'a Member<'a>>,
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
            let same = d.image == first.image
                && d.command == first.command
                && d.env == first.env
                && d.memory == first.memory
                && d.nano_cpus == first.nano_cpus
                && d.restart == first.restart
                && d.mounts == first.mounts
                && d.health == first.health;
            if !same {
                problems.push(Problem {
                    subject: format!("container `{}`", m.name),
                    message: format!(
                        "`{}` is configured unlike `{}`; berth's replicas of an app are identical",
                        m.name, role.replicas[0].name
                    ),
                    hint: "make the replicas alike on the host, or leave the stack out".into(),
                });
            }
        }
        for m in &role.replicas {
            let berth = match role.kind {
                Some(_) => format!("{tenant}-{name}"),
                None => container_name(tenant, name, "web", m.number),
            };
            containers.insert(m.name.to_string(), berth);
            apps_map.insert(m.name.to_string(), (*name).to_string());
        }
        if role.kind.is_some() {
            service_names.push((*name).to_string());
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
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
    text.push_str(&format!("host: {}\n", scalar(input.host)));
    let mut sections = [(false, String::new()), (true, String::new())];
    for (name, role) in &roles {
        let m = role.replicas[0];
        let c = m.detail;
        let mut body = String::new();
        let indent = "    ";
        if let Some(kind) = role.kind {
            body.push_str(&format!(
                "{indent}kind: {}\n",
                crate::model::live::service_kind_word(kind)
            ));
        }
        body.push_str(&format!("{indent}image: {}\n", quoted(&c.image)));
        if role.kind.is_none() {
            if role.replicas.len() > 1 {
                body.push_str(&format!(
                    "{indent}processes: {{ web: {} }}\n",
                    role.replicas.len()
                ));
            }
            body.push_str(&format!("{indent}domains: []\n"));
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
        if c.memory > 0 {
            body.push_str(&format!("{indent}memory: {}\n", memory_text(c.memory)));
        }
        if c.nano_cpus > 0 {
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
        let labels = own_labels(&c.labels, &c.from_image.labels);
        if !labels.is_empty() {
            let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
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
    let want_labels = own_labels(&spec.labels, &BTreeMap::new());
    if want_labels != own_labels(&c.labels, &c.from_image.labels) {
        out.push("labels differ (proxy routing or others berth does not write)".into());
    }
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
}
