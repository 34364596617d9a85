//! Drivers: the adapters between a plan and real hosts.
//!
//! Today only the in-memory driver exists ([`memory`]): it applies plan steps to a live value
//! and is what the planner's convergence tests and dry runs use. The Dokku (SSH) and Docker
//! (Engine API) drivers are their own issues. Drivers observe live state and apply single
//! changes; they know nothing about git, Stripe, the CLI or output.

pub mod memory;
