//! Host observation → tenant file text (pure): what `berth import` writes for apps a script
//! made on a Dokku host.
//!
//! The input is what the Dokku driver observed ([`LiveDokku`], the same value a plan diffs
//! against), the environment the host belongs to, and the apps asked for. The output is, per
//! tenant, the text of `tenants/<id>.yaml`, the objects it describes (for adoption) and the
//! secret values it refers to by name. Every rule here is the planner's rule read backwards,
//! so that the written file compiles to exactly what the host holds:
//!
//! - app names are the environment's `naming.dokku-app` template inverted (`acme-web` →
//!   tenant `acme`, app `web`); services are `<tenant>-<name>` (`acme-db` → `db`);
//! - keys Dokku sets itself (`DATABASE_URL`, `REDIS_URL`, `DOKKU_*`, `GIT_REV`, …) are not
//!   tenant env; keys that look like secrets become `{ secret: <tenant>-<key> }`, their values
//!   returned beside the text, never in it;
//! - a tier is written when exactly one tier of the environment gives every app its live
//!   formation and limits; otherwise formation and limits are written per app;
//! - what cannot be said in the file format (an app name outside the template, a mount
//!   outside berth's storage directory, a memory limit berth would write differently) is a
//!   problem or a warning, never a guess.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::BTreeMap;

use crate::model::desired::{BERTH_SPEC_KEY, BERTH_TENANT_KEY, dokku_app_name};
use crate::model::live::{LiveDokku, LiveDokkuApp, LiveValue, service_key, service_kind_word};
use crate::model::{Environment, ServiceKind, Tier, is_dns_label, parse_memory};

/// Where Dokku keeps the host side of berth's storage mounts.
const STORAGE_ROOT: &str = "/var/lib/dokku/data/storage/";

/// What to import from one Dokku host.
#[derive(Debug, Clone)]
pub struct DokkuInput<'a> {
    /// The environment the host belongs to (tiers, naming, domain).
    pub environment: &'a Environment,
    /// The host's name in that environment.
    pub host: &'a str,
    /// What the driver observed.
    pub live: &'a LiveDokku,
    /// Dokku app names to import; empty: every app that is nobody's.
    pub apps: &'a [String],
    /// The `$schema` path for the editor comment, when the repo has the schema.
    pub schema: Option<&'a str>,
}

/// One problem that stops an import: nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The app or service it is about.
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// A secret value the files refer to by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedSecret {
    /// The secret name (`acme-secret-key`), as listed in `secrets.names`.
    pub name: String,
    /// The Dokku app it was read from.
    pub app: String,
    /// The config key.
    pub key: String,
    /// The value (redacted in `Debug`).
    pub value: LiveValue,
}

/// One tenant file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTenant {
    /// Tenant id (the file stem).
    pub id: String,
    /// The file text.
    pub text: String,
    /// Dokku app or Docker container → app (or service) name in the file.
    pub apps: BTreeMap<String, String>,
    /// Service keys (`postgres:acme-db`, Dokku) or service names (Docker) the file describes.
    pub services: Vec<String>,
    /// Secret values the file refers to.
    pub secrets: Vec<ImportedSecret>,
    /// Docker: container on the host → the name berth gives it (renamed on adoption).
    pub containers: BTreeMap<String, String>,
    /// Docker: the data volumes the file describes.
    pub volumes: Vec<String>,
}

/// What a translation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// One per tenant, by id.
    pub tenants: Vec<ImportedTenant>,
    /// Things the files cannot say; each means the next plan will show a change.
    pub warnings: Vec<String>,
}

/// Whether a config key or value looks like a secret: the key names one (`*SECRET*`,
/// `*PASSWORD*`, `*TOKEN*`, `*KEY*`, …) or the value is a URL carrying credentials.
#[must_use]
pub fn looks_secret(key: &str, value: &str) -> bool {
    const WORDS: [&str; 8] = [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
    ];
    let upper = key.to_ascii_uppercase();
    WORDS.iter().any(|w| upper.contains(w)) || url_with_credentials(value)
}

