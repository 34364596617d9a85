//! Diffing one Dokku host: apps, config, domains, formation, image, limits, storage, services,
//! links, TLS.
//!
//! Order within an app follows what Dokku needs and what keeps restarts to one: create the
//! app, set config (`--no-restart`, one batch), domains, links (`--no-restart`), storage and
//! limits, then either deploy the image or restart once, then scale, then TLS.

use std::collections::{BTreeMap, BTreeSet};

use super::{Cause, Change, ConfigChange, HostCx, OldValue, RefusalRule};
use crate::model::TenantState;
use crate::model::desired::{BERTH_SPEC_KEY, BERTH_TENANT_KEY, ConfigValue, DokkuApp};
use crate::model::live::LiveDokkuApp;

/// Whether Dokku (not berth, not the user) owns this config key: such keys are never drift.
#[must_use]
pub fn dokku_managed_key(key: &str) -> bool {
    key == "GIT_REV"
        || key == "NO_VHOST"
        || key == "DATABASE_URL"
        || key == "REDIS_URL"
        || key.starts_with("DOKKU_")
}

/// Whether a live object's environment marker says another environment owns it.
fn theirs(cx: &HostCx<'_>, environment: Option<&str>) -> bool {
    environment.is_some_and(|e| e != cx.host.environment)
}

/// Whether berth may remove (or warn about) an object nothing desires: it is marked as this
/// environment's, or it predates markers and no other environment uses the host.
fn removable(cx: &HostCx<'_>, environment: Option<&str>) -> bool {
    match environment {
        Some(e) => e == cx.host.environment,
        None => cx.live.dokku.shared_with.is_empty(),
    }
}

