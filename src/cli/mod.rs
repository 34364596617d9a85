//! The command line: one file per subcommand, each a clap `Args` struct and a `run` function.
//!
//! This layer turns raw arguments into calls of the library and maps outcomes to exit codes;
//! `anyhow` is allowed here and nowhere below.

pub mod apply;
pub mod bridge;
pub mod lock;
pub mod plan;
pub mod schema;
pub mod show;
pub mod status;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{ColorChoice, Format, Printer};

/// berth keeps a multi-tenant fleet exactly as a git repo of YAML files says.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Args {
    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every environment and tenant file and report every problem at once.
    Validate(validate::ValidateArgs),
    /// Plan the changes that make the hosts match the files.
    Plan(plan::PlanArgs),
    /// Make the hosts match the files (or execute a saved plan).
    Apply(apply::ApplyArgs),
    /// Render a saved plan file.
    Show(show::ShowArgs),
    /// Show or break the per-host leases that keep applies apart.
    Lock(lock::LockArgs),
    /// Per host: the commit it reflects, how far behind it is, and whether it drifted.
    Status(status::StatusArgs),
    /// Write the JSON Schemas of the tenant and environment files.
    Schema(schema::SchemaArgs),
    /// Receive Stripe webhooks and turn them into commits on the tenants repo.
    Bridge(Box<bridge::BridgeArgs>),
}

/// Exit code for "something went wrong".
pub const EXIT_ERROR: u8 = 1;

/// A tokio runtime for the commands that talk to hosts.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Load and validate a repo; invalid files become one error with the report printed.
pub(crate) fn load_fleet(
    repo: &std::path::Path,
    printer: &Printer,
) -> anyhow::Result<crate::model::Fleet> {
    let sources = crate::repo::load_dir(repo)?;
    let (fleet, diags) = crate::validate::validate(&sources);
    fleet.ok_or_else(|| {
        printer.status(&crate::output::diagnostics::render_text(
            &sources,
            &diags,
            printer.color_stderr,
        ));
        crate::output::Hinted {
            message: crate::output::diagnostics::summary(&sources, &diags),
            hint: "fix the files above; `berth validate` shows the same report".into(),
        }
        .into()
    })
}

/// Accept Terraform's single-dash `-out FILE` as `--out FILE`.
#[must_use]
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| {
            if a == "-out" {
                "--out".into()
            } else if let Some(rest) = a.to_str().and_then(|s| s.strip_prefix("-out=")) {
                format!("--out={rest}").into()
            } else {
                a
            }
        })
        .collect()
}

/// Run a parsed command line.
#[must_use]
pub fn run(args: Args) -> ExitCode {
    let (format, result) = match args.command {
        Command::Validate(a) => {
            let format = a.format;
            let printer = Printer::new(format, args.color);
            (printer.clone(), validate::run(&a, &printer))
        }
        Command::Plan(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), plan::run(&a, &printer))
        }
        Command::Apply(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), apply::run(&a, &printer))
        }
        Command::Lock(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), lock::run(&a, &printer))
        }
        Command::Status(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), status::run(&a, &printer))
        }
        Command::Show(a) => {
            let printer = Printer::new(a.format, args.color);
            (printer.clone(), show::run(&a, &printer))
        }
        Command::Bridge(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), bridge::run(&a, &printer))
        }
        Command::Schema(a) => {
            let printer = Printer::new(Format::Text, args.color);
            (printer.clone(), schema::run(&a, &printer))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            format.error(&error);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
