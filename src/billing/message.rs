//! Commit messages of the bridge, and reading its trailers back (git history is the dedupe
//! index).
//!
//! Subject: `<tenant>: <what changed> (<event type>)`, e.g.
//! `acme: tier starter → pro (customer.subscription.updated)`. Trailers:
//! `Stripe-Event: evt_…` (the dedupe key), `Stripe-Event-Type:`, `Stripe-Subscription:`.
//!
//! Pure.

use super::decide::Change;
use super::edit::state_str;

/// The trailer that names the event a commit came from.
pub const EVENT_TRAILER: &str = "Stripe-Event";

/// What the commit says.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `evt_…`
    pub event_id: &'a str,
    /// The event type.
    pub event_type: &'a str,
    /// The subscription, when there is one.
    pub subscription: Option<&'a str>,
    /// Whether the state came from re-fetching the subscription.
    pub refetched: bool,
}

/// The summary of a change: `tier starter → pro, state active → suspended (unpaid)`.
#[must_use]
pub fn summary(change: &Change) -> String {
    let mut parts = Vec::new();
    if change.created {
        let mut part = String::from("new tenant");
        if let Some((_, tier)) = &change.tier {
            part.push_str(&format!(" on tier {tier}"));
        }
        parts.push(part);
    } else if let Some((old, new)) = &change.tier {
        parts.push(match old {
            Some(old) => format!("tier {old} → {new}"),
            None => format!("tier {new}"),
        });
    }
    let status = change.status.as_ref().map(|(_, s)| s.as_str());
    if let Some((old, new)) = change.state {
        let mut part = if change.created {
            state_str(new).to_string()
        } else {
            format!("state {} → {}", state_str(old), state_str(new))
        };
        if let Some(status) = status {
            part.push_str(&format!(" ({status})"));
        }
        parts.push(part);
    } else if let Some((old, new)) = &change.status
        && !change.created
    {
        parts.push(match old {
            Some(old) => format!("billing status {old} → {new}"),
            None => format!("billing status {new}"),
        });
    }
    if parts.is_empty() {
        parts.push(
            if change.ids {
                "billing ids recorded"
            } else {
                "billing snapshot refreshed"
            }
            .to_string(),
        );
    }
    parts.join(", ")
}

/// The full commit message.
#[must_use]
pub fn message(tenant: &str, change: &Change, origin: Origin<'_>) -> String {
    let mut out = format!("{tenant}: {} ({})\n\n", summary(change), origin.event_type);
    out.push_str(&format!(
        "Written by berth bridge from a verified Stripe event{}.\n\n",
        if origin.refetched {
            " (subscription re-fetched from the Stripe API)"
        } else {
            ""
        }
    ));
    out.push_str(&format!("{EVENT_TRAILER}: {}\n", origin.event_id));
    out.push_str(&format!("Stripe-Event-Type: {}\n", origin.event_type));
    if let Some(sub) = origin.subscription {
        out.push_str(&format!("Stripe-Subscription: {sub}\n"));
    }
    out
}

/// The event ids a commit message names in `Stripe-Event:` trailers.
pub fn event_ids(message: &str) -> impl Iterator<Item = &str> {
    message.lines().filter_map(|line| {
        line.strip_prefix(EVENT_TRAILER)?
            .strip_prefix(':')
            .map(str::trim)
            .filter(|id| id.starts_with("evt_"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TenantState;

    #[test]
    fn subjects() {
        let tier = Change {
            tier: Some((Some("starter".into()), "pro".into())),
            ..Change::default()
        };
        let origin = Origin {
            event_id: "evt_1",
            event_type: "customer.subscription.updated",
            subscription: Some("sub_1"),
            refetched: false,
        };
        let m = message("acme", &tier, origin);
        assert!(m.starts_with("acme: tier starter → pro (customer.subscription.updated)\n"));
        assert_eq!(event_ids(&m).collect::<Vec<_>>(), vec!["evt_1"]);
        let suspend = Change {
            state: Some((TenantState::Active, TenantState::Suspended)),
            status: Some((Some("past_due".into()), "unpaid".into())),
            ..Change::default()
        };
        assert_eq!(summary(&suspend), "state active → suspended (unpaid)");
        let new = Change {
            created: true,
            tier: Some((None, "pro".into())),
            status: Some((None, "active".into())),
            ..Change::default()
        };
        assert_eq!(summary(&new), "new tenant on tier pro");
        assert_eq!(summary(&Change::default()), "billing snapshot refreshed");
    }
}
