//! The Stripe bridge: verified webhooks become commits on the repo; it never touches a server.
//!
//! Not built yet (the bridge issue).
