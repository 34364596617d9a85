//! Plan changes → Dokku command lines (pure).
//!
//! Every argument is quoted for the `xargs -n 1` re-parse Dokku ≥ 0.34 applies to
//! `$SSH_ORIGINAL_COMMAND` (reference/dokku.md §1.1): POSIX single quotes, `'\''` for an
//! embedded quote. xargs cannot carry a newline inside quotes and its `echo` eats a bare
//! `-n`/`-e`/`-E`, so such arguments are refused here; config values never need either
//! because they travel base64-encoded (`config:set --encoded`). Commands whose first word
//! contains `git` are not re-parsed by Dokku at all: they are built from validated tokens
//! that need no quoting, and refused otherwise.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::model::ServiceKind;
use crate::model::live::service_kind_word;
use crate::plan::Change;

/// Name of the app that holds berth's own records on a Dokku host (service ownership).
/// It is never deployed and never listed as a tenant app.
pub const STATE_APP: &str = "berth-state";

/// The docker-options entry (deploy phase) recording the spec hash berth applied to an app:
/// `docker-options:report` shows it for every app in one command (reference/dokku.md §6.3),
/// which is what lets a fast pass skip per-app reads. At the next deploy it also becomes a
/// container label, harmless and visible in `docker ps`.
pub const SPEC_OPTION_PREFIX: &str = "--label=io.berth.spec=";

/// The docker-options entry (deploy phase) naming the environment an app belongs to, written
/// with `apps:create`: read for every app from the same all-app `docker-options:report`, so
/// the scan skips the per-app reads of another environment's apps. Like the Docker driver's
/// `io.berth.environment` label, it becomes a container label at the next deploy.
pub const ENVIRONMENT_OPTION_PREFIX: &str = "--label=io.berth.environment=";

/// The value of a service's ownership record in `berth-state`: `<environment>/<tenant>`
/// (records written before environment markers hold the tenant alone).
#[must_use]
pub fn service_owner_record(environment: &str, tenant: &str) -> String {
    format!("{environment}/{tenant}")
}

/// Inverse of [`service_owner_record`]: `(environment, tenant)`, the environment `None` for
/// a record that predates markers.
#[must_use]
pub fn parse_service_owner(record: &str) -> (Option<&str>, &str) {
    match record.split_once('/') {
        Some((environment, tenant)) => (Some(environment), tenant),
        None => (None, record),
    }
}

fn environment_label(app: &str, environment: &str) -> Result<RemoteCommand, CommandError> {
    let label = format!("{ENVIRONMENT_OPTION_PREFIX}{environment}");
    command(&["docker-options:add", app, "deploy", &label])
}

/// One command to run on a Dokku host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// Words as they go on the wire, already quoted.
    pub wire: Vec<String>,
    /// The command for logs and errors: secrets replaced by `<redacted>`.
    pub display: String,
    /// What a failure of this command means.
    pub tolerate: Tolerate,
    /// Bytes for the command's stdin (a password); `None`: stdin closed.
    pub stdin: Option<Stdin>,
}

/// Bytes sent on a command's stdin, a secret: kept out of argv, `display` and `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Stdin(pub Vec<u8>);

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stdin(<redacted, {} bytes>)", self.0.len())
    }
}

/// Failures that are not failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerate {
    /// Every non-zero exit is an error.
    Nothing,
    /// `git:from-image` with an unchanged image exits 1 with "No changes detected".
    NoChanges,
    /// `apps:create` of an app that exists ("Name is already taken").
    AlreadyExists,
    /// `<kind>:unlink` of a link whose DSN is gone from the app's env: the plugin has
    /// already removed the link entry when it says "Not linked to app" (reference §12).
    NotLinked,
}

/// Why a change cannot be turned into a safe command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An argument Dokku's re-parse would mangle (newline, NUL, bare `-n`).
    #[error("argument of `{command}` cannot be sent safely: {reason}")]
    Unsafe {
        /// Command word.
        command: String,
        /// Why.
        reason: String,
    },
    /// The change kind is a Docker change.
    #[error("`{kind}` is not a Dokku change")]
    NotDokku {
        /// Change kind.
        kind: &'static str,
    },
    /// A value (a secret, known only at apply time) too large for one command.
    #[error(
        "config key `{key}` of app `{app}` holds {bytes} bytes, too many for one Dokku command; hint: keep values under 64 KiB"
    )]
    TooLarge {
        /// App.
        app: String,
        /// Key.
        key: String,
        /// Size of the value.
        bytes: usize,
    },
    /// A registry password was not resolved before building.
    #[error("the password of registry `{server}` for app `{app}` has no resolved value")]
    NoPassword {
        /// App.
        app: String,
        /// Registry server.
        server: String,
    },
    /// A config value was not resolved before building.
    #[error("config key `{key}` of app `{app}` has no resolved value")]
    Unresolved {
        /// App.
        app: String,
        /// Key.
        key: String,
    },
}

