//! `berth status` and `berth lock status`, as text and as versioned JSON.

use serde_json::json;

use crate::driver::LeaseRecord;
use crate::model::live::HostRef;
use crate::reconcile::HostStatus;

/// Version of the `status --format json` and `lock status --format json` documents.
pub const STATUS_VERSION: u32 = 1;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// One line per host.
#[must_use]
pub fn render_status_text(hosts: &[HostStatus]) -> String {
    let mut text = String::new();
    for h in hosts {
        let applied = h
            .applied
            .as_deref()
            .map_or("(never applied)".to_string(), |c| short(c).to_string());
        let behind = h.behind.map_or("unknown".to_string(), |n| n.to_string());
        text.push_str(&format!(
            "{}: applied {applied}, {behind} commits behind HEAD, {} drifted, {} pending\n",
            h.host, h.drifted, h.pending
        ));
    }
    text
}

/// The JSON document.
#[must_use]
pub fn render_status_json(hosts: &[HostStatus]) -> serde_json::Value {
    json!({
        "version": STATUS_VERSION,
        "hosts": hosts.iter().map(|h| json!({
            "host": h.host.to_string(),
            "applied": h.applied,
            "behind": h.behind,
            "drifted": h.drifted,
            "pending": h.pending,
        })).collect::<Vec<_>>(),
    })
}

/// One line per host: free, or who holds the lease and until when (local time).
#[must_use]
pub fn render_locks_text(locks: &[(HostRef, Option<LeaseRecord>)]) -> String {
    let mut text = String::new();
    for (host, lease) in locks {
        match lease {
            None => text.push_str(&format!("{host}: free\n")),
            Some(l) => text.push_str(&format!(
                "{host}: held by {} for `{}` since {}, expires {}\n",
                l.holder,
                l.purpose,
                crate::clock::describe_unix(l.started),
                crate::clock::describe_unix(l.expires)
            )),
        }
    }
    text
}

/// The JSON document (times in RFC 3339).
#[must_use]
pub fn render_locks_json(locks: &[(HostRef, Option<LeaseRecord>)]) -> serde_json::Value {
    json!({
        "version": STATUS_VERSION,
        "hosts": locks.iter().map(|(host, lease)| match lease {
            None => json!({"host": host.to_string(), "held": false}),
            Some(l) => json!({
                "host": host.to_string(),
                "held": true,
                "holder": l.holder,
                "purpose": l.purpose,
                "started": crate::clock::rfc3339(l.started),
                "expires": crate::clock::rfc3339(l.expires),
            }),
        }).collect::<Vec<_>>(),
    })
}
