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

pub mod diagnostic;

use std::collections::BTreeMap;

use crate::model::{
    App, DokkuTarget, EnvValue, Environment, Fleet, Health, Host, HostTarget, Policy, Port,
    ProxyKind, RestartPolicy, Secrets, Service, ServiceKind, Stack, Storage, Tenant, TenantState,
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

/// Tenant id reserved for an environment's shared platform.
pub const SHARED_STACK_ID: &str = "shared";

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

struct Parsed<'s, T> {
    file: &'s SourceFile,
    root: Node,
    spec: T,
}

#[derive(Default)]
struct Cx {
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

fn location(file: &SourceFile, root: &Node, path: &[&str], key: bool, label: &str) -> Location {
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
fn printable(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 80 {
        format!("{}…", escaped.chars().take(80).collect::<String>())
    } else {
        escaped
    }
}

/// Read one file: text, YAML, structure, serde. Problems become diagnostics.
fn read<T: serde::de::DeserializeOwned>(
    cx: &mut Cx,
    file: &SourceFile,
    schema: &serde_json::Value,
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
        return None;
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

fn check_version<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, version: Option<u32>) {
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

// === Environment ===

fn check_environment(
    cx: &mut Cx,
    parsed: &Parsed<'_, EnvironmentSpec>,
    name: &str,
) -> Option<Environment> {
    let spec = &parsed.spec;
    check_version(cx, parsed, spec.version);
    if !is_dns_label(name) {
        cx.push(
            Diagnostic::error(
                "berth::invalid-name",
                format!("environment name `{}` is not a valid name", printable(name)),
                cx.loc(parsed, &[], "this file"),
            )
            .with_hint("rename the file: environment names are DNS labels"),
        );
    }
    if let Some(domain) = &spec.domain
        && !is_hostname(domain)
    {
        cx.error(
            parsed,
            "berth::invalid-domain",
            &["domain"],
            format!("`{}` is not a valid domain", printable(domain)),
            "invalid domain",
            None,
        );
    }
    let mut hosts = BTreeMap::new();
    for (host_name, host) in &spec.hosts {
        if !is_dns_label(host_name) {
            cx.name_error(parsed, &["hosts", host_name], "host name", host_name);
            continue;
        }
        if let Some(host) = check_host(cx, parsed, host_name, host) {
            hosts.insert(host_name.clone(), host);
        }
    }
    let mut tiers = BTreeMap::new();
    for (tier_name, tier) in &spec.tiers {
        if !is_dns_label(tier_name) {
            cx.name_error(parsed, &["tiers", tier_name], "tier name", tier_name);
        }
        for process in tier.processes.keys() {
            check_process_name(
                cx,
                parsed,
                &["tiers", tier_name, "processes", process],
                process,
            );
        }
        let memory = check_memory(
            cx,
            parsed,
            &["tiers", tier_name, "memory"],
            tier.memory.as_deref(),
        );
        check_cpus(cx, parsed, &["tiers", tier_name, "cpus"], tier.cpus);
        tiers.insert(
            tier_name.clone(),
            Tier {
                processes: tier.processes.clone(),
                memory,
                cpus: tier.cpus,
            },
        );
    }
    let dokku_app_template = spec
        .naming
        .as_ref()
        .and_then(|n| n.dokku_app.clone())
        .unwrap_or_else(|| "{tenant}-{app}".into());
    if !dokku_app_template.contains("{tenant}") || !dokku_app_template.contains("{app}") {
        cx.error(
            parsed,
            "berth::naming",
            &["naming", "dokku-app"],
            "the Dokku app name template must contain `{tenant}` and `{app}`".into(),
            "missing placeholder",
            Some("otherwise two tenants or two apps would get the same name".into()),
        );
    } else {
        let probe = dokku_app_template
            .replace("{tenant}", "a")
            .replace("{app}", "b");
        if !is_dns_label(&probe) {
            cx.error(
                parsed,
                "berth::naming",
                &["naming", "dokku-app"],
                "the Dokku app name template must produce DNS labels".into(),
                "invalid template",
                Some("use only lowercase letters, digits and `-` around the placeholders".into()),
            );
        }
    }
    let mut policy = Policy::default();
    if let Some(p) = &spec.policy {
        if let Some(max) = p.max_destroys {
            policy.max_destroys = max;
        }
        if let Some(heal) = p.self_heal {
            policy.self_heal = heal;
        }
        if let Some(retain) = &p.retain_data {
            match parse_days(retain) {
                Some(days) => policy.retain_data_days = days,
                None => cx.error(
                    parsed,
                    "berth::invalid-duration",
                    &["policy", "retain-data"],
                    format!("`{}` is not a duration in days", printable(retain)),
                    "expected e.g. `30d`",
                    Some("write a number of days followed by `d`, e.g. `30d`".into()),
                ),
            }
        }
    }
    let mut secrets = Secrets::default();
    if let Some(s) = &spec.secrets {
        secrets.provider = Some(s.provider);
        secrets.path.clone_from(&s.path);
        if s.provider == spec::SecretProviderKind::File && s.path.is_none() {
            cx.error(
                parsed,
                "berth::missing-key",
                &["secrets"],
                "secret provider `file` needs `path`".into(),
                "no `path`",
                Some("add `path: /etc/berth/secrets` (one file per secret)".into()),
            );
        }
        for (i, secret) in s.names.iter().enumerate() {
            let ok = !secret.is_empty()
                && secret.len() <= 64
                && secret.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                cx.error(
                    parsed,
                    "berth::invalid-name",
                    &["secrets", "names", &i.to_string()],
                    format!("secret name `{}` is not valid", printable(secret)),
                    "invalid secret name",
                    Some("secret names use lowercase letters, digits, `-` and `_`".into()),
                );
            }
        }
        secrets.names.clone_from(&s.names);
    }
    let mut stripe_prices = BTreeMap::new();
    let mut stripe_new_tenant = None;
    if let Some(stripe) = &spec.stripe {
        for (price, tier) in &stripe.prices {
            if !spec.tiers.contains_key(tier) {
                let known: Vec<&str> = spec.tiers.keys().map(String::as_str).collect();
                cx.error(
                    parsed,
                    "berth::unknown-reference",
                    &["stripe", "prices", price],
                    format!("price `{price}` maps to unknown tier `{}`", printable(tier)),
                    "no such tier",
                    Some(reference_hint(tier, &known, "tiers")),
                );
            }
            stripe_prices.insert(price.clone(), tier.clone());
        }
        stripe_new_tenant.clone_from(&stripe.new_tenant);
    }
    let shared = spec.shared.as_ref().and_then(|shared| {
        if !hosts.contains_key(&shared.host) && is_dns_label(&shared.host) {
            let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
            cx.error(
                parsed,
                "berth::unknown-reference",
                &["shared", "host"],
                format!(
                    "shared services use unknown host `{}`",
                    printable(&shared.host)
                ),
                "no such host",
                Some(reference_hint(&shared.host, &known, "hosts")),
            );
        }
        let host = hosts.get(&shared.host);
        let cxs = StackCx {
            owner: SHARED_STACK_ID,
            environment_domain: None,
            tier: None,
            secrets: &secrets,
            host,
            base: &["shared"],
        };
        check_stack(cx, parsed, &cxs, &shared.apps, &shared.services).map(|stack| Stack {
            host: Some(shared.host.clone()),
            ..stack
        })
    });
    // The environment is kept even with errors, so tenants referencing it do not cascade
    // into more errors; the fleet is not returned anyway when any error exists.
    Some(Environment {
        name: name.to_string(),
        domain: spec.domain.clone(),
        hosts,
        tiers,
        dokku_app_template,
        policy,
        secrets,
        stripe_prices,
        stripe_new_tenant,
        shared,
    })
}

fn parse_days(text: &str) -> Option<u32> {
    text.strip_suffix('d')?.parse().ok()
}

fn check_host(
    cx: &mut Cx,
    parsed: &Parsed<'_, EnvironmentSpec>,
    name: &str,
    host: &HostSpec,
) -> Option<Host> {
    let base = ["hosts", name];
    let target = match (&host.dokku, &host.docker) {
        (Some(dokku), None) => {
            let ssh = parse_ssh(&dokku.ssh);
            if ssh.is_none() {
                cx.error(
                    parsed,
                    "berth::invalid-ssh",
                    &["hosts", name, "dokku", "ssh"],
                    format!("`{}` is not an SSH address", printable(&dokku.ssh)),
                    "expected `user@host[:port]`",
                    Some("write it as `dokku@10.0.0.5:22`".into()),
                );
            }
            if !is_host_key(&dokku.host_key) {
                cx.error(
                    parsed,
                    "berth::invalid-host-key",
                    &["hosts", name, "dokku", "host-key"],
                    "host key is not a public key line".into(),
                    "expected `ssh-ed25519 AAAA…`",
                    Some(
                        "copy the server's key from `ssh-keyscan -t ed25519 <host>` (type and base64)"
                            .into(),
                    ),
                );
            }
            if let Some(identity) = &dokku.identity
                && identity.chars().any(char::is_control)
            {
                cx.error(
                    parsed,
                    "berth::invalid-path",
                    &["hosts", name, "dokku", "identity"],
                    "identity path contains control characters".into(),
                    "invalid path",
                    None,
                );
            }
            let (user, address, port) = ssh?;
            HostTarget::Dokku(DokkuTarget {
                user,
                address,
                port,
                host_key: dokku.host_key.trim().to_string(),
                identity: dokku.identity.clone(),
                timeout_secs: dokku.timeout.unwrap_or(120),
            })
        }
        (None, Some(docker)) => {
            let ok = ["unix:///", "tcp://", "ssh://", "http://", "https://"]
                .iter()
                .any(|scheme| docker.endpoint.starts_with(scheme))
                && !docker
                    .endpoint
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                cx.error(
                    parsed,
                    "berth::invalid-endpoint",
                    &["hosts", name, "docker", "endpoint"],
                    format!("`{}` is not a Docker endpoint", printable(&docker.endpoint)),
                    "unknown scheme",
                    Some(
                        "use `unix:///var/run/docker.sock`, `tcp://host:2375` or `ssh://user@host`"
                            .into(),
                    ),
                );
            }
            HostTarget::Docker {
                endpoint: docker.endpoint.clone(),
            }
        }
        (Some(_), Some(_)) => {
            cx.error(
                parsed,
                "berth::host-kind",
                &base,
                format!("host `{name}` sets both `dokku` and `docker`"),
                "pick one",
                Some("a host is either a Dokku server or a Docker Engine".into()),
            );
            return None;
        }
        (None, None) => {
            cx.error(
                parsed,
                "berth::host-kind",
                &base,
                format!("host `{name}` says neither `dokku` nor `docker`"),
                "how is it reached?",
                Some(
                    "add `dokku: {{ ssh: …, host-key: … }}` or `docker: {{ endpoint: … }}`".into(),
                ),
            );
            return None;
        }
    };
    let ports = host.ports.as_ref().and_then(|range| {
        let parsed_range = parse_port_range(range);
        if parsed_range.is_none() {
            cx.error(
                parsed,
                "berth::invalid-port-range",
                &["hosts", name, "ports"],
                format!("`{}` is not a port range", printable(range)),
                "expected `20000-29999`",
                Some("write `low-high` with 1 <= low <= high <= 65535".into()),
            );
        }
        parsed_range
    });
    if ports.is_some() && matches!(target, HostTarget::Dokku(_)) {
        cx.error(
            parsed,
            "berth::not-for-dokku",
            &["hosts", name, "ports"],
            "`ports` applies to Docker hosts only".into(),
            "Dokku routes through its proxy",
            None,
        );
    }
    let subnets = host.subnets.as_ref().and_then(|cidr| {
        let block = parse_cidr(cidr).filter(|(_, prefix)| *prefix <= 24);
        if block.is_none() {
            cx.error(
                parsed,
                "berth::invalid-subnets",
                &["hosts", name, "subnets"],
                format!(
                    "`{}` is not an IPv4 block of /24 or larger",
                    printable(cidr)
                ),
                "expected e.g. `10.200.0.0/16`",
                Some("tenant networks get one /24 each from this block".into()),
            );
        }
        block
    });
    Some(Host {
        name: name.to_string(),
        target,
        capacity: host.capacity,
        ports,
        proxy: host.proxy.unwrap_or(ProxyKind::Traefik),
        subnets,
    })
}

fn parse_ssh(text: &str) -> Option<(String, String, u16)> {
    let (user, rest) = text.split_once('@')?;
    let user_ok = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !user.starts_with('-');
    if !user_ok {
        return None;
    }
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) => (address, port.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => (rest, 22),
    };
    let address_ok = is_hostname(address)
        || address.parse::<std::net::Ipv4Addr>().is_ok()
        || address
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    address_ok.then(|| (user.to_string(), address.to_string(), port))
}

