//! Drivers: the adapters between a plan and real hosts (Dokku over SSH, Docker Engine API).
//!
//! Not built yet: the Dokku and Docker drivers are their own issues. This module exists so the
//! layering is fixed from the start: drivers observe live state and apply single changes; they
//! know nothing about git, Stripe, the CLI or output.
