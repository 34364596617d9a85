//! Stripe events as the bridge needs them, read from any API version Stripe still delivers.
//!
//! The bridge does not deserialize Stripe's full types (a typed parse fails on the whole event
//! when one field of a newer or older API version is missing); it reads the few fields it
//! uses from the JSON, each from wherever the event's API version puts it:
//!
//! - subscription: `status`, `customer`, `metadata.tenant_id`, and the price of each item —
//!   `items.data[].price.id` (2020-08-27 on), falling back to `items.data[].plan.id` (legacy
//!   plans, still sent beside `price`). The `current_period_*` fields that moved from the
//!   subscription to its items in 2025-03-31.basil are not used, so their move changes nothing.
//! - checkout session: `metadata.tenant_id`, then `client_reference_id`; `customer`,
//!   `subscription`, `mode`, `payment_status`.
//! - invoice: the subscription and its metadata snapshot under `parent.subscription_details`
//!   (2025-03-31.basil on) or the top-level `subscription` and `subscription_details` (before).
//!   Both places are read, the version's own first.
//!
//! Ids that will be written into a file (customer, subscription, price) must be plain Stripe
//! tokens (`[A-Za-z0-9_]`); anything else is refused here, so no event can smuggle YAML into a
//! tenant file. Tenant ids are checked later, as DNS labels, before they become a path.
//!
//! Pure: bytes in, values out.

use serde_json::Value;

/// The API version that moved invoice subscription fields under `parent`.
pub const BASIL: &str = "2025-03-31";

/// One verified Stripe event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    /// `customer.subscription.updated`, …
    pub event_type: String,
    /// Unix time the event was created; orders snapshots.
    pub created: i64,
    /// The API version the event was rendered at, when given.
    pub api_version: Option<String>,
    /// What it carries, as far as the bridge cares.
    pub object: Object,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A full subscription snapshot (`customer.subscription.*`).
    Subscription(Subscription),
    /// A completed checkout (`checkout.session.completed`, `…async_payment_succeeded`).
    Checkout(Checkout),
    /// An invoice event: it names a subscription but carries no status of it.
    Invoice(Invoice),
    /// Any other type: acknowledged, never acted on.
    Ignored,
}

/// The parts of a Subscription the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `sub_…`
    pub id: String,
    /// `cus_…`
    pub customer: Option<String>,
    /// `active`, `past_due`, … (unknown values are kept and refused later).
    pub status: String,
    /// Price ids of the items, in order.
    pub prices: Vec<String>,
    /// `metadata.tenant_id`, unchecked.
    pub tenant_id: Option<String>,
    /// Set to cancel at period end (does not change state by itself).
    pub cancel_at_period_end: bool,
    /// Collection paused (does not change state by itself).
    pub pause_collection: bool,
}

/// The parts of a Checkout Session the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// `cs_…`
    pub id: String,
    /// `metadata.tenant_id`, else `client_reference_id`, unchecked.
    pub tenant_id: Option<String>,
    /// `cus_…`
    pub customer: Option<String>,
    /// `sub_…` for subscription-mode sessions.
    pub subscription: Option<String>,
    /// `subscription`, `payment`, `setup`.
    pub mode: Option<String>,
    /// `paid`, `unpaid`, `no_payment_required`.
    pub payment_status: Option<String>,
}

/// The parts of an Invoice the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// `in_…`
    pub id: String,
    /// The subscription it bills, when it bills one.
    pub subscription: Option<String>,
    /// `tenant_id` from the subscription metadata snapshot on the invoice, unchecked.
    pub tenant_id: Option<String>,
    /// `cus_…`
    pub customer: Option<String>,
}

/// Why a verified body is not an event the bridge can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// A field the event needs is absent.
    #[error("the event has no `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an unexpected value.
    #[error("the event's `{field}` is not {expected}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

impl Event {
    /// The subscription id this event concerns, if any.
    #[must_use]
    pub fn subscription_id(&self) -> Option<&str> {
        match &self.object {
            Object::Subscription(s) => Some(&s.id),
            Object::Checkout(c) => c.subscription.as_deref(),
            Object::Invoice(i) => i.subscription.as_deref(),
            Object::Ignored => None,
        }
    }

