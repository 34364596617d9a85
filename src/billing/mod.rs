//! The Stripe bridge: verified webhooks become commits on the repo; it never touches a server.
//!
//! Pure parts (no I/O, no clock, no environment: time is an argument; checked by
//! `tests/it/architecture.rs`): [`signature`] (Stripe's `v1` scheme on the raw body),
//! [`event`] (the fields the bridge needs, from any API version), [`edit`] (lossless tenant
//! file edits), [`decide`] (event + file → new text, no change or refusal) and [`message`]
//! (commit messages and trailers).

pub mod decide;
pub mod edit;
pub mod event;
pub mod message;
pub mod signature;
