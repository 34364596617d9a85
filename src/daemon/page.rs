//! The fleet status page at `/`: one server-rendered HTML document, no script, no external
//! asset (styles inline), refreshed by the browser every `refresh` seconds. It lists the
//! daemon's head and last pass, every environment's hosts (applied commit with its message,
//! commits behind, drift, a busy lease) and the tenants with their state, mode, drift, last
//! pass and last error. `?state=<state>` shows only tenants in that state; the filter links
//! carry the counts.
//!
//! Every value is HTML-escaped: tenant ids are DNS labels, but error messages come from hosts.
//!
//! Architecture invariant: pure. A [`Status`] in, a string out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::status::{CommitView, State, Status, TenantView};

/// Render the page, showing only tenants in `filter` when one is given.
#[must_use]
pub fn render(status: &Status, filter: Option<State>, refresh: u32) -> String {
    let mut h = String::with_capacity(4096 + status.tenants.len() * 400);
    let title = match filter {
        Some(s) => format!("berth fleet: {}", s.name()),
        None => "berth fleet".to_string(),
    };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    daemon_section(&mut h, status);
    hosts_section(&mut h, status);
    tenants_section(&mut h, status, filter);
    let _ = write!(
        h,
        "<footer>refreshes every {refresh} s · <a href=\"/api/status\">/api/status</a> · <a href=\"/metrics\">/metrics</a></footer>\n</body></html>\n"
    );
    h
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}code{font-size:.95em}.muted{color:#777}\
.state{font-weight:600;padding:0 .4em;border-radius:3px}\
.synced{background:#dff3e0}.out-of-sync{background:#fff3c4}.progressing{background:#dce9fb}\
.degraded{background:#fde2c8}.failed{background:#f9d0d0}\
nav a{margin-right:.8em}nav a.on{font-weight:700;text-decoration:none;color:#222}\
.paused{background:#fff3c4;padding:.4em .6em;border-left:4px solid #e0b000}\
.error{background:#f9d0d0;padding:.4em .6em;border-left:4px solid #c00}\
footer{margin-top:2em;color:#777;font-size:.9em}";

fn daemon_section(h: &mut String, status: &Status) {
    let d = &status.daemon;
    let _ = write!(
        h,
        "<header id=\"daemon\"><h1>berth fleet</h1><p>following <code>{}</code>",
        esc(&d.source)
    );
    if let Some(branch) = &d.branch {
        let _ = write!(h, " branch <code>{}</code>", esc(branch));
    }
    if let Some(head) = &d.head {
        let _ = write!(h, " at {}", commit(head));
    }
    let _ = writeln!(h, " · {} passes since {}</p>", d.passes, esc(&d.started_at));
    if d.paused {
        h.push_str("<p class=\"paused\" id=\"paused\">paused: no pass runs until <code>berth daemon resume</code></p>\n");
    }
    if let Some(e) = &d.error {
        let _ = writeln!(
            h,
            "<p class=\"error\" id=\"daemon-error\">{} ({}, {})</p>",
            esc(&e.message),
            esc(&e.kind),
            esc(&e.at)
        );
    }
    if let Some(p) = &d.last_pass {
        let _ = writeln!(
            h,
            "<p id=\"last-pass\">last pass: <b>{}</b>, {} {}pass over {} tenants, woken by {}, {:.2} s, at {}</p>",
            esc(&p.result),
            esc(&p.kind),
            if p.deep { "deep " } else { "" },
            p.tenants,
            esc(&p.trigger),
            p.seconds,
            esc(&p.at)
        );
    }
    h.push_str("</header>\n");
}

fn hosts_section(h: &mut String, status: &Status) {
    let mut by_env: BTreeMap<&str, Vec<(&String, &super::status::HostView)>> = BTreeMap::new();
    for (key, host) in &status.hosts {
        by_env
            .entry(&host.environment)
            .or_default()
            .push((key, host));
    }
    h.push_str("<section id=\"environments\"><h2>Environments and hosts</h2>\n");
    for (env, hosts) in by_env {
        let tenants = status
            .tenants
            .values()
            .filter(|t| t.environment == env)
            .count();
        let _ = write!(
            h,
            "<h3 class=\"environment\" data-environment=\"{0}\">{0} <span class=\"muted\">({tenants} tenants)</span></h3>\n\
             <table class=\"hosts\"><thead><tr><th>host</th><th>applied commit</th><th>behind</th><th>drift</th><th>lease</th></tr></thead><tbody>\n",
            esc(env)
        );
        for (key, host) in hosts {
            let applied = host
                .applied
                .as_ref()
                .map_or_else(|| "<span class=\"muted\">none</span>".to_string(), commit);
            let behind = host
                .commits_behind
                .map_or_else(|| "?".to_string(), |b| b.to_string());
            let busy = host.busy.as_deref().map_or_else(
                || "<span class=\"muted\">free</span>".to_string(),
                |b| format!("held by {}", esc(b)),
            );
            let _ = writeln!(
                h,
                "<tr class=\"host\" data-host=\"{}\"><td>{}</td><td>{applied}</td><td class=\"behind\">{behind}</td><td class=\"drift\">{}</td><td>{busy}</td></tr>",
                esc(key),
                esc(&host.host),
                host.drift
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</section>\n");
}

fn tenants_section(h: &mut String, status: &Status, filter: Option<State>) {
    h.push_str("<section id=\"tenants\"><h2>Tenants</h2>\n<nav id=\"filter\">");
    let all = status.tenants.len();
    let _ = write!(
        h,
        "<a href=\"/\" class=\"{}\">all ({all})</a>",
        if filter.is_none() { "on" } else { "" }
    );
    for state in State::ALL {
        let count = status.counts.get(&state).copied().unwrap_or(0);
        let _ = write!(
            h,
            "<a href=\"/?state={0}\" class=\"{1}\" data-filter=\"{0}\">{0} ({count})</a>",
            state.name(),
            if filter == Some(state) { "on" } else { "" }
        );
    }
    h.push_str("</nav>\n<table id=\"tenant-table\"><thead><tr><th>tenant</th><th>environment / host</th><th>mode</th><th>state</th><th>drift</th><th>pending</th><th>last pass</th><th>last error</th></tr></thead><tbody>\n");
    let mut shown = 0;
    for (id, t) in &status.tenants {
        if filter.is_some_and(|f| f != t.state) {
            continue;
        }
        shown += 1;
        tenant_row(h, id, t);
    }
    if shown == 0 {
        h.push_str("<tr><td colspan=\"8\" class=\"muted\" id=\"no-tenants\">no tenant in this state</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn tenant_row(h: &mut String, id: &str, t: &TenantView) {
    let state = t.state.name();
    let error = match (&t.last_error, &t.last_error_at) {
        (Some(e), at) => {
            let mut cell = format!("<span class=\"error-text\">{}</span>", esc(e));
            if let Some(at) = at {
                let _ = write!(cell, " <span class=\"muted\">at {}</span>", esc(at));
            }
            if t.failures > 0 {
                let _ = write!(
                    cell,
                    " <span class=\"muted\">({} in a row)</span>",
                    t.failures
                );
            }
            if let Some(next) = &t.next_try_at {
                let _ = write!(cell, " <span class=\"muted\">next try {}</span>", esc(next));
            }
            if t.waiting_for_change {
                cell.push_str(" <span class=\"muted\">waits for a file change</span>");
            }
            cell
        }
        (None, _) => String::new(),
    };
    let note = t
        .note
        .as_deref()
        .map(|n| format!(" <span class=\"muted note\">{}</span>", esc(n)))
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<tr class=\"tenant\" data-tenant=\"{id}\" data-state=\"{state}\"><td>{id}</td><td>{}{}</td><td>{}</td><td><span class=\"state {state}\">{state}</span>{note}</td><td>{}</td><td>{}</td><td>{}</td><td>{error}</td></tr>",
        esc(&t.environment),
        t.host
            .as_deref()
            .map(|h| format!(" <span class=\"muted\">{}</span>", esc(h)))
            .unwrap_or_default(),
        esc(&t.mode),
        t.drift,
        t.pending,
        t.last_pass_at.as_deref().map(esc).unwrap_or_default(),
        id = esc(id),
    );
}

fn commit(c: &CommitView) -> String {
    let short: String = c.id.chars().take(12).collect();
    format!(
        "<code title=\"{}\">{}</code> <span class=\"message\">{}</span> <span class=\"muted\">{}</span>",
        esc(&c.id),
        esc(&short),
        esc(&c.summary),
        esc(&c.time)
    )
}

/// Escape text for HTML content and attribute values.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_state_and_escapes_what_hosts_said() {
        let mut status = Status::default();
        let t = |state, error: Option<&str>| TenantView {
            environment: "prod".into(),
            host: Some("prod/d1".into()),
            mode: "heal".into(),
            state,
            drift: 0,
            pending: 0,
            last_pass_at: None,
            last_error: error.map(str::to_string),
            last_error_at: None,
            failures: 0,
            next_try_at: None,
            waiting_for_change: false,
            note: None,
        };
        status.tenants.insert("ok".into(), t(State::Synced, None));
        status
            .tenants
            .insert("bad".into(), t(State::Failed, Some("<script>x</script>")));
        status.recount();
        let all = render(&status, None, 10);
        assert!(all.contains("data-tenant=\"ok\""));
        assert!(all.contains("&lt;script&gt;"));
        assert!(!all.contains("<script>"));
        assert!(all.contains("http-equiv=\"refresh\" content=\"10\""));
        let failed = render(&status, Some(State::Failed), 10);
        assert!(failed.contains("data-tenant=\"bad\""));
        assert!(!failed.contains("data-tenant=\"ok\""));
        assert!(failed.contains("failed (1)"));
        let none = render(&status, Some(State::Degraded), 10);
        assert!(none.contains("no tenant in this state"));
    }
}
