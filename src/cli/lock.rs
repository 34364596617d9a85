//! `berth lock status` and `berth lock break --host H`: the per-host leases of an apply.

use std::path::PathBuf;

use crate::model::live::HostRef;
use crate::output::{Format, Hinted, Printer, status as render};
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

fn find_host(fleet: &crate::model::Fleet, name: &str) -> anyhow::Result<HostRef> {
    let all: Vec<HostRef> = fleet
        .environments
        .values()
        .flat_map(|e| e.hosts.keys().map(move |h| HostRef::new(&e.name, h)))
        .collect();
    let candidates: Vec<&HostRef> = all
        .iter()
        .filter(|h| h.to_string() == name || h.host == name)
        .collect();
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let names: Vec<String> = all.iter().map(ToString::to_string).collect();
            Err(Hinted {
                message: format!("no host `{name}`"),
                hint: format!("the hosts are: {}", names.join(", ")),
            }
            .into())
        }
        many => Err(Hinted {
            message: format!("host `{name}` exists in several environments"),
            hint: format!(
                "write it as one of: {}",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into()),
    }
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
            let host = find_host(&fleet, host)?;
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