pub(super) fn diff(cx: &mut HostCx<'_>) {
    let live = &cx.live.dokku;
    let desired = cx.desired;
    // Services first: apps link to them.
    let mut service_steps: BTreeMap<String, u32> = BTreeMap::new();
    for (key, service) in &desired.dokku_services {
        match live.services.get(key) {
            None => {
                let cause = cause_missing(
                    cx.baseline
                        .is_some_and(|b| b.dokku_services.get(key) == Some(service)),
                );
                let id = cx.step(
                    &service.tenant,
                    cause,
                    Change::CreateService {
                        service_kind: service.kind,
                        service: service.name.clone(),
                        image: service.image.clone(),
                    },
                    Vec::new(),
                );
                service_steps.insert(key.clone(), id);
            }
            Some(l) if l.owner.as_deref() != Some(service.tenant.as_str()) => {
                let whose = owner_words(cx, l.owner.as_deref(), l.environment.as_deref());
                cx.refuse(
                    &service.tenant,
                    RefusalRule::NameConflict,
                    format!(
                        "service `{key}` on host `{}` exists but {whose}; berth will not take it over",
                        cx.host,
                    ),
                );
            }
            Some(l) => {
                // Recorded before environment markers: mark it now (bookkeeping).
                if l.environment.is_none() {
                    cx.step(
                        &service.tenant,
                        Cause::Intended,
                        Change::MarkService {
                            service_kind: service.kind,
                            service: service.name.clone(),
                        },
                        Vec::new(),
                    );
                }
                if let Some(before) = l.image.as_deref()
                    && !same_image(&service.image, before)
                {
                    upgrade_service(cx, key, service, before, &mut service_steps);
                }
            }
        }
    }
    let mut destroyed_apps: Vec<(String, u32)> = Vec::new();
    for (name, app) in &desired.dokku_apps {
        match live.apps.get(name) {
            Some(l)
                if l.owner.is_none() && !theirs(cx, l.environment.as_deref()) && adoptable(l) =>
            {
                // `apps:create` succeeded but berth stopped before writing its marker: the
                // app is empty and was never deployed, so finishing the job is safe.
                cx.warn(
                    Some(&app.tenant),
                    format!(
                        "app `{name}` exists without berth's marker but is empty; berth adopts it"
                    ),
                );
                diff_app(cx, name, app, Some(l), &service_steps);
            }
            Some(l)
                if l.owner.as_deref() != Some(app.tenant.as_str())
                    || theirs(cx, l.environment.as_deref()) =>
            {
                let whose = owner_words(cx, l.owner.as_deref(), l.environment.as_deref());
                cx.refuse(
                    &app.tenant,
                    RefusalRule::NameConflict,
                    format!(
                        "Dokku app `{name}` on host `{}` exists but {whose}; berth will not take it over",
                        cx.host,
                    ),
                );
            }
            l => diff_app(cx, name, app, l, &service_steps),
        }
    }
    // Apps berth manages that nothing desires any more.
    for (name, l) in &live.apps {
        let Some(owner) = &l.owner else { continue };
        if desired.dokku_apps.contains_key(name) {
            continue;
        }
        if !removable(cx, l.environment.as_deref()) {
            cx.warn(
                Some(owner),
                format!(
                    "app `{name}` (tenant `{owner}`) carries no environment marker and environment(s) `{}` also use host `{}`: berth leaves it alone; apply from the environment it belongs to, or remove it by hand",
                    shared_words(cx),
                    cx.host
                ),
            );
            continue;
        }
        let id = cx.step(
            owner,
            Cause::Intended,
            Change::DestroyApp { app: name.clone() },
            Vec::new(),
        );
        destroyed_apps.push((name.clone(), id));
    }
    // Services berth manages that nothing desires: data, so only purge removes them.
    for (key, l) in &live.services {
        let Some(owner) = &l.owner else { continue };
        if desired.dokku_services.contains_key(key) || !removable(cx, l.environment.as_deref()) {
            continue;
        }
        if cx.tenant_state(owner) == Some(TenantState::Purge) {
            // Dokku refuses to destroy a linked service; destroying the apps unlinks them.
            let after = destroyed_apps
                .iter()
                .filter(|(app, _)| l.links.contains(app))
                .map(|(_, id)| *id)
                .collect();
            cx.step(
                owner,
                Cause::Intended,
                Change::DestroyService {
                    service_kind: l.kind,
                    service: l.name.clone(),
                },
                after,
            );
        } else {
            let why = match cx.tenant_state(owner) {
                None => format!("tenant `{owner}` has no file any more"),
                Some(_) => format!("tenant `{owner}` no longer lists it"),
            };
            cx.warn(
                Some(owner),
                format!("{key} is kept: {why}; its data is only removed by `state: purge`"),
            );
        }
    }
}

/// Whether a service runs the image the files name: a reference without a tag means the
/// plugin's default version, whichever it is.
fn same_image(desired: &str, live: &str) -> bool {
    let tagged = |i: &str| {
        i.rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .is_some()
    };
    if tagged(desired) {
        desired == live
    } else {
        live.rsplit_once(':').map_or(live, |(repo, _)| repo) == desired
    }
}

/// A service whose image changed in the files: an upgrade step, refused without
/// `--allow-service-upgrades`; apps linked to it restart after it (their `--link` points
/// at the recreated container).
fn upgrade_service(
    cx: &mut HostCx<'_>,
    key: &str,
    service: &crate::model::desired::DokkuService,
    before: &str,
    service_steps: &mut BTreeMap<String, u32>,
) {
    let kind = crate::model::live::service_kind_word(service.kind);
    if !cx.allow_upgrades {
        cx.builder.refuse(
            RefusalRule::ServiceUpgrade,
            format!(
                "{kind} service `{}` on host `{}` would move from `{before}` to `{}` through `{kind}:upgrade`; the data directory is kept, but a new Postgres major version cannot read an older one's files without a dump and restore: back the data up, then apply with the override",
                service.name, cx.host, service.image
            ),
            Some("--allow-service-upgrades".into()),
        );
    }
    let id = cx.step(
        &service.tenant,
        Cause::Intended,
        Change::UpgradeService {
            service_kind: service.kind,
            service: service.name.clone(),
            image: service.image.clone(),
            before: before.to_string(),
        },
        Vec::new(),
    );
    service_steps.insert(key.to_string(), id);
    let linked: Vec<String> = cx
        .live
        .dokku
        .services
        .get(key)
        .map(|s| s.links.clone())
        .unwrap_or_default();
    for app in linked {
        let own_deployed = cx.live.dokku.apps.get(&app).is_some_and(|a| {
            a.image.is_some() && a.owner.as_deref() == Some(service.tenant.as_str())
        });
        if own_deployed {
            cx.step(
                &service.tenant,
                Cause::Intended,
                Change::Restart { app },
                vec![id],
            );
        }
    }
}

