//! Validation layer 2 for environment files: hosts (SSH targets, pinned host keys, Docker
//! endpoints, port ranges, subnets), tiers, policy, secrets, the Stripe price map and shared
//! services.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_environment(
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
        secrets.vault = check_vault(cx, parsed, s);
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
            dokku: host.is_some_and(|h| matches!(h.target, HostTarget::Dokku(_))),
            base: &["shared"],
        };
        check_stack(cx, parsed, &cxs, &shared.apps, &shared.services).map(|stack| Stack {
            host: Some(shared.host.clone()),
            ..stack
        })
    });
    let mut registries = BTreeMap::new();
    for (server, registry) in &spec.registries {
        let host_part = server.split(':').next().unwrap_or_default();
        let port_ok = server
            .split_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !(is_hostname(host_part) || host_part.parse::<std::net::Ipv4Addr>().is_ok()) || !port_ok
        {
            let diag = Diagnostic::error(
                "berth::invalid-registry",
                format!("`{}` is not a registry server", printable(server)),
                cx.key_loc(
                    parsed,
                    &["registries", server],
                    "expected `host` or `host:port`",
                ),
            );
            cx.push(diag);
            continue;
        }
        if !secrets.names.contains(&registry.password_secret) {
            let known: Vec<&str> = secrets.names.iter().map(String::as_str).collect();
            cx.error(
                parsed,
                "berth::unknown-secret",
                &["registries", server, "password-secret"],
                format!(
                    "registry `{server}` uses secret `{}`, which `secrets.names` does not list",
                    printable(&registry.password_secret)
                ),
                "not a declared secret",
                Some(reference_hint(
                    &registry.password_secret,
                    &known,
                    "secrets.names",
                )),
            );
        }
        registries.insert(
            server.clone(),
            crate::model::Registry {
                username: registry.username.clone(),
                password_secret: registry.password_secret.clone(),
            },
        );
    }
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
        registries,
    })
}

/// `secrets.vault` for provider `vault` (and nowhere else).
fn check_vault(
    cx: &mut Cx,
    parsed: &Parsed<'_, EnvironmentSpec>,
    s: &spec::SecretsSpec,
) -> Option<crate::model::Vault> {
    use crate::model::{Vault, VaultAuth};
    let Some(v) = &s.vault else {
        if s.provider == spec::SecretProviderKind::Vault {
            cx.error(
                parsed,
                "berth::missing-key",
                &["secrets"],
                "secret provider `vault` needs `vault:`".into(),
                "no `vault`",
                Some(
                    "add `vault: { address: https://vault.example.net:8200, path: berth/prod }`"
                        .into(),
                ),
            );
        }
        return None;
    };
    if s.provider != spec::SecretProviderKind::Vault {
        cx.error(
            parsed,
            "berth::schema",
            &["secrets", "vault"],
            "`vault:` is only read with `provider: vault`".into(),
            "unused",
            Some("set `provider: vault`, or remove this block".into()),
        );
    }
    let address = v.address.trim_end_matches('/').to_string();
    let loopback = ["http://127.", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| address.starts_with(p));
    if !(address.starts_with("https://") || loopback) || address.contains(char::is_whitespace) {
        cx.error(
            parsed,
            "berth::invalid-address",
            &["secrets", "vault", "address"],
            format!(
                "`{}` is not a Vault address berth will send tokens to",
                printable(&address)
            ),
            "expected https:// (or http:// on loopback)",
            Some("tokens travel to this address: use https, or http only to 127.0.0.1".into()),
        );
    }
    let segment_ok = |p: &str| {
        !p.is_empty()
            && p.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
    };
    let mount = v.mount.clone().unwrap_or_else(|| "secret".into());
    for (field, value) in [("path", v.path.as_str()), ("mount", mount.as_str())] {
        if !segment_ok(value) {
            cx.error(
                parsed,
                "berth::invalid-name",
                &["secrets", "vault", field],
                format!(
                    "Vault {field} `{}` is not a path of plain names",
                    printable(value)
                ),
                "invalid path",
                Some("use names of letters, digits, `-`, `_`, `.` separated by `/`".into()),
            );
        }
    }
    let auth = match v.auth.unwrap_or(spec::VaultAuthKind::Token) {
        spec::VaultAuthKind::Token => VaultAuth::Token {
            env: v.token_env.clone().unwrap_or_else(|| "VAULT_TOKEN".into()),
        },
        spec::VaultAuthKind::Approle => {
            let (Some(role), Some(secret)) = (&v.role_id_env, &v.secret_id_env) else {
                cx.error(
                    parsed,
                    "berth::missing-key",
                    &["secrets", "vault", "auth"],
                    "`auth: approle` needs `role-id-env` and `secret-id-env`".into(),
                    "where are the role id and the secret id?",
                    Some("name the environment variables that hold them".into()),
                );
                return None;
            };
            VaultAuth::Approle {
                role_id_env: role.clone(),
                secret_id_env: secret.clone(),
                mount: v.approle_mount.clone().unwrap_or_else(|| "approle".into()),
            }
        }
    };
    Some(Vault {
        address,
        mount,
        path: v.path.trim_matches('/').to_string(),
        auth,
    })
}

