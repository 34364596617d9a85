//! `berth import`: describe what a provisioning script made on a host as tenant files, and
//! (with adoption) mark those objects as berth's.
//!
//! The shell around [`translate`] (pure: observation → file text). One import:
//!
//! 1. connects to the one host named and observes it through the driver face, exactly as a
//!    plan does — reads only, nothing on the host changes;
//! 2. translates the apps asked for (all that are nobody's by default) into tenant files;
//! 3. refuses before writing anything when a file exists (unless `force`), when the
//!    environment does not declare the secret names the files refer to, or when the files
//!    would not validate together with the rest of the repo;
//! 4. writes the secret values once — to a 0600 file, or hands them back to be shown once —
//!    and the tenant files;
//! 5. with `adopt`: plans the repo as if berth owned the imported objects; the plan may only
//!    write berth's markers (the `BERTH_TENANT` config key with `--no-restart`, the
//!    environment and spec labels, the service records) — anything else means the files do
//!    not describe the host exactly and nothing is marked. The markers are written under the
//!    host's lease, like any apply.
//!
//! On a Docker host the same steps read compose-style stacks ([`docker`]) and adoption
//! writes berth's network, secret volumes and an adoption record instead of markers
//! ([`adopt_docker`]): an Engine cannot label a running container.

mod adopt_docker;
pub mod docker;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::driver::{Connector, LeaseRecord};
use crate::model::HostTarget;
use crate::model::live::{HostRef, LiveValue};
use crate::plan::{Change, Step};
use crate::reconcile::{Loaded, PlanSettings, Session, SessionError, Source};
use crate::spec::source::{FileKind, SourceFile};
use crate::validate::Diagnostic;

pub use self::translate::{ImportedSecret, Problem};

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The host to read.
    pub host: HostRef,
    /// Dokku app names; empty: every app on the host that is nobody's.
    pub apps: Vec<String>,
    /// Docker container names; empty: every compose project on the host that is nobody's.
    pub containers: Vec<String>,
    /// Mark the imported objects as berth's.
    pub adopt: bool,
    /// Overwrite existing tenant files and secrets file.
    pub force: bool,
    /// Where to write the secret values (0600); `None`: hand them back to be shown once.
    pub secrets_file: Option<PathBuf>,
}

/// One tenant written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantWritten {
    /// Tenant id.
    pub id: String,
    /// `tenants/<id>.yaml`.
    pub path: String,
    /// Dokku app → app name in the file.
    pub apps: BTreeMap<String, String>,
    /// Service keys described.
    pub services: Vec<String>,
}

/// A secret the files refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOut {
    /// Secret name.
    pub name: String,
    /// `BERTH_SECRET_<NAME>` (provider `env`).
    pub env_var: String,
    /// App and key it came from.
    pub app: String,
    /// Config key.
    pub key: String,
    /// The value, only when no secrets file was given (to be shown once, on stderr).
    pub value: Option<LiveValue>,
}

/// What an import did.
#[derive(Debug)]
pub struct ImportOutcome {
    /// The host read.
    pub host: HostRef,
    /// Tenant files written.
    pub tenants: Vec<TenantWritten>,
    /// Secret references the files hold.
    pub secrets: Vec<SecretOut>,
    /// The secrets file written, if any.
    pub secrets_file: Option<PathBuf>,
    /// The marker steps adoption ran (`set-config acme-web`, …); empty without `adopt`.
    pub adopted: Vec<String>,
    /// What the files cannot say.
    pub warnings: Vec<String>,
    /// Why adoption failed after the files were written (`NotExact`, `AdoptFailed`, …).
    pub adopt_error: Option<Box<ImportError>>,
}

