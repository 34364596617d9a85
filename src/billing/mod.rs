//! The Stripe bridge: verified webhooks become commits on the repo; it never touches a server.
//!
//! Pure parts (no I/O, no clock, no environment: time is an argument; checked by
//! `tests/it/architecture.rs`): [`signature`] (Stripe's `v1` scheme on the raw body),
//! [`event`] (the fields the bridge needs, from any API version), [`edit`] (lossless tenant
//! file edits), [`decide`] (event + file → new text, no change or refusal) and [`message`]
//! (commit messages and trailers).
//!
//! Shells: [`server`] (axum: `POST /stripe/webhook`, `GET /healthz`), [`git`] (the one writer
//! thread: bare clone, batches, push with fetch-recompute-retry), [`refetch`] (the optional
//! subscription re-fetch through async-stripe). The CLI is `cli/bridge.rs`; docs/stripe.md
//! is the operator's guide.

pub mod decide;
pub mod edit;
pub mod event;
pub mod git;
pub mod message;
pub mod refetch;
pub mod server;
pub mod signature;