    /// The tenant id the event names (unchecked), if it names one.
    #[must_use]
    pub fn tenant_id(&self) -> Option<&str> {
        match &self.object {
            Object::Subscription(s) => s.tenant_id.as_deref(),
            Object::Checkout(c) => c.tenant_id.as_deref(),
            Object::Invoice(i) => i.tenant_id.as_deref(),
            Object::Ignored => None,
        }
    }

    /// The customer id the event names, if any.
    #[must_use]
    pub fn customer(&self) -> Option<&str> {
        match &self.object {
            Object::Subscription(s) => s.customer.as_deref(),
            Object::Checkout(c) => c.customer.as_deref(),
            Object::Invoice(i) => i.customer.as_deref(),
            Object::Ignored => None,
        }
    }

    /// Whether the API version is 2025-03-31.basil or newer (unknown counts as newest).
    #[must_use]
    pub fn is_basil_or_newer(&self) -> bool {
        self.api_version
            .as_deref()
            .is_none_or(|v| v.get(..10).is_none_or(|date| date >= BASIL))
    }
}

/// Event types that carry a subscription snapshot.
const SUBSCRIPTION_TYPES: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
];

/// Checkout events that mean "paid (or nothing to pay)".
const CHECKOUT_TYPES: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
];

/// Invoice events that name a subscription worth re-reading.
const INVOICE_TYPES: &[&str] = &[
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.marked_uncollectible",
];

/// Whether the bridge acts on this event type at all.
#[must_use]
pub fn is_handled_type(event_type: &str) -> bool {
    SUBSCRIPTION_TYPES.contains(&event_type)
        || CHECKOUT_TYPES.contains(&event_type)
        || INVOICE_TYPES.contains(&event_type)
}

/// Read a verified webhook body.
///
/// The envelope (`id`, `type`, `created`) is required of every event; `data.object` only of
/// the types the bridge acts on, so an unknown type is acknowledged whatever it carries.
///
/// # Errors
/// Bodies that are not JSON, and events without the fields their type needs.
pub fn parse(body: &[u8]) -> Result<Event, EventError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(EventError::Invalid {
            field: "body",
            expected: "a JSON object",
        });
    }
    let id = required_str(&value, "id", "id")?;
    if !id.starts_with("evt_") || !is_token(&id) {
        return Err(EventError::Invalid {
            field: "id",
            expected: "an event id (`evt_…`)",
        });
    }
    let event_type = required_str(&value, "type", "type")?;
    let created = value
        .get("created")
        .ok_or(EventError::Missing("created"))?
        .as_i64()
        .ok_or(EventError::Invalid {
            field: "created",
            expected: "a unix time",
        })?;
    let api_version = value
        .get("api_version")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut event = Event {
        id,
        event_type,
        created,
        api_version,
        object: Object::Ignored,
    };
    if !is_handled_type(&event.event_type) {
        return Ok(event);
    }
    let object = value
        .get("data")
        .ok_or(EventError::Missing("data"))?
        .get("object")
        .filter(|o| o.is_object())
        .ok_or(EventError::Missing("data.object"))?;
    let t = event.event_type.as_str();
    event.object = if SUBSCRIPTION_TYPES.contains(&t) {
        Object::Subscription(subscription(object)?)
    } else if CHECKOUT_TYPES.contains(&t) {
        Object::Checkout(checkout(object)?)
    } else {
        Object::Invoice(invoice(object, event.is_basil_or_newer())?)
    };
    Ok(event)
}

/// Read a Subscription object (from an event, or as the API returns it on a re-fetch).
///
/// # Errors
/// When it is not a subscription or lacks `id` or `status`.
pub fn subscription(object: &Value) -> Result<Subscription, EventError> {
    expect_object(object, "subscription")?;
    let id = required_token(object, "id", "data.object.id")?;
    let status = required_str(object, "status", "data.object.status")?;
    if !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(EventError::Invalid {
            field: "data.object.status",
            expected: "a subscription status",
        });
    }
    let mut prices = Vec::new();
    if let Some(items) = object.pointer("/items/data").and_then(Value::as_array) {
        for item in items {
            let price = item
                .pointer("/price/id")
                .or_else(|| item.get("price").filter(|p| p.is_string()))
                .or_else(|| item.pointer("/plan/id"))
                .and_then(Value::as_str);
            if let Some(price) = price {
                if !is_token(price) {
                    return Err(EventError::Invalid {
                        field: "data.object.items.data.price.id",
                        expected: "a price id",
                    });
                }
                prices.push(price.to_string());
            }
        }
    }
    Ok(Subscription {
        id,
        customer: optional_id(object.get("customer"), "data.object.customer")?,
        status,
        prices,
        tenant_id: metadata_tenant(object.get("metadata")),
        cancel_at_period_end: object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        pause_collection: object.get("pause_collection").is_some_and(|p| !p.is_null()),
    })
}

