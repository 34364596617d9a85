//! The Dokku driver: observe a Dokku host in a few waves of batched reads, apply plan steps
//! as Dokku commands over SSH.
//!
//! Pure pieces live in [`command`] (change → command lines, quoting) and [`parse`] (stdout →
//! values); [`transport`] is the SSH connection. This file sequences them.
//!
//! Observation follows reference/dokku.md §14.2: a first wave (version, app list, global
//! domains, service lists, berth's own records), then one wave with every all-app
//! `:report --format json` plus the per-app reads Dokku has no all-app form for
//! (`config:export`, `ps:scale`) and one `links` read per service — all in parallel on one
//! connection. Hosts older than Dokku 0.38.21 (no JSON app list or formation) are refused with
//! the version found.

// Errors carry host, tenant, app, command and output on purpose: they are the message.
#![allow(clippy::result_large_err)]

pub mod command;
pub mod parse;
mod records;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;

use self::command::{RemoteCommand, STATE_APP, Tolerate};
use self::transport::{Output, Transport, TransportError};
use super::secrets::{MissingSecret, SecretProvider, generate};
use crate::model::desired::{BERTH_TENANT_KEY, ConfigValue, Expected};
use crate::model::live::{
    HostRef, LiveDokku, LiveDokkuApp, LiveDokkuService, LiveHost, LiveValue, service_key,
};
use crate::model::{DokkuTarget, ServiceKind};
use crate::plan::{Change, Step};

/// Oldest Dokku with `apps:list --format json` and `ps:scale --format json`.
pub const MIN_VERSION: (u32, u32, u32) = (0, 38, 21);

/// Dokku driver failures. Messages name host, tenant, app and the (redacted) command.
#[derive(Debug, thiserror::Error)]
pub enum DokkuError {
    /// SSH trouble.
    #[error("SSH to Dokku host failed")]
    Transport(#[source] TransportError),
    /// A command exited non-zero.
    #[error("`{command}` failed on `{host}` (tenant `{tenant}`{app}, exit {code}): {stderr_tail}", app = app.as_ref().map(|a| format!(", app `{a}`")).unwrap_or_default(), code = code.map_or("none".into(), |c| c.to_string()))]
    Command {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// App, when the command names one.
        app: Option<String>,
        /// The command, secrets redacted.
        command: String,
        /// Exit code (`None` = killed).
        code: Option<i32>,
        /// Last lines Dokku printed, secrets redacted.
        stderr_tail: String,
    },
    /// Another deploy of the app holds its deploy lock (reference/dokku.md §1.7): retried.
    #[error(
        "`{command}` on `{host}` (tenant `{tenant}`) found app `{app}` locked by another deploy"
    )]
    DeployLocked {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// App.
        app: String,
        /// The command, secrets redacted.
        command: String,
    },
    /// The lease deadline passed in the middle of a step (the holder was paused past it):
    /// the rest of the step is not sent, the host may be someone else's now.
    #[error(
        "the lease on `{host}` ran out in the middle of a step of tenant `{tenant}`; `{command}` and the rest of the step were not sent"
    )]
    LeaseExpired {
        /// Host.
        host: HostRef,
        /// Tenant of the step.
        tenant: String,
        /// The first command not sent, secrets redacted.
        command: String,
    },
    /// The host runs a Dokku berth cannot drive.
    #[error("Dokku on `{host}` is {found}; berth needs {}.{}.{} or newer", MIN_VERSION.0, MIN_VERSION.1, MIN_VERSION.2)]
    UnsupportedVersion {
        /// Host.
        host: HostRef,
        /// Version found.
        found: String,
    },
    /// Output berth could not read.
    #[error("cannot read the output of `{command}` on `{host}`")]
    Parse {
        /// Host.
        host: HostRef,
        /// Command.
        command: String,
        /// What was expected.
        #[source]
        source: parse::ParseError,
    },
    /// A secret reference without a value.
    #[error("cannot resolve config for tenant `{tenant}` on `{host}`")]
    Secret {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Which secret.
        #[source]
        source: MissingSecret,
    },
    /// A change that cannot be sent safely, or is not a Dokku change.
    #[error("cannot build the Dokku command for tenant `{tenant}` on `{host}`")]
    Build {
        /// Host.
        host: HostRef,
        /// Tenant.
        tenant: String,
        /// Why.
        #[source]
        source: command::CommandError,
    },
    /// Apps were created or destroyed while the host was being read.
    #[error("apps on `{host}` changed while they were being read")]
    ScanRace {
        /// Host.
        host: HostRef,
    },
}

