//! Drivers: the adapters between a plan and real hosts.
//!
//! [`memory`] applies plan steps to a live value (convergence tests, dry runs); [`dokku`]
//! drives Dokku over SSH; [`docker`] drives a Docker Engine through bollard. Drivers observe live state and apply single changes; they know
//! nothing about git, Stripe, the CLI or output. [`secrets`] resolves secret references at
//! apply time — the only place secret values exist.

pub mod docker;
pub mod dokku;
pub mod memory;
pub mod secrets;