pub(super) fn parse_days(text: &str) -> Option<u32> {
    text.strip_suffix('d')?.parse().ok()
}

pub(super) fn check_host(
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
            if docker.timeout == Some(0) {
                cx.error(
                    parsed,
                    "berth::invalid-timeout",
                    &["hosts", name, "docker", "timeout"],
                    "a timeout of 0 s fails every Engine call".into(),
                    "zero",
                    Some("leave it out for the default (120 s), or give seconds".into()),
                );
            }
            HostTarget::Docker {
                endpoint: docker.endpoint.clone(),
                timeout_secs: docker.timeout.unwrap_or(120),
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
        if let Some((low, high)) = parsed_range
            && low <= EPHEMERAL.1
            && high >= EPHEMERAL.0
        {
            let diag = Diagnostic::error(
                "berth::ephemeral-ports",
                format!(
                    "port range `{low}-{high}` overlaps Linux's ephemeral ports ({}-{})",
                    EPHEMERAL.0, EPHEMERAL.1
                ),
                cx.loc(parsed, &["hosts", name, "ports"], "may collide with outgoing connections"),
            )
            .with_hint(
                "the kernel hands these ports to outgoing connections, so a published port can be taken at random; use a range below 32768 (or change net.ipv4.ip_local_port_range on the host)",
            )
            .warning();
            cx.push(diag);
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
    let caddy = host.caddy.as_ref().and_then(|c| {
        let admin = c.admin.trim_end_matches('/').to_string();
        let loopback = admin.strip_prefix("http://").is_some_and(|rest| {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority.split(':').next().unwrap_or_default(),
            };
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if !(admin.starts_with("https://") || loopback) || admin.contains(char::is_whitespace) {
            cx.error(
                parsed,
                "berth::invalid-address",
                &["hosts", name, "caddy", "admin"],
                format!(
                    "`{}` is not an admin endpoint berth will use",
                    printable(&admin)
                ),
                "expected http://127.0.0.1:2019 (or https)",
                Some("Caddy's admin API changes its whole config: keep it on loopback".into()),
            );
            return None;
        }
        if matches!(target, HostTarget::Dokku(_)) {
            cx.error(
                parsed,
                "berth::not-for-dokku",
                &["hosts", name, "caddy"],
                "`caddy` routes apply to Docker hosts only".into(),
                "Dokku routes through its own proxy",
                None,
            );
            return None;
        }
        let server = c.server.clone().unwrap_or_else(|| "berth".into());
        if !is_dns_label(&server) {
            cx.name_error(
                parsed,
                &["hosts", name, "caddy", "server"],
                "Caddy server",
                &server,
            );
            return None;
        }
        Some(crate::model::Caddy {
            admin,
            server,
            listen: c.listen.clone().unwrap_or_else(|| ":80".into()),
        })
    });
    Some(Host {
        name: name.to_string(),
        target,
        capacity: host.capacity,
        ports,
        proxy: host.proxy.unwrap_or(ProxyKind::Traefik),
        subnets,
        caddy,
    })
}

pub(super) fn parse_ssh(text: &str) -> Option<(String, String, u16)> {
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

pub(super) fn is_host_key(text: &str) -> bool {
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
pub(super) fn parse_cidr(text: &str) -> Option<(u32, u8)> {
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

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL: (u16, u16) = (32768, 60999);

pub(super) fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    (low >= 1 && low <= high).then_some((low, high))
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
