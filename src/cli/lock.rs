//! `berth lock status` and `berth lock break --host H`: the per-host leases of an apply.

use std::path::PathBuf;

use crate::model::live::HostRef;
use crate::output::{Hinted, Printer};
use crate::reconcile::lease;

/// Arguments of `berth lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: LockAction,
    /// The berth repo.
    #[arg(long, default_value = ".", global = true)]
    pub repo: PathBuf,
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
    let candidates: Vec<HostRef> = fleet
        .environments
        .values()
        .flat_map(|e| e.hosts.keys().map(move |h| HostRef::new(&e.name, h)))
        .filter(|h| h.to_string() == name || h.host == name)
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Hinted {
            message: format!("no host `{name}`"),
            hint: "`berth lock status` lists the hosts".into(),
        }
        .into()),
        _ => Err(Hinted {
            message: format!("host `{name}` exists in several environments"),
            hint: "write it as `environment/host`".into(),
        }
        .into()),
    }
}

/// Run it.
pub fn run(args: &LockArgs, printer: &Printer) -> anyhow::Result<u8> {
    let fleet = super::load_fleet(&args.repo, printer)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        match &args.action {
            LockAction::Status => {
                let drivers = crate::reconcile::connect(&fleet, None)
                    .await
                    .map_err(|e| super::plan::hinted_connect(&e))?;
                let mut text = String::new();
                for (host, driver) in &drivers.hosts {
                    match lease::status(driver, host).await? {
                        None => text.push_str(&format!("{host}: free\n")),
                        Some(info) => text.push_str(&format!(
                            "{host}: held by {} for `{}` since {}, expires {} (unix time)\n",
                            info.holder, info.purpose, info.started, info.expires
                        )),
                    }
                }
                printer.data(&text);
                Ok(0)
            }
            LockAction::Break { host } => {
                let host = find_host(&fleet, host)?;
                let only = std::collections::BTreeSet::from([host.clone()]);
                let drivers = crate::reconcile::connect(&fleet, Some(&only))
                    .await
                    .map_err(|e| super::plan::hinted_connect(&e))?;
                let driver = &drivers.hosts[&host];
                let before = lease::status(driver, &host).await?;
                lease::release_any(driver, &host).await?;
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
    })
}
