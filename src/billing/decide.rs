//! What one Stripe event does to one tenant file: `(file text, environment, event) → new text
//! | no change | refusal`.
//!
//! The rules (docs/stripe.md has the table):
//! - subscription status → tenant state: `active`, `trialing`, `past_due` → active (the status
//!   is kept in `billing.status`, so `past_due` is visible); `unpaid`, `paused` → suspended;
//!   `canceled`, `incomplete_expired` → cancelled (data is kept, as for every cancellation);
//!   `incomplete` → no change; an unknown status is refused. `pause_collection` and
//!   `cancel_at_period_end` change nothing by themselves (the status does not change).
//! - tier ← the subscription's price through the environment's `stripe.prices`. A live
//!   subscription whose prices are all unmapped is refused (Stripe retries, and the event
//!   applies once the price is mapped); ending a subscription never needs its price.
//! - ordering: `billing.updated` holds `created` of the newest snapshot the file reflects; a
//!   snapshot as old or older changes nothing. A newer snapshot always records its `created`,
//!   even when nothing else changes, so that an older one arriving late cannot undo it. A
//!   snapshot re-fetched from the API is the truth and skips the check; it then commits only
//!   real changes.
//! - a file that records another subscription is only taken over by a live one (a
//!   re-subscription); the end of a subscription the tenant no longer has changes nothing.
//! - a missing tenant is created from the environment's `stripe.new-tenant` template (its
//!   `{tenant}` placeholders replaced) by a live subscription or a paid checkout; a checkout
//!   never changes an existing tenant beyond recording missing ids.
//! - a tenant in `state: purge`, or in another environment, is never touched.
//!
//! Pure: the caller reads files and clocks.

use std::collections::BTreeMap;

use super::edit::{self, BillingKey, Current, EditError, Patch};
use super::event::{Checkout, Subscription};
use crate::spec::TenantState;

/// The environment's Stripe settings, as read from the repo.
#[derive(Debug, Clone, Copy)]
pub struct Stripe<'a> {
    /// The environment the bridge serves.
    pub environment: &'a str,
    /// `stripe.prices`: price id → tier.
    pub prices: &'a BTreeMap<String, String>,
    /// The text of the `stripe.new-tenant` template, when the environment names one.
    pub template: Option<&'a str>,
}

/// What the event says about the tenant.
#[derive(Debug, Clone, Copy)]
pub enum Snapshot<'a> {
    /// A subscription; `authoritative` when re-fetched from the API just now.
    Subscription {
        /// The subscription.
        subscription: &'a Subscription,
        /// Re-fetched (the truth) rather than carried by the event.
        authoritative: bool,
    },
    /// A completed checkout.
    Checkout(&'a Checkout),
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this text; `change` says what changed (for the commit message).
    Write {
        /// The new file text.
        text: String,
        /// What changed.
        change: Change,
    },
    /// Nothing to do (answered 2xx).
    NoChange(NoChange),
    /// Refused (answered non-2xx, so Stripe retries).
    Refuse(Refusal),
}

/// What a write changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The file is new (from the template).
    pub created: bool,
    /// Tier before and after.
    pub tier: Option<(Option<String>, String)>,
    /// State before and after.
    pub state: Option<(TenantState, TenantState)>,
    /// `billing.status` before and after.
    pub status: Option<(Option<String>, String)>,
    /// Customer or subscription id newly recorded or replaced.
    pub ids: bool,
    /// The new `billing.updated`, when it moved.
    pub updated: Option<i64>,
}

/// Kinds of change, for routing some of them to a review branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum ChangeKind {
    /// A tenant file is created.
    NewTenant,
    /// A tenant becomes cancelled.
    Cancel,
    /// A tenant becomes suspended.
    Suspend,
    /// A suspended or cancelled tenant becomes active again.
    Reactivate,
    /// The tier changes.
    Tier,
    /// Only billing data changes.
    Billing,
}

impl Change {
    /// The most significant kind of this change.
    #[must_use]
    pub fn kind(&self) -> ChangeKind {
        if self.created {
            return ChangeKind::NewTenant;
        }
        match self.state {
            Some((_, TenantState::Cancelled)) => return ChangeKind::Cancel,
            Some((_, TenantState::Suspended)) => return ChangeKind::Suspend,
            Some((_, TenantState::Active)) => return ChangeKind::Reactivate,
            _ => {}
        }
        if self.tier.is_some() {
            ChangeKind::Tier
        } else {
            ChangeKind::Billing
        }
    }
}