fn is_host_key(text: &str) -> bool {
    let mut parts = text.split_whitespace();
    let (Some(kind), Some(key)) = (parts.next(), parts.next()) else {
        return false;
    };
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    ];
    known.contains(&kind)
        && key.len() >= 16
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        && !text.contains(['\n', '\r'])
}

/// `10.200.0.0/16` → (base address, prefix), the base aligned to the prefix.
fn parse_cidr(text: &str) -> Option<(u32, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let base = u32::from(addr);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (base & mask == base).then_some((base, prefix))
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    (low >= 1 && low <= high).then_some((low, high))
}

// === Tenant ===

fn check_tenant(
    cx: &mut Cx,
    parsed: &Parsed<'_, TenantSpec>,
    environments: &BTreeMap<String, Environment>,
) -> Option<Tenant> {
    let spec = &parsed.spec;
    let before = cx.diags.len();
    check_version(cx, parsed, spec.version);
    let stem = parsed.file.stem();
    let id = spec.id.clone().unwrap_or_else(|| stem.to_string());
    if !is_dns_label(&id) {
        let path: &[&str] = if spec.id.is_some() { &["id"] } else { &[] };
        cx.push(
            Diagnostic::error(
                "berth::invalid-name",
                format!("tenant id `{}` is not a valid name", printable(&id)),
                cx.loc(parsed, path, "not a DNS label"),
            )
            .with_hint(
                "tenant ids reach remote commands and container names: use 1-63 lowercase letters, digits and `-`",
            ),
        );
    } else if id == SHARED_STACK_ID {
        cx.error(
            parsed,
            "berth::reserved-name",
            &["id"],
            format!("tenant id `{SHARED_STACK_ID}` is reserved for shared services"),
            "reserved",
            Some("choose another id".into()),
        );
    }
    if spec.id.is_some() && id != stem && is_dns_label(&id) {
        cx.push(
            Diagnostic::error(
                "berth::stem-mismatch",
                format!(
                    "tenant id `{}` does not match the file name `{}`",
                    printable(&id),
                    parsed.file.path
                ),
                cx.loc(parsed, &["id"], "differs from the file stem"),
            )
            .with_hint(format!(
                "rename the file to `tenants/{}.yaml` or set `id: {}`",
                printable(&id),
                printable(stem)
            )),
        );
    }
    let environment = environments.get(&spec.environment);
    if environment.is_none() {
        let known: Vec<&str> = environments.keys().map(String::as_str).collect();
        cx.error(
            parsed,
            "berth::unknown-reference",
            &["environment"],
            format!("unknown environment `{}`", printable(&spec.environment)),
            "no such environment",
            Some(reference_hint(&spec.environment, &known, "environments")),
        );
    }
    let mut tier = None;
    if let (Some(tier_name), Some(env)) = (&spec.tier, environment) {
        tier = env.tiers.get(tier_name);
        if tier.is_none() {
            let known: Vec<&str> = env.tiers.keys().map(String::as_str).collect();
            cx.error(
                parsed,
                "berth::unknown-reference",
                &["tier"],
                format!(
                    "unknown tier `{}` in environment `{}`",
                    printable(tier_name),
                    env.name
                ),
                "no such tier",
                Some(reference_hint(tier_name, &known, "tiers")),
            );
        }
    }
    let mut host = None;
    if let (Some(host_name), Some(env)) = (&spec.host, environment) {
        host = env.hosts.get(host_name);
        if host.is_none() {
            let known: Vec<&str> = env.hosts.keys().map(String::as_str).collect();
            cx.error(
                parsed,
                "berth::unknown-reference",
                &["host"],
                format!(
                    "unknown host `{}` in environment `{}`",
                    printable(host_name),
                    env.name
                ),
                "no such host",
                Some(reference_hint(host_name, &known, "hosts")),
            );
        }
    }
    // The host the tenant will be on, when it is already known: pinned, or the only one.
    let placed = host.or_else(|| {
        environment.and_then(|env| {
            (env.hosts.len() == 1)
                .then(|| env.hosts.values().next())
                .flatten()
        })
    });
    let secrets = environment.map(|e| e.secrets.clone()).unwrap_or_default();
    let default_domain = environment
        .and_then(|e| e.domain.as_ref())
        .map(|d| format!("{id}.{d}"));
    let stack_cx = StackCx {
        owner: &id,
        environment_domain: default_domain.as_deref(),
        tier,
        secrets: &secrets,
        host: placed,
        base: &[],
    };
    let stack = check_stack(cx, parsed, &stack_cx, &spec.apps, &spec.services);
    let failed = cx.diags[before..]
        .iter()
        .any(|d| d.severity == Severity::Error);
    if failed || environment.is_none() {
        return None;
    }
    Some(Tenant {
        id,
        file: parsed.file.path.clone(),
        name: spec.name.clone(),
        environment: spec.environment.clone(),
        tier: spec.tier.clone(),
        state: spec.state.unwrap_or(TenantState::Active),
        host: spec.host.clone(),
        stack: Stack {
            host: spec.host.clone(),
            ..stack?
        },
        billing: spec.billing.clone(),
    })
}

