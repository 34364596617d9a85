//! berth's one integration-test binary (ripgrep / cargo style: one binary links once).
#![allow(unreachable_pub)] // helpers are `pub` for the sibling test modules
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod architecture;
mod bridge;
mod ci_examples;
mod cli;
mod daemon;
mod docker;
mod dockerhost;
mod dokku;
mod examplekit;
mod examples;
mod faults;
mod fuzz_corpus;
mod gitops;
mod hostile;
mod import;
mod import_docker;
mod invariants;
mod mindroom;
mod pass;
mod plan;
mod registry;
mod rollout;
mod samples;
mod schema;
mod secrets_scan;
mod session;
mod sshd;
mod support;
mod validate;
mod vault;