/// `scheme://user:pass@host/…` or `scheme://token@host`.
pub(super) fn url_with_credentials(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    scheme_ok && authority.contains('@')
}

/// Keys Dokku or berth set on an app: never tenant env.
fn not_tenant_env(key: &str) -> bool {
    crate::plan::dokku_managed_key(key) || key == BERTH_TENANT_KEY || key == BERTH_SPEC_KEY
}

/// The `(tenant, app)` readings of a Dokku app name under `template`, best first: with a
/// separator that may also sit inside a name (`{tenant}-{app}`, `foo-bar-web`) several
/// readings exist; those whose tenant owns a linked service by name come first, then the
/// shortest app name (apps are roles: `web`, `worker`).
fn readings(template: &str, name: &str, linked: &[&str]) -> Vec<(String, String)> {
    let (Some(t), Some(a)) = (template.find("{tenant}"), template.find("{app}")) else {
        return Vec::new();
    };
    if template.matches("{tenant}").count() != 1 || template.matches("{app}").count() != 1 {
        return Vec::new();
    }
    let (first, first_len, second, second_len) = if t < a {
        (t, "{tenant}".len(), a, "{app}".len())
    } else {
        (a, "{app}".len(), t, "{tenant}".len())
    };
    let prefix = &template[..first];
    let middle = &template[first + first_len..second];
    let suffix = &template[second + second_len..];
    let Some(inner) = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_suffix(suffix))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, _) in inner.char_indices().skip(1) {
        if !inner[k..].starts_with(middle) {
            continue;
        }
        let one = &inner[..k];
        let two = &inner[k + middle.len()..];
        let (tenant, app) = if t < a { (one, two) } else { (two, one) };
        if is_dns_label(tenant)
            && is_dns_label(app)
            && dokku_app_name(template, tenant, app) == name
        {
            out.push((tenant.to_string(), app.to_string()));
        }
    }
    out.sort_by_key(|(tenant, app)| {
        let owns = linked.iter().any(|s| {
            s.strip_prefix(tenant.as_str())
                .is_some_and(|r| r.starts_with('-'))
        });
        (!owns, app.len(), app.clone())
    });
    out
}

/// Double-quoted YAML (JSON's escapes are valid YAML double-quoted escapes).
pub(super) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A scalar written plain when YAML reads it back as the same string, quoted otherwise.
pub(super) fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && text.parse::<f64>().is_err()
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "inf" | "nan"
        );
    if plain {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// `{ web: 2, worker: 1 }`.
pub(super) fn flow_map(map: &BTreeMap<String, u32>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {v}", scalar(k)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

pub(super) fn flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| scalar(i)).collect();
    format!("[{}]", items.join(", "))
}

/// Dokku's stored limit as berth writes it (`512m`), and the file value that compiles to it.
fn memory_of(live: &str) -> Option<(String, bool)> {
    let bytes = parse_memory(live)?;
    let mib = bytes.div_ceil(1 << 20);
    Some((format!("{mib}M"), format!("{mib}m") == live))
}

pub(super) fn cpus_text(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Live process counts that matter (zeros are what a missing type means).
fn formation(app: &LiveDokkuApp) -> BTreeMap<String, u32> {
    app.processes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| (p.clone(), *n))
        .collect()
}

/// The one tier of the environment that gives every app exactly what it runs: the
/// formation a tier gives an app (the tier's `processes` for the app named `web`, else
/// `web: 1`, as `validate` fills them in) and the tier's limits, compared by `fits(app,
/// formation, tier)` in the driver's own units. `None` when no app, no tier or two tiers
/// fit. Shared by the Dokku and the Docker import.
pub(super) fn matching_tier<'e, A>(
    env: &'e Environment,
    apps: &[(&str, A)],
    fits: impl Fn(&A, &BTreeMap<String, u32>, &Tier) -> bool,
) -> Option<&'e str> {
    if apps.is_empty() {
        return None;
    }
    let web_one = BTreeMap::from([("web".to_string(), 1)]);
    let matches: Vec<&String> = env
        .tiers
        .iter()
        .filter(|(_, tier)| {
            apps.iter().all(|(app_name, app)| {
                let processes = if *app_name == "web" && !tier.processes.is_empty() {
                    &tier.processes
                } else {
                    &web_one
                };
                fits(app, processes, tier)
            })
        })
        .map(|(name, _)| name)
        .collect();
    match matches.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    }
}

