//! The bridge's HTTP side: `POST /stripe/webhook` and `GET /healthz` (a shell: sockets, the
//! clock).
//!
//! A webhook request is size-limited before it is read (413, nothing parsed), verified on its
//! raw bytes ([`super::signature`]: unsigned, forged, stale or future → 400, nothing written),
//! read as an event ([`super::event`]: unreadable → 400), optionally checked against the
//! Stripe API ([`super::refetch`]), and queued for the git writer ([`super::git`]). The answer
//! waits for the writer: 200 only once the commit is pushed (or when nothing needs writing:
//! unknown type, duplicate, no change), 422 for a refusal Stripe should retry after a fix
//! (unmapped price, invalid tenant id, an edit that fails validation), 503 when the push kept
//! failing; 408 for a body that does not arrive within [`READ_TIMEOUT`] (headers get as long,
//! see [`serve`]). Log lines name the event, its type, the tenant and the outcome — never the body,
//! a header value or a secret.
//!
//! [`router`] is the whole service, so the daemon can mount it beside its own routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::event::{self, Object};
use super::git::{Job, Outcome, WriterHandle, invalid_tenant_id};
use super::refetch::Refetcher;
use super::signature::{self, SignatureError};
use crate::model::is_dns_label;

/// Default most bytes of a webhook body.
pub const DEFAULT_MAX_BODY: usize = 512 * 1024;

/// What the HTTP side needs.
pub struct BridgeState {
    /// Endpoint secrets (several while one is rolled).
    pub secrets: Vec<Vec<u8>>,
    /// Signature tolerance in seconds.
    pub tolerance: u64,
    /// Most bytes of a body.
    pub max_body: usize,
    /// Re-fetch subscriptions from the API, when configured.
    pub refetch: Option<Refetcher>,
    /// The git writer.
    pub writer: WriterHandle,
    /// How long a request waits for its push before answering 503.
    pub reply_timeout: Duration,
}

impl std::fmt::Debug for BridgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeState")
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The bridge's routes.
pub fn router(state: Arc<BridgeState>) -> Router {
    Router::new()
        .route("/stripe/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<BridgeState>>) -> Response {
    if state.writer.is_alive() {
        answer(StatusCode::OK, &serde_json::json!({"status": "ok"}))
    } else {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "git writer stopped"}),
        )
    }
}

/// A JSON answer.
#[must_use]
pub fn answer(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Read a request body of at most `max` bytes. Size first: a declared length over the limit
/// is refused unread (413), and the body is read through the limit so an undeclared one
/// cannot grow past it either. Shared with the daemon's push webhooks.
///
/// # Errors
/// The 413 answer to send.
pub async fn read_limited(
    parts: &axum::http::request::Parts,
    body: Body,
    max: usize,
) -> Result<axum::body::Bytes, Response> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        tracing::warn!(
            bytes = declared,
            limit = max,
            "refused webhook: body too large"
        );
        return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    // Read through the limit (an undeclared length cannot grow past it) and a deadline (a
    // slow sender cannot hold the connection).
    let read = axum::body::to_bytes(body, max);
    let Ok(read) = tokio::time::timeout(READ_TIMEOUT, read).await else {
        tracing::warn!(
            seconds = READ_TIMEOUT.as_secs(),
            "refused webhook: the body did not arrive in time"
        );
        return Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        ));
    };
    read.map_err(|_| {
        tracing::warn!(limit = max, "refused webhook: body too large or unreadable");
        refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
    })
}