fn reference_hint(name: &str, known: &[&str], what: &str) -> String {
    match did_you_mean(name, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => format!("no {what} are defined"),
        None => format!("defined {what}: {}", ticked(known)),
    }
}

/// What checking a stack needs to know about its owner.
struct StackCx<'a> {
    owner: &'a str,
    environment_domain: Option<&'a str>,
    tier: Option<&'a Tier>,
    secrets: &'a Secrets,
    host: Option<&'a Host>,
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
        matches!(self.host.map(|h| &h.target), Some(HostTarget::Dokku(_)))
    }
}

fn check_stack<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    scx: &StackCx<'_>,
    apps: &BTreeMap<String, AppSpec>,
    services: &BTreeMap<String, ServiceSpec>,
) -> Option<Stack> {
    let before = cx.diags.len();
    let mut out = Stack::default();
    for (name, service) in services {
        let path = scx.path(&["services", name]);
        if !is_dns_label(name) {
            cx.name_error(parsed, &path, "service name", name);
            continue;
        }
        if apps.contains_key(name) {
            cx.error(
                parsed,
                "berth::duplicate-name",
                &path,
                format!("`{name}` names both an app and a service"),
                "also an app",
                Some("apps and services share one namespace per tenant".into()),
            );
        }
        if let Some(service) = check_service(cx, parsed, scx, name, service) {
            out.services.insert(name.clone(), service);
        }
    }
    for (name, app) in apps {
        let path = scx.path(&["apps", name]);
        if !is_dns_label(name) {
            cx.name_error(parsed, &path, "app name", name);
            continue;
        }
        if let Some(app) = check_app(cx, parsed, scx, name, app, services) {
            out.apps.insert(name.clone(), app);
        }
    }
    let failed = cx.diags[before..]
        .iter()
        .any(|d| d.severity == Severity::Error);
    (!failed).then_some(out)
}