impl DokkuError {
    /// Transient failures are retried with backoff; permanent ones are not.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            DokkuError::Transport(t) => t.is_transient(),
            DokkuError::Command { code, .. } => matches!(code, None | Some(255)),
            DokkuError::ScanRace { .. } | DokkuError::DeployLocked { .. } => true,
            _ => false,
        }
    }
}

/// A connected Dokku host.
pub struct DokkuDriver {
    transport: Transport,
    secrets: SecretProvider,
    /// Mutations of one app are serialised (Dokku rewrites config files without locking).
    app_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set for a fast observation: what berth wants of each app.
    fast: Mutex<Option<Arc<Expected>>>,
    /// berth's own apps (record app, leases) the last scan saw with a vhost enabled.
    vhosted: Mutex<std::collections::BTreeSet<String>>,
}

/// The apps whose spec label holds the hash berth wants, with their tenant.
fn confirm_apps(
    expected: &Expected,
    reports: &Reports,
    all_apps: &[String],
) -> BTreeMap<String, String> {
    let mut confirmed = BTreeMap::new();
    for (index, app) in all_apps.iter().enumerate() {
        let label = reports
            .field("docker-options:report", index, "deploy")
            .and_then(|d| parse::spec_label(&d));
        if let (Some((tenant, hash)), Some(label)) = (expected.apps.get(app), label)
            && *hash == label
        {
            confirmed.insert(app.clone(), tenant.clone());
        }
    }
    confirmed
}

/// The services a fast observation need not read: owned (berth's records) by a tenant whose
/// wanted apps were all confirmed; their links are the apps whose docker-options carry the
/// service's `--link` (reference/dokku.md §6.3: added by `<kind>:link`).
fn confirm_services(
    expected: &Expected,
    confirmed: &BTreeMap<String, String>,
    reports: &Reports,
    all_apps: &[String],
    services: &[(ServiceKind, String)],
    registry: &BTreeMap<String, String>,
    ours: &str,
) -> BTreeMap<String, Vec<String>> {
    let tenant_confirmed = |tenant: &str| {
        expected
            .apps
            .iter()
            .filter(|(_, (t, _))| t == tenant)
            .all(|(app, _)| confirmed.contains_key(app))
    };
    let mut linked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, app) in all_apps.iter().enumerate() {
        let Some(deploy) = reports.field("docker-options:report", index, "deploy") else {
            continue;
        };
        for target in parse::link_options(&deploy) {
            linked.entry(target).or_default().push(app.clone());
        }
    }
    let mut out = BTreeMap::new();
    for (kind, name) in services {
        let Some(record) = registry.get(&command::registry_key(*kind, name)) else {
            continue;
        };
        let (environment, owner) = command::parse_service_owner(record);
        if environment.is_none_or(|e| e == ours) && tenant_confirmed(owner) {
            let word = crate::model::live::service_kind_word(*kind);
            let links = linked
                .get(&format!("dokku.{word}.{name}"))
                .cloned()
                .unwrap_or_default();
            out.insert(service_key(*kind, name), links);
        }
    }
    out
}

fn read(words: &[&str]) -> RemoteCommand {
    // Scan commands are fixed words and validated names; they always build.
    command::command(words).unwrap_or_else(|_| RemoteCommand {
        wire: words.iter().map(|w| command::quote(w)).collect(),
        display: words.join(" "),
        tolerate: Tolerate::Nothing,
        stdin: None,
    })
}