/// Why an event changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoChange {
    /// The file already reflects a snapshot at least as new.
    #[error("the file already reflects a snapshot from {reflected} (this one is from {event})")]
    Stale {
        /// `billing.updated` in the file.
        reflected: i64,
        /// The event's `created`.
        event: i64,
    },
    /// `incomplete` subscriptions change nothing.
    #[error("the subscription is `incomplete`: nothing changes until its first payment")]
    Incomplete,
    /// The file says exactly this already.
    #[error("the file already says this")]
    Same,
    /// The event ends a subscription the tenant no longer has.
    #[error("the tenant now has subscription `{file}`; the end of `{event}` changes nothing")]
    OtherSubscription {
        /// What the file records.
        file: String,
        /// What the event is about.
        event: String,
    },
    /// No file, and the subscription is not live: nothing to end.
    #[error("no tenant file exists and the subscription is not live: nothing to create or end")]
    NothingToEnd,
    /// A checkout that is not a subscription, or not paid yet.
    #[error("the checkout session is {0}")]
    Checkout(&'static str),
    /// The tenant is being purged; billing no longer steers it.
    #[error("the tenant is in `state: purge`; the bridge leaves it alone")]
    Purge,
}

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No price of a live subscription is in `stripe.prices`.
    #[error("price {} is not mapped to a tier in `stripe.prices`", .0.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "))]
    UnmappedPrice(Vec<String>),
    /// A live subscription has no items with a price.
    #[error("the subscription has no priced items")]
    NoPrice,
    /// Prices map to different tiers.
    #[error("the subscription's prices map to several tiers ({})", .0.join(", "))]
    AmbiguousTier(Vec<String>),
    /// A status this berth does not know.
    #[error("unknown subscription status `{0}`")]
    UnknownStatus(String),
    /// A tenant must be created but the environment names no template.
    #[error("the tenant does not exist and the environment has no `stripe.new-tenant` template")]
    NoTemplate,
    /// The tenant belongs to another environment.
    #[error("the tenant is in environment `{file}`, the bridge serves `{bridge}`")]
    OtherEnvironment {
        /// The file's environment.
        file: String,
        /// The bridge's.
        bridge: String,
    },
    /// The file (or template) cannot be edited losslessly.
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// What a subscription status does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEffect {
    /// Move the tenant to this state.
    State(TenantState),
    /// Change nothing (`incomplete`).
    Nothing,
    /// Not a status berth knows.
    Unknown,
}

/// The state table.
#[must_use]
pub fn status_effect(status: &str) -> StatusEffect {
    match status {
        "active" | "trialing" | "past_due" => StatusEffect::State(TenantState::Active),
        "unpaid" | "paused" => StatusEffect::State(TenantState::Suspended),
        "canceled" | "incomplete_expired" => StatusEffect::State(TenantState::Cancelled),
        "incomplete" => StatusEffect::Nothing,
        _ => StatusEffect::Unknown,
    }
}

/// Decide what the event does to the tenant `tenant` (a checked id) whose file is `file`.
#[must_use]
pub fn decide(
    tenant: &str,
    file: Option<&str>,
    stripe: Stripe<'_>,
    created: i64,
    snapshot: Snapshot<'_>,
) -> Decision {
    match run(tenant, file, stripe, created, snapshot) {
        Ok(d) => d,
        Err(r) => Decision::Refuse(r),
    }
}

fn run(
    tenant: &str,
    file: Option<&str>,
    stripe: Stripe<'_>,
    created: i64,
    snapshot: Snapshot<'_>,
) -> Result<Decision, Refusal> {
    let current = file.map(edit::read).transpose()?;
    if let Some(current) = &current {
        if let Some(env) = &current.environment
            && env != stripe.environment
        {
            return Err(Refusal::OtherEnvironment {
                file: env.clone(),
                bridge: stripe.environment.to_string(),
            });
        }
        if current.state() == Some(TenantState::Purge) {
            return Ok(Decision::NoChange(NoChange::Purge));
        }
    }
    match snapshot {
        Snapshot::Subscription {
            subscription,
            authoritative,
        } => on_subscription(
            tenant,
            file,
            current.as_ref(),
            stripe,
            created,
            subscription,
            authoritative,
        ),
        Snapshot::Checkout(checkout) => {
            on_checkout(tenant, file, current.as_ref(), stripe, checkout)
        }
    }
}

