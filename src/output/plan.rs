//! Rendering plans: text for people, versioned JSON for machines, Markdown for PR comments.
//!
//! Symbols carry the meaning (`+` create, `~` change, `-` destroy, `[drift]`); colour only
//! helps. Secrets never appear: generated values and secret references render as
//! `(sensitive)`, and old config values are shown only for keys the files declare literal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::model::desired::{ConfigValue, ContainerSpec};
use crate::model::live::service_kind_word;
use crate::plan::{Cause, Change, ConfigChange, Effect, OldValue, Plan, Step};

/// Hidden marker a CI step uses to find and update its own PR comment.
pub const MARKDOWN_MARKER: &str = "<!-- berth-plan -->";

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn marker(&self, effect: Effect) -> String {
        match effect {
            Effect::Create => self.paint("32", "+"),
            Effect::Update => self.paint("33", "~"),
            Effect::Destroy => self.paint("31", "-"),
        }
    }
}

/// Steps grouped environment → host → tenant.
fn grouped(plan: &Plan) -> BTreeMap<(&str, &str), BTreeMap<&str, Vec<&Step>>> {
    let mut groups: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&Step>>> = BTreeMap::new();
    for step in &plan.steps {
        groups
            .entry((step.environment.as_str(), step.host.as_str()))
            .or_default()
            .entry(step.tenant.as_str())
            .or_default()
            .push(step);
    }
    groups
}