fn check_app<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    scx: &StackCx<'_>,
    name: &str,
    spec: &AppSpec,
    services: &BTreeMap<String, ServiceSpec>,
) -> Option<App> {
    let at = |rest: &[&str]| -> Vec<String> {
        scx.path(&["apps", name])
            .into_iter()
            .chain(rest.iter().copied())
            .map(str::to_string)
            .collect()
    };
    check_image(cx, parsed, &strs(&at(&["image"])), &spec.image);
    let processes = spec
        .processes
        .clone()
        .or_else(|| {
            (name == "web")
                .then(|| scx.tier.map(|t| t.processes.clone()))
                .flatten()
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| BTreeMap::from([("web".to_string(), 1)]));
    for process in processes.keys() {
        check_process_name(cx, parsed, &strs(&at(&["processes", process])), process);
    }
    for process in spec.commands.keys() {
        if !processes.contains_key(process) {
            cx.error(
                parsed,
                "berth::unknown-reference",
                &strs(&at(&["commands", process])),
                format!("command for unknown process type `{}`", printable(process)),
                "not in `processes`",
                Some(format!(
                    "process types of this app: {}",
                    ticked(&processes.keys().map(String::as_str).collect::<Vec<_>>())
                )),
            );
        }
    }
    let domains = match &spec.domains {
        Some(domains) => domains.clone(),
        None if name == "web" => scx
            .environment_domain
            .map(str::to_string)
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    if let Some(listed) = &spec.domains {
        for (i, domain) in listed.iter().enumerate() {
            if !is_hostname(domain) {
                cx.error(
                    parsed,
                    "berth::invalid-domain",
                    &strs(&at(&["domains", &i.to_string()])),
                    format!("`{}` is not a valid domain", printable(domain)),
                    "invalid domain",
                    Some("domains are lowercase DNS names such as `acme.example.app`".into()),
                );
            }
        }
    }
    let tls = spec.tls.unwrap_or(false);
    if tls && domains.is_empty() {
        cx.error(
            parsed,
            "berth::tls-without-domain",
            &strs(&at(&["tls"])),
            "`tls: true` needs at least one domain".into(),
            "no domain to certify",
            Some("list `domains:` or set the environment's `domain:`".into()),
        );
    }
    let health = spec
        .health
        .as_ref()
        .and_then(|h| check_health(cx, parsed, &strs(&at(&["health"])), h));
    let env = check_env(cx, parsed, scx, &at(&["env"]), &spec.env);
    for (i, used) in spec.uses.iter().enumerate() {
        if !services.contains_key(used) {
            let known: Vec<&str> = services.keys().map(String::as_str).collect();
            cx.error(
                parsed,
                "berth::unknown-reference",
                &strs(&at(&["uses", &i.to_string()])),
                format!("app `{name}` uses unknown service `{}`", printable(used)),
                "no such service",
                Some(reference_hint(used, &known, "services")),
            );
        }
    }
    for (key, link_key) in [
        ("DATABASE_URL", ServiceKind::Postgres),
        ("REDIS_URL", ServiceKind::Redis),
    ] {
        let linked = spec
            .uses
            .iter()
            .any(|u| services.get(u).is_some_and(|s| s.kind == link_key));
        if linked && spec.env.contains_key(key) {
            cx.error(
                parsed,
                "berth::reserved-env",
                &strs(&at(&["env", key])),
                format!("`{key}` is set by the service link"),
                "set by `uses`",
                Some(format!("remove `{key}`: linking the service provides it")),
            );
        }
    }
    let ports = check_ports(cx, parsed, scx, &at(&["ports"]), &spec.ports);
    let memory = check_memory(cx, parsed, &strs(&at(&["memory"])), spec.memory.as_deref())
        .or(scx.tier.and_then(|t| t.memory));
    check_cpus(cx, parsed, &strs(&at(&["cpus"])), spec.cpus);
    let storage = check_storage(cx, parsed, &at(&["storage"]), &spec.storage);
    if scx.on_dokku() {
        let name_len = scx.owner.len() + 1 + name.len();
        if name_len > 63 {
            cx.error(
                parsed,
                "berth::name-too-long",
                &strs(&at(&[])),
                format!(
                    "Dokku app name `{}-{name}` is longer than 63 characters",
                    scx.owner
                ),
                "too long",
                Some("shorten the tenant id or the app name".into()),
            );
        }
    }
    Some(App {
        name: name.to_string(),
        image: spec.image.clone(),
        processes,
        command: spec.command.clone(),
        commands: spec.commands.clone(),
        domains,
        tls,
        health,
        env,
        uses: spec.uses.clone(),
        ports,
        port: spec.port,
        memory,
        cpus: spec.cpus.or(scx.tier.and_then(|t| t.cpus)),
        storage,
        restart: spec.restart.unwrap_or(RestartPolicy::UnlessStopped),
    })
}

fn check_service<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    scx: &StackCx<'_>,
    name: &str,
    spec: &ServiceSpec,
) -> Option<Service> {
    let at = |rest: &[&str]| -> Vec<String> {
        scx.path(&["services", name])
            .into_iter()
            .chain(rest.iter().copied())
            .map(str::to_string)
            .collect()
    };
    let image = match (&spec.image, spec.kind) {
        (Some(image), _) => {
            check_image(cx, parsed, &strs(&at(&["image"])), image);
            image.clone()
        }
        (None, ServiceKind::Postgres) => "postgres:16".into(),
        (None, ServiceKind::Redis) => "redis:7".into(),
        (None, ServiceKind::Container) => {
            cx.error(
                parsed,
                "berth::missing-key",
                &strs(&at(&["kind"])),
                format!("service `{name}` of kind `container` needs `image`"),
                "which image?",
                Some("add `image: <reference>`".into()),
            );
            String::new()
        }
    };
    if spec.kind == ServiceKind::Container && scx.on_dokku() {
        cx.error(
            parsed,
            "berth::not-for-dokku",
            &strs(&at(&["kind"])),
            "service kind `container` needs a Docker host".into(),
            "Dokku has no generic service",
            Some("Dokku hosts run `postgres` and `redis` through their plugins".into()),
        );
    }
    let health = spec
        .health
        .as_ref()
        .and_then(|h| check_health(cx, parsed, &strs(&at(&["health"])), h));
    let env = check_env(cx, parsed, scx, &at(&["env"]), &spec.env);
    let ports = check_ports(cx, parsed, scx, &at(&["ports"]), &spec.ports);
    let memory = check_memory(cx, parsed, &strs(&at(&["memory"])), spec.memory.as_deref());
    check_cpus(cx, parsed, &strs(&at(&["cpus"])), spec.cpus);
    let mut storage = check_storage(cx, parsed, &at(&["storage"]), &spec.storage);
    if storage.is_empty() {
        match spec.kind {
            ServiceKind::Postgres => storage.push(Storage {
                volume: format!("{name}-data"),
                path: "/var/lib/postgresql/data".into(),
            }),
            ServiceKind::Redis => storage.push(Storage {
                volume: format!("{name}-data"),
                path: "/data".into(),
            }),
            ServiceKind::Container => {}
        }
    }
    Some(Service {
        name: name.to_string(),
        kind: spec.kind,
        image,
        command: spec.command.clone(),
        env,
        memory,
        cpus: spec.cpus,
        health,
        ports,
        storage,
    })
}

fn check_image<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[&str], image: &str) {
    let ok = !image.is_empty()
        && image.len() <= 255
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b))
        && image.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        cx.error(
            parsed,
            "berth::invalid-image",
            path,
            format!("`{}` is not an image reference", printable(image)),
            "invalid image",
            Some("an image is `[registry/]name[:tag][@sha256:digest]`".into()),
        );
    }
}