fn on_subscription(
    tenant: &str,
    file: Option<&str>,
    current: Option<&Current>,
    stripe: Stripe<'_>,
    created: i64,
    sub: &Subscription,
    authoritative: bool,
) -> Result<Decision, Refusal> {
    if !authoritative
        && let Some(reflected) = current.and_then(Current::updated)
        && reflected >= created
    {
        return Ok(Decision::NoChange(NoChange::Stale {
            reflected,
            event: created,
        }));
    }
    let target = match status_effect(&sub.status) {
        StatusEffect::State(s) => s,
        StatusEffect::Nothing => return Ok(Decision::NoChange(NoChange::Incomplete)),
        StatusEffect::Unknown => return Err(Refusal::UnknownStatus(sub.status.clone())),
    };
    let live = target == TenantState::Active;
    if let Some(recorded) = current.and_then(|c| c.billing(BillingKey::Subscription))
        && recorded != sub.id
        && !live
    {
        return Ok(Decision::NoChange(NoChange::OtherSubscription {
            file: recorded.to_string(),
            event: sub.id.clone(),
        }));
    }
    if current.is_none() && !live {
        return Ok(Decision::NoChange(NoChange::NothingToEnd));
    }
    let priced = if live {
        Some(tier_of(sub, stripe.prices)?)
    } else {
        None
    };
    let (base, base_current, created_file) = base(tenant, file, current, stripe)?;

    let mut patch = Patch::default();
    let mut change = Change {
        created: created_file,
        ..Change::default()
    };
    if let Some((price, tier)) = &priced {
        if base_current.tier.as_deref() != Some(tier.as_str()) {
            patch.tier = Some(tier.clone());
            change.tier = Some((base_current.tier.clone(), tier.clone()));
        }
        set(&mut patch, &base_current, BillingKey::Price, price);
    }
    let before = base_current.state().unwrap_or(TenantState::Active);
    if before != target {
        patch.state = Some(target);
        change.state = Some((before, target));
    }
    let old_status = base_current.billing(BillingKey::Status).map(str::to_string);
    if set(&mut patch, &base_current, BillingKey::Status, &sub.status) {
        change.status = Some((old_status, sub.status.clone()));
    }
    let mut ids = set(&mut patch, &base_current, BillingKey::Subscription, &sub.id);
    if let Some(customer) = &sub.customer {
        ids |= set(&mut patch, &base_current, BillingKey::Customer, customer);
    }
    change.ids = ids;
    let reflected = base_current.updated();
    let newest = reflected.map_or(created, |r| r.max(created));
    // A re-fetched snapshot commits only real changes; an event's snapshot always records
    // how new it is (see the module header).
    let record = if authoritative {
        !patch.is_empty() || created_file
    } else {
        true
    };
    if record && reflected != Some(newest) {
        patch
            .billing
            .insert(BillingKey::Updated, newest.to_string());
        change.updated = Some(newest);
    }
    if patch.is_empty() && !created_file {
        return Ok(Decision::NoChange(NoChange::Same));
    }
    let text = edit::apply(&base, &patch)?;
    Ok(Decision::Write { text, change })
}

fn on_checkout(
    tenant: &str,
    file: Option<&str>,
    current: Option<&Current>,
    stripe: Stripe<'_>,
    checkout: &Checkout,
) -> Result<Decision, Refusal> {
    if checkout.mode.as_deref() != Some("subscription") {
        return Ok(Decision::NoChange(NoChange::Checkout("not a subscription")));
    }
    if checkout.payment_status.as_deref() == Some("unpaid") {
        return Ok(Decision::NoChange(NoChange::Checkout(
            "not paid yet (wait for `checkout.session.async_payment_succeeded`)",
        )));
    }
    let (base, base_current, created_file) = base(tenant, file, current, stripe)?;
    let mut patch = Patch::default();
    let mut change = Change {
        created: created_file,
        ..Change::default()
    };
    // A checkout only fills in what is missing; subscription events own everything else.
    let fill = |patch: &mut Patch, key: BillingKey, value: &Option<String>| {
        if let Some(v) = value
            && base_current.billing(key).is_none()
        {
            patch.billing.insert(key, v.clone());
            return true;
        }
        false
    };
    change.ids = fill(&mut patch, BillingKey::Customer, &checkout.customer)
        | fill(&mut patch, BillingKey::Subscription, &checkout.subscription);
    if created_file {
        let before = base_current.state().unwrap_or(TenantState::Active);
        if before != TenantState::Active {
            patch.state = Some(TenantState::Active);
            change.state = Some((before, TenantState::Active));
        }
    }
    if patch.is_empty() && !created_file {
        return Ok(Decision::NoChange(NoChange::Same));
    }
    let text = edit::apply(&base, &patch)?;
    Ok(Decision::Write { text, change })
}