/// The `port:` that gives exactly this port map (`http:80:P`, plus `https:443:P` with TLS).
fn port_of(live: &LiveDokkuApp) -> Option<u16> {
    let mut want = live.ports.clone();
    want.sort();
    let port: u16 = live
        .ports
        .iter()
        .find_map(|m| m.strip_prefix("http:80:"))?
        .parse()
        .ok()?;
    let mut map = vec![format!("http:80:{port}")];
    if live.tls {
        map.push(format!("https:443:{port}"));
    }
    map.sort();
    (map == want).then_some(port)
}

/// Secret name for a key of a tenant: `acme-secret-key`.
pub(super) fn secret_name(prefix: &str, key: &str) -> String {
    let mut name = format!("{prefix}-");
    let mut dash = true;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash {
            name.push('-');
            dash = true;
        }
    }
    name.trim_end_matches('-').to_string()
}

/// Whether a value is one berth's own generator could have made: 16 to 256 ASCII letters
/// and digits, with lower case, upper case and a digit (what `{ generate: N }` makes).
/// Hex strings, tokens with `_`/`-` or a vendor prefix (`sk_live_…`, `ghp_…`) do not count:
/// they may be a third party's credential, which berth must not keep only on the host.
#[must_use]
pub fn looks_generated(value: &str) -> bool {
    (16..=256).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric())
        && value.bytes().any(|b| b.is_ascii_lowercase())
        && value.bytes().any(|b| b.is_ascii_uppercase())
        && value.bytes().any(|b| b.is_ascii_digit())
}

/// Where a secret-looking value was found.
pub(super) struct SecretSource<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// App or service name in the file (disambiguates secret names).
    pub scope: &'a str,
    /// The object on the host (Dokku app, container).
    pub object: &'a str,
    /// The env key.
    pub key: &'a str,
    /// A data service's own credential (a Postgres password): berth generates it itself.
    pub data_credential: bool,
}

/// The file text for a secret-looking value: `{ generate: N }` when berth would treat it
/// as generated (kept on the host, never written anywhere), else a `{ secret: … }`
/// reference whose value is added to `secrets`.
pub(super) fn secret_value(
    at: &SecretSource<'_>,
    value: &LiveValue,
    secrets: &mut Vec<ImportedSecret>,
) -> Result<String, Problem> {
    let length = value.0.len();
    let generated = looks_generated(&value.0)
        || (at.data_credential && (8..=256).contains(&length) && !value.0.contains('\n'));
    if generated {
        return Ok(format!("{{ generate: {length} }}"));
    }
    let mut name = secret_name(at.tenant, at.key);
    if secrets.iter().any(|s| s.name == name && s.value != *value) {
        name = secret_name(&format!("{}-{}", at.tenant, at.scope), at.key);
    }
    if name.len() > 64 {
        return Err(Problem {
            subject: format!("`{}`", at.object),
            message: format!(
                "config key `{}` would need secret name `{name}`, longer than 64 characters",
                at.key
            ),
            hint: "shorten the key on the host, or import without this object".into(),
        });
    }
    if !secrets.iter().any(|s| s.name == name) {
        secrets.push(ImportedSecret {
            name: name.clone(),
            app: at.object.to_string(),
            key: at.key.to_string(),
            value: value.clone(),
        });
    }
    Ok(format!("{{ secret: {name} }}"))
}

