//! Compiling a stack for a Docker host: a private network per tenant, named volumes, one
//! container per service and per process replica, with compose labels, link env (the
//! database URL built from the service's generated password at apply time), health checks
//! and proxy labels.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::BTreeMap;

use super::{
    ConfigValue, Container, ContainerHealth, ContainerSpec, DesiredHost, HEALTH_LABEL,
    LABEL_PREFIX, Network, Probe, PublishedPort, Route, SecretKey, Volume, container_name,
    secret_volume_name,
};
use crate::model::{
    App, EnvValue, Environment, Health, ProxyKind, RestartPolicy, Service, ServiceKind, Stack,
};

pub(super) fn add_docker_stack(
    dh: &mut DesiredHost,
    env: &Environment,
    tenant: &str,
    stack: &Stack,
    running: bool,
) {
    let network = format!("{tenant}_net");
    let host_name = dh.name.clone();
    let publishes = stack
        .apps
        .values()
        .any(|a| !a.ports.is_empty() || !a.domains.is_empty())
        || stack.services.values().any(|s| !s.ports.is_empty());
    let base_labels = |role: &str| {
        let mut labels = BTreeMap::new();
        labels.insert(format!("{LABEL_PREFIX}managed"), "true".to_string());
        labels.insert(format!("{LABEL_PREFIX}tenant"), tenant.to_string());
        labels.insert(format!("{LABEL_PREFIX}environment"), env.name.clone());
        labels.insert(format!("{LABEL_PREFIX}host"), host_name.clone());
        labels.insert(format!("{LABEL_PREFIX}role"), role.to_string());
        labels.insert("com.docker.compose.project".to_string(), tenant.to_string());
        labels
    };
    let proxy = dh.proxy;
    dh.networks.insert(
        network.clone(),
        Network {
            tenant: tenant.to_string(),
            internal: !publishes,
            labels: base_labels("network"),
        },
    );
    let mut volumes: BTreeMap<String, Volume> = BTreeMap::new();
    let mut volume = |name: &str| {
        let full = format!("{tenant}_{name}");
        volumes.insert(
            full.clone(),
            Volume {
                tenant: tenant.to_string(),
                labels: base_labels("volume"),
                secret: None,
            },
        );
        full
    };
    // Generated values live in secret volumes, one per app or service and key: made once,
    // shared by every replica, removed only with the tenant's data.
    let mut secrets: BTreeMap<String, Volume> = BTreeMap::new();
    let mut keep = |owner: &str, env: &mut BTreeMap<String, ConfigValue>| {
        for (key, value) in env.iter_mut() {
            if let ConfigValue::Generate { length } = value {
                let name = secret_volume_name(owner, key);
                let mut labels = base_labels("secret");
                labels.insert(format!("{LABEL_PREFIX}secret-key"), key.clone());
                secrets.insert(
                    name.clone(),
                    Volume {
                        tenant: tenant.to_string(),
                        labels,
                        secret: Some(SecretKey {
                            key: key.clone(),
                            length: *length,
                        }),
                    },
                );
                *value = ConfigValue::Kept { volume: name };
            }
        }
    };
    let mut containers = Vec::new();
    for service in stack.services.values() {
        let name = format!("{tenant}-{}", service.name);
        let mounts = service
            .storage
            .iter()
            .map(|s| (volume(&s.volume), s.path.clone()))
            .collect();
        let mut env_map: BTreeMap<String, ConfigValue> = service
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.into()))
            .collect();
        if service.kind == ServiceKind::Postgres {
            env_map
                .entry("POSTGRES_PASSWORD".into())
                .or_insert(ConfigValue::Generate { length: 32 });
            env_map
                .entry("POSTGRES_DB".into())
                .or_insert_with(|| ConfigValue::literal(db_name(tenant)));
        }
        keep(&name, &mut env_map);
        let mut labels = base_labels("service");
        labels.insert(format!("{LABEL_PREFIX}service"), service.name.clone());
        labels.insert("com.docker.compose.service".into(), service.name.clone());
        labels.insert("com.docker.compose.container-number".into(), "1".into());
        labels.insert("com.docker.compose.oneoff".into(), "False".into());
        let spec = ContainerSpec {
            name: name.clone(),
            image: service.image.clone(),
            command: service.command.clone(),
            env: env_map,
            ports: service
                .ports
                .iter()
                .map(|p| PublishedPort {
                    container: p.container,
                    host: p.host,
                })
                .collect(),
            memory: service.memory,
            nano_cpus: service.cpus.map(nano_cpus),
            restart: RestartPolicy::UnlessStopped,
            health: service.health.as_ref().map(|h| container_health(h, None)),
            network: network.clone(),
            aliases: vec![service.name.clone()],
            mounts,
            labels,
        };
        containers.push(Container {
            tenant: tenant.to_string(),
            running,
            pull: service.pull,
            depends_on: Vec::new(),
            spec,
        });
    }
    for app in stack.apps.values() {
        let (mut env_map, depends_on) = app_env(tenant, app, stack);
        keep(&format!("{tenant}-{}", app.name), &mut env_map);
        let mounts: Vec<(String, String)> = app
            .storage
            .iter()
            .map(|s| (volume(&s.volume), s.path.clone()))
            .collect();
        for (process, count) in &app.processes {
            for n in 1..=*count {
                let name = container_name(tenant, &app.name, process, n);
                let mut labels = base_labels("app");
                labels.insert(format!("{LABEL_PREFIX}app"), app.name.clone());
                labels.insert(format!("{LABEL_PREFIX}process"), process.clone());
                labels.insert(format!("{LABEL_PREFIX}replica"), n.to_string());
                let service_label = if process == "web" {
                    app.name.clone()
                } else {
                    format!("{}-{process}", app.name)
                };
                labels.insert("com.docker.compose.service".into(), service_label.clone());
                labels.insert("com.docker.compose.container-number".into(), n.to_string());
                labels.insert("com.docker.compose.oneoff".into(), "False".into());
                if process == "web" && !app.domains.is_empty() && !dh.caddy {
                    proxy_labels(&mut labels, proxy, tenant, app, &network);
                }
                let command = app
                    .commands
                    .get(process)
                    .cloned()
                    .or_else(|| app.command.clone());
                let ports = if process == "web" {
                    app.ports
                        .iter()
                        .map(|p| PublishedPort {
                            container: p.container,
                            // A fixed host port can serve one replica only.
                            host: if n == 1 { p.host } else { None },
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let spec = ContainerSpec {
                    name: name.clone(),
                    image: app.image.clone(),
                    command,
                    env: env_map.clone(),
                    ports,
                    memory: app.memory,
                    nano_cpus: app.cpus.map(nano_cpus),
                    restart: app.restart.unwrap_or(RestartPolicy::UnlessStopped),
                    health: if process == "web" {
                        app.health.as_ref().map(|h| container_health(h, app.port))
                    } else {
                        None
                    },
                    network: network.clone(),
                    aliases: if n == 1 {
                        vec![service_label]
                    } else {
                        Vec::new()
                    },
                    mounts: mounts.clone(),
                    labels,
                };
                containers.push(Container {
                    tenant: tenant.to_string(),
                    running,
                    pull: app.pull,
                    depends_on: depends_on.clone(),
                    spec,
                });
            }
        }
    }
    if dh.caddy {
        for app in stack.apps.values() {
            let upstreams: Vec<String> = containers
                .iter()
                .filter(|c| {
                    c.running
                        && c.spec.labels.get(&format!("{LABEL_PREFIX}app")) == Some(&app.name)
                        && c.spec.labels.get(&format!("{LABEL_PREFIX}process"))
                            == Some(&"web".to_string())
                })
                .map(|c| c.spec.name.clone())
                .collect();
            if app.domains.is_empty() || upstreams.is_empty() {
                continue;
            }
            dh.routes.insert(
                format!("{tenant}.{}", app.name),
                Route {
                    tenant: tenant.to_string(),
                    hosts: app.domains.clone(),
                    upstreams,
                    port: app.port.unwrap_or(8080),
                },
            );
        }
    }
    for mut container in containers {
        if let Some(health) = &container.spec.health {
            let json = serde_json::to_string(health).unwrap_or_default();
            container.spec.labels.insert(HEALTH_LABEL.to_string(), json);
        }
        dh.containers.insert(container.spec.name.clone(), container);
    }
    dh.volumes.extend(volumes);
    dh.volumes.extend(secrets);
}

pub fn db_name(tenant: &str) -> String {
    tenant.replace('-', "_")
}

pub fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

pub(super) fn app_env(
    tenant: &str,
    app: &App,
    stack: &Stack,
) -> (BTreeMap<String, ConfigValue>, Vec<String>) {
    let mut env: BTreeMap<String, ConfigValue> =
        app.env.iter().map(|(k, v)| (k.clone(), v.into())).collect();
    let mut depends_on = Vec::new();
    for used in &app.uses {
        let Some(service) = stack.services.get(used) else {
            continue;
        };
        let container = format!("{tenant}-{}", service.name);
        depends_on.push(container.clone());
        let link = link_env(tenant, service, &container);
        for (key, value) in link {
            env.entry(key).or_insert(value);
        }
    }
    (env, depends_on)
}

/// The env a link to `service` gives an app: `DATABASE_URL` / `REDIS_URL` on the private
/// network, the password taken at apply time from where the service's own value lives (its
/// secret volume, or the secret provider).
pub(super) fn link_env(
    tenant: &str,
    service: &Service,
    container: &str,
) -> Vec<(String, ConfigValue)> {
    let alias = &service.name;
    match service.kind {
        ServiceKind::Postgres => {
            let db = match service.env.get("POSTGRES_DB") {
                Some(EnvValue::Literal(db)) => db.clone(),
                _ => db_name(tenant),
            };
            let template = format!("postgres://postgres:{{value}}@{alias}:5432/{db}");
            let value = match service.env.get("POSTGRES_PASSWORD") {
                Some(EnvValue::Literal(pw)) => {
                    ConfigValue::literal(template.replace("{value}", pw))
                }
                Some(EnvValue::Secret { name }) => ConfigValue::Derived {
                    template,
                    from: Box::new(ConfigValue::Secret { name: name.clone() }),
                },
                _ => ConfigValue::Derived {
                    template,
                    from: Box::new(ConfigValue::Kept {
                        volume: secret_volume_name(container, "POSTGRES_PASSWORD"),
                    }),
                },
            };
            vec![(url_key("DATABASE", alias, service.kind), value)]
        }
        ServiceKind::Redis => vec![(
            url_key("REDIS", alias, service.kind),
            ConfigValue::literal(format!("redis://{alias}:6379")),
        )],
        ServiceKind::Container => Vec::new(),
    }
}

/// `DATABASE_URL` for a service called `db` (or of the kind's usual names), else
/// `<NAME>_URL` so two databases of one tenant do not collide.
pub fn url_key(default: &str, alias: &str, kind: ServiceKind) -> String {
    let usual = match kind {
        ServiceKind::Postgres => ["db", "postgres", "database"].contains(&alias),
        ServiceKind::Redis => ["cache", "redis"].contains(&alias),
        ServiceKind::Container => false,
    };
    if usual {
        format!("{default}_URL")
    } else {
        format!("{}_URL", alias.to_uppercase().replace('-', "_"))
    }
}

/// The container's health check: berth's own HTTP probe for `path`, Docker's exec check for
/// `command`.
pub(super) fn container_health(health: &Health, app_port: Option<u16>) -> ContainerHealth {
    let probe = match (&health.command, &health.path) {
        (Some(command), _) => Probe::Command {
            test: std::iter::once("CMD".to_string())
                .chain(command.iter().cloned())
                .collect(),
        },
        (None, path) => Probe::Http {
            path: path.clone().unwrap_or_else(|| "/".into()),
            port: health.port.or(app_port).unwrap_or(8080),
        },
    };
    ContainerHealth {
        probe,
        interval: health.interval,
        timeout: health.timeout,
        retries: health.retries,
    }
}

/// The certificate resolver berth's Traefik labels name for `tls: true`.
pub const TRAEFIK_CERT_RESOLVER: &str = "letsencrypt";

/// The routing labels berth gives an app's `web` containers on a host that routes by
/// labels (`proxy:`); `berth import` reads them back to compare with a script's.
pub fn proxy_labels(
    labels: &mut BTreeMap<String, String>,
    proxy: ProxyKind,
    tenant: &str,
    app: &App,
    network: &str,
) {
    let router = format!("{tenant}-{}", app.name);
    let port = app.port.unwrap_or(8080);
    match proxy {
        ProxyKind::Traefik => {
            let rule = app
                .domains
                .iter()
                .map(|d| format!("Host(`{d}`)"))
                .collect::<Vec<_>>()
                .join(" || ");
            labels.insert("traefik.enable".into(), "true".into());
            labels.insert(format!("traefik.http.routers.{router}.rule"), rule);
            labels.insert(
                format!("traefik.http.services.{router}.loadbalancer.server.port"),
                port.to_string(),
            );
            labels.insert("traefik.docker.network".into(), network.to_string());
            if app.tls {
                labels.insert(
                    format!("traefik.http.routers.{router}.tls.certresolver"),
                    TRAEFIK_CERT_RESOLVER.into(),
                );
            }
        }
        ProxyKind::Caddy => {
            labels.insert("caddy".into(), app.domains.join(" "));
            labels.insert(
                "caddy.reverse_proxy".into(),
                format!("{{{{upstreams {port}}}}}"),
            );
        }
    }
}