fn check_process_name<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[&str], name: &str) {
    if !is_dns_label(name) {
        cx.name_error(parsed, path, "process type", name);
    }
}

fn check_memory<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    path: &[&str],
    memory: Option<&str>,
) -> Option<u64> {
    let memory = memory?;
    let bytes = parse_memory(memory);
    if bytes.is_none() {
        cx.error(
            parsed,
            "berth::invalid-memory",
            path,
            format!("`{}` is not a memory size", printable(memory)),
            "expected e.g. `512M`",
            Some("write a number followed by `K`, `M` or `G`".into()),
        );
    }
    bytes
}

fn check_cpus<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[&str], cpus: Option<f64>) {
    if let Some(cpus) = cpus
        && !(cpus > 0.0 && cpus <= 1024.0)
    {
        cx.error(
            parsed,
            "berth::invalid-cpus",
            path,
            format!("{cpus} is not a CPU limit"),
            "out of range",
            Some("cpus is a positive number of cores, e.g. `0.5`".into()),
        );
    }
}

fn check_health<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    path: &[&str],
    spec: &HealthSpec,
) -> Option<Health> {
    if let Some(probe) = &spec.path {
        let ok = probe.starts_with('/') && probe.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            let mut p = path.to_vec();
            p.push("path");
            cx.error(
                parsed,
                "berth::invalid-health",
                &p,
                format!("health path `{}` is not a URL path", printable(probe)),
                "expected `/health`",
                None,
            );
        }
    }
    if spec.path.is_none() && spec.command.is_none() {
        cx.error(
            parsed,
            "berth::invalid-health",
            path,
            "a health check needs `path` or `command`".into(),
            "what to probe?",
            None,
        );
        return None;
    }
    Some(Health {
        path: spec.path.clone(),
        command: spec.command.clone(),
        interval: spec.interval.unwrap_or(10),
        timeout: spec.timeout.unwrap_or(5),
        retries: spec.retries.unwrap_or(3),
    })
}

