//! berth: tenants as code.
//!
//! A git repo of YAML files (`environments/<env>.yaml`, `tenants/<id>.yaml`) is the desired
//! state of a multi-tenant fleet; berth validates it, plans the difference against live Dokku
//! apps and Docker stacks, and applies the plan. docs/ARCHITECTURE.md is the long version of
//! this map.
//!
//! Code map:
//! - pure core (no I/O, no clock, no environment; enforced by `tests/it/architecture.rs`):
//!   [`spec`] (the file format), [`model`] (validated types), [`validate`] (spec → model with
//!   diagnostics), [`plan`] (desired vs live → plan);
//! - shells: [`repo`] (reads files), [`cli`] (one file per subcommand), [`output`] (the only
//!   code that prints), and [`driver`], [`execute`], [`reconcile`], [`gitops`], [`billing`], [`import`].

pub mod billing;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod driver;
pub mod execute;
pub mod gitops;
pub mod import;
pub mod model;
pub mod output;
pub mod plan;
pub mod reconcile;
pub mod repo;
pub mod spec;
pub mod validate;
