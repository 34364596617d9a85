//! The Stripe bridge: verified webhooks become commits on the repo; it never touches a server.
//!
//! Pure parts (no I/O, no clock: time is an argument): [`signature`], [`event`], [`edit`].

pub mod edit;
pub mod event;
pub mod signature;