/// Import failures; nothing was written unless the message says so.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Loading, connecting, observing, leases.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The host is not in the repo.
    #[error("no host `{host}` in the repo")]
    UnknownHost {
        /// The host.
        host: HostRef,
    },
    /// `--app` on a Docker host, or `--container` on a Dokku host.
    #[error("host `{host}` is a {kind} host: `{flag}` does not apply")]
    WrongSelector {
        /// The host.
        host: HostRef,
        /// `dokku` or `docker`.
        kind: &'static str,
        /// The flag given.
        flag: &'static str,
    },
    /// Reading the Docker Engine or adopting there.
    #[error(transparent)]
    Docker(#[from] crate::driver::docker::DockerError),
    /// Apps or services that cannot be described.
    #[error("{} on `{host}` cannot be imported:\n{}", plural(problems.len(), "object"), problems.iter().map(|p| format!("  {}\n    hint: {}", p.message, p.hint)).collect::<Vec<_>>().join("\n"))]
    Untranslatable {
        /// The host.
        host: HostRef,
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// Nothing to import.
    #[error("host `{host}` has no {what} berth does not manage already")]
    Nothing {
        /// The host.
        host: HostRef,
        /// `app` (Dokku) or `compose stack` (Docker).
        what: &'static str,
    },
    /// A tenant file exists.
    #[error("tenant file `{path}` exists; berth import never overwrites a tenant file")]
    Exists {
        /// Relative path.
        path: String,
    },
    /// The secrets file exists.
    #[error("secrets file `{}` exists", path.display())]
    SecretsFileExists {
        /// Path.
        path: PathBuf,
    },
    /// The environment does not declare the secret names.
    #[error("environment `{environment}` does not declare the secret{} the imported files refer to: {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    UndeclaredSecrets {
        /// Environment.
        environment: String,
        /// Its file.
        file: String,
        /// Missing names.
        names: Vec<String>,
        /// Whether the environment has a `secrets:` provider at all.
        has_provider: bool,
    },
    /// The generated files do not validate with the repo.
    #[error("the imported files do not validate with the rest of the repo")]
    Invalid {
        /// The sources including the new files.
        sources: Box<crate::spec::source::SourceSet>,
        /// What is wrong.
        diagnostics: Vec<Diagnostic>,
    },
    /// A file could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// Path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Adoption would change more than markers.
    #[error("not adopted: the host is not exactly what the imported files say (the plan would change more than ownership):\n{}", steps.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n"))]
    NotExact {
        /// The steps and refusals, described.
        steps: Vec<String>,
    },
    /// A marker step failed.
    #[error("adoption failed on `{host}`: {}", failed.join("; "))]
    AdoptFailed {
        /// The host.
        host: HostRef,
        /// Failed steps with their errors.
        failed: Vec<String>,
    },
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl ImportError {
    /// What the user can do about it.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ImportError::Session(e) => return e.hint(),
            ImportError::UnknownHost { .. } => {
                "`--host` takes `environment/host` (or `host` when unique) from an environment file".into()
            }
            ImportError::WrongSelector { kind, .. } => {
                if *kind == "docker" {
                    "name Docker containers with `--container`".into()
                } else {
                    "name Dokku apps with `--app`".into()
                }
            }
            ImportError::Docker(_) => return None,
            ImportError::Untranslatable { .. } => {
                "nothing was written; fix the objects above or leave them out with `--app` (Dokku) or `--container` (Docker)".into()
            }
            ImportError::Nothing { .. } => {
                "`berth plan` shows what berth already manages there".into()
            }
            ImportError::Exists { .. } => {
                "nothing was written; move the file away, or pass `--force` to replace it".into()
            }
            ImportError::SecretsFileExists { .. } => {
                "nothing was written; choose another `--secrets-file`, or pass `--force` to replace it".into()
            }
            ImportError::UndeclaredSecrets {
                file,
                names,
                has_provider,
                ..
            } => {
                let list = names.join(", ");
                if *has_provider {
                    format!("nothing was written; add them to `secrets.names` in {file} (`names: [{list}]`) and import again")
                } else {
                    format!("nothing was written; add `secrets: {{ provider: env, names: [{list}] }}` to {file} (or another provider) and import again")
                }
            }
            ImportError::Invalid { .. } => {
                "nothing was written; this is a berth bug: please report it with the diagnostics above".into()
            }
            ImportError::Write { .. } => return None,
            ImportError::NotExact { .. } => {
                "the tenant files are written and nothing on the host was changed: fix the host until the differences above are gone and adopt again, or move that tenant beside the old one (docs/migrating.md)".into()
            }
            ImportError::AdoptFailed { .. } => {
                "the tenant files are written and what was done stays done: run `berth import --adopt` again (renamed containers go by berth's names now)".into()
            }
        })
    }
}

/// `tenants/<id>.yaml` or `.yml` already there.
fn existing_tenant_file(repo: &Path, id: &str) -> Option<String> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| format!("tenants/{id}.{ext}"))
        .find(|rel| repo.join(rel).symlink_metadata().is_ok())
}