/// The human plan.
#[must_use]
pub fn render_text(plan: &Plan, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();
    if plan.offline {
        let _ = writeln!(
            out,
            "{}: hosts not observed — planned against empty hosts; this plan cannot be applied\n",
            style.paint("33", "offline")
        );
    }
    for refusal in &plan.refusals {
        let _ = writeln!(out, "{}: {}", style.paint("31", "refused"), refusal.message);
        if let Some(flag) = &refusal.override_flag {
            let _ = writeln!(
                out,
                "  hint: review the plan, then pass `{flag}` to proceed"
            );
        }
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "{}: {}", style.paint("33", "warning"), warning.message);
    }
    if !plan.refusals.is_empty() || !plan.warnings.is_empty() {
        out.push('\n');
    }
    let placements: BTreeMap<&str, &crate::plan::PlacementView> = plan
        .placements
        .iter()
        .map(|p| (p.tenant.as_str(), p))
        .collect();
    let mut last_env = "";
    for ((env, host), tenants) in grouped(plan) {
        if env != last_env {
            let _ = writeln!(out, "environment {}", style.paint("1", env));
            last_env = env;
        }
        let _ = writeln!(out, "  host {host}");
        for (tenant, steps) in tenants {
            let placed = match placements.get(tenant) {
                Some(p) if p.reason == "chosen" => " (new: placed here by capacity)".to_string(),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    tenant {}{}{placed}",
                style.paint("36", tenant),
                from_file(&steps)
            );
            for step in steps {
                for line in step_lines(step, &style) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let _ = writeln!(out, "{}", summary_line(plan));
    out
}

/// `plan: 2 to create, 1 to change, 0 to destroy (1 drift)`.
#[must_use]
pub fn summary_line(plan: &Plan) -> String {
    if plan.is_empty() {
        return if plan.refusals.is_empty() {
            "no changes: the hosts match the files".to_string()
        } else {
            format!("no changes, {} refused", plan.refusals.len())
        };
    }
    let s = plan.summary();
    let drift = if s.drift > 0 {
        format!(" ({} drift)", s.drift)
    } else {
        String::new()
    };
    let refused = if plan.refusals.is_empty() {
        String::new()
    } else {
        format!("; refused: {} (see above)", plan.refusals.len())
    };
    format!(
        "plan: {} to create, {} to change, {} to destroy{drift}{refused}",
        s.create, s.update, s.destroy
    )
}

/// ` (tenants/acme.yaml)` when steps come from edits of one file.
fn from_file(steps: &[&Step]) -> String {
    let files: std::collections::BTreeSet<&str> = steps
        .iter()
        .filter_map(|s| match &s.because {
            crate::plan::Because::FileEdit { file } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    match files.len() {
        1 => format!(" ({})", files.iter().next().copied().unwrap_or_default()),
        _ => String::new(),
    }
}

fn step_lines(step: &Step, style: &Style) -> Vec<String> {
    let marker = style.marker(step.change.effect());
    let label = step
        .because
        .label()
        .map(|l| format!(" {}", style.paint("35", &l)))
        .unwrap_or_default();
    let (head, details) = describe(&step.change);
    let mut lines = vec![format!("{marker} {head}{label}")];
    lines.extend(details.into_iter().map(|d| format!("    {d}")));
    lines.extend(
        step.notes
            .iter()
            .map(|n| format!("    {}: {n}", style.paint("36", "note"))),
    );
    lines
}

fn describe(change: &Change) -> (String, Vec<String>) {
    match change {
        Change::CreateApp { app } => (format!("app {app}"), vec![]),
        Change::SetConfig { app, changes } => {
            (format!("config of app {app}"), config_diff(changes))
        }
        Change::UnsetConfig { app, keys } => (
            format!("unset config {} of app {app}", keys.join(", ")),
            vec![],
        ),
        Change::SetDomains {
            app,
            domains,
            before,
        } => (
            format!("domains of app {app}"),
            vec![arrow("domains", &list(before), &list(domains))],
        ),
        Change::DeployImage { app, image, before } => (
            format!("deploy app {app}"),
            vec![arrow("image", before.as_deref().unwrap_or("(none)"), image)],
        ),
        Change::LoginRegistry {
            app,
            server,
            username,
            password_secret,
        } => (
            format!("registry login {server} for app {app}"),
            vec![
                format!("username {username:?}"),
                format!("password (sensitive), from secret `{password_secret}`"),
            ],
        ),
        Change::Scale {
            app,
            processes,
            before,
        } => (
            format!("scale app {app}"),
            formation_diff(before, processes),
        ),
        Change::SetLimits {
            app,
            memory,
            cpus,
            before_memory,
            before_cpus,
        } => {
            let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
            let mut lines = Vec::new();
            if memory != before_memory {
                lines.push(arrow("memory", &none(before_memory), &none(memory)));
            }
            if cpus != before_cpus {
                lines.push(arrow("cpus", &none(before_cpus), &none(cpus)));
            }
            (format!("limits of app {app}"), lines)
        }
        Change::MountStorage { app, mount } => {
            (format!("mount storage {mount} on app {app}"), vec![])
        }
        Change::UnmountStorage { app, mount } => (
            format!("unmount storage {mount} from app {app}"),
            vec!["unmounted only: the data directory stays on the host".into()],
        ),
        Change::SetPorts { app, ports, before } => (
            format!("ports of app {app}"),
            vec![arrow("ports", &list(before), &list(ports))],
        ),
        Change::SetRestartPolicy {
            app,
            policy,
            before,
        } => {
            let shown =
                |p: &Option<String>| p.clone().unwrap_or_else(|| "(Dokku's default)".into());
            (
                format!("restart policy of app {app}"),
                vec![arrow("restart", &shown(before), &shown(policy))],
            )
        }
        Change::Restart { app } => (format!("restart app {app}"), vec![]),
        Change::StartApp { app } => (
            format!("start app {app}"),
            vec!["it was stopped (`ps:stop`)".into()],
        ),
        Change::CreateService {
            service_kind,
            service,
            image,
        } => (
            format!("{} {service}", service_kind_word(*service_kind)),
            vec![format!("image {image}")],
        ),
        Change::UpgradeService {
            service_kind,
            service,
            image,
            before,
        } => (
            format!("upgrade {} {service}", service_kind_word(*service_kind)),
            vec![
                arrow("image", before, image),
                "through the plugin's upgrade: the data directory is kept".into(),
            ],
        ),
        Change::LinkService {
            service_kind,
            service,
            app,
        } => (
            format!(
                "link {} {service} to app {app}",
                service_kind_word(*service_kind)
            ),
            vec![],
        ),
        Change::RelinkService {
            service_kind,
            service,
            app,
            key,
        } => (
            format!(
                "relink {} {service} to app {app}",
                service_kind_word(*service_kind)
            ),
            vec![format!(
                "the app's env no longer holds the service's address{}",
                key.as_ref()
                    .map(|k| format!(" ({k} was changed)"))
                    .unwrap_or_default()
            )],
        ),
        Change::UnlinkService {
            service_kind,
            service,
            app,
        } => (
            format!(
                "unlink {} {service} from app {app}",
                service_kind_word(*service_kind)
            ),
            vec!["the service and its data stay".into()],
        ),
        Change::EnableTls { app } => (format!("enable tls for app {app}"), vec![]),
        Change::DisableTls { app } => (format!("disable tls for app {app}"), vec![]),
        Change::RecordSpec { app, .. } => (
            format!("record berth's spec on app {app}"),
            vec!["bookkeeping, once the app's other steps succeeded (no restart)".into()],
        ),
        Change::LabelApp { app } => (
            format!("mark app {app} as this environment's"),
            vec!["bookkeeping: made before berth recorded environments (no restart)".into()],
        ),
        Change::MarkService {
            service_kind,
            service,
        } => (
            format!(
                "mark {} {service} as this environment's",
                service_kind_word(*service_kind)
            ),
            vec!["bookkeeping: its record predates environment markers".into()],
        ),
        Change::DestroyApp { app } => (format!("app {app}"), vec![]),
        Change::DestroyService {
            service_kind,
            service,
        } => (
            format!("{} {service}", service_kind_word(*service_kind)),
            vec!["destroys its data (tenant is in `state: purge`)".into()],
        ),
        Change::CreateNetwork {
            network,
            internal,
            subnet,
            ..
        } => (
            format!(
                "network {network}{}{}",
                if *internal { " (internal)" } else { "" },
                subnet
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default()
            ),
            vec![],
        ),
        Change::CreateVolume { volume, secret, .. } => (
            format!("volume {volume}"),
            secret
                .iter()
                .map(|s| {
                    if s.adopt_from.is_empty() {
                        format!("holds the generated `{}` (sensitive)", s.key)
                    } else {
                        format!(
                            "holds the generated `{}` (sensitive; kept from {})",
                            s.key,
                            s.adopt_from.join(", ")
                        )
                    }
                })
                .collect(),
        ),
        Change::CreateContainer { spec, start, .. } => (
            format!(
                "container {}{}",
                spec.name,
                if *start { "" } else { " (created stopped)" }
            ),
            container_details(spec),
        ),
        Change::RecreateContainer {
            spec,
            start,
            reasons,
            changes,
            rollout,
            ..
        } => {
            let mut details: Vec<String> = changes
                .iter()
                .map(|f| {
                    arrow(
                        &f.field,
                        f.before.as_deref().unwrap_or("(none)"),
                        f.after.as_deref().unwrap_or("(none)"),
                    )
                })
                .collect();
            details.push(match rollout {
                crate::plan::Rollout::StartFirst => {
                    "start-first: the old container serves until the new one is healthy".into()
                }
                crate::plan::Rollout::StopFirst { ports } => format!(
                    "stop-first: host port {} cannot be held twice (a short gap; the old container is started again if the new one is unhealthy)",
                    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            });
            if !start {
                details.push("left stopped".into());
            }
            (
                format!(
                    "container {} (replaced because: {})",
                    spec.name,
                    reasons.join(", ")
                ),
                details,
            )
        }
        Change::StartContainer { container } => (format!("start container {container}"), vec![]),
        Change::StopContainer { container } => (format!("stop container {container}"), vec![]),
        Change::RemoveContainer { container } => (format!("container {container}"), vec![]),
        Change::RemoveNetwork { network } => (format!("network {network}"), vec![]),
        Change::RemoveVolume { volume } => (
            format!("volume {volume}"),
            vec!["destroys its data (tenant is in `state: purge`)".into()],
        ),
        Change::CreateRoute {
            route,
            hosts,
            upstreams,
            port,
        } => (
            format!("route {route}"),
            vec![format!("{} → {} port {port}", list(hosts), list(upstreams))],
        ),
        Change::UpdateRoute { route, changes, .. } => (
            format!("route {route}"),
            changes
                .iter()
                .map(|f| {
                    arrow(
                        &f.field,
                        f.before.as_deref().unwrap_or("(none)"),
                        f.after.as_deref().unwrap_or("(none)"),
                    )
                })
                .collect(),
        ),
        Change::RemoveRoute { route } => (
            format!("route {route}"),
            vec!["its hosts get the fallback answer (404)".into()],
        ),
        Change::RecordCancellation { tenant } => (
            format!("record: {tenant} cancelled"),
            vec!["data retention (`policy.retain-data`) counts from now".into()],
        ),
        Change::ClearCancellation { tenant } => (
            format!("record: forget the cancellation of {tenant}"),
            vec![],
        ),
        Change::ClearAdoption { tenant } => (
            format!("record: forget the adoption of {tenant}"),
            vec!["nothing it names is left".into()],
        ),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// `name: old → new`.
fn arrow(name: &str, before: &str, after: &str) -> String {
    format!("{name}: {before} → {after}")
}

/// One line per process type whose count changes.
fn formation_diff(before: &BTreeMap<String, u32>, after: &BTreeMap<String, u32>) -> Vec<String> {
    let types: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    types
        .into_iter()
        .filter_map(|t| {
            let (b, a) = (
                before.get(t).copied().unwrap_or(0),
                after.get(t).copied().unwrap_or(0),
            );
            (b != a).then(|| arrow(t, &b.to_string(), &a.to_string()))
        })
        .collect()
}

fn shown(value: &ConfigValue) -> String {
    match value {
        ConfigValue::Literal { value } => format!("{value:?}"),
        _ => "(sensitive)".into(),
    }
}

/// One line per changed key: `KEY: old → new`. Old values are shown only for keys the files
/// declare literal; secrets read `(sensitive)`.
fn config_diff(changes: &[ConfigChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let before = match &c.old {
                OldValue::Absent => "(none)".to_string(),
                OldValue::Present { value: Some(v) } => format!("{v:?}"),
                OldValue::Present { value: None } => "(sensitive)".to_string(),
            };
            let after = match (&c.old, &c.new) {
                (OldValue::Present { .. }, v) if v.is_sensitive() => "(sensitive, changed)".into(),
                (_, v) => shown(v),
            };
            arrow(&c.key, &before, &after)
        })
        .collect()
}

fn container_details(spec: &ContainerSpec) -> Vec<String> {
    let mut details = vec![format!("image {}", spec.image)];
    if let Some(command) = &spec.command {
        details.push(format!("command {}", command.join(" ")));
    }
    if !spec.ports.is_empty() {
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|p| match p.host {
                Some(h) => format!("{h}→{}", p.container),
                None => format!("?→{}", p.container),
            })
            .collect();
        details.push(format!("ports {}", ports.join(", ")));
    }
    if let Some(memory) = spec.memory {
        details.push(format!("memory {}M", memory >> 20));
    }
    for (key, value) in &spec.env {
        details.push(format!("env {key}={}", shown(value)));
    }
    for (volume, path) in &spec.mounts {
        details.push(format!("volume {volume} at {path}"));
    }
    details
}

/// The JSON Schema of the plan document (plan files, `plan --format json`).
#[must_use]
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Plan)).unwrap_or_default()
}

/// The versioned JSON document (`plan --format json`, plan files).
#[must_use]
pub fn render_json(plan: &Plan) -> serde_json::Value {
    let mut value = serde_json::to_value(plan).unwrap_or_default();
    let s = plan.summary();
    value["summary"] = json!({
        "create": s.create, "change": s.update, "destroy": s.destroy, "drift": s.drift,
        "refused": plan.refusals.len(),
    });
    value
}

/// GitHub refuses comments over 65,536 characters; the default budget leaves room for the
/// pipeline's own lines around the plan.
pub const MARKDOWN_BUDGET: usize = 60_000;

/// The PR comment, within [`MARKDOWN_BUDGET`] bytes.
#[must_use]
pub fn render_markdown(plan: &Plan) -> String {
    render_markdown_within(plan, MARKDOWN_BUDGET)
}

/// The PR comment within `max_bytes`: the header, refusals, warnings and the per-host table
/// always; per-tenant details in `<details>` blocks while they fit; past the budget the
/// details collapse to one row of counts per tenant (and then to a count of tenants), with a
/// pointer to the full plan.
#[must_use]
pub fn render_markdown_within(plan: &Plan, max_bytes: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKDOWN_MARKER}");
    let _ = writeln!(out, "### berth plan");
    out.push('\n');
    if plan.offline {
        let _ = writeln!(
            out,
            "> [!NOTE]\n> **Offline: hosts not observed.** This plan assumes empty hosts (no credentials in this run); it shows what the files ask for, not what would change, and cannot be applied.\n"
        );
    }
    let commit = plan
        .commit
        .as_deref()
        .map(|c| format!(" for `{}`", &c[..c.len().min(12)]))
        .unwrap_or_default();
    let _ = writeln!(out, "**{}**{commit}", summary_line(plan));
    out.push('\n');
    if !plan.refusals.is_empty() {
        let _ = writeln!(out, "> [!CAUTION]\n> **This plan is refused:**");
        for r in &plan.refusals {
            let flag = r
                .override_flag
                .as_deref()
                .map(|f| format!(" (override: `{f}`)"))
                .unwrap_or_default();
            let _ = writeln!(out, "> - {}{flag}", r.message);
        }
        out.push('\n');
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        for w in &plan.warnings {
            let _ = writeln!(out, "> - {}", w.message);
        }
        out.push('\n');
    }
    let groups = grouped(plan);
    if !groups.is_empty() {
        let _ = writeln!(
            out,
            "| host | create | change | destroy | drift |\n|---|---:|---:|---:|---:|"
        );
        for ((env, host), tenants) in &groups {
            let steps: Vec<&Step> = tenants.values().flatten().copied().collect();
            let (c, u, d, drift) = counts(&steps);
            let _ = writeln!(out, "| `{env}/{host}` | {c} | {u} | {d} | {drift} |");
        }
        out.push('\n');
    }
    let footer_room = 400;
    let style = Style { color: false };
    let mut blocks = Vec::new();
    for ((env, host), tenants) in &groups {
        for (tenant, steps) in tenants {
            let mut block = String::new();
            let _ = writeln!(
                block,
                "<details><summary><code>{tenant}</code> on <code>{env}/{host}</code>{}: {} {}</summary>\n",
                from_file(steps),
                steps.len(),
                if steps.len() == 1 {
                    "change"
                } else {
                    "changes"
                }
            );
            let _ = writeln!(block, "```diff");
            for step in steps {
                for line in step_lines(step, &style) {
                    // `diff` highlighting keys on the first column; keep `~` lines neutral.
                    let line = line
                        .strip_prefix('~')
                        .map_or(line.clone(), |rest| format!("!{rest}"));
                    let _ = writeln!(block, "{line}");
                }
            }
            let _ = writeln!(block, "```\n\n</details>\n");
            blocks.push(((*env, *host, *tenant), steps, block));
        }
    }
    let all: usize = blocks.iter().map(|(_, _, b)| b.len()).sum();
    if out.len() + all + footer_room <= max_bytes {
        for (_, _, block) in &blocks {
            out.push_str(block);
        }
        return out;
    }
    // Too long: counts per tenant while they fit, then a count of the rest.
    let _ = writeln!(
        out,
        "| tenant | host | create | change | destroy | drift |\n|---|---|---:|---:|---:|---:|"
    );
    let mut shown = 0;
    for ((env, host, tenant), steps, _) in &blocks {
        let (c, u, d, drift) = counts(steps);
        let row = format!("| `{tenant}` | `{env}/{host}` | {c} | {u} | {d} | {drift} |\n");
        if out.len() + row.len() + footer_room > max_bytes {
            break;
        }
        out.push_str(&row);
        shown += 1;
    }
    out.push('\n');
    if shown < blocks.len() {
        let _ = writeln!(out, "… and {} more tenants.\n", blocks.len() - shown);
    }
    let _ = writeln!(
        out,
        "_The details of {} tenants do not fit in a comment ({max_bytes} bytes). The full plan is the `berth-plan` artifact of this run: `berth show plan.json`._",
        blocks.len()
    );
    out
}

/// (create, change, destroy, drift) counts of some steps.
fn counts(steps: &[&Step]) -> (usize, usize, usize, usize) {
    let (mut c, mut u, mut d, mut drift) = (0, 0, 0, 0);
    for step in steps {
        match step.change.effect() {
            Effect::Create => c += 1,
            Effect::Update => u += 1,
            Effect::Destroy => d += 1,
        }
        if step.cause == Cause::Drift {
            drift += 1;
        }
    }
    (c, u, d, drift)
}