/// Translate the apps of one Dokku host into tenant files.
///
/// # Errors
/// Every app or service that cannot be described, at once.
#[allow(clippy::too_many_lines)]
pub fn dokku(input: &DokkuInput<'_>) -> Result<Imported, Vec<Problem>> {
    let live = input.live;
    let env = input.environment;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let foreign = |app: &LiveDokkuApp| app.owner.is_none() && app.environment.is_none();
    let names: Vec<&String> = if input.apps.is_empty() {
        live.apps
            .iter()
            .filter(|(_, a)| foreign(a))
            .map(|(n, _)| n)
            .collect()
    } else {
        let mut out = Vec::new();
        for name in input.apps {
            match live.apps.get(name) {
                None => {
                    let known: Vec<&str> = live.apps.keys().map(String::as_str).collect();
                    problems.push(Problem {
                        subject: format!("app `{name}`"),
                        message: format!("there is no app `{name}` on host `{}`", input.host),
                        hint: match crate::spec::schema_check::did_you_mean(name, &known) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the apps are: {}", known.join(", ")),
                        },
                    });
                }
                Some(a) if !foreign(a) => problems.push(Problem {
                    subject: format!("app `{name}`"),
                    message: match (&a.owner, &a.environment) {
                        (_, Some(e)) if *e != env.name => {
                            format!("app `{name}` belongs to berth environment `{e}`")
                        }
                        (Some(t), _) => format!("app `{name}` is already berth's (tenant `{t}`)"),
                        _ => format!("app `{name}` carries berth's environment marker"),
                    },
                    hint: "berth already manages it: there is nothing to import".into(),
                }),
                Some(_) => out.push(name),
            }
        }
        out
    };
    // Which services link to each app.
    let mut linked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for service in live.services.values() {
        for app in &service.links {
            linked.entry(app).or_default().push(&service.name);
        }
    }
    // App → (tenant, app name).
    let mut tenants: BTreeMap<String, Vec<(&String, String, &LiveDokkuApp)>> = BTreeMap::new();
    for name in &names {
        let app = &live.apps[*name];
        let links = linked.get(name.as_str()).cloned().unwrap_or_default();
        let Some((tenant, app_name)) = readings(&env.dokku_app_template, name, &links)
            .into_iter()
            .next()
        else {
            let example = dokku_app_name(&env.dokku_app_template, "acme", "web");
            problems.push(Problem {
                subject: format!("app `{name}`"),
                message: format!(
                    "app `{name}` does not read as `{}` with DNS-label names (environment `{}`'s `naming.dokku-app`)",
                    env.dokku_app_template, env.name
                ),
                hint: format!(
                    "berth names Dokku apps from tenant id and app name (`{example}`): rename the app on the host (`dokku apps:rename {name} <tenant>-web`) or set `naming.dokku-app` to match, then import again; `--app` imports the others"
                ),
            });
            continue;
        };
        if app.image.is_none() {
            problems.push(Problem {
                subject: format!("app `{name}`"),
                message: format!("app `{name}` was never deployed: Dokku reports no image"),
                hint: format!(
                    "deploy it first (`dokku git:from-image {name} <image>`), or leave it out with `--app`"
                ),
            });
            continue;
        }
        tenants
            .entry(tenant)
            .or_default()
            .push((*name, app_name, app));
    }
    let mut out = Vec::new();
    for (tenant, apps) in &tenants {
        match tenant_file(input, tenant, apps, &mut warnings) {
            Ok(t) => out.push(t),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Imported {
        tenants: out,
        warnings,
    })
}