/// Quote one argument for xargs (no-op for safe words).
#[must_use]
pub fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn check_arg(command: &str, arg: &str) -> Result<(), CommandError> {
    let unsafe_reason = if arg.contains(['\n', '\r', '\0']) {
        Some("it contains a newline or NUL")
    } else if arg.len() > 1
        && arg.starts_with('-')
        && arg[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E'))
    {
        Some("xargs' echo would swallow it")
    } else {
        None
    };
    match unsafe_reason {
        Some(reason) => Err(CommandError::Unsafe {
            command: command.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// A re-parsed command: every word quoted.
///
/// # Errors
/// When an argument cannot survive the re-parse.
pub fn command(words: &[&str]) -> Result<RemoteCommand, CommandError> {
    let name = words
        .iter()
        .find(|w| !w.starts_with("--"))
        .copied()
        .unwrap_or_default();
    for word in words {
        check_arg(name, word)?;
    }
    Ok(RemoteCommand {
        wire: words.iter().map(|w| quote(w)).collect(),
        display: words.join(" "),
        tolerate: Tolerate::Nothing,
        stdin: None,
    })
}

/// A command Dokku does not re-parse (first word contains `git`): tokens must be safe as is.
///
/// # Errors
/// When a token would need quoting.
pub fn git_command(words: &[&str]) -> Result<RemoteCommand, CommandError> {
    let name = words.first().copied().unwrap_or_default();
    for word in words {
        check_arg(name, word)?;
        if quote(word) != *word {
            return Err(CommandError::Unsafe {
                command: name.to_string(),
                reason: format!("`{word}` would need quoting, which `{name}` does not undo"),
            });
        }
    }
    Ok(RemoteCommand {
        wire: words.iter().map(|w| (*w).to_string()).collect(),
        display: words.join(" "),
        tolerate: Tolerate::Nothing,
        stdin: None,
    })
}

/// Most bytes one `config:set` puts on the wire. Dokku receives the whole ssh command as
/// one environment string (`SSH_ORIGINAL_COMMAND`, reference/dokku.md §1.1), which Linux
/// caps at `MAX_ARG_STRLEN` (128 KiB) — beyond it the server's `bash -c` fails with
/// "Argument list too long". 96 KiB leaves room for the forced command's own words.
pub const CONFIG_COMMAND_BUDGET: usize = 96 * 1024;

/// `config:set --encoded --no-restart APP K=base64(V) …` with values redacted in `display`:
/// one command, for berth's own small records.
///
/// # Errors
/// When the app name or a key is unsafe.
pub fn config_set(
    app: &str,
    values: &BTreeMap<String, String>,
) -> Result<RemoteCommand, CommandError> {
    let pairs: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (k.clone(), encode_pair(k, v)))
        .collect();
    config_set_pairs(app, &pairs)
}

fn encode_pair(key: &str, value: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    format!("{key}={encoded}")
}

fn config_set_pairs(app: &str, pairs: &[(String, String)]) -> Result<RemoteCommand, CommandError> {
    // `--quiet` stops Dokku echoing the (decoded) values back (reference/dokku.md §3).
    let mut words = vec![
        "--quiet".to_string(),
        "config:set".into(),
        "--encoded".into(),
        "--no-restart".into(),
        app.to_string(),
    ];
    let mut display = words.join(" ");
    for (key, pair) in pairs {
        words.push(pair.clone());
        display.push_str(&format!(" {key}=<redacted>"));
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut cmd = command(&refs)?;
    cmd.display = display;
    Ok(cmd)
}

/// [`config_set`] split into as many `config:set --no-restart` commands as keep each under
/// [`CONFIG_COMMAND_BUDGET`]; the caller restarts once afterwards.
///
/// # Errors
/// When a name is unsafe, or one value alone does not fit in a command.
pub fn config_set_split(
    app: &str,
    values: &BTreeMap<String, String>,
) -> Result<Vec<RemoteCommand>, CommandError> {
    let overhead = "--quiet config:set --encoded --no-restart ".len() + app.len();
    let mut batches: Vec<Vec<(String, String)>> = Vec::new();
    let mut size = usize::MAX;
    for (key, value) in values {
        let pair = encode_pair(key, value);
        if overhead + 1 + pair.len() > CONFIG_COMMAND_BUDGET {
            return Err(CommandError::TooLarge {
                app: app.to_string(),
                key: key.clone(),
                bytes: value.len(),
            });
        }
        if size.saturating_add(1 + pair.len()) > CONFIG_COMMAND_BUDGET {
            batches.push(Vec::new());
            size = overhead;
        }
        size += 1 + pair.len();
        if let Some(batch) = batches.last_mut() {
            batch.push((key.clone(), pair));
        }
    }
    batches
        .iter()
        .map(|pairs| config_set_pairs(app, pairs))
        .collect()
}

/// Registry key for a service's owner in the state app: `SVC_POSTGRES_ACME_DB`.
#[must_use]
pub fn registry_key(kind: ServiceKind, name: &str) -> String {
    format!(
        "SVC_{}_{}",
        service_kind_word(kind).to_uppercase(),
        name.to_uppercase().replace('-', "_")
    )
}

/// Inverse of [`registry_key`].
#[must_use]
pub fn parse_registry_key(key: &str) -> Option<(ServiceKind, String)> {
    let rest = key.strip_prefix("SVC_")?;
    let (kind, name) = rest.split_once('_')?;
    let kind = match kind {
        "POSTGRES" => ServiceKind::Postgres,
        "REDIS" => ServiceKind::Redis,
        _ => return None,
    };
    Some((kind, name.to_lowercase().replace('_', "-")))
}

/// `postgres:create NAME -i IMAGE -I VERSION` from an image reference `postgres:16`.
fn image_flags(image: &str) -> (String, Option<String>) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
        _ => (image.to_string(), None),
    }
}

/// The commands that carry out one change on a Dokku host, in order.
///
/// `config` holds the resolved values of a `SetConfig` (generated secrets made and secret
/// references looked up by the caller, the one place values exist); `tenant` is the step's
/// tenant, recorded as a service's owner; `environment` the step's environment, marked on
/// the apps and services berth creates.
///
/// # Errors
/// For Docker changes, unresolved values and unsafe arguments.
pub fn build(
    change: &Change,
    tenant: &str,
    environment: &str,
    config: &BTreeMap<String, String>,
) -> Result<Vec<RemoteCommand>, CommandError> {
    let one = |words: &[&str]| command(words).map(|c| vec![c]);
    match change {
        // The environment marker right away: an app without it (a crash in between) is
        // marked by the next plan (`LabelApp`).
        Change::CreateApp { app } => Ok(vec![
            command(&["apps:create", app])?,
            environment_label(app, environment)?,
        ]),
        Change::LabelApp { app } => Ok(vec![environment_label(app, environment)?]),
        Change::MarkService {
            service_kind,
            service,
        } => Ok(vec![config_set(
            STATE_APP,
            &BTreeMap::from([(
                registry_key(*service_kind, service),
                service_owner_record(environment, tenant),
            )]),
        )?]),
        Change::SetConfig { app, changes } => {
            let mut values = BTreeMap::new();
            for c in changes {
                let value = config.get(&c.key).ok_or_else(|| CommandError::Unresolved {
                    app: app.clone(),
                    key: c.key.clone(),
                })?;
                values.insert(c.key.clone(), value.clone());
            }
            config_set_split(app, &values)
        }
        Change::UnsetConfig { app, keys } => {
            let mut words = vec!["config:unset", "--no-restart", app.as_str()];
            words.extend(keys.iter().map(String::as_str));
            one(&words)
        }
        Change::SetDomains { app, domains, .. } => {
            if domains.is_empty() {
                one(&["domains:clear", app])
            } else {
                let mut words = vec!["domains:set", app.as_str()];
                words.extend(domains.iter().map(String::as_str));
                one(&words)
            }
        }
        Change::DeployImage { app, image, .. } => {
            let mut cmd = git_command(&["git:from-image", app, image])?;
            cmd.tolerate = Tolerate::NoChanges;
            Ok(vec![cmd])
        }
        // Dokku 0.38 (dokku.com/docs/advanced-usage/registry-management):
        // `registry:login [--global|--password-stdin] [<app>] <server> <username> [<password>]`;
        // per app, the password on stdin so it never reaches argv (`ps`, sshd's
        // `SSH_ORIGINAL_COMMAND`, Dokku's logs).
        Change::LoginRegistry {
            app,
            server,
            username,
            password_secret,
        } => {
            let password = config
                .get(password_secret)
                .ok_or_else(|| CommandError::NoPassword {
                    app: app.clone(),
                    server: server.clone(),
                })?;
            let mut cmd = command(&["registry:login", "--password-stdin", app, server, username])?;
            cmd.stdin = Some(Stdin(password.clone().into_bytes()));
            Ok(vec![cmd])
        }
        Change::Scale { app, processes, .. } => {
            let tuples: Vec<String> = processes.iter().map(|(p, n)| format!("{p}={n}")).collect();
            let mut words = vec!["ps:scale", app.as_str()];
            words.extend(tuples.iter().map(String::as_str));
            one(&words)
        }
        Change::SetLimits {
            app, memory, cpus, ..
        } => {
            let memory = memory.as_deref().unwrap_or("clear");
            let cpus = cpus.as_deref().unwrap_or("clear");
            one(&["resource:limit", "--memory", memory, "--cpu", cpus, app])
        }
        Change::MountStorage { app, mount } => one(&["storage:mount", app, mount]),
        Change::UnmountStorage { app, mount } => one(&["storage:unmount", app, mount]),
        Change::SetPorts { app, ports, .. } => {
            let mut words = vec!["ports:set", app.as_str()];
            words.extend(ports.iter().map(String::as_str));
            one(&words)
        }
        Change::SetRestartPolicy { app, policy, .. } => match policy {
            Some(policy) => one(&["ps:set", app, "restart-policy", policy]),
            None => one(&["ps:set", app, "restart-policy"]),
        },
        Change::Restart { app } => one(&["ps:restart", app]),
        Change::StartApp { app } => one(&["ps:start", app]),
        Change::CreateService {
            service_kind,
            service,
            image,
        } => {
            // Record ownership first: a crash between the two leaves an intent that the next
            // scan ignores (no such service), never a service berth would refuse to manage.
            // The record app itself is the driver's to create (`ensure_state_app`: created
            // with its default vhost disabled).
            let record = config_set(
                STATE_APP,
                &BTreeMap::from([(
                    registry_key(*service_kind, service),
                    service_owner_record(environment, tenant),
                )]),
            )?;
            let kind = service_kind_word(*service_kind);
            let create_word = format!("{kind}:create");
            let (repo, tag) = image_flags(image);
            let mut words = vec![create_word.as_str(), service.as_str(), "-i", repo.as_str()];
            if let Some(tag) = &tag {
                words.extend(["-I", tag.as_str()]);
            }
            Ok(vec![record, command(&words)?])
        }
        Change::UpgradeService {
            service_kind,
            service,
            image,
            ..
        } => {
            let word = format!("{}:upgrade", service_kind_word(*service_kind));
            let (repo, tag) = image_flags(image);
            let mut words = vec![word.as_str(), service.as_str(), "-i", repo.as_str()];
            if let Some(tag) = &tag {
                words.extend(["-I", tag.as_str()]);
            }
            one(&words)
        }
        Change::LinkService {
            service_kind,
            service,
            app,
        } => {
            // `--quiet`: linking echoes the DSN, password included (reference/dokku.md §12).
            let word = format!("{}:link", service_kind_word(*service_kind));
            one(&["--quiet", &word, service, app, "--no-restart"])
        }
        Change::UnlinkService {
            service_kind,
            service,
            app,
        } => {
            let word = format!("{}:unlink", service_kind_word(*service_kind));
            one(&[&word, service, app, "--no-restart"])
        }
        Change::RelinkService {
            service_kind,
            service,
            app,
            key,
        } => {
            let kind = service_kind_word(*service_kind);
            let unlink_word = format!("{kind}:unlink");
            let mut unlink = command(&[&unlink_word, service, app, "--no-restart"])?;
            unlink.tolerate = Tolerate::NotLinked;
            let mut commands = vec![unlink];
            if let Some(key) = key {
                commands.push(command(&["config:unset", "--no-restart", app, key])?);
            }
            let link_word = format!("{kind}:link");
            commands.push(command(&[
                "--quiet",
                &link_word,
                service,
                app,
                "--no-restart",
            ])?);
            Ok(commands)
        }
        Change::EnableTls { app } => one(&["letsencrypt:enable", app]),
        Change::DisableTls { app } => one(&["letsencrypt:disable", app]),
        Change::RecordSpec { app, hash, before } => {
            let mut commands = Vec::new();
            if let Some(before) = before {
                let old = format!("{SPEC_OPTION_PREFIX}{before}");
                commands.push(command(&["docker-options:remove", app, "deploy", &old])?);
            }
            let new = format!("{SPEC_OPTION_PREFIX}{hash}");
            commands.push(command(&["docker-options:add", app, "deploy", &new])?);
            Ok(commands)
        }
        Change::DestroyApp { app } => one(&["--force", "apps:destroy", app]),
        Change::DestroyService {
            service_kind,
            service,
        } => {
            let word = format!("{}:destroy", service_kind_word(*service_kind));
            let destroy = command(&["--force", &word, service])?;
            let forget = command(&[
                "config:unset",
                "--no-restart",
                STATE_APP,
                &registry_key(*service_kind, service),
            ])?;
            Ok(vec![destroy, forget])
        }
        other => Err(CommandError::NotDokku {
            kind: other.kind_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_xargs() {
        assert_eq!(quote("acme-web"), "acme-web");
        assert_eq!(quote("x y"), "'x y'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn unsafe_arguments_are_refused() {
        assert!(command(&["domains:set", "app", "a\nb"]).is_err());
        assert!(command(&["docker-options:add", "app", "deploy", "-e"]).is_err());
        assert!(git_command(&["git:from-image", "app", "img ; reboot"]).is_err());
        assert!(
            git_command(&[
                "git:from-image",
                "app",
                "registry.example/app:1.2@sha256:abc"
            ])
            .is_ok()
        );
    }

    #[test]
    fn config_values_are_encoded_and_redacted() {
        let values = BTreeMap::from([("SECRET".to_string(), "hunter2\nline two".to_string())]);
        let cmd = config_set("acme-web", &values).unwrap();
        assert_eq!(
            cmd.display,
            "--quiet config:set --encoded --no-restart acme-web SECRET=<redacted>"
        );
        let wire = cmd.wire.join(" ");
        assert!(!wire.contains("hunter2"));
        assert!(wire.contains("SECRET=aHVudGVyMgpsaW5lIHR3bw=="));
    }

    #[test]
    fn large_config_is_split_under_the_budget() {
        let big = "x".repeat(60 * 1024);
        let values: BTreeMap<String, String> = (0..4)
            .map(|i| (format!("K{i}"), big.clone()))
            .chain([("SMALL".to_string(), "1".to_string())])
            .collect();
        let cmds = config_set_split("acme-web", &values).unwrap();
        assert!(cmds.len() >= 4, "{}", cmds.len());
        for cmd in &cmds {
            assert!(cmd.wire.join(" ").len() <= CONFIG_COMMAND_BUDGET);
        }
        let keys: usize = cmds
            .iter()
            .map(|c| c.display.matches("=<redacted>").count())
            .sum();
        assert_eq!(keys, 5);
        let huge = BTreeMap::from([("K".to_string(), "x".repeat(100 * 1024))]);
        assert!(matches!(
            config_set_split("acme-web", &huge),
            Err(CommandError::TooLarge { .. })
        ));
    }

    #[test]
    fn registry_login_sends_the_password_on_stdin_only() {
        let change = Change::LoginRegistry {
            app: "acme-web".into(),
            server: "registry.example.net".into(),
            username: "deploy bot".into(),
            password_secret: "registry".into(),
        };
        let config = BTreeMap::from([("registry".to_string(), "hunter2-pw".to_string())]);
        let cmds = build(&change, "acme", "prod", &config).unwrap();
        assert_eq!(cmds.len(), 1);
        let cmd = &cmds[0];
        assert_eq!(
            cmd.wire,
            [
                "registry:login",
                "--password-stdin",
                "acme-web",
                "registry.example.net",
                "'deploy bot'"
            ]
        );
        assert_eq!(cmd.stdin, Some(Stdin(b"hunter2-pw".to_vec())));
        assert!(!cmd.display.contains("hunter2"));
        assert!(!format!("{cmd:?}").contains("hunter2"));
        assert!(matches!(
            build(&change, "acme", "prod", &BTreeMap::new()),
            Err(CommandError::NoPassword { .. })
        ));
    }

    #[test]
    fn registry_keys_round_trip() {
        let key = registry_key(ServiceKind::Postgres, "acme-main-db");
        assert_eq!(key, "SVC_POSTGRES_ACME_MAIN_DB");
        assert_eq!(
            parse_registry_key(&key),
            Some((ServiceKind::Postgres, "acme-main-db".into()))
        );
    }

    #[test]
    fn service_creation_records_the_owner_first() {
        let change = Change::CreateService {
            service_kind: ServiceKind::Postgres,
            service: "acme-db".into(),
            image: "postgres:16".into(),
        };
        let cmds = build(&change, "acme", "prod", &BTreeMap::new()).unwrap();
        let words: Vec<&str> = cmds.iter().map(|c| c.display.as_str()).collect();
        assert_eq!(
            words,
            [
                "--quiet config:set --encoded --no-restart berth-state SVC_POSTGRES_ACME_DB=<redacted>",
                "postgres:create acme-db -i postgres -I 16"
            ]
        );
    }
}