/// The all-app reports of the second wave (reference/dokku.md §14.2), with the plugin name
/// their legacy JSON keys carry (`app-deploy-source` … §1.6).
const REPORTS: [(&str, &str); 9] = [
    ("apps:report", "app"),
    ("docker-options:report", "docker-options"),
    ("ps:report", "ps"),
    ("ports:report", "ports"),
    ("domains:report", "domains"),
    ("resource:report", "resource"),
    ("storage:report", "storage"),
    ("letsencrypt:report", "letsencrypt"),
    ("certs:report", "ssl"),
];

/// The lines of every all-app report, by report command.
#[derive(Default)]
struct Reports {
    by: BTreeMap<&'static str, Vec<BTreeMap<String, String>>>,
}

impl Reports {
    /// All-app reports carry no app name: lines are attributed by position, which holds only
    /// when `apps:report`'s `dir` names the apps in `apps:list` order and every report that
    /// answered has one line per app (reference/dokku.md §14.1).
    fn aligned(&self, apps: &[String]) -> bool {
        let app_reports = self.by.get("apps:report").map_or(&[][..], Vec::as_slice);
        let by_dir = app_reports.len() == apps.len()
            && app_reports.iter().zip(apps).all(|(r, name)| {
                parse::lookup(r, "app", "dir")
                    .is_none_or(|dir| dir.rsplit('/').next() == Some(name.as_str()))
            });
        // letsencrypt is a bash report that may be missing or fail on its own (§1.6).
        let counts = self
            .by
            .iter()
            .filter(|(name, lines)| **name != "letsencrypt:report" && !lines.is_empty())
            .all(|(_, lines)| lines.len() == apps.len());
        by_dir && counts
    }

    /// `key` of the app at `index` in report `report`.
    fn field(&self, report: &str, index: usize, key: &str) -> Option<String> {
        let plugin = REPORTS.iter().find(|(r, _)| *r == report)?.1;
        self.by
            .get(report)?
            .get(index)
            .and_then(|r| parse::lookup(r, plugin, key))
            .map(str::to_string)
    }
}

