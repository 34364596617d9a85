//! `berth import`: what was written, as text (stdout) or JSON, and the one notice that shows
//! secret values on stderr when no `--secrets-file` was given.
//!
//! Stdout never carries a secret value: the data names secrets and their variables only.

use serde_json::json;

use crate::import::ImportOutcome;

/// Version of the `import --format json` document.
pub const IMPORT_VERSION: u32 = 1;

/// The files written, the secrets they refer to, and what adoption marked.
#[must_use]
pub fn render_text(outcome: &ImportOutcome) -> String {
    let mut text = String::new();
    for t in &outcome.tenants {
        let apps: Vec<String> = t
            .apps
            .iter()
            .map(|(dokku, app)| format!("{dokku} → {app}"))
            .collect();
        text.push_str(&format!("+ {} ({})\n", t.path, apps.join(", ")));
        for s in &t.services {
            text.push_str(&format!("    service {s}\n"));
        }
    }
    for s in &outcome.secrets {
        text.push_str(&format!(
            "  secret {} ← {} {} ({})\n",
            s.name, s.app, s.key, s.env_var
        ));
    }
    if let Some(path) = &outcome.secrets_file {
        text.push_str(&format!(
            "  secret values written to {} (mode 0600)\n",
            path.display()
        ));
    }
    for a in &outcome.adopted {
        text.push_str(&format!("~ adopted: {a}\n"));
    }
    text.push_str(&format!(
        "{} tenant file{} from {}{}\n",
        outcome.tenants.len(),
        if outcome.tenants.len() == 1 { "" } else { "s" },
        outcome.host,
        if outcome.adopt_error.is_some() {
            "; not adopted (below)"
        } else if outcome.adopted.is_empty() {
            "; the objects stay foreign until `berth import --adopt`"
        } else {
            "; adopted: `berth plan` should now be empty"
        }
    ));
    text
}

/// The same as versioned JSON (no secret values).
#[must_use]
pub fn render_json(outcome: &ImportOutcome) -> serde_json::Value {
    json!({
        "version": IMPORT_VERSION,
        "host": outcome.host.to_string(),
        "tenants": outcome.tenants.iter().map(|t| json!({
            "id": t.id,
            "path": t.path,
            "apps": t.apps,
            "services": t.services,
        })).collect::<Vec<_>>(),
        "secrets": outcome.secrets.iter().map(|s| json!({
            "name": s.name,
            "env-var": s.env_var,
            "app": s.app,
            "key": s.key,
        })).collect::<Vec<_>>(),
        "secrets-file": outcome.secrets_file.as_ref().map(|p| p.display().to_string()),
        "adopted": outcome.adopted,
        "warnings": outcome.warnings,
    })
}

/// The secret values, once, for stderr — only when they were not written to a file.
#[must_use]
pub fn secrets_notice(outcome: &ImportOutcome) -> Option<String> {
    let shown: Vec<String> = outcome
        .secrets
        .iter()
        .filter_map(|s| {
            s.value
                .as_ref()
                .map(|v| format!("{}={}", s.env_var, shell_quote(&v.0)))
        })
        .collect();
    if shown.is_empty() {
        return None;
    }
    Some(format!(
        "secret values (shown once; berth keeps no copy — store them with the environment's secret provider, or import again with `--secrets-file`):\n{}",
        shown.join("\n")
    ))
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}
