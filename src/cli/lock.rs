//! `berth lock status` and `berth lock break --host H`: the per-host leases of an apply.

use std::path::PathBuf;

use crate::output::{Format, Printer, status as render};
use crate::reconcile::Source;

/// Arguments of `berth lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: LockAction,
    /// The berth repo.
    #[arg(long, default_value = ".", global = true)]
    pub repo: PathBuf,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
}

/// Lock actions.
#[derive(Debug, clap::Subcommand)]
pub enum LockAction {
    /// Show who holds each host's lease.
    Status,
    /// Remove a host's lease (its holder crashed and you will not wait for it to expire).
    Break {
        /// `environment/host` or just `host` when the name is unique.
        #[arg(long)]
        host: String,
    },
}

/// Run it.
pub fn run(args: &LockArgs, printer: &Printer) -> anyhow::Result<u8> {
    super::refuse_markdown(args.format, "lock")?;
    let source = Source {
        repo: args.repo.clone(),
        rev: None,
    };
    let fleet = super::load(&source, printer)?.fleet;
    let runtime = super::runtime()?;
    let connector = crate::driver::Connector::Real;
    match &args.action {
        LockAction::Status => {
            let locks = runtime
                .block_on(crate::reconcile::lock_status(&fleet, &connector))
                .map_err(|e| super::fail(printer, e))?;
            match args.format {
                Format::Json => printer.data(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&render::render_locks_json(&locks))?
                )),
                _ => printer.data(&render::render_locks_text(&locks)),
            }
            Ok(0)
        }
        LockAction::Break { host } => {
            let host = super::find_host(&fleet, host)?;
            let before = runtime
                .block_on(crate::reconcile::lock_break(&fleet, &host, &connector))
                .map_err(|e| super::fail(printer, e))?;
            match before {
                Some(info) => printer.status(&format!(
                    "broke the lease on {host} held by {}",
                    info.holder
                )),
                None => printer.status(&format!("{host} had no lease")),
            }
            Ok(0)
        }
    }
}