/// A value in shell single quotes.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// The secrets file: `BERTH_SECRET_<NAME>='value'` lines (provider `env`).
fn secrets_file_text(host: &HostRef, secrets: &[ImportedSecret]) -> String {
    let mut text = format!(
        "# Secret values `berth import` read from `{host}`. Keep this file out of git.\n\
         # Provider `env`: `set -a; . ./THIS_FILE; set +a` before berth plan/apply.\n\
         # Provider `file`/`vault`: store each value under the name after BERTH_SECRET_.\n"
    );
    for s in secrets {
        text.push_str(&format!(
            "# {} of app {}\n{}={}\n",
            s.key,
            s.app,
            crate::driver::secrets::SecretProvider::env_var(&s.name),
            shell_quote(&s.value.0)
        ));
    }
    text
}

fn write_new(path: &Path, text: &str, force: bool, private: bool) -> Result<(), std::io::Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Import from one host (see the module docs).
///
/// # Errors
/// [`ImportError`], before anything is written (but for a failed write). A failed adoption
/// comes back inside the outcome, beside the files already written.
#[allow(clippy::too_many_lines)]
pub async fn import(
    source: &Source,
    loaded: &Loaded,
    request: &ImportRequest,
    connector: &Connector,
) -> Result<ImportOutcome, ImportError> {
    let host = &request.host;
    let env = loaded
        .fleet
        .environments
        .get(&host.environment)
        .ok_or_else(|| ImportError::UnknownHost { host: host.clone() })?;
    let host_spec = env
        .hosts
        .get(&host.host)
        .ok_or_else(|| ImportError::UnknownHost { host: host.clone() })?;
    let on_docker = matches!(host_spec.target, HostTarget::Docker { .. });
    match (
        on_docker,
        request.apps.is_empty(),
        request.containers.is_empty(),
    ) {
        (true, false, _) => {
            return Err(ImportError::WrongSelector {
                host: host.clone(),
                kind: "docker",
                flag: "--app",
            });
        }
        (false, _, false) => {
            return Err(ImportError::WrongSelector {
                host: host.clone(),
                kind: "dokku",
                flag: "--container",
            });
        }
        _ => {}
    }
    let only = BTreeSet::from([host.clone()]);
    let mut session = Session::connect(
        loaded.fleet.clone(),
        loaded.commit.clone(),
        connector,
        Some(&only),
    )
    .await?;
    let repo = &source.repo;
    let schema = repo
        .join("schema/tenant.schema.json")
        .is_file()
        .then_some("../schema/tenant.schema.json");
    let untranslatable = |problems| ImportError::Untranslatable {
        host: host.clone(),
        problems,
    };
    let mut inventory = None;
    let imported = if on_docker {
        let Some(crate::driver::AnyDriver::Docker(driver)) = session.drivers.hosts.get(host) else {
            return Err(ImportError::UnknownHost { host: host.clone() });
        };
        let read = driver.inventory().await?;
        let imported = docker::docker(&docker::DockerInput {
            environment: env,
            host: &host.host,
            inventory: &read,
            containers: &request.containers,
            schema,
        })
        .map_err(untranslatable)?;
        inventory = Some(read);
        imported
    } else {
        let live = session.observe(None).await?;
        let Some(observed) = live.hosts.get(host) else {
            return Err(ImportError::UnknownHost { host: host.clone() });
        };
        translate::dokku(&translate::DokkuInput {
            environment: env,
            host: &host.host,
            live: &observed.dokku,
            apps: &request.apps,
            schema,
        })
        .map_err(untranslatable)?
    };
    if imported.tenants.is_empty() {
        return Err(ImportError::Nothing {
            host: host.clone(),
            what: if on_docker { "compose stack" } else { "app" },
        });
    }
    // Refusals before anything is written.
    let all_secrets: Vec<&ImportedSecret> =
        imported.tenants.iter().flat_map(|t| &t.secrets).collect();
    let owned: Vec<ImportedSecret> = all_secrets.iter().map(|s| (*s).clone()).collect();
    let secrets_text = secrets_file_text(host, &owned);
    // A file holding exactly what would be written is no conflict (import, review, then
    // `import --adopt`): it is left as it is.
    let same = |path: &Path, text: &str| std::fs::read_to_string(path).is_ok_and(|t| t == text);
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    for t in &imported.tenants {
        if let Some(path) = existing_tenant_file(repo, &t.id) {
            if path.ends_with(".yaml") && same(&repo.join(&path), &t.text) {
                unchanged.insert(t.id.clone());
            } else if !request.force {
                return Err(ImportError::Exists { path });
            }
        }
    }
    let mut secrets_unchanged = false;
    if let Some(path) = &request.secrets_file
        && !all_secrets.is_empty()
        && path.symlink_metadata().is_ok()
    {
        secrets_unchanged = same(path, &secrets_text);
        if !secrets_unchanged && !request.force {
            return Err(ImportError::SecretsFileExists { path: path.clone() });
        }
    }
    let undeclared: Vec<String> = all_secrets
        .iter()
        .filter(|s| env.secrets.provider.is_none() || !env.secrets.names.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    if !undeclared.is_empty() {
        let file = loaded
            .sources
            .files
            .iter()
            .find(|f| f.kind == FileKind::Environment && f.stem() == env.name)
            .map_or_else(
                || format!("environments/{}.yaml", env.name),
                |f| f.path.clone(),
            );
        return Err(ImportError::UndeclaredSecrets {
            environment: env.name.clone(),
            file,
            names: undeclared,
            has_provider: env.secrets.provider.is_some(),
        });
    }
    // The repo with the new files must validate.
    let mut sources = loaded.sources.clone();
    let ids: BTreeSet<&str> = imported.tenants.iter().map(|t| t.id.as_str()).collect();
    sources
        .files
        .retain(|f| !(f.kind == FileKind::Tenant && ids.contains(f.stem())));
    for t in &imported.tenants {
        sources.files.push(SourceFile {
            path: format!("tenants/{}.yaml", t.id),
            kind: FileKind::Tenant,
            text: Ok(t.text.clone()),
        });
    }
    sources
        .files
        .sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    let (fleet, diagnostics) = crate::reconcile::validate(&sources);
    if fleet.is_none() {
        return Err(ImportError::Invalid {
            sources: Box::new(sources),
            diagnostics,
        });
    }
    // Write: secrets first (a tenant file without its values is worse than the reverse).
    let mut secrets_out: Vec<SecretOut> = all_secrets
        .iter()
        .map(|s| SecretOut {
            name: s.name.clone(),
            env_var: crate::driver::secrets::SecretProvider::env_var(&s.name),
            app: s.app.clone(),
            key: s.key.clone(),
            value: None,
        })
        .collect();
    match &request.secrets_file {
        Some(_) if secrets_unchanged => {}
        Some(path) if !all_secrets.is_empty() => {
            write_new(path, &secrets_text, true, true).map_err(|source| ImportError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Some(_) => {}
        None => {
            for (out, s) in secrets_out.iter_mut().zip(&all_secrets) {
                out.value = Some(s.value.clone());
            }
        }
    }
    let tenants_dir = repo.join("tenants");
    std::fs::create_dir_all(&tenants_dir).map_err(|source| ImportError::Write {
        path: tenants_dir.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for t in &imported.tenants {
        let rel = format!("tenants/{}.yaml", t.id);
        let path = repo.join(&rel);
        if !unchanged.contains(&t.id) {
            // A `.yml` twin replaced by `--force` goes, or the repo would hold the id twice.
            let twin = repo.join(format!("tenants/{}.yml", t.id));
            if request.force && twin.symlink_metadata().is_ok() {
                std::fs::remove_file(&twin).map_err(|source| ImportError::Write {
                    path: twin.clone(),
                    source,
                })?;
            }
            write_new(&path, &t.text, request.force, false)
                .map_err(|source| ImportError::Write { path, source })?;
        }
        written.push(TenantWritten {
            id: t.id.clone(),
            path: rel,
            apps: t.apps.clone(),
            services: t.services.clone(),
        });
    }
    let mut outcome = ImportOutcome {
        host: host.clone(),
        tenants: written,
        secrets: secrets_out,
        secrets_file: request
            .secrets_file
            .clone()
            .filter(|_| !all_secrets.is_empty()),
        adopted: Vec::new(),
        warnings: imported.warnings.clone(),
        adopt_error: None,
    };
    if request.adopt {
        let adopted = match &inventory {
            Some(inventory) => {
                adopt_docker::adopt(&mut session, source, host, &imported, inventory).await
            }
            None => adopt(&mut session, source, host, &imported).await,
        };
        match adopted {
            Ok(steps) => outcome.adopted = steps,
            Err(e) => outcome.adopt_error = Some(Box::new(e)),
        }
    }
    Ok(outcome)
}

/// The changes adoption may make: berth's markers and nothing else.
fn is_marker(change: &Change) -> bool {
    match change {
        Change::SetConfig { changes, .. } => changes
            .iter()
            .all(|c| c.key == crate::model::desired::BERTH_TENANT_KEY),
        Change::LabelApp { .. } | Change::RecordSpec { .. } | Change::MarkService { .. } => true,
        _ => false,
    }
}

fn describe(step: &Step) -> String {
    match step.change.object() {
        Some((_, name)) => format!("{} {name}", step.change.kind_name()),
        None => step.change.kind_name().to_string(),
    }
}

/// Mark the imported objects as berth's (module docs, step 5).
async fn adopt(
    session: &mut Session,
    source: &Source,
    host: &HostRef,
    imported: &translate::Imported,
) -> Result<Vec<String>, ImportError> {
    let loaded = crate::reconcile::load(source)?;
    session.reload(loaded.fleet, loaded.commit, None);
    let mut live = session.observe(None).await?;
    let ids: BTreeSet<&str> = imported.tenants.iter().map(|t| t.id.as_str()).collect();
    if let Some(observed) = live.hosts.get_mut(host) {
        for t in &imported.tenants {
            for app in t.apps.keys() {
                if let Some(a) = observed.dokku.apps.get_mut(app) {
                    a.owner = Some(t.id.clone());
                }
            }
            for key in &t.services {
                if let Some(s) = observed.dokku.services.get_mut(key) {
                    s.owner = Some(t.id.clone());
                }
            }
        }
    }
    let plan = session.plan_against(&live, &PlanSettings::default());
    let mut not_markers: Vec<String> = plan
        .refusals
        .iter()
        .filter(|r| r.tenant.as_deref().is_some_and(|t| ids.contains(t)))
        .map(|r| format!("refused: {}", r.message))
        .collect();
    not_markers.extend(
        plan.steps
            .iter()
            .filter(|s| ids.contains(s.tenant.as_str()) && !is_marker(&s.change))
            .map(describe),
    );
    if !not_markers.is_empty() {
        return Err(ImportError::NotExact { steps: not_markers });
    }
    let (markers, _) = plan.retain(|s| ids.contains(s.tenant.as_str()));
    if markers.steps.is_empty() {
        return Ok(Vec::new());
    }
    let defects = crate::plan::check::check(&markers, &live);
    if !defects.is_empty() {
        return Err(SessionError::Malformed { defects }.into());
    }
    let Some(driver) = session.drivers.hosts.get(host) else {
        return Err(ImportError::UnknownHost { host: host.clone() });
    };
    let record = acquire_lease(driver).await?;
    let result = execute_steps(&markers, session).await;
    let _ = crate::reconcile::lease::release(driver, &record.token).await;
    result.map_err(|failed| ImportError::AdoptFailed {
        host: host.clone(),
        failed,
    })
}

/// Take the host's lease for adoption (five minutes: adoption writes a few records).
async fn acquire_lease(driver: &crate::driver::AnyDriver) -> Result<LeaseRecord, ImportError> {
    let now = crate::clock::now_unix();
    let record = LeaseRecord {
        holder: crate::reconcile::holder(),
        purpose: "import".into(),
        started: now,
        expires: now + 300,
        token: crate::plan::short_hash_of(&format!(
            "import {} {}",
            crate::reconcile::holder(),
            crate::clock::now_rfc3339()
        )),
    };
    crate::reconcile::lease::acquire(driver, &record, now)
        .await
        .map_err(SessionError::from)?;
    Ok(record)
}

/// Run adoption's plan steps: the steps done, or every failure.
async fn execute_steps(
    plan: &crate::plan::Plan,
    session: &Session,
) -> Result<Vec<String>, Vec<String>> {
    let report = crate::execute::execute(
        plan,
        &session.drivers,
        &crate::execute::ExecOptions::default(),
        &crate::execute::Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    let failed: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match report.outcomes.get(&s.id) {
            Some(crate::execute::Outcome::Succeeded) => None,
            Some(crate::execute::Outcome::Failed { error, .. }) => {
                Some(format!("{}: {error}", describe(s)))
            }
            _ => Some(format!("{}: not run", describe(s))),
        })
        .collect();
    if failed.is_empty() {
        Ok(plan.steps.iter().map(describe).collect())
    } else {
        Err(failed)
    }
}