/// An app a crashed run created and never configured: no user config, never deployed.
fn adoptable(app: &LiveDokkuApp) -> bool {
    app.image.is_none() && app.config.keys().all(|k| dokku_managed_key(k))
}

fn owner_words(cx: &HostCx<'_>, owner: Option<&str>, environment: Option<&str>) -> String {
    match (owner, environment) {
        (_, Some(e)) if e != cx.host.environment => format!(
            "belongs to environment `{e}`; hint: environments sharing a Dokku host need distinct names (`naming.dokku-app`, tenant ids)"
        ),
        (None, _) => "berth does not manage it".to_string(),
        (Some(other), _) => format!("belongs to tenant `{other}`"),
    }
}

fn shared_words(cx: &HostCx<'_>) -> String {
    let names: Vec<&str> = cx
        .live
        .dokku
        .shared_with
        .iter()
        .map(String::as_str)
        .collect();
    names.join("`, `")
}

fn cause_missing(in_baseline: bool) -> Cause {
    if in_baseline {
        Cause::Drift
    } else {
        Cause::Intended
    }
}

#[allow(clippy::too_many_lines)]
fn diff_app(
    cx: &mut HostCx<'_>,
    name: &str,
    app: &DokkuApp,
    live: Option<&LiveDokkuApp>,
    service_steps: &BTreeMap<String, u32>,
) {
    let tenant = app.tenant.as_str();
    let first_step = cx.builder.steps.len();
    let recorded = live.and_then(|l| {
        l.spec_hash
            .as_deref()
            .or_else(|| l.config.get(BERTH_SPEC_KEY).map(|v| v.0.as_str()))
    });
    let in_baseline = cx
        .baseline
        .and_then(|b| b.dokku_apps.get(name))
        .is_some_and(|b| b.spec_hash == app.spec_hash);
    // Drift: berth applied exactly this spec before (recorded on the app or in the
    // baseline), so any difference now is the host's doing.
    let cause = if recorded == Some(app.spec_hash.as_str()) || in_baseline {
        Cause::Drift
    } else {
        Cause::Intended
    };
    // A new app starts as Dokku leaves it after `apps:create`: `web=1`, default vhosts.
    let empty = LiveDokkuApp {
        processes: BTreeMap::from([("web".to_string(), 1)]),
        domains: cx
            .live
            .dokku
            .global_domains
            .iter()
            .map(|g| format!("{name}.{g}"))
            .collect(),
        ..LiveDokkuApp::default()
    };
    let (l, created) = match live {
        Some(l) => (l, None),
        None => {
            let id = cx.step(
                tenant,
                cause_missing(in_baseline),
                Change::CreateApp {
                    app: name.to_string(),
                },
                Vec::new(),
            );
            (&empty, Some(id))
        }
    };
    // Made before environment markers (or adopted after a crash): mark it (bookkeeping).
    if live.is_some_and(|l| l.environment.is_none()) {
        cx.step(
            tenant,
            Cause::Intended,
            Change::LabelApp {
                app: name.to_string(),
            },
            Vec::new(),
        );
    }
    let base: Vec<u32> = created.into_iter().collect();
    let cause = if created.is_some() {
        cause_missing(in_baseline)
    } else {
        cause
    };
    let mut prepared: Vec<u32> = base.clone();
    let mut needs_restart = false;

    // Config: one batch, no restart. A shallow app (confirmed by its spec label in a fast
    // observation) was not read: its config is what berth applied.
    let mut changes = Vec::new();
    for (key, value) in app.config.iter().filter(|_| !l.shallow) {
        let old = l.config.get(key);
        let differs = match (value, old) {
            (ConfigValue::Literal { value }, Some(old)) => &old.0 != value,
            (_, None) => true,
            // A referenced secret whose provider now holds another value: rotated.
            (ConfigValue::Secret { name }, Some(old)) => cx
                .live
                .secret_digests
                .get(name)
                .is_some_and(|d| *d != crate::model::secret_digest(name, &old.0)),
            // Generated secrets are kept once present.
            (_, Some(_)) => false,
        };
        if differs {
            let old = match old {
                None => OldValue::Absent,
                Some(v) => OldValue::Present {
                    value: matches!(value, ConfigValue::Literal { .. }).then(|| v.0.clone()),
                },
            };
            if key != BERTH_TENANT_KEY {
                needs_restart = true;
            }
            changes.push(ConfigChange {
                key: key.clone(),
                new: value.clone(),
                old,
            });
        }
    }
    let only_markers = changes.iter().all(|c| c.key == BERTH_TENANT_KEY);
    if !changes.is_empty() {
        // A changed marker alone is bookkeeping of an intended change, never drift.
        let step_cause = if only_markers && created.is_none() {
            Cause::Intended
        } else {
            cause
        };
        let id = cx.step(
            tenant,
            step_cause,
            Change::SetConfig {
                app: name.to_string(),
                changes,
            },
            base.clone(),
        );
        prepared.push(id);
    }
    let unset: Vec<String> = l
        .config
        .keys()
        .filter(|_| !l.shallow)
        .filter(|k| !app.config.contains_key(*k) && !dokku_managed_key(k) && *k != BERTH_SPEC_KEY)
        .cloned()
        .collect();
    if !unset.is_empty() {
        needs_restart = true;
        let id = cx.step(
            tenant,
            cause,
            Change::UnsetConfig {
                app: name.to_string(),
                keys: unset,
            },
            base.clone(),
        );
        prepared.push(id);
    }

    // Domains: the default vhost is Dokku's, not drift, when the files list none.
    let defaults: BTreeSet<String> = cx
        .live
        .dokku
        .global_domains
        .iter()
        .map(|g| format!("{name}.{g}"))
        .collect();
    let live_domains: BTreeSet<&String> = l.domains.iter().collect();
    let want: BTreeSet<&String> = app.domains.iter().collect();
    let domains_ok = if app.domains.is_empty() {
        live_domains.iter().all(|d| defaults.contains(*d))
    } else {
        live_domains == want
    };
    if !domains_ok {
        let id = cx.step(
            tenant,
            cause,
            Change::SetDomains {
                app: name.to_string(),
                domains: app.domains.clone(),
                before: l.domains.clone(),
            },
            base.clone(),
        );
        prepared.push(id);
    }

    // Port map (from `port:`): replaced as a whole; nginx reloads, no restart. Without
    // `port:` the map is Dokku's and Let's Encrypt's (reference/dokku.md §11.1, §13).
    if !app.ports.is_empty() {
        let live_map: BTreeSet<&String> = l.ports.iter().collect();
        if live_map != app.ports.iter().collect() {
            let id = cx.step(
                tenant,
                cause,
                Change::SetPorts {
                    app: name.to_string(),
                    ports: app.ports.clone(),
                    before: l.ports.clone(),
                },
                base.clone(),
            );
            prepared.push(id);
        }
    }
    // Restart policy: a property read at container creation (reference/dokku.md §5.2).
    if l.restart_policy != app.restart {
        let id = cx.step(
            tenant,
            cause,
            Change::SetRestartPolicy {
                app: name.to_string(),
                policy: app.restart.clone(),
                before: l.restart_policy.clone(),
            },
            base.clone(),
        );
        needs_restart = true;
        prepared.push(id);
    }

    // Links: desired ones missing, and managed links to this app nobody wants.
    for key in &app.links {
        let Some(service) = cx.desired.dokku_services.get(key) else {
            continue;
        };
        let live_service = cx.live.dokku.services.get(key);
        let linked = live_service.is_some_and(|s| s.links.iter().any(|a| a == name));
        let broken = live_service.is_some_and(|s| s.broken_links.iter().any(|a| a == name));
        if linked && broken {
            // Only the default alias is known for sure: with one service of its kind the
            // link's key is `DATABASE_URL` / `REDIS_URL` (reference/dokku.md §12).
            let same_kind = app
                .links
                .iter()
                .filter_map(|k| cx.desired.dokku_services.get(k))
                .filter(|s| s.kind == service.kind)
                .count();
            let key = (same_kind == 1)
                .then(|| crate::model::live::link_env_key(service.kind))
                .flatten()
                .map(str::to_string);
            let id = cx.step(
                tenant,
                cause,
                Change::RelinkService {
                    service_kind: service.kind,
                    service: service.name.clone(),
                    app: name.to_string(),
                    key,
                },
                base.clone(),
            );
            needs_restart = true;
            prepared.push(id);
        }
        if !linked {
            let mut after = base.clone();
            after.extend(service_steps.get(key).copied());
            let id = cx.step(
                tenant,
                cause,
                Change::LinkService {
                    service_kind: service.kind,
                    service: service.name.clone(),
                    app: name.to_string(),
                },
                after,
            );
            needs_restart = true;
            prepared.push(id);
        }
    }
    for (key, service) in &cx.live.dokku.services {
        if service.owner.is_none() || !service.links.iter().any(|a| a == name) {
            continue;
        }
        if !app.links.contains(key) {
            let id = cx.step(
                tenant,
                cause,
                Change::UnlinkService {
                    service_kind: service.kind,
                    service: service.name.clone(),
                    app: name.to_string(),
                },
                base.clone(),
            );
            needs_restart = true;
            prepared.push(id);
        }
    }

    // Storage and limits apply at the next container creation.
    for mount in &app.storage {
        if !l.storage.contains(mount) {
            let id = cx.step(
                tenant,
                cause,
                Change::MountStorage {
                    app: name.to_string(),
                    mount: mount.clone(),
                },
                base.clone(),
            );
            needs_restart = true;
            prepared.push(id);
        }
    }
    for mount in &l.storage {
        if !app.storage.contains(mount) {
            let id = cx.step(
                tenant,
                cause,
                Change::UnmountStorage {
                    app: name.to_string(),
                    mount: mount.clone(),
                },
                base.clone(),
            );
            needs_restart = true;
            prepared.push(id);
        }
    }
    if l.memory != app.memory || l.cpus != app.cpus {
        let id = cx.step(
            tenant,
            cause,
            Change::SetLimits {
                app: name.to_string(),
                memory: app.memory.clone(),
                cpus: app.cpus.clone(),
                before_memory: l.memory.clone(),
                before_cpus: l.cpus.clone(),
            },
            base.clone(),
        );
        needs_restart = true;
        prepared.push(id);
    }

    // Deploy or restart, once.
    let mut rolled = prepared.clone();
    if l.image.as_deref() != Some(app.image.as_str()) {
        // Only beside a deploy: a login matters to the pull `git:from-image` makes, and
        // Dokku reports no logins, so one planned on its own would be planned forever.
        let mut before_deploy = prepared.clone();
        if let Some(login) = &app.registry {
            let id = cx.step(
                tenant,
                cause,
                Change::LoginRegistry {
                    app: name.to_string(),
                    server: login.server.clone(),
                    username: login.username.clone(),
                    password_secret: login.password_secret.clone(),
                },
                base.clone(),
            );
            before_deploy.push(id);
        }
        let id = cx.step(
            tenant,
            cause,
            Change::DeployImage {
                app: name.to_string(),
                image: app.image.clone(),
                before: l.image.clone(),
            },
            before_deploy,
        );
        if let Some(step) = cx.builder.steps.get_mut(id as usize) {
            step.notes.extend(health_notes(app));
        }
        rolled = vec![id];
    } else if needs_restart && l.image.is_some() {
        let id = cx.step(
            tenant,
            cause,
            Change::Restart {
                app: name.to_string(),
            },
            prepared.clone(),
        );
        rolled = vec![id];
    }

    // Stopped by hand (`ps:stop`, reference/dokku.md §5.2: `running` false, `restore`
    // false) while its formation says it runs: start it, after any deploy or restart.
    let should_run = app.processes.values().any(|n| *n > 0)
        && (l.shallow || l.processes.values().any(|n| *n > 0));
    if l.image.is_some() && l.running == Some(false) && should_run {
        let id = cx.step(
            tenant,
            cause,
            Change::StartApp {
                app: name.to_string(),
            },
            rolled.clone(),
        );
        rolled = vec![id];
    }

    // Formation: process types missing from the live report count as zero.
    let formation_ok = l.shallow
        || app
            .processes
            .iter()
            .all(|(p, n)| l.processes.get(p).copied().unwrap_or(0) == *n)
            && l.processes
                .iter()
                .all(|(p, n)| *n == 0 || app.processes.contains_key(p));
    if !formation_ok {
        let mut processes = app.processes.clone();
        for p in l.processes.keys() {
            processes.entry(p.clone()).or_insert(0);
        }
        cx.step(
            tenant,
            cause,
            Change::Scale {
                app: name.to_string(),
                processes,
                before: l.processes.clone(),
            },
            rolled.clone(),
        );
    }
    // A certificate covers the names it was issued for: after a domain change (planned now,
    // or made by hand) `letsencrypt:enable` requests one for the new set (reference/dokku.md
    // §4, §13: enable is idempotent only while the names match).
    let want_names: BTreeSet<&String> = if app.domains.is_empty() {
        defaults.iter().collect()
    } else {
        app.domains.iter().collect()
    };
    let cert_stale = !domains_ok
        || l.cert_domains
            .as_ref()
            .is_some_and(|c| c.iter().collect::<BTreeSet<_>>() != want_names);
    if app.tls && (!l.tls || cert_stale) {
        cx.step(
            tenant,
            cause,
            Change::EnableTls {
                app: name.to_string(),
            },
            rolled,
        );
    } else if !app.tls && l.tls {
        cx.step(
            tenant,
            cause,
            Change::DisableTls {
                app: name.to_string(),
            },
            Vec::new(),
        );
    }
    // The spec hash is recorded last, after every other step of the app: a failed deploy
    // leaves the old record, so its retry is an intended change, not drift.
    let recorded_now = live.and_then(|l| l.spec_hash.clone());
    if recorded_now.as_deref() != Some(app.spec_hash.as_str()) {
        let after: Vec<u32> = (first_step..cx.builder.steps.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        // Part of the app's repair or change; alone, it is bookkeeping of an intended one.
        let record_cause = if after.is_empty() {
            Cause::Intended
        } else {
            cause
        };
        cx.step(
            tenant,
            record_cause,
            Change::RecordSpec {
                app: name.to_string(),
                hash: app.spec_hash.clone(),
                before: recorded_now,
            },
            after,
        );
    }
}

/// What the plan says about a deploy's health checks. Berth knows of none on Dokku: Dokku
/// takes them only from the image's `app.json` (reference/dokku.md §10, no command sets
/// them), which berth does not read, and validation refuses `health:` on Dokku apps. Without
/// them Dokku waits its default 10 s and switches traffic if the container is still up.
fn health_notes(_app: &DokkuApp) -> Vec<String> {
    vec![
        "no health check berth knows of: unless the image's app.json has `healthchecks`, \
         Dokku switches traffic to the new container once it has stayed up for 10 s"
            .to_string(),
    ]
}
