//! The daemon's HTTP side (axum): `/healthz`, `/readyz`, `/metrics`, `/api/status`, the
//! status page at `/`, `POST /hooks/git` (push webhooks) and `POST /api/pause` /
//! `/api/resume`.
//!
//! With a bearer token configured (required for any bind that is not loopback) every route
//! but `/healthz`, `/readyz` and `/hooks/git` (which carries its own signature) needs
//! `Authorization: Bearer <token>`, compared in constant time. Webhook bodies are read
//! through a size limit before anything else; a verified push only wakes the daemon.
//! The routes are served by the bridge's accept loop (`billing::server::serve_router`):
//! a client gets `READ_TIMEOUT` for its headers and as long again for a body (408).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Shared;
use super::status::State;
use crate::billing::server::{answer, read_limited, refuse};

/// Every route of the daemon.
pub fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(hook))
        .merge(guarded)
        .with_state(shared)
}

async fn require_token(
    AxumState(shared): AxumState<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if super::same_secret(given.as_bytes(), token.as_bytes()) {
        next.run(request).await
    } else {
        let mut response = refuse(StatusCode::UNAUTHORIZED, "a bearer token is required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"berth daemon\""),
        );
        response
    }
}

async fn healthz(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    if shared.loop_alive() {
        answer(StatusCode::OK, &serde_json::json!({"status": "ok"}))
    } else {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "the reconcile loop stopped"}),
        )
    }
}

async fn readyz(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    match shared.readiness() {
        Ok(()) => answer(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        Err(reason) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "not ready", "reason": reason}),
        ),
    }
}

async fn metrics(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let text = {
        let status = shared.status();
        shared.metrics().render(&status)
    };
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn status(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let body = serde_json::to_string(&*shared.status()).unwrap_or_else(|_| "{}".into());
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn page(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let filter = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("state="))
            .and_then(State::parse)
    });
    let html = super::page::render(&shared.status(), filter, shared.refresh);
    let mut response = (StatusCode::OK, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

async fn pause(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    set_paused(&shared, true)
}

async fn resume(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    set_paused(&shared, false)
}

fn set_paused(shared: &Shared, paused: bool) -> Response {
    match shared.set_paused(paused) {
        Ok(()) => {
            tracing::info!(paused, "pause state changed over HTTP");
            answer(StatusCode::OK, &serde_json::json!({"paused": paused}))
        }
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write the pause file: {e}"),
        ),
    }
}

async fn hook(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    if !shared.webhooks.any() {
        return refuse(
            StatusCode::NOT_FOUND,
            "no push webhook secret is configured",
        );
    }
    let (parts, body) = request.into_parts();
    let body = match read_limited(&parts, body, shared.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match super::webhook::verify(header, &body, &shared.webhooks) {
        Ok(forge) => {
            tracing::info!(
                forge = forge.name(),
                bytes = body.len(),
                "push webhook verified: fetching now"
            );
            shared.count_webhook(forge.name());
            shared.wake("webhook");
            answer(
                StatusCode::ACCEPTED,
                &serde_json::json!({"outcome": "accepted", "forge": forge.name()}),
            )
        }
        Err(e) => {
            tracing::warn!(reason = %e, bytes = body.len(), "refused push webhook");
            shared.count_webhook("refused");
            refuse(StatusCode::UNAUTHORIZED, "signature verification failed")
        }
    }
}