fn check_env<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    scx: &StackCx<'_>,
    base: &[String],
    env: &BTreeMap<String, EnvValueSpec>,
) -> BTreeMap<String, EnvValue> {
    let mut out = BTreeMap::new();
    for (key, value) in env {
        let path: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(key.as_str()))
            .collect();
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && key.len() <= 128;
        if !key_ok {
            cx.push(
                Diagnostic::error(
                    "berth::invalid-env-key",
                    format!("`{}` is not an environment variable name", printable(key)),
                    cx.key_loc(parsed, &path, "invalid name"),
                )
                .with_hint("env names are letters, digits and `_`, not starting with a digit"),
            );
            continue;
        }
        if key.starts_with("DOKKU_")
            || key == "GIT_REV"
            || key == "NO_VHOST"
            || key.starts_with("BERTH_")
        {
            cx.push(
                Diagnostic::error(
                    "berth::reserved-env",
                    format!("`{key}` is managed by Dokku or berth"),
                    cx.key_loc(parsed, &path, "reserved name"),
                )
                .with_hint("remove it; `DOKKU_*`, `BERTH_*`, `GIT_REV` and `NO_VHOST` are not yours to set"),
            );
            continue;
        }
        let value = match value {
            EnvValueSpec::Literal(text) => EnvValue::Literal(text.clone()),
            EnvValueSpec::Generate(g) => {
                if !(8..=256).contains(&g.generate) {
                    let mut p = path.clone();
                    p.push("generate");
                    cx.error(
                        parsed,
                        "berth::invalid-generate",
                        &p,
                        format!(
                            "generated secrets are 8 to 256 characters, not {}",
                            g.generate
                        ),
                        "out of range",
                        Some("32 is a good length".into()),
                    );
                }
                EnvValue::Generate { length: g.generate }
            }
            EnvValueSpec::Secret(s) => {
                if !scx.secrets.names.contains(&s.secret) {
                    let mut p = path.clone();
                    p.push("secret");
                    let known: Vec<&str> = scx.secrets.names.iter().map(String::as_str).collect();
                    let hint = if scx.secrets.provider.is_none() {
                        "the environment declares no `secrets:`; add a provider and `names:`"
                            .to_string()
                    } else {
                        reference_hint(&s.secret, &known, "secrets")
                    };
                    cx.error(
                        parsed,
                        "berth::unknown-reference",
                        &p,
                        format!("unknown secret `{}`", printable(&s.secret)),
                        "not declared in the environment",
                        Some(hint),
                    );
                }
                EnvValue::Secret {
                    name: s.secret.clone(),
                }
            }
        };
        out.insert(key.clone(), value);
    }
    out
}