#[allow(clippy::too_many_lines)]
fn tenant_file(
    input: &DokkuInput<'_>,
    tenant: &str,
    apps: &[(&String, String, &LiveDokkuApp)],
    warnings: &mut Vec<String>,
) -> Result<ImportedTenant, Vec<Problem>> {
    let live = input.live;
    let env = input.environment;
    let mut problems = Vec::new();
    // The tenant's services: nobody's, named `<tenant>-<name>`, linked to its apps or not.
    let mut services: BTreeMap<String, (ServiceKind, String, Option<String>)> = BTreeMap::new();
    let mut service_keys = Vec::new();
    for (key, service) in &live.services {
        if service.owner.is_some() || service.environment.is_some() {
            continue;
        }
        let Some(short) = service
            .name
            .strip_prefix(tenant)
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        if !is_dns_label(short) {
            continue;
        }
        if let Some((other, _, _)) = services.get(short) {
            problems.push(Problem {
                subject: format!("service `{}`", service.name),
                message: format!(
                    "`{}` is both a {} and a {} service; a tenant's services need distinct names",
                    service.name,
                    service_kind_word(*other),
                    service_kind_word(service.kind)
                ),
                hint: "import the app with `--app` after renaming one service on the host".into(),
            });
            continue;
        }
        services.insert(
            short.to_string(),
            (service.kind, service.name.clone(), service.image.clone()),
        );
        service_keys.push(key.clone());
    }
    let by_key: BTreeMap<String, &String> = services
        .iter()
        .map(|(short, (kind, name, _))| (service_key(*kind, name), short))
        .collect();
    let shapes: Vec<(&str, &LiveDokkuApp)> =
        apps.iter().map(|(_, a, l)| (a.as_str(), *l)).collect();
    let tier = matching_tier(env, &shapes, |live, processes, tier| {
        let memory = tier.memory.map(|b| format!("{}m", b.div_ceil(1 << 20)));
        let cpus = tier.cpus.map(cpus_text);
        formation(live) == *processes && live.memory == memory && live.cpus == cpus
    });
    let mut secrets: Vec<ImportedSecret> = Vec::new();
    let mut text = String::new();
    if let Some(schema) = input.schema {
        text.push_str(&format!("# yaml-language-server: $schema={schema}\n"));
    }
    let listed: Vec<&str> = apps.iter().map(|(n, _, _)| n.as_str()).collect();
    text.push_str(&format!(
        "# Imported by `berth import` from Dokku host `{}/{}` (app {}).\n",
        env.name,
        input.host,
        listed.join(", ")
    ));
    text.push_str("version: 1\n");
    text.push_str(&format!("environment: {}\n", scalar(&env.name)));
    if let Some(tier) = &tier {
        text.push_str(&format!("tier: {}\n", scalar(tier)));
    }
    text.push_str(&format!("host: {}\n", scalar(input.host)));
    text.push_str("apps:\n");
    let mut app_map = BTreeMap::new();
    for (dokku_name, app_name, app) in apps {
        app_map.insert((*dokku_name).clone(), app_name.clone());
        text.push_str(&format!("  {}:\n", scalar(app_name)));
        let image = app.image.as_deref().unwrap_or_default();
        text.push_str(&format!("    image: {}\n", quoted(image)));
        if tier.is_none() {
            let processes = formation(app);
            if processes != BTreeMap::from([("web".to_string(), 1)]) {
                if processes.is_empty() {
                    warnings.push(format!(
                        "app `{dokku_name}` runs no processes; the file gives it berth's default `web: 1`"
                    ));
                } else {
                    text.push_str(&format!("    processes: {}\n", flow_map(&processes)));
                }
            }
            if let Some(memory) = &app.memory {
                match memory_of(memory) {
                    Some((value, exact)) => {
                        text.push_str(&format!("    memory: {value}\n"));
                        if !exact {
                            warnings.push(format!(
                                "app `{dokku_name}`'s memory limit `{memory}` is written as `{value}`; berth sets limits in megabytes, so the next plan re-sets it"
                            ));
                        }
                    }
                    None => warnings.push(format!(
                        "app `{dokku_name}`'s memory limit `{memory}` is not a size berth reads; left out of the file"
                    )),
                }
            }
            if let Some(cpus) = &app.cpus {
                match cpus.parse::<f64>() {
                    Ok(c) if c > 0.0 => {
                        text.push_str(&format!("    cpus: {}\n", cpus_text(c)));
                        if cpus_text(c) != *cpus {
                            warnings.push(format!(
                                "app `{dokku_name}`'s CPU limit `{cpus}` is written as `{}`; the next plan re-sets it",
                                cpus_text(c)
                            ));
                        }
                    }
                    _ => warnings.push(format!(
                        "app `{dokku_name}`'s CPU limit `{cpus}` is not a number berth reads; left out of the file"
                    )),
                }
            }
        }
        // Domains: listed as Dokku has them (an empty list keeps berth's default away).
        text.push_str(&format!("    domains: {}\n", flow_list(&app.domains)));
        if app.tls {
            text.push_str("    tls: true\n");
        }
        if let Some(port) = port_of(app) {
            text.push_str(&format!("    port: {port}\n"));
        }
        if let Some(policy) = &app.restart_policy {
            match policy.as_str() {
                "no" | "always" | "unless-stopped" | "on-failure" => {
                    text.push_str(&format!("    restart: {}\n", scalar(policy)));
                }
                other => warnings.push(format!(
                    "app `{dokku_name}`'s restart policy `{other}` has no spelling in the file (`no`, `always`, `unless-stopped`, `on-failure`); the next plan resets it"
                )),
            }
        }
        if app.running == Some(false) && !formation(app).is_empty() {
            warnings.push(format!(
                "app `{dokku_name}` is stopped; the next plan starts it"
            ));
        }
        let env_keys: Vec<(&String, &LiveValue)> = app
            .config
            .iter()
            .filter(|(k, _)| !not_tenant_env(k))
            .collect();
        if !env_keys.is_empty() {
            text.push_str("    env:\n");
        }
        for (key, value) in env_keys {
            let written = if looks_secret(key, &value.0) {
                match secret_value(
                    &SecretSource {
                        tenant,
                        scope: app_name,
                        object: dokku_name,
                        key,
                        data_credential: false,
                    },
                    value,
                    &mut secrets,
                ) {
                    Ok(text) => text,
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                }
            } else {
                quoted(&value.0)
            };
            text.push_str(&format!("      {}: {written}\n", scalar(key)));
        }
        let mut uses: Vec<String> = Vec::new();
        for (key, service) in &live.services {
            if !service.links.iter().any(|a| a == *dokku_name) {
                continue;
            }
            match by_key.get(key) {
                Some(short) => uses.push((*short).clone()),
                None if service.owner.is_some() => problems.push(Problem {
                    subject: format!("app `{dokku_name}`"),
                    message: format!(
                        "app `{dokku_name}` is linked to `{key}`, which berth manages for tenant `{}`",
                        service.owner.as_deref().unwrap_or_default()
                    ),
                    hint: "a tenant can only use its own services: unlink it by hand first".into(),
                }),
                None => warnings.push(format!(
                    "app `{dokku_name}` is linked to `{key}`, which is not named `{tenant}-<name>`: it stays linked, but berth does not manage it"
                )),
            }
        }
        uses.sort();
        if !uses.is_empty() {
            text.push_str(&format!("    uses: {}\n", flow_list(&uses)));
        }
        let mut storage = Vec::new();
        for mount in &app.storage {
            let prefix = format!("{STORAGE_ROOT}{dokku_name}-");
            let parsed = mount
                .strip_prefix(&prefix)
                .and_then(|r| r.split_once(':'))
                .filter(|(volume, path)| is_dns_label(volume) && path.starts_with('/'));
            match parsed {
                Some((volume, path)) => storage.push((volume.to_string(), path.to_string())),
                None => warnings.push(format!(
                    "app `{dokku_name}` mounts `{mount}`, which is not berth's `{prefix}<volume>:<path>`; the next plan unmounts it unless the file says otherwise"
                )),
            }
        }
        if !storage.is_empty() {
            text.push_str("    storage:\n");
            for (volume, path) in storage {
                text.push_str(&format!(
                    "      - {{ volume: {}, path: {} }}\n",
                    scalar(&volume),
                    quoted(&path)
                ));
            }
        }
    }
    if !services.is_empty() {
        text.push_str("services:\n");
        for (short, (kind, _, image)) in &services {
            let image = image
                .as_deref()
                .map(|i| format!(", image: {}", quoted(i)))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {}: {{ kind: {}{image} }}\n",
                scalar(short),
                service_kind_word(*kind)
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ImportedTenant {
        id: tenant.to_string(),
        text,
        apps: app_map,
        services: service_keys,
        secrets,
        containers: BTreeMap::new(),
        volumes: Vec::new(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn template_readings_prefer_linked_services_then_short_app_names() {
        let t = "{tenant}-{app}";
        assert_eq!(
            readings(t, "acme-web", &[]),
            vec![("acme".to_string(), "web".to_string())]
        );
        let r = readings(t, "foo-bar-web", &[]);
        assert_eq!(r[0], ("foo-bar".to_string(), "web".to_string()));
        let r = readings(t, "foo-bar-web", &["foo-db"]);
        assert_eq!(r[0], ("foo".to_string(), "bar-web".to_string()));
        assert!(readings(t, "acme", &[]).is_empty());
        assert!(readings(t, "Acme_Web", &[]).is_empty());
        assert_eq!(
            readings("app-{app}-{tenant}", "app-web-acme", &[]),
            vec![("acme".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn secrets_are_recognised_by_key_and_by_credentials_in_urls() {
        assert!(looks_secret("SECRET_KEY", "x"));
        assert!(looks_secret("STRIPE_API_KEY", "x"));
        assert!(looks_secret("DB_PASSWORD", "x"));
        assert!(looks_secret("GITHUB_TOKEN", "x"));
        assert!(looks_secret("AMQP_URL", "amqp://user:pw@mq:5672/vhost"));
        assert!(looks_secret("SENTRY", "https://abc123@sentry.io/1"));
        assert!(!looks_secret("LOG_LEVEL", "info"));
        assert!(!looks_secret("HOMEPAGE", "https://example.com/a@b"));
    }

    #[test]
    fn generated_values_are_those_berths_generator_could_have_made() {
        assert!(looks_generated("Qm7xT2pLw9Rk4ZsV8nB3yH6cJ1dF5gA0"));
        for not in [
            "hunter2",                          // short
            "0123456789abcdef0123456789abcdef", // hex: one case only
            "sk_live_51HxYzAbCdEfGhIjKlMnOpQr", // a vendor's token
            "ghp_Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9",  // ditto
            "AKIAIOSFODNN7EXAMPLE",             // upper case and digits only
            "correcthorsebatterystaple",        // no digit, one case
        ] {
            assert!(!looks_generated(not), "{not}");
        }
        let mut secrets = Vec::new();
        let at = |key, data_credential| SecretSource {
            tenant: "acme",
            scope: "db",
            object: "acme-db-1",
            key,
            data_credential,
        };
        let weak = LiveValue("postgres-pw".into());
        assert_eq!(
            secret_value(&at("POSTGRES_PASSWORD", true), &weak, &mut secrets).unwrap(),
            "{ generate: 11 }"
        );
        assert_eq!(
            secret_value(&at("API_KEY", false), &weak, &mut secrets).unwrap(),
            "{ secret: acme-api-key }"
        );
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            secret_value(
                &at("POSTGRES_PASSWORD", true),
                &LiveValue("short".into()),
                &mut secrets
            )
            .unwrap(),
            "{ secret: acme-postgres-password }"
        );
    }

    #[test]
    fn scalars_are_quoted_when_yaml_would_read_them_otherwise() {
        assert_eq!(scalar("web"), "web");
        assert_eq!(scalar("acme.example.app"), "acme.example.app");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("1.0"), "\"1.0\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar("-x"), "\"-x\"");
        assert_eq!(quoted("line\n\"q\""), "\"line\\n\\\"q\\\"\"");
    }

    #[test]
    fn secret_names_are_valid_secret_names() {
        assert_eq!(secret_name("acme", "SECRET_KEY"), "acme-secret-key");
        assert_eq!(secret_name("acme", "__X..Y__"), "acme-x-y");
    }

    /// A `prod` environment with one tier (also the Docker translation's tests').
    pub(in crate::import) fn environment() -> Environment {
        Environment {
            name: "prod".into(),
            domain: Some("example.app".into()),
            hosts: BTreeMap::new(),
            tiers: BTreeMap::from([(
                "starter".to_string(),
                crate::model::Tier {
                    processes: BTreeMap::from([("web".to_string(), 1)]),
                    memory: Some(512 << 20),
                    cpus: None,
                },
            )]),
            dokku_app_template: "{tenant}-{app}".into(),
            policy: crate::model::Policy::default(),
            secrets: crate::model::Secrets::default(),
            stripe_prices: BTreeMap::new(),
            stripe_new_tenant: None,
            shared: None,
            registries: BTreeMap::new(),
        }
    }

    #[test]
    fn formation_limits_ports_storage_and_links_are_written_as_the_planner_reads_them() {
        let env = environment();
        let mut live = LiveDokku::default();
        live.apps.insert(
            "acme-web".into(),
            LiveDokkuApp {
                image: Some("registry.example.app/app:2".into()),
                processes: BTreeMap::from([("web".to_string(), 2), ("release".to_string(), 0)]),
                memory: Some("256m".into()),
                cpus: Some("0.25".into()),
                domains: vec!["acme.example.app".into()],
                tls: true,
                ports: vec!["https:443:8080".into(), "http:80:8080".into()],
                restart_policy: Some("on-failure:10".into()),
                storage: vec![
                    "/var/lib/dokku/data/storage/acme-web-uploads:/app/uploads".into(),
                    "/srv/elsewhere:/data".into(),
                ],
                config: BTreeMap::from([
                    (
                        "DATABASE_URL".to_string(),
                        LiveValue("postgres://u:p@h/db".into()),
                    ),
                    ("DOKKU_PROXY_PORT".to_string(), LiveValue("80".into())),
                    ("MODE".to_string(), LiveValue("true".into())),
                ]),
                ..LiveDokkuApp::default()
            },
        );
        live.apps.insert(
            "acme-worker".into(),
            LiveDokkuApp {
                image: Some("registry.example.app/app:2".into()),
                processes: BTreeMap::from([("worker".to_string(), 1)]),
                owner: None,
                ..LiveDokkuApp::default()
            },
        );
        live.apps.insert(
            "bolt-web".into(),
            LiveDokkuApp {
                owner: Some("bolt".into()),
                ..LiveDokkuApp::default()
            },
        );
        live.services.insert(
            "postgres:acme-db".into(),
            crate::model::live::LiveDokkuService {
                kind: ServiceKind::Postgres,
                name: "acme-db".into(),
                owner: None,
                environment: None,
                links: vec!["acme-web".into(), "acme-worker".into()],
                broken_links: Vec::new(),
                image: None,
            },
        );
        let out = dokku(&DokkuInput {
            environment: &env,
            host: "dokku-1",
            live: &live,
            apps: &[],
            schema: None,
        })
        .unwrap();
        assert_eq!(out.tenants.len(), 1, "bolt-web is berth's already");
        let t = &out.tenants[0];
        assert_eq!(t.id, "acme");
        assert_eq!(t.services, ["postgres:acme-db"]);
        let text = &t.text;
        assert!(!text.contains("tier:"), "{text}");
        for line in [
            "  web:\n    image: \"registry.example.app/app:2\"\n    processes: { web: 2 }\n    memory: 256M\n    cpus: 0.25\n",
            "    domains: [acme.example.app]\n    tls: true\n    port: 8080\n",
            "      MODE: \"true\"\n",
            "    uses: [db]\n",
            "      - { volume: uploads, path: \"/app/uploads\" }\n",
            "  worker:\n    image: \"registry.example.app/app:2\"\n    processes: { worker: 1 }\n    domains: []\n",
            "services:\n  db: { kind: postgres }\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(
            !text.contains("DATABASE_URL") && !text.contains("DOKKU_"),
            "{text}"
        );
        assert!(!text.contains("restart:"), "{text}");
        assert!(out.warnings.iter().any(|w| w.contains("on-failure:10")));
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("/srv/elsewhere:/data"))
        );
    }

    #[test]
    fn memory_is_exact_only_in_megabytes() {
        assert_eq!(memory_of("512m"), Some(("512M".into(), true)));
        assert_eq!(memory_of("1g"), Some(("1024M".into(), false)));
        assert_eq!(memory_of("lots"), None);
    }
}