impl DokkuDriver {
    /// Connect to a Dokku host.
    ///
    /// # Errors
    /// When the SSH connection cannot be made or the host key does not match.
    pub async fn connect(
        host: &HostRef,
        target: &DokkuTarget,
        secrets: SecretProvider,
    ) -> Result<Self, DokkuError> {
        let transport = Transport::connect(host, target)
            .await
            .map_err(DokkuError::Transport)?;
        Ok(DokkuDriver {
            transport,
            secrets,
            app_locks: Mutex::new(BTreeMap::new()),
            fast: Mutex::new(None),
            vhosted: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// The secret provider of the host's environment.
    #[must_use]
    pub fn secrets(&self) -> &SecretProvider {
        &self.secrets
    }

    /// The host.
    #[must_use]
    pub fn host(&self) -> &HostRef {
        self.transport.host()
    }

    /// Make the next observations fast ones, confirming apps against `expected` (`None`:
    /// read every app, the default).
    pub fn set_fast(&self, expected: Option<Expected>) {
        *self
            .fast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = expected.map(Arc::new);
    }

    fn fast_expectation(&self) -> Option<Arc<Expected>> {
        self.fast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Run reads in parallel on the connection; every output, or the first failure.
    async fn run_all(&self, commands: &[RemoteCommand]) -> Result<Vec<Output>, DokkuError> {
        join_all(commands.iter().map(|c| self.run_read(c)))
            .await
            .into_iter()
            .collect()
    }

    /// Parse the all-app reports and check that their lines line up with the app list.
    fn parse_reports(
        &self,
        commands: &[RemoteCommand],
        outputs: Vec<Output>,
        options_lines: &[BTreeMap<String, String>],
        all_apps: &[String],
    ) -> Result<Reports, DokkuError> {
        let mut reports = Reports::default();
        if commands.is_empty() {
            return Ok(reports);
        }
        reports
            .by
            .insert("docker-options:report", options_lines.to_vec());
        let rest = REPORTS
            .iter()
            .filter(|(name, _)| *name != "docker-options:report");
        for (i, ((name, _), out)) in rest.zip(outputs).enumerate() {
            let lines = if out.code == Some(0) {
                parse::json_report_lines(&out.stdout)
                    .map_err(|e| self.parse_error(&commands[i], e))?
            } else {
                // A plugin that is not installed (letsencrypt) reports nothing.
                Vec::new()
            };
            reports.by.insert(*name, lines);
        }
        if !reports.aligned(all_apps) {
            return Err(DokkuError::ScanRace {
                host: self.host().clone(),
            });
        }
        Ok(reports)
    }

    async fn run_read(&self, command: &RemoteCommand) -> Result<Output, DokkuError> {
        self.transport
            .run(command)
            .await
            .map_err(DokkuError::Transport)
    }

    fn parse_error(&self, command: &RemoteCommand, source: parse::ParseError) -> DokkuError {
        DokkuError::Parse {
            host: self.host().clone(),
            command: command.display.clone(),
            source,
        }
    }

    /// Read the whole host. Retries once when apps change mid-scan.
    ///
    /// # Errors
    /// Transport failures, unsupported versions, unreadable output.
    pub async fn observe(&self) -> Result<LiveHost, DokkuError> {
        self.observe_scoped(None).await
    }

    /// Read the host, but run per-app and per-service reads only for names starting with one
    /// of `prefixes` (`acme-`): the tenants a `plan --since` is about. Other apps appear with
    /// what the all-app reports say and no config; the planner treats them as foreign.
    ///
    /// # Errors
    /// As [`DokkuDriver::observe`].
    pub async fn observe_scoped(
        &self,
        prefixes: Option<&[String]>,
    ) -> Result<LiveHost, DokkuError> {
        match self.scan(prefixes).await {
            Err(DokkuError::ScanRace { .. }) => self.scan(prefixes).await,
            other => other,
        }
    }

    #[allow(clippy::too_many_lines)]
    async fn scan(&self, prefixes: Option<&[String]>) -> Result<LiveHost, DokkuError> {
        let wanted =
            |name: &str| prefixes.is_none_or(|p| p.iter().any(|p| name.starts_with(p.as_str())));
        let first = [
            read(&["version"]),
            read(&["apps:list", "--format", "json"]),
            read(&["domains:report", "--global", "--format", "json"]),
            read(&["--quiet", "postgres:list"]),
            read(&["--quiet", "redis:list"]),
            read(&["config:export", "--format", "json", STATE_APP]),
            // First, not with the other reports: the environment labels decide which apps
            // get per-app reads in the next wave.
            read(&["docker-options:report", "--format", "json"]),
        ];
        let results = join_all(first.iter().map(|c| self.run_read(c))).await;
        let mut results = results.into_iter();
        let mut next = || {
            results
                .next()
                .unwrap_or_else(|| unreachable!("one result per command"))
        };
        let version_out = next()?;
        let version =
            parse::version(&version_out.stdout).map_err(|e| self.parse_error(&first[0], e))?;
        if version < MIN_VERSION {
            return Err(DokkuError::UnsupportedVersion {
                host: self.host().clone(),
                found: format!("{}.{}.{}", version.0, version.1, version.2),
            });
        }
        let apps_out = next()?;
        let all_apps = parse::json_string_list(&apps_out.stdout)
            .map_err(|e| self.parse_error(&first[1], e))?;
        let global = next()?;
        let global =
            parse::json_report_lines(&global.stdout).map_err(|e| self.parse_error(&first[2], e))?;
        let global_domains: Vec<String> = global
            .first()
            .and_then(|g| parse::lookup(g, "domains", "global-vhosts"))
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut service_names: Vec<(ServiceKind, String)> = Vec::new();
        for kind in [ServiceKind::Postgres, ServiceKind::Redis] {
            let out = next()?;
            // A missing plugin answers "not a dokku command" (exit 1): no services of it.
            if out.code == Some(0) {
                service_names.extend(
                    parse::name_lines(&out.stdout)
                        .into_iter()
                        .map(|n| (kind, n)),
                );
            }
        }
        let registry_out = next()?;
        let registry = if registry_out.code == Some(0) {
            parse::config_export(&registry_out.stdout)
                .map_err(|e| self.parse_error(&first[5], e))?
        } else {
            BTreeMap::new()
        };

        let options_out = next()?;
        let options_lines = if options_out.code == Some(0) && !all_apps.is_empty() {
            parse::json_report_lines(&options_out.stdout)
                .map_err(|e| self.parse_error(&first[6], e))?
        } else {
            Vec::new()
        };
        if !options_lines.is_empty() && options_lines.len() != all_apps.len() {
            return Err(DokkuError::ScanRace {
                host: self.host().clone(),
            });
        }
        let ours = self.host().environment.as_str();
        // The environment each app is marked with (docker-options label, by position).
        let app_environment: BTreeMap<&String, String> = all_apps
            .iter()
            .zip(&options_lines)
            .filter_map(|(app, line)| {
                let deploy = parse::lookup(line, "docker-options", "deploy")?;
                Some((app, parse::environment_label(deploy)?))
            })
            .collect();
        let theirs = |app: &String| app_environment.get(app).is_some_and(|e| e != ours);

        // berth's own apps (records, leases) are not tenant apps.
        let apps: Vec<&String> = all_apps
            .iter()
            .filter(|a| *a != STATE_APP && !a.starts_with("berth-lease-"))
            .collect();
        let report_cmds: Vec<RemoteCommand> = if all_apps.is_empty() {
            Vec::new()
        } else {
            // docker-options:report ran in the first wave.
            REPORTS
                .iter()
                .filter(|(report, _)| *report != "docker-options:report")
                .map(|(report, _)| read(&[report, "--format", "json"]))
                .collect()
        };
        // Another environment's apps are names taken, nothing more: no per-app reads.
        let mut read_apps: Vec<&String> = apps
            .iter()
            .copied()
            .filter(|a| wanted(a) && !theirs(a))
            .collect();
        service_names.retain(|(_, name)| wanted(name));
        // A fast observation reads the all-app reports first: apps whose spec label holds the
        // hash berth wants, and the services of tenants whose apps all do, are not read one
        // by one (module docs).
        let fast = self.fast_expectation();
        let mut reports = Reports::default();
        let mut confirmed: BTreeMap<String, String> = BTreeMap::new();
        let mut confirmed_services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(expected) = &fast {
            let outputs = self.run_all(&report_cmds).await?;
            reports = self.parse_reports(&report_cmds, outputs, &options_lines, &all_apps)?;
            confirmed = confirm_apps(expected, &reports, &all_apps);
            confirmed.retain(|app, _| !theirs(app));
            confirmed_services = confirm_services(
                expected,
                &confirmed,
                &reports,
                &all_apps,
                &service_names,
                &registry,
                ours,
            );
            read_apps.retain(|a| !confirmed.contains_key(*a));
        }
        let mut details = Vec::new();
        for app in &read_apps {
            details.push(read(&["config:export", "--format", "json", app]));
            details.push(read(&["ps:scale", app, "--format", "json"]));
        }
        // `<kind>:info` gives links, DSN and version in one read (reference/dokku.md §12).
        let info_services: Vec<(ServiceKind, String)> = service_names
            .iter()
            .filter(|(kind, name)| !confirmed_services.contains_key(&service_key(*kind, name)))
            .cloned()
            .collect();
        for (kind, name) in &info_services {
            let word = format!("{}:info", crate::model::live::service_kind_word(*kind));
            details.push(read(&[&word, name]));
        }
        let mut outputs = if fast.is_some() {
            self.run_all(&details).await?.into_iter()
        } else {
            // One wave: the reports and every per-app read in parallel.
            let all: Vec<RemoteCommand> = report_cmds.iter().chain(&details).cloned().collect();
            let mut outputs = self.run_all(&all).await?;
            let rest = outputs.split_off(report_cmds.len());
            reports = self.parse_reports(&report_cmds, outputs, &options_lines, &all_apps)?;
            rest.into_iter()
        };
        let mut take = || {
            outputs
                .next()
                .unwrap_or_else(|| unreachable!("one output per command"))
        };
        let position = |name: &str| all_apps.iter().position(|a| a == name);
        let field = |report: &str, app: &str, key: &str| -> Option<String> {
            reports.field(report, position(app)?, key)
        };
        // berth's own apps still carrying Dokku's default vhost (made by an older berth):
        // the next record write disables it (records.rs).
        *self.vhosted() = all_apps
            .iter()
            .filter(|a| !apps.contains(a))
            .filter(|a| field("domains:report", a, "app-enabled").as_deref() == Some("true"))
            .cloned()
            .collect();
        // Other environments on this host: their markers, records and leases.
        let mut shared_with: std::collections::BTreeSet<String> = app_environment
            .values()
            .filter(|e| *e != ours)
            .cloned()
            .collect();
        shared_with.extend(
            all_apps
                .iter()
                .filter_map(|a| a.strip_prefix("berth-lease-"))
                .filter(|e| *e != ours)
                .map(str::to_string),
        );
        let applied_ours = records::applied_key(ours);
        shared_with.extend(
            registry
                .keys()
                .filter(|k| k.starts_with("APPLIED_") && **k != applied_ours)
                .filter_map(|k| k.strip_prefix("APPLIED_"))
                .map(|e| e.to_lowercase().replace('_', "-")),
        );
        let mut live = LiveDokku {
            version: Some(format!("{}.{}.{}", version.0, version.1, version.2)),
            global_domains,
            ..LiveDokku::default()
        };
        for app in apps
            .iter()
            .filter(|a| !read_apps.contains(a) && !confirmed.contains_key(**a))
        {
            // Not read (out of scope, or another environment's): present (names and ports
            // matter), owned by nobody as far as this plan goes.
            live.apps.insert(
                (*app).clone(),
                LiveDokkuApp {
                    image: field("apps:report", app, "deploy-source-metadata")
                        .filter(|s| !s.is_empty()),
                    environment: app_environment.get(*app).cloned(),
                    ..LiveDokkuApp::default()
                },
            );
        }
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let words = |v: Option<String>| -> Vec<String> {
            v.map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        // What the all-app reports say of an app; config and formation come from its own reads.
        let reported = |app: &str| {
            let cert_domains = (field("certs:report", app, "enabled").as_deref() == Some("true"))
                .then(|| words(field("certs:report", app, "hostnames")));
            LiveDokkuApp {
                domains: words(field("domains:report", app, "app-vhosts")),
                image: nonempty(field("apps:report", app, "deploy-source-metadata")),
                memory: nonempty(field("resource:report", app, "_default_.limit.memory")),
                cpus: nonempty(field("resource:report", app, "_default_.limit.cpu")),
                storage: field("storage:report", app, "deploy-mounts")
                    .map(|m| parse::mounts(&m))
                    .unwrap_or_default(),
                tls: field("letsencrypt:report", app, "active").as_deref() == Some("true"),
                spec_hash: field("docker-options:report", app, "deploy")
                    .and_then(|d| parse::spec_label(&d)),
                running: field("ps:report", app, "running").map(|r| r == "true"),
                ports: words(field("ports:report", app, "map")),
                restart_policy: nonempty(field("ps:report", app, "restart-policy")),
                cert_domains,
                ..LiveDokkuApp::default()
            }
        };
        for (app, tenant) in &confirmed {
            live.apps.insert(
                app.clone(),
                LiveDokkuApp {
                    owner: Some(tenant.clone()),
                    environment: app_environment.get(app).cloned(),
                    shallow: true,
                    ..reported(app)
                },
            );
        }
        for app in &read_apps {
            let config_out = take();
            let scale_out = take();
            let config = if config_out.code == Some(0) {
                parse::config_export(&config_out.stdout)
                    .map_err(|e| self.parse_error(&read(&["config:export", app]), e))?
            } else {
                // Destroyed since the app list was read.
                return Err(DokkuError::ScanRace {
                    host: self.host().clone(),
                });
            };
            let processes = parse::scale(&scale_out.stdout)
                .map_err(|e| self.parse_error(&read(&["ps:scale", app]), e))?;
            live.apps.insert(
                (*app).clone(),
                LiveDokkuApp {
                    owner: config.get(BERTH_TENANT_KEY).cloned(),
                    environment: app_environment.get(*app).cloned(),
                    config: config.into_iter().map(|(k, v)| (k, LiveValue(v))).collect(),
                    processes,
                    ..reported(app)
                },
            );
        }
        for (kind, name) in &service_names {
            let key = service_key(*kind, name);
            let record = registry.get(&command::registry_key(*kind, name));
            let (environment, tenant) = record.map_or((None, None), |r| {
                let (environment, tenant) = command::parse_service_owner(r);
                (environment.map(str::to_string), Some(tenant.to_string()))
            });
            // Another environment's service: a name taken, not a service of ours.
            let owner = tenant.filter(|_| environment.as_deref().is_none_or(|e| e == ours));
            if let Some(other) = environment.as_ref().filter(|e| *e != ours) {
                shared_with.insert(other.clone());
            }
            let (links, broken_links, image) = if let Some(links) = confirmed_services.remove(&key)
            {
                // Links from the linked apps' `--link` options; the version is not read.
                (links, Vec::new(), None)
            } else {
                let info_out = take();
                let info = parse::service_info(&info_out.stdout);
                let links: Vec<String> = info
                    .get("links")
                    .map(|l| {
                        l.split_whitespace()
                            .filter(|a| *a != "-")
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                // A link is whole only while the app's env still holds the service's DSN (the
                // plugin's own `linked` test, §12): a hand-edited `DATABASE_URL` breaks it.
                // The DSN carries the password: it is compared here and never kept.
                let dsn = info.get("dsn").filter(|d| !d.is_empty());
                let broken_links = links
                    .iter()
                    .filter(|a| {
                        let Some(app) = live.apps.get(*a) else {
                            return false;
                        };
                        wanted(a)
                            && !app.shallow
                            && dsn.is_some_and(|d| !app.config.values().any(|v| v.0 == *d))
                    })
                    .cloned()
                    .collect();
                let image = info.get("version").filter(|v| !v.is_empty()).cloned();
                (links, broken_links, image)
            };
            live.services.insert(
                key,
                LiveDokkuService {
                    kind: *kind,
                    name: name.clone(),
                    owner,
                    environment,
                    links,
                    broken_links,
                    image,
                },
            );
        }
        live.shared_with = shared_with;
        let applied_key = records::applied_key(&self.host().environment);
        Ok(LiveHost {
            dokku: live,
            applied_commit: registry.get(&applied_key).cloned(),
            cancelled: records::cancellations(&self.host().environment, &registry),
            ..LiveHost::default()
        })
    }

    fn vhosted(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.vhosted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the last scan saw berth's own app `app` with its vhost enabled.
    fn vhost_seen(&self, app: &str) -> bool {
        self.vhosted().contains(app)
    }

    fn forget_vhost(&self, app: &str) {
        self.vhosted().remove(app);
    }

    fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .app_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(app.to_string()).or_default().clone()
    }

    /// Apply one step.
    ///
    /// # Errors
    /// The first command that fails, with the tail of what Dokku printed.
    pub async fn apply(&self, step: &Step) -> Result<(), DokkuError> {
        match &step.change {
            Change::RecordCancellation { tenant } => return self.record_cancellation(tenant).await,
            Change::ClearCancellation { tenant } => return self.clear_cancellation(tenant).await,
            _ => {}
        }
        let host = self.host().clone();
        let mut values = BTreeMap::new();
        if let Change::SetConfig { changes, .. } = &step.change {
            for c in changes {
                let value = match &c.new {
                    ConfigValue::Literal { value } => value.clone(),
                    // The plan asks for a value only when the app has none: make it here.
                    ConfigValue::Generate { length } => generate(*length),
                    ConfigValue::Secret { name } => {
                        self.secrets
                            .get(name)
                            .await
                            .map_err(|source| DokkuError::Secret {
                                host: host.clone(),
                                tenant: step.tenant.clone(),
                                source,
                            })?
                    }
                    ConfigValue::Derived { .. } | ConfigValue::Kept { .. } => {
                        return Err(DokkuError::Build {
                            host,
                            tenant: step.tenant.clone(),
                            source: command::CommandError::NotDokku {
                                kind: "derived-config",
                            },
                        });
                    }
                };
                values.insert(c.key.clone(), value);
            }
        }
        if let Change::LoginRegistry {
            password_secret, ..
        } = &step.change
        {
            let password =
                self.secrets
                    .get(password_secret)
                    .await
                    .map_err(|source| DokkuError::Secret {
                        host: host.clone(),
                        tenant: step.tenant.clone(),
                        source,
                    })?;
            // Under the secret's name: `build` sends it on stdin, and a failure's output
            // is redacted of every value in `values`.
            values.insert(password_secret.clone(), password);
        }
        if matches!(
            step.change,
            Change::CreateService { .. } | Change::MarkService { .. }
        ) {
            // The owner goes into the record app, which must exist first.
            self.ensure_state_app().await?;
        }
        let commands = command::build(
            &step.change,
            &step.tenant,
            &self.host().environment,
            &values,
        )
        .map_err(|source| DokkuError::Build {
            host: host.clone(),
            tenant: step.tenant.clone(),
            source,
        })?;
        let app = step.change.app().map(str::to_string);
        let lock = app.as_deref().map(|a| self.app_lock(a));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        for (n, cmd) in commands.iter().enumerate() {
            if n > 0 && crate::driver::lease_expired() {
                return Err(DokkuError::LeaseExpired {
                    host,
                    tenant: step.tenant.clone(),
                    command: cmd.display.clone(),
                });
            }
            let out = self
                .transport
                .run(cmd)
                .await
                .map_err(DokkuError::Transport)?;
            if out.code == Some(0) {
                continue;
            }
            let said = format!("{}\n{}", out.stderr, out.stdout);
            let tolerated = match cmd.tolerate {
                Tolerate::NoChanges => said.contains("No changes detected"),
                Tolerate::AlreadyExists => said.contains("Name is already taken"),
                Tolerate::NotLinked => said.contains("Not linked to app"),
                Tolerate::Nothing => false,
            };
            if tolerated {
                continue;
            }
            if said.contains("currently has a deploy lock in place") {
                return Err(DokkuError::DeployLocked {
                    host,
                    tenant: step.tenant.clone(),
                    app: app.unwrap_or_default(),
                    command: cmd.display.clone(),
                });
            }
            let mut tail = parse::tail(
                if out.stderr.trim().is_empty() {
                    &out.stdout
                } else {
                    &out.stderr
                },
                5,
            );
            for value in values.values().filter(|v| v.len() >= 4) {
                tail = tail.replace(value.as_str(), "<redacted>");
            }
            return Err(DokkuError::Command {
                host,
                tenant: step.tenant.clone(),
                app,
                command: cmd.display.clone(),
                code: out.code,
                stderr_tail: tail,
            });
        }
        Ok(())
    }

    /// Run one command as is (benchmarks and tools that read a host command by command).
    ///
    /// # Errors
    /// Transport failures.
    pub async fn run(&self, command: &RemoteCommand) -> Result<Output, DokkuError> {
        self.run_read(command).await
    }

    /// Commands sent and session refusals retried on this host's connections so far.
    #[must_use]
    pub fn transport_stats(&self) -> transport::TransportStats {
        self.transport.stats()
    }

    /// Close the connection.
    pub async fn close(self) {
        self.transport.close().await;
    }
}