fn check_ports<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    scx: &StackCx<'_>,
    base: &[String],
    ports: &[PortSpec],
) -> Vec<Port> {
    let mut out = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let index = i.to_string();
        let path: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(index.as_str()))
            .collect();
        if scx.on_dokku() {
            cx.error(
                parsed,
                "berth::not-for-dokku",
                &path,
                "published `ports` apply to Docker hosts only".into(),
                "on a Dokku host",
                Some("Dokku routes domains through its proxy; remove `ports`".into()),
            );
            continue;
        }
        if port.container == 0 {
            let mut p = path.clone();
            p.push("container");
            cx.error(
                parsed,
                "berth::invalid-port",
                &p,
                "port 0 is not a port".into(),
                "invalid",
                None,
            );
        }
        if let (Some(host_port), Some(host)) = (port.host, scx.host)
            && let Some((low, high)) = host.ports
            && !(low..=high).contains(&host_port)
        {
            let mut p = path.clone();
            p.push("host");
            cx.error(
                parsed,
                "berth::port-out-of-range",
                &p,
                format!(
                    "host port {host_port} is outside host `{}`'s range {low}-{high}",
                    host.name
                ),
                "outside the range",
                Some("omit `host:` to let berth allocate one".into()),
            );
        }
        if let Some(0) = port.host {
            let mut p = path.clone();
            p.push("host");
            cx.error(
                parsed,
                "berth::invalid-port",
                &p,
                "port 0 is not a port".into(),
                "invalid",
                None,
            );
        }
        out.push(Port {
            container: port.container,
            host: port.host,
        });
    }
    out
}