/// A JSON answer `{"error": reason}`.
#[must_use]
pub fn refuse(status: StatusCode, reason: &str) -> Response {
    answer(status, &serde_json::json!({"error": reason}))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn webhook(State(state): State<Arc<BridgeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_limited(&parts, body, state.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let header = parts
        .headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let secrets: Vec<&[u8]> = state.secrets.iter().map(Vec::as_slice).collect();
    let verified = match header {
        None => Err(SignatureError::Missing),
        Some(h) => signature::verify(h, &body, &secrets, now(), state.tolerance),
    };
    if let Err(e) = verified {
        tracing::warn!(reason = %e, bytes = body.len(), "refused webhook: signature");
        return refuse(StatusCode::BAD_REQUEST, "signature verification failed");
    }
    let event = match event::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(reason = %e, "refused webhook: signed, but not a readable event");
            return refuse(StatusCode::BAD_REQUEST, "not a readable Stripe event");
        }
    };
    let span = tracing::info_span!("event", id = %event.id, r#type = %event.event_type);
    let _entered = span.enter();
    if event.object == Object::Ignored {
        tracing::info!("ignored: event type not handled");
        return answer(
            StatusCode::OK,
            &serde_json::json!({"outcome": "ignored", "event": event.id}),
        );
    }
    if let Some(raw) = event.tenant_id()
        && !is_dns_label(raw)
    {
        let reason = invalid_tenant_id(raw);
        tracing::warn!(%reason, "refused");
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, &reason);
    }
    drop(_entered);
    let mut refetched = None;
    if let (Some(refetcher), Some(sub)) = (&state.refetch, event.subscription_id()) {
        match refetcher.subscription(sub).await {
            Ok(Some(s)) if s.id == sub => refetched = Some(s),
            Ok(Some(_)) => {
                tracing::warn!(event = %event.id, "the Stripe API returned another subscription; using the event's snapshot");
            }
            Ok(None) => {
                tracing::warn!(event = %event.id, subscription = %sub, "the Stripe API does not know the subscription; using the event's snapshot");
            }
            Err(e) => {
                tracing::warn!(event = %event.id, reason = %e, "re-fetch failed; Stripe will deliver the event again");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "re-fetching the subscription failed",
                );
            }
        }
    }
    let id = event.id.clone();
    let event_type = event.event_type.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job {
        event,
        refetched,
        reply: tx,
    };
    if !state.writer.send(job).await {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "git writer stopped");
    }
    let outcome = match tokio::time::timeout(state.reply_timeout, rx).await {
        Ok(Ok(o)) => o,
        Ok(Err(_)) => Outcome::Failed {
            reason: "git writer stopped".into(),
        },
        Err(_) => Outcome::Failed {
            reason: "timed out waiting for the push".into(),
        },
    };
    respond(&id, &event_type, outcome)
}

fn respond(id: &str, event_type: &str, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Committed {
            tenant,
            commit,
            branch,
            summary,
        } => {
            tracing::info!(event = %id, r#type = %event_type, %tenant, %branch, commit = %commit, change = %summary, "committed");
            answer(
                StatusCode::OK,
                &serde_json::json!({"outcome": "committed", "event": id, "tenant": tenant, "commit": commit, "branch": branch, "change": summary}),
            )
        }
        Outcome::Duplicate => {
            tracing::info!(event = %id, r#type = %event_type, "duplicate: already in history");
            answer(
                StatusCode::OK,
                &serde_json::json!({"outcome": "duplicate", "event": id}),
            )
        }
        Outcome::NoChange { tenant, reason } => {
            tracing::info!(event = %id, r#type = %event_type, tenant = tenant.as_deref().unwrap_or("-"), %reason, "no change");
            answer(
                StatusCode::OK,
                &serde_json::json!({"outcome": "no-change", "event": id, "tenant": tenant, "reason": reason}),
            )
        }
        Outcome::Refused { tenant, reason } => {
            tracing::warn!(event = %id, r#type = %event_type, tenant = tenant.as_deref().unwrap_or("-"), %reason, "refused");
            answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"outcome": "refused", "event": id, "tenant": tenant, "reason": reason}),
            )
        }
        Outcome::Failed { reason } => {
            tracing::error!(event = %id, r#type = %event_type, %reason, "not written");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"outcome": "failed", "event": id, "reason": reason}),
            )
        }
    }
}

/// Most seconds a client may take to send a request's headers, and separately its body.
/// Stripe sends a whole event in one burst; a slower client is a slow-loris, and answering it
/// with a timeout bounds what a connection can hold (docs/reliability.md).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the bridge on `listener` until `shutdown` resolves; requests in flight finish.
///
/// # Errors
/// Socket errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<BridgeState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serve `app` on `listener` until `shutdown` resolves; requests in flight finish. The
/// bridge's and the daemon's listener.
///
/// Each connection gets [`READ_TIMEOUT`] to send its headers (hyper's header timer, which
/// `axum::serve` leaves unset) and [`read_limited`] gives a body as long again, so a client
/// that dribbles bytes is cut off instead of holding a task and a socket forever.
///
/// # Errors
/// Socket errors.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    // Every connection task holds a receiver; shutdown sends on the channel and then waits
    // until all receivers are gone (their requests answered).
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors under a connection flood, or a connection reset
                    // before it was accepted: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                _ = close.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(close_rx);
    let _ = close_tx.send(true);
    close_tx.closed().await;
    Ok(())
}