fn checkout(object: &Value) -> Result<Checkout, EventError> {
    expect_object(object, "checkout.session")?;
    // The explicit key first: `client_reference_id` is often used for something else too.
    let tenant_id = metadata_tenant(object.get("metadata")).or_else(|| {
        object
            .get("client_reference_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(Checkout {
        id: required_token(object, "id", "data.object.id")?,
        tenant_id,
        customer: optional_id(object.get("customer"), "data.object.customer")?,
        subscription: optional_id(object.get("subscription"), "data.object.subscription")?,
        mode: object
            .get("mode")
            .and_then(Value::as_str)
            .map(str::to_string),
        payment_status: object
            .get("payment_status")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn invoice(object: &Value, basil: bool) -> Result<Invoice, EventError> {
    expect_object(object, "invoice")?;
    // Since basil: parent.subscription_details.{subscription, metadata}; before it: top-level
    // `subscription` and `subscription_details.metadata`. Read the version's place first.
    let new = object.pointer("/parent/subscription_details");
    let new_sub = new.and_then(|d| d.get("subscription"));
    let new_meta = new.and_then(|d| d.get("metadata"));
    let old_sub = object.get("subscription");
    let old_meta = object.pointer("/subscription_details/metadata");
    let (first, second) = if basil {
        ((new_sub, new_meta), (old_sub, old_meta))
    } else {
        ((old_sub, old_meta), (new_sub, new_meta))
    };
    let subscription = match optional_id(first.0, "data.object.subscription")? {
        Some(s) => Some(s),
        None => optional_id(second.0, "data.object.subscription")?,
    };
    let tenant_id = metadata_tenant(first.1).or_else(|| metadata_tenant(second.1));
    Ok(Invoice {
        id: required_token(object, "id", "data.object.id")?,
        subscription,
        tenant_id,
        customer: optional_id(object.get("customer"), "data.object.customer")?,
    })
}

fn expect_object(object: &Value, kind: &'static str) -> Result<(), EventError> {
    match object.get("object").and_then(Value::as_str) {
        Some(k) if k == kind => Ok(()),
        _ => Err(EventError::Invalid {
            field: "data.object.object",
            expected: kind,
        }),
    }
}

fn required_str(value: &Value, key: &str, field: &'static str) -> Result<String, EventError> {
    value
        .get(key)
        .ok_or(EventError::Missing(field))?
        .as_str()
        .map(str::to_string)
        .ok_or(EventError::Invalid {
            field,
            expected: "a string",
        })
}

fn required_token(value: &Value, key: &str, field: &'static str) -> Result<String, EventError> {
    let s = required_str(value, key, field)?;
    if is_token(&s) {
        Ok(s)
    } else {
        Err(EventError::Invalid {
            field,
            expected: "a Stripe id",
        })
    }
}

/// An id given as a string or as an expanded object with `id`; `null` is none.
fn optional_id(value: Option<&Value>, field: &'static str) -> Result<Option<String>, EventError> {
    let id = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
            Some(s) => s,
            None => return Ok(None),
        },
        Some(_) => {
            return Err(EventError::Invalid {
                field,
                expected: "an id",
            });
        }
    };
    if is_token(id) {
        Ok(Some(id.to_string()))
    } else {
        Err(EventError::Invalid {
            field,
            expected: "a Stripe id",
        })
    }
}

fn metadata_tenant(metadata: Option<&Value>) -> Option<String> {
    metadata?
        .get("tenant_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A Stripe id as it may be written into a file: 1–255 of `[A-Za-z0-9_]`.
#[must_use]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub_event(version: &str, status: &str) -> String {
        format!(
            r#"{{"id":"evt_1","object":"event","type":"customer.subscription.updated","created":10,"api_version":"{version}",
            "data":{{"object":{{"id":"sub_1","object":"subscription","customer":"cus_1","status":"{status}",
            "metadata":{{"tenant_id":"acme"}},"items":{{"object":"list","data":[{{"id":"si_1","price":{{"id":"price_pro"}},"plan":{{"id":"price_pro"}}}}]}}}}}}}}"#
        )
    }

    #[test]
    fn reads_a_subscription_event() {
        let e = parse(sub_event("2024-06-20", "past_due").as_bytes()).unwrap();
        assert_eq!(e.created, 10);
        let Object::Subscription(s) = e.object else {
            panic!()
        };
        assert_eq!(s.status, "past_due");
        assert_eq!(s.prices, vec!["price_pro"]);
        assert_eq!(s.tenant_id.as_deref(), Some("acme"));
        assert_eq!(s.customer.as_deref(), Some("cus_1"));
    }

    #[test]
    fn legacy_plan_items() {
        let body = r#"{"id":"evt_2","type":"customer.subscription.created","created":1,
            "data":{"object":{"id":"sub_2","object":"subscription","status":"active","customer":{"id":"cus_2","object":"customer"},
            "items":{"data":[{"plan":{"id":"plan_old"}}]}}}}"#;
        let Object::Subscription(s) = parse(body.as_bytes()).unwrap().object else {
            panic!()
        };
        assert_eq!(s.prices, vec!["plan_old"]);
        assert_eq!(s.customer.as_deref(), Some("cus_2"));
    }

    #[test]
    fn invoice_subscription_before_and_after_basil() {
        let old = r#"{"id":"evt_3","type":"invoice.paid","created":1,"api_version":"2024-09-30.acacia",
            "data":{"object":{"id":"in_1","object":"invoice","subscription":"sub_9","subscription_details":{"metadata":{"tenant_id":"acme"}}}}}"#;
        let new = r#"{"id":"evt_4","type":"invoice.paid","created":1,"api_version":"2025-03-31.basil",
            "data":{"object":{"id":"in_1","object":"invoice","parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_9","metadata":{"tenant_id":"acme"}}}}}}"#;
        for body in [old, new] {
            let Object::Invoice(i) = parse(body.as_bytes()).unwrap().object else {
                panic!()
            };
            assert_eq!(i.subscription.as_deref(), Some("sub_9"));
            assert_eq!(i.tenant_id.as_deref(), Some("acme"));
        }
    }

    #[test]
    fn checkout_metadata_before_client_reference() {
        let body = r#"{"id":"evt_7","type":"checkout.session.completed","created":1,
            "data":{"object":{"id":"cs_1","object":"checkout.session","client_reference_id":"user-8812",
            "metadata":{"tenant_id":"acme"},"mode":"subscription","subscription":"sub_1","customer":"cus_1"}}}"#;
        let e = parse(body.as_bytes()).unwrap();
        assert_eq!(e.tenant_id(), Some("acme"));
        let body = body.replace(r#""metadata":{"tenant_id":"acme"},"#, "");
        assert_eq!(
            parse(body.as_bytes()).unwrap().tenant_id(),
            Some("user-8812")
        );
    }

    #[test]
    fn unknown_types_need_no_data() {
        let e = parse(br#"{"id":"evt_5","type":"charge.refunded","created":1}"#).unwrap();
        assert_eq!(e.object, Object::Ignored);
    }

    #[test]
    fn refusals() {
        assert!(matches!(parse(b"{not json"), Err(EventError::NotJson(_))));
        assert_eq!(
            parse(br#"{"id":"evt_6","type":"customer.subscription.updated","created":1}"#),
            Err(EventError::Missing("data"))
        );
        let hostile = sub_event("2024-06-20", "active").replace("cus_1", "cus_1\\nstate: purge");
        assert!(matches!(
            parse(hostile.as_bytes()),
            Err(EventError::Invalid { .. })
        ));
        assert!(parse(br#"{"id":"../x","type":"a","created":1}"#).is_err());
    }
}