fn check_storage<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    base: &[String],
    storage: &[StorageSpec],
) -> Vec<Storage> {
    let mut out = Vec::new();
    for (i, mount) in storage.iter().enumerate() {
        let index = i.to_string();
        let path: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(index.as_str()))
            .collect();
        if !is_dns_label(&mount.volume) {
            let mut p = path.clone();
            p.push("volume");
            cx.name_error(parsed, &p, "volume name", &mount.volume);
        }
        let path_ok = mount.path.starts_with('/')
            && mount
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
            && !mount.path.split('/').any(|part| part == "..");
        if !path_ok {
            let mut p = path.clone();
            p.push("path");
            cx.error(
                parsed,
                "berth::invalid-path",
                &p,
                format!("`{}` is not an absolute mount path", printable(&mount.path)),
                "invalid path",
                Some("mount paths are absolute, without `..`, spaces or quotes".into()),
            );
        }
        out.push(Storage {
            volume: mount.volume.clone(),
            path: mount.path.clone(),
        });
    }
    out
}

// === Across files ===

/// Where a claimed name was claimed.
struct Claim {
    location: Location,
    owner: String,
}

fn check_cross_file(
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
fn claim_stack<T>(
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

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidr_blocks() {
        assert_eq!(parse_cidr("10.200.0.0/16"), Some((0x0ac8_0000, 16)));
        assert_eq!(parse_cidr("10.200.1.0/16"), None, "not aligned");
        assert_eq!(parse_cidr("10.200.0.0"), None);
        assert_eq!(parse_cidr("300.1.1.1/8"), None);
    }
}
