//! Compiling a stack for a Dokku host: one app per tenant app (config with berth's markers,
//! domains, formation, limits, storage, links) and one service per Postgres/Redis.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::BTreeMap;

use super::{
    BERTH_TENANT_KEY, ConfigValue, DesiredHost, DokkuApp, DokkuService, RegistryLogin,
    dokku_app_name, short_hash,
};
use crate::model::live::service_key;
use crate::model::{Environment, RestartPolicy, Stack};

pub(super) fn add_dokku_stack(
    dh: &mut DesiredHost,
    env: &Environment,
    tenant: &str,
    stack: &Stack,
    running: bool,
) {
    for service in stack.services.values() {
        let name = format!("{tenant}-{}", service.name);
        dh.dokku_services.insert(
            service_key(service.kind, &name),
            DokkuService {
                tenant: tenant.to_string(),
                kind: service.kind,
                name,
                image: service.image.clone(),
            },
        );
    }
    for app in stack.apps.values() {
        let name = dokku_app_name(&env.dokku_app_template, tenant, &app.name);
        let mut config: BTreeMap<String, ConfigValue> =
            app.env.iter().map(|(k, v)| (k.clone(), v.into())).collect();
        config.insert(BERTH_TENANT_KEY.into(), ConfigValue::literal(tenant));
        let processes = app
            .processes
            .iter()
            .map(|(p, n)| (p.clone(), if running { *n } else { 0 }))
            .collect();
        let links = app
            .uses
            .iter()
            .filter_map(|u| stack.services.get(u))
            .map(|s| service_key(s.kind, &format!("{tenant}-{}", s.name)))
            .collect();
        let storage = app
            .storage
            .iter()
            .map(|s| format!("/var/lib/dokku/data/storage/{name}-{}:{}", s.volume, s.path))
            .collect();
        let mut spec = DokkuApp {
            tenant: tenant.to_string(),
            app: app.name.clone(),
            config,
            domains: app.domains.clone(),
            processes,
            image: app.image.clone(),
            memory: app.memory.map(dokku_memory),
            cpus: app.cpus.map(format_cpus),
            storage,
            tls: app.tls,
            links,
            ports: app.port.map(|p| port_map(p, app.tls)).unwrap_or_default(),
            restart: app.restart.map(|r| restart_policy(r).to_string()),
            spec_hash: String::new(),
            registry: None,
        };
        spec.spec_hash = short_hash(&serde_json::to_vec(&spec).unwrap_or_default());
        // After hashing: credentials are no part of what the app runs.
        spec.registry = crate::model::registry_of(&app.image)
            .and_then(|server| env.registries.get_key_value(server))
            .map(|(server, r)| RegistryLogin {
                server: server.clone(),
                username: r.username.clone(),
                password_secret: r.password_secret.clone(),
            });
        dh.dokku_apps.insert(name, spec);
    }
}

/// `ports:set` mappings routing the proxy to `port` (reference/dokku.md §11.1): HTTP on 80,
/// and HTTPS on 443 when the app has a certificate.
fn port_map(port: u16, tls: bool) -> Vec<String> {
    let mut map = vec![format!("http:80:{port}")];
    if tls {
        map.push(format!("https:443:{port}"));
    }
    map
}

/// The `ps:set <app> restart-policy` word for a policy (reference/dokku.md §5.2).
fn restart_policy(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::No => "no",
        RestartPolicy::Always => "always",
        RestartPolicy::UnlessStopped => "unless-stopped",
        RestartPolicy::OnFailure => "on-failure",
    }
}

/// Dokku stores limits verbatim; berth writes megabytes with Dokku's `m` suffix.
pub(super) fn dokku_memory(bytes: u64) -> String {
    format!("{}m", bytes.div_ceil(1 << 20))
}

pub(super) fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
