//! Validation layer 2 for tenant files: id, environment, tier, state, pinned host, and the
//! stack of apps and services (whose fields `fields` checks).
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_tenant(
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
    let is_dokku = |h: &Host| matches!(h.target, HostTarget::Dokku(_));
    let dokku = match placed {
        Some(h) => is_dokku(h),
        None => environment.is_some_and(|e| !e.hosts.is_empty() && e.hosts.values().all(is_dokku)),
    };
    let stack_cx = StackCx {
        owner: &id,
        environment_domain: default_domain.as_deref(),
        tier,
        secrets: &secrets,
        host: placed,
        dokku,
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
        reconcile: spec.reconcile,
    })
}

pub(super) fn reference_hint(name: &str, known: &[&str], what: &str) -> String {
    match did_you_mean(name, known) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => format!("no {what} are defined"),
        None => format!("defined {what}: {}", ticked(known)),
    }
}

pub(super) fn check_stack<T>(
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
            out.services.insert(name.clone(), Box::new(service));
        }
    }
    for (name, app) in apps {
        let path = scx.path(&["apps", name]);
        if !is_dns_label(name) {
            cx.name_error(parsed, &path, "app name", name);
            continue;
        }
        if let Some(app) = check_app(cx, parsed, scx, name, app, services) {
            out.apps.insert(name.clone(), Box::new(app));
        }
    }
    let failed = cx.diags[before..]
        .iter()
        .any(|d| d.severity == Severity::Error);
    (!failed).then_some(out)
}
