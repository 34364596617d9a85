//! `berth import --host H [--app NAME … | --container NAME …] [--adopt] [--secrets-file PATH]`:
//! tenant files for the apps a script made on a Dokku host, or the compose-style stacks on a
//! Docker host (docs/migrating.md).

use std::path::PathBuf;

use crate::import::{ImportError, ImportRequest};
use crate::output::{Format, Hinted, Printer, import as render};
use crate::reconcile::Source;

/// Arguments of `berth import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The berth repo; tenant files are written to its `tenants/`.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The host to read: `environment/host`, or `host` when the name is unique.
    #[arg(long)]
    pub host: String,
    /// Dokku: only this app (repeatable); default: every app berth does not manage.
    #[arg(long = "app", value_name = "NAME")]
    pub apps: Vec<String>,
    /// Docker: only this container (repeatable; a compose stack is named whole, a plain
    /// container reads as `<tenant>-<role>[-<n>]`); default: every compose project berth
    /// does not manage.
    #[arg(long = "container", value_name = "NAME")]
    pub containers: Vec<String>,
    /// Mark the imported objects as berth's, once the plan shows they match the files
    /// exactly (Dokku: berth's markers; Docker: berth's network, secret volumes and an
    /// adoption record; nothing restarts).
    #[arg(long)]
    pub adopt: bool,
    /// Write the secret values to this file (created with mode 0600) instead of showing
    /// them once on stderr.
    #[arg(long, value_name = "PATH")]
    pub secrets_file: Option<PathBuf>,
    /// Replace existing tenant files and an existing secrets file.
    #[arg(long)]
    pub force: bool,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn fail(printer: &Printer, error: ImportError) -> anyhow::Error {
    match error {
        ImportError::Session(e) => super::fail(printer, e),
        ImportError::Invalid {
            sources,
            diagnostics,
        } => {
            printer.status(&crate::output::diagnostics::render_text(
                &sources,
                &diagnostics,
                printer.color_stderr,
            ));
            let e = ImportError::Invalid {
                sources,
                diagnostics: Vec::new(),
            };
            Hinted {
                message: e.to_string(),
                hint: e.hint().unwrap_or_default(),
            }
            .into()
        }
        e => match e.hint() {
            Some(hint) => Hinted {
                message: crate::driver::error_chain(&e),
                hint,
            }
            .into(),
            None => anyhow::Error::new(e),
        },
    }
}

/// Run it.
pub fn run(args: &ImportArgs, printer: &Printer) -> anyhow::Result<u8> {
    super::refuse_markdown(args.format, "import")?;
    let source = Source {
        repo: args.repo.clone(),
        rev: None,
    };
    let loaded = super::load(&source, printer)?;
    let host = super::find_host(&loaded.fleet, &args.host)?;
    let request = ImportRequest {
        host,
        apps: args.apps.clone(),
        containers: args.containers.clone(),
        adopt: args.adopt,
        force: args.force,
        secrets_file: args.secrets_file.clone(),
    };
    let runtime = super::runtime()?;
    let outcome = runtime
        .block_on(crate::import::import(
            &source,
            &loaded,
            &request,
            &crate::driver::Connector::Real,
        ))
        .map_err(|e| fail(printer, e))?;
    for w in &outcome.warnings {
        printer.warn(w);
    }
    if let Some(notice) = render::secrets_notice(&outcome) {
        printer.status(&notice);
    }
    match args.format {
        Format::Json => printer.data(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::render_json(&outcome))?
        )),
        _ => printer.data(&render::render_text(&outcome)),
    }
    match outcome.adopt_error {
        Some(e) => Err(fail(printer, *e)),
        None => Ok(0),
    }
}