/// The text to edit: the file, or the template for a new tenant.
fn base(
    tenant: &str,
    file: Option<&str>,
    current: Option<&Current>,
    stripe: Stripe<'_>,
) -> Result<(String, Current, bool), Refusal> {
    match (file, current) {
        (Some(text), Some(current)) => Ok((text.to_string(), current.clone(), false)),
        _ => {
            let template = stripe.template.ok_or(Refusal::NoTemplate)?;
            let text = template.replace("{tenant}", tenant);
            let current = edit::read(&text)?;
            Ok((text, current, true))
        }
    }
}

/// Set a billing key when it differs; returns whether it did.
fn set(patch: &mut Patch, current: &Current, key: BillingKey, value: &str) -> bool {
    if current.billing(key) == Some(value) {
        return false;
    }
    patch.billing.insert(key, value.to_string());
    true
}

/// The (price, tier) a live subscription is on.
fn tier_of(
    sub: &Subscription,
    prices: &BTreeMap<String, String>,
) -> Result<(String, String), Refusal> {
    if sub.prices.is_empty() {
        return Err(Refusal::NoPrice);
    }
    let mapped: Vec<(&String, &String)> = sub
        .prices
        .iter()
        .filter_map(|p| prices.get(p).map(|t| (p, t)))
        .collect();
    let Some((price, tier)) = mapped.first() else {
        return Err(Refusal::UnmappedPrice(sub.prices.clone()));
    };
    let mut tiers: Vec<String> = mapped.iter().map(|(_, t)| (*t).clone()).collect();
    tiers.sort();
    tiers.dedup();
    if tiers.len() > 1 {
        return Err(Refusal::AmbiguousTier(tiers));
    }
    Ok(((*price).clone(), (*tier).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> BTreeMap<String, String> {
        [("price_s", "starter"), ("price_p", "pro")]
            .iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect()
    }

    fn sub(status: &str, price: &str) -> Subscription {
        Subscription {
            id: "sub_1".into(),
            customer: Some("cus_1".into()),
            status: status.into(),
            prices: vec![price.into()],
            tenant_id: Some("acme".into()),
            cancel_at_period_end: false,
            pause_collection: false,
        }
    }

    const TEMPLATE: &str = "# new tenant\nname: \"{tenant}\"\nenvironment: production\napps:\n  web:\n    image: app:1\n";

    fn run(file: Option<&str>, created: i64, s: &Subscription, auth: bool) -> Decision {
        let prices = prices();
        decide(
            "acme",
            file,
            Stripe {
                environment: "production",
                prices: &prices,
                template: Some(TEMPLATE),
            },
            created,
            Snapshot::Subscription {
                subscription: s,
                authoritative: auth,
            },
        )
    }

    fn text(d: Decision) -> (String, Change) {
        match d {
            Decision::Write { text, change } => (text, change),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn creates_from_the_template() {
        let (t, c) = text(run(None, 100, &sub("active", "price_p"), false));
        assert!(c.created);
        assert_eq!(
            t,
            "# new tenant\nname: \"acme\"\nenvironment: production\ntier: pro\napps:\n  web:\n    image: app:1\nbilling:\n  customer: cus_1\n  subscription: sub_1\n  status: active\n  price: price_p\n  updated: 100\n"
        );
    }

    #[test]
    fn state_table() {
        let (file, _) = text(run(None, 100, &sub("active", "price_p"), false));
        for (status, state) in [
            ("past_due", None),
            ("trialing", None),
            ("unpaid", Some(TenantState::Suspended)),
            ("paused", Some(TenantState::Suspended)),
            ("canceled", Some(TenantState::Cancelled)),
            ("incomplete_expired", Some(TenantState::Cancelled)),
        ] {
            let (_, c) = text(run(Some(&file), 200, &sub(status, "price_p"), false));
            assert_eq!(c.state.map(|s| s.1), state, "{status}");
        }
        assert_eq!(
            run(Some(&file), 200, &sub("incomplete", "price_p"), false),
            Decision::NoChange(NoChange::Incomplete)
        );
        assert!(matches!(
            run(Some(&file), 200, &sub("exploded", "price_p"), false),
            Decision::Refuse(Refusal::UnknownStatus(_))
        ));
    }

    #[test]
    fn ordering() {
        let (file, _) = text(run(None, 100, &sub("active", "price_p"), false));
        assert_eq!(
            run(Some(&file), 100, &sub("canceled", "price_p"), false),
            Decision::NoChange(NoChange::Stale {
                reflected: 100,
                event: 100
            })
        );
        // A newer snapshot with nothing else new still records its time…
        let (newer, c) = text(run(Some(&file), 150, &sub("active", "price_p"), false));
        assert_eq!(c.updated, Some(150));
        assert_eq!(c.kind(), ChangeKind::Billing);
        // …so an older one arriving late cannot undo it.
        assert!(matches!(
            run(Some(&newer), 120, &sub("unpaid", "price_p"), false),
            Decision::NoChange(NoChange::Stale { .. })
        ));
        // A re-fetched snapshot is the truth whatever its event's age, and only commits changes.
        assert_eq!(
            run(Some(&newer), 120, &sub("active", "price_p"), true),
            Decision::NoChange(NoChange::Same)
        );
        let (_, c) = text(run(Some(&newer), 120, &sub("active", "price_s"), true));
        assert_eq!(c.tier, Some((Some("pro".into()), "starter".into())));
        assert_eq!(c.updated, None);
    }

    #[test]
    fn unmapped_prices() {
        let (file, _) = text(run(None, 100, &sub("active", "price_p"), false));
        assert_eq!(
            run(Some(&file), 200, &sub("active", "price_x"), false),
            Decision::Refuse(Refusal::UnmappedPrice(vec!["price_x".into()]))
        );
        // Ending a subscription never needs its price.
        let (_, c) = text(run(Some(&file), 200, &sub("canceled", "price_x"), false));
        assert_eq!(c.kind(), ChangeKind::Cancel);
    }

    #[test]
    fn other_subscriptions_and_purge() {
        let (file, _) = text(run(None, 100, &sub("active", "price_p"), false));
        let mut old = sub("canceled", "price_p");
        old.id = "sub_0".into();
        assert!(matches!(
            run(Some(&file), 200, &old, false),
            Decision::NoChange(NoChange::OtherSubscription { .. })
        ));
        let mut new = sub("active", "price_s");
        new.id = "sub_2".into();
        let (_, c) = text(run(Some(&file), 200, &new, false));
        assert!(c.ids);
        let purge = file.replace("tier: pro", "tier: pro\nstate: purge");
        assert_eq!(
            run(Some(&purge), 300, &sub("active", "price_s"), false),
            Decision::NoChange(NoChange::Purge)
        );
        let other = file.replace("environment: production", "environment: staging");
        assert!(matches!(
            run(Some(&other), 300, &sub("active", "price_s"), false),
            Decision::Refuse(Refusal::OtherEnvironment { .. })
        ));
        assert_eq!(
            run(None, 300, &sub("canceled", "price_s"), false),
            Decision::NoChange(NoChange::NothingToEnd)
        );
    }

    #[test]
    fn checkout_creates_or_fills_in() {
        let prices = prices();
        let stripe = Stripe {
            environment: "production",
            prices: &prices,
            template: Some(TEMPLATE),
        };
        let checkout = Checkout {
            id: "cs_1".into(),
            tenant_id: Some("acme".into()),
            customer: Some("cus_1".into()),
            subscription: Some("sub_1".into()),
            mode: Some("subscription".into()),
            payment_status: Some("paid".into()),
        };
        let (t, c) = text(decide(
            "acme",
            None,
            stripe,
            5,
            Snapshot::Checkout(&checkout),
        ));
        assert!(c.created && c.ids);
        assert!(t.ends_with("billing:\n  customer: cus_1\n  subscription: sub_1\n"));
        assert_eq!(
            decide("acme", Some(&t), stripe, 6, Snapshot::Checkout(&checkout)),
            Decision::NoChange(NoChange::Same)
        );
        let unpaid = Checkout {
            payment_status: Some("unpaid".into()),
            ..checkout
        };
        assert!(matches!(
            decide("acme", None, stripe, 5, Snapshot::Checkout(&unpaid)),
            Decision::NoChange(NoChange::Checkout(_))
        ));
    }
}
