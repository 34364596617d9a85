//! Re-fetching a subscription from the Stripe API, the authoritative answer to "what is true
//! now" when events arrive out of order (a shell: network I/O).
//!
//! Uses the async-stripe client (authentication, `Stripe-Version`, base URL, timeouts) for one
//! raw `GET /v1/subscriptions/<id>`, read as untyped JSON and handed to the same reader as
//! webhook payloads ([`super::event::subscription`]). The typed resource crates are not used:
//! they add build time, and a typed parse fails on the whole object when one field of the
//! pinned API version is missing.

use std::time::Duration;

use stripe_client_core::{RequestBuilder, StripeMethod};

use super::event::{self, Subscription};

/// Re-fetch failures.
#[derive(Debug, thiserror::Error)]
pub enum RefetchError {
    /// The client could not be built (bad base URL or key format).
    #[error("cannot set up the Stripe client: {0}")]
    Setup(String),
    /// The request failed (network, timeout, a non-404 error status).
    #[error("re-fetching subscription `{id}` failed: {message}")]
    Request {
        /// The subscription.
        id: String,
        /// What went wrong (never the key).
        message: String,
    },
    /// The response is not a subscription.
    #[error("the Stripe API returned something that is not subscription `{id}`: {source}")]
    Shape {
        /// The subscription.
        id: String,
        /// Why.
        #[source]
        source: event::EventError,
    },
}

/// A Stripe API client for subscriptions.
#[derive(Clone)]
pub struct Refetcher {
    client: stripe::Client,
}

impl std::fmt::Debug for Refetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refetcher")
    }
}

/// The public API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

impl Refetcher {
    /// A client for `api_base` (e.g. `https://api.stripe.com/` or an emulator on loopback).
    ///
    /// # Errors
    /// An invalid base URL or key.
    pub fn new(api_key: &str, api_base: &str, timeout: Duration) -> Result<Self, RefetchError> {
        let mut base = api_base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = stripe::ClientBuilder::new(api_key)
            .url(base)
            .timeout(timeout)
            .request_strategy(stripe::RequestStrategy::Retry(2))
            .build()
            .map_err(|e| RefetchError::Setup(e.to_string()))?;
        Ok(Refetcher { client })
    }

    /// The subscription as the API has it now; `None` when the API does not know it.
    ///
    /// # Errors
    /// Network failures, error statuses other than 404, and responses that are not a
    /// subscription.
    pub async fn subscription(&self, id: &str) -> Result<Option<Subscription>, RefetchError> {
        // `id` is a checked token (`[A-Za-z0-9_]`), so it is safe in a path.
        let request = RequestBuilder::new(StripeMethod::Get, format!("/subscriptions/{id}"))
            .customize::<miniserde::json::Value>();
        let value = match request.send(&self.client).await {
            Ok(v) => v,
            Err(stripe::StripeError::Stripe(_, 404)) => return Ok(None),
            Err(e) => {
                let message = match e {
                    stripe::StripeError::Stripe(_, status) => format!("HTTP status {status}"),
                    other => other.to_string(),
                };
                return Err(RefetchError::Request {
                    id: id.to_string(),
                    message,
                });
            }
        };
        let json: serde_json::Value = serde_json::from_str(&miniserde::json::to_string(&value))
            .map_err(|e| RefetchError::Request {
                id: id.to_string(),
                message: format!("unreadable response: {e}"),
            })?;
        event::subscription(&json)
            .map(Some)
            .map_err(|source| RefetchError::Shape {
                id: id.to_string(),
                source,
            })
    }
}
