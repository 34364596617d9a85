//! Validation of the fields of apps and services, shared by tenant stacks and an
//! environment's shared services: images, process names, memory and CPU, health checks, env
//! values, ports and storage.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_app<T>(
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
    let total: usize = spec
        .env
        .iter()
        .map(|(k, v)| {
            k.len()
                + 1
                + match v {
                    EnvValueSpec::Literal(text) => text.len(),
                    EnvValueSpec::Generate(g) => g.generate as usize,
                    EnvValueSpec::Secret(_) => 0,
                }
        })
        .sum();
    if total > crate::model::ENV_TOTAL_MAX {
        cx.error(
            parsed,
            "berth::env-too-large",
            &strs(&at(&["env"])),
            format!(
                "app `{name}`'s env totals {total} bytes, over berth's limit of {} (1 MiB)",
                crate::model::ENV_TOTAL_MAX
            ),
            "too large",
            Some(
                "Linux limits one program's arguments and environment to 2 MiB (ARG_MAX with \
                 the default stack), and the app's whole env is handed to the processes \
                 Dokku and Docker start; move large values to storage"
                    .into(),
            ),
        );
    }
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
    if spec.port == Some(0) {
        cx.error(
            parsed,
            "berth::invalid-port",
            &strs(&at(&["port"])),
            "port 0 is not a port".into(),
            "invalid",
            None,
        );
    }
    if scx.on_dokku() {
        refuse_app_keys_on_dokku(cx, parsed, &at(&[]), spec);
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
        restart: spec.restart,
        pull: spec.pull.unwrap_or_default(),
    })
}

/// A key a Dokku host cannot carry out: refused, with what to do instead.
fn refuse_on_dokku<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[String], key: &str, hint: &str) {
    let at: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(key))
        .collect();
    cx.push(
        Diagnostic::error(
            "berth::not-for-dokku",
            format!("`{key}` does nothing on a Dokku host"),
            cx.key_loc(parsed, &at, "on a Dokku host"),
        )
        .with_hint(hint),
    );
}

/// The app keys that are Docker-only: Dokku has no command for them (reference/dokku.md
/// §6.1, §10), so accepting them would do nothing.
fn refuse_app_keys_on_dokku<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    path: &[String],
    spec: &AppSpec,
) {
    let procfile = "Dokku runs the image's CMD, or the process types of a `Procfile` in the \
                    image's WORKDIR (reference/dokku.md §6.1): put the command in the image";
    if spec.command.is_some() {
        refuse_on_dokku(cx, parsed, path, "command", procfile);
    }
    if !spec.commands.is_empty() {
        refuse_on_dokku(cx, parsed, path, "commands", procfile);
    }
    if spec.health.is_some() {
        refuse_on_dokku(
            cx,
            parsed,
            path,
            "health",
            "Dokku reads health checks only from the image's `app.json` `healthchecks` \
             (reference/dokku.md §10, no command sets them): add them there",
        );
    }
    if spec.pull.is_some_and(|p| p != PullPolicy::Missing) {
        refuse_on_dokku(
            cx,
            parsed,
            path,
            "pull",
            "`git:from-image` pulls an image the host does not have and no other way \
             (reference/dokku.md §6.1); deploy by digest to roll a moved tag out",
        );
    }
}

/// The service keys the Dokku postgres and redis plugins do not take from berth: they run
/// the service container themselves (reference/dokku.md §12).
fn refuse_service_keys_on_dokku<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    path: &[String],
    spec: &ServiceSpec,
) {
    let plugin = "on Dokku the postgres/redis plugin runs the service; berth sets only `kind` \
                  and `image` (reference/dokku.md §12)";
    let given = [
        ("command", spec.command.is_some()),
        ("env", !spec.env.is_empty()),
        ("memory", spec.memory.is_some()),
        ("cpus", spec.cpus.is_some()),
        ("health", spec.health.is_some()),
        ("storage", !spec.storage.is_empty()),
        ("pull", spec.pull.is_some()),
    ];
    for (key, present) in given {
        if present {
            refuse_on_dokku(cx, parsed, path, key, plugin);
        }
    }
}

pub(super) fn check_service<T>(
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
    if scx.on_dokku() {
        refuse_service_keys_on_dokku(cx, parsed, &at(&[]), spec);
    }
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
        pull: spec.pull.unwrap_or_default(),
    })
}

pub(super) fn check_image<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[&str], image: &str) {
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

pub(super) fn check_process_name<T>(
    cx: &mut Cx,
    parsed: &Parsed<'_, T>,
    path: &[&str],
    name: &str,
) {
    if !is_dns_label(name) {
        cx.name_error(parsed, path, "process type", name);
    }
}

pub(super) fn check_memory<T>(
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

pub(super) fn check_cpus<T>(cx: &mut Cx, parsed: &Parsed<'_, T>, path: &[&str], cpus: Option<f64>) {
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

pub(super) fn check_health<T>(
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
        port: spec.port,
        command: spec.command.clone(),
        interval: spec.interval.unwrap_or(10),
        timeout: spec.timeout.unwrap_or(5),
        retries: spec.retries.unwrap_or(3),
    })
}

pub(super) fn check_env<T>(
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
            EnvValueSpec::Literal(text) if text.len() > crate::model::ENV_VALUE_MAX => {
                cx.error(
                    parsed,
                    "berth::value-too-large",
                    &path,
                    format!(
                        "the value of `{key}` is {} bytes, over berth's limit of {} (64 KiB)",
                        text.len(),
                        crate::model::ENV_VALUE_MAX
                    ),
                    "too large",
                    Some(
                        "Linux refuses a single argument or env entry over 128 KiB \
                         (MAX_ARG_STRLEN); keep large data in storage or an image and put \
                         its path here"
                            .into(),
                    ),
                );
                continue;
            }
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

pub(super) fn check_ports<T>(
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

pub(super) fn check_storage<T>(
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
