//! A Dokku command simulator (test code only; it ships in no product binary).
//!
//! It runs as the forced command of a real OpenSSH server, installed through an
//! `authorized_keys` line shaped exactly as Dokku's sshcommand writes it, and behaves like
//! Dokku v0.38.27 with dokku-postgres 1.48.0, dokku-redis 1.43.0 and dokku-letsencrypt 0.25.1
//! as described in `shared/reference/dokku.md` (cited below as `ref §N`).
//!
//! - It ignores argv and re-parses `$SSH_ORIGINAL_COMMAND` like the `dokku` entry script
//!   (ref §1.1): a first word containing `git` is split on whitespace with quotes kept
//!   literally; everything else goes through `xargs -n 1` rules (quotes, backslashes, the
//!   `echo` eating a bare `-n`, `-e` becoming an empty argument, an unmatched quote truncating
//!   the argument list).
//! - State lives in `$DOKKU_SIM_ROOT/state.json`, guarded by a file lock so concurrent
//!   commands behave like Dokku's read-modify-write without corrupting the file.
//! - `$DOKKU_SIM_ROOT/latency_ms` injects latency per command (before the lock, so parallel
//!   reads overlap as they do on a real server); `$DOKKU_SIM_ROOT/commands.log` gets one JSON
//!   line per command with its parsed argv, so tests can count round trips.
//! - `$DOKKU_SIM_ROOT/fail_images` lists images whose pull fails (failure injection);
//!   `$DOKKU_SIM_ROOT/mangle` names a way to corrupt stdout (hostile-output tests).
//! - `$DOKKU_SIM_ROOT/registries` holds `<server> <password>` lines: registries whose
//!   images `git:from-image` pulls only for an app logged in to that server
//!   (`registry:login`) with that password; `registry:login` to a listed server with another
//!   password fails as `docker login` does.
//! - `$DOKKU_SIM_ROOT/build_ms` is how long a git-based build (`git:from-image`,
//!   `ps:rebuild`) holds the app's deploy lock (ref §1.7); a second build meanwhile fails
//!   with the lock message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::type_complexity
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: &str = "0.38.27";
const FAIL: &str = " !     ";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct State {
    version: Option<String>,
    global_vhosts: Vec<String>,
    letsencrypt_email: Option<String>,
    apps: BTreeMap<String, App>,
    services: BTreeMap<String, Service>,
    counter: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct App {
    created_at: u64,
    env: BTreeMap<String, String>,
    vhosts: Vec<String>,
    scale: BTreeMap<String, u32>,
    deployed: bool,
    source_image: Option<String>,
    running: bool,
    restore: bool,
    limits: BTreeMap<String, String>,
    mounts: Vec<String>,
    letsencrypt: bool,
    /// Names the installed certificate covers (ref §11.3 `certs:report --ssl-hostnames`,
    /// §13: a domain change leaves the old certificate in place until `letsencrypt:enable`).
    cert_hostnames: Vec<String>,
    /// Configured port map (ref §11.1 `ports:set`); empty = detected.
    ports: Vec<String>,
    /// `ps:set` properties (ref §5.2): `restart-policy`, …
    ps_props: BTreeMap<String, String>,
    /// docker-options per phase (`build`, `deploy`, `run`; ref §6.3), service links' `--link`
    /// entries included.
    docker_options: BTreeMap<String, Vec<String>>,
    releases: u64,
    /// `registry:login <app>` credentials by server: (username, password), as Dokku keeps
    /// them in the app's docker config.
    registry_logins: BTreeMap<String, (String, String)>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Service {
    kind: String,
    name: String,
    password: String,
    image: String,
    version: String,
    links: Vec<String>,
    status: String,
}

/// What a command printed and how it ended.
#[derive(Default)]
struct Out {
    stdout: String,
    stderr: String,
    code: i32,
    /// Deploy-type commands merge stderr into stdout (ref §1.2 build capture).
    merged: bool,
    changed: bool,
}

impl Out {
    fn out(&mut self, line: impl AsRef<str>) {
        self.stdout.push_str(line.as_ref());
        self.stdout.push('\n');
    }
    fn err(&mut self, line: impl AsRef<str>) {
        if self.merged {
            self.out(line);
        } else {
            self.stderr.push_str(line.as_ref());
            self.stderr.push('\n');
        }
    }
    fn fail(mut self, message: impl AsRef<str>, code: i32) -> Out {
        self.err(format!("{FAIL}{}", message.as_ref()));
        self.code = code;
        self
    }
}

struct Globals {
    quiet: bool,
    force: bool,
    app: Option<String>,
    flags: Vec<String>,
}

fn main() {
    let root = PathBuf::from(std::env::var("DOKKU_SIM_ROOT").unwrap_or_else(|_| {
        eprintln!("dokku-sim: DOKKU_SIM_ROOT is not set");
        std::process::exit(1);
    }));
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    if let Some(ms) = read_number(&root.join("latency_ms")) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let (words, xargs_error) = reparse(&original);
    log(&root, &words);
    let held = match deploy_lock(&root, &words) {
        Ok(lock) => lock,
        Err(out) => {
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            std::process::exit(out.code);
        }
    };
    let is_report = words.iter().any(|w| w.ends_with(":report"));
    let mut pre = String::new();
    if let Some(e) = xargs_error {
        pre = format!("xargs: {e}\n");
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("state.lock"))
        .unwrap();
    let path = root.join("state.json");
    let load = || -> State {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    // Reads share the lock, so parallel reads overlap as on a real server; a command that
    // turns out to change something runs again under the exclusive lock on fresh state.
    lock.lock_shared().unwrap();
    let mut state = load();
    let mut out = run(&root, &mut state, words.clone());
    lock.unlock().unwrap();
    if out.changed {
        lock.lock().unwrap();
        let mut state = load();
        out = run(&root, &mut state, words);
        if out.changed {
            let tmp = root.join(format!("state.json.{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_string_pretty(&state).unwrap()).unwrap();
            std::fs::rename(tmp, &path).unwrap();
        }
        lock.unlock().unwrap();
    }
    let stdout_bytes = match std::fs::read_to_string(root.join("mangle")) {
        Ok(mode) => mangle(mode.trim(), is_report, &out.stdout),
        Err(_) => out.stdout.into_bytes(),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&stdout_bytes);
    let _ = stdout.flush();
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(pre.as_bytes());
    let _ = stderr.write_all(out.stderr.as_bytes());
    // `exit` runs no destructors: release the deploy lock (removing its file) first.
    drop(held);
    std::process::exit(out.code);
}

/// ref §1.7: git-based builds take `flock -n` on the app's `.deploy.lock` for the whole
/// build; a build that finds it held fails at once. Held here, outside the state lock, for
/// `build_ms`, so other commands run meanwhile as on a real server.
fn deploy_lock(root: &Path, words: &[String]) -> Result<Option<DeployLock>, Out> {
    let rest: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
    let (Some(command), Some(app)) = (rest.first(), rest.get(1)) else {
        return Ok(None);
    };
    if !matches!(command.as_str(), "git:from-image" | "ps:rebuild") || !valid_app_name(app) {
        return Ok(None);
    }
    let dir = root.join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{app}.deploy.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    if file.try_lock().is_err() {
        // Build capture (0.38.0+) sends the failure to stdout.
        let mut o = Out {
            merged: true,
            ..Out::default()
        };
        o.err(format!(
            "{FAIL}{app} currently has a deploy lock in place. Exiting..."
        ));
        o.err(format!(
            "{FAIL}Run 'apps:unlock' to release the existing deploy lock"
        ));
        o.code = 1;
        return Err(o);
    }
    let _ = std::fs::write(&path, std::process::id().to_string());
    if let Some(ms) = read_number(&root.join("build_ms")) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(Some(DeployLock { file, path }))
}

/// A held deploy lock: the file is removed while still locked, then released.
struct DeployLock {
    file: std::fs::File,
    path: PathBuf,
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Hostile output injection (`$DOKKU_SIM_ROOT/mangle`, tests/it/hostile.rs): what a broken,
/// noisy or compromised host could print instead of the real stdout. `ansi` colours every
/// line, `truncate` cuts the output in half, `extra-keys` adds a header and unknown keys (of
/// any JSON type in reports; Dokku's own `DOKKU_*` string keys elsewhere), `huge` prepends
/// 8 MiB of noise lines, `binary` adds bytes that are not UTF-8.
fn mangle(mode: &str, is_report: bool, stdout: &str) -> Vec<u8> {
    match mode {
        "ansi" => stdout
            .lines()
            .map(|l| format!("\x1b[1G\x1b[K\x1b[1;32m{l}\x1b[0m\n"))
            .collect::<String>()
            .into_bytes(),
        "truncate" => {
            let mut cut = stdout.len() / 2;
            while !stdout.is_char_boundary(cut) {
                cut -= 1;
            }
            stdout.as_bytes()[..cut].to_vec()
        }
        "extra-keys" => {
            let mut text = String::from("=====> Unexpected header from a newer Dokku\n");
            for l in stdout.lines() {
                match l.strip_prefix('{') {
                    Some(rest) if rest.starts_with('"') => {
                        text.push_str(if is_report {
                            "{\"zz-unexpected\":\"x\",\"nested-new\":{\"a\":[1,2]},\"count-new\":3,"
                        } else {
                            "{\"DOKKU_ZZ_UNEXPECTED\":\"x\","
                        });
                        text.push_str(rest);
                    }
                    _ => text.push_str(l),
                }
                text.push('\n');
            }
            text.into_bytes()
        }
        "huge" => {
            let mut bytes = "=====> noise ".repeat(8 * 1024 * 1024 / 13).into_bytes();
            bytes.push(b'\n');
            bytes.extend_from_slice(stdout.as_bytes());
            bytes
        }
        "binary" => {
            let mut bytes = b"\xff\xfe\x00\xc3(".to_vec();
            bytes.extend_from_slice(stdout.as_bytes());
            bytes
        }
        _ => stdout.as_bytes().to_vec(),
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn log(root: &Path, words: &[String]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // One write per line: parallel commands append to the same file (O_APPEND keeps a single
    // write whole).
    let line = serde_json::json!({ "t": now, "argv": words }).to_string() + "\n";
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("commands.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// ref §1.1: the entry script's second pass.
fn reparse(original: &str) -> (Vec<String>, Option<String>) {
    let plain: Vec<String> = original.split_whitespace().map(str::to_string).collect();
    let mut first = None;
    let mut skip = false;
    for w in &plain {
        if skip {
            skip = false;
            continue;
        }
        if w == "--app" {
            skip = true;
            continue;
        }
        if w.starts_with("--") {
            continue;
        }
        first = Some(w.clone());
        break;
    }
    if first.as_deref().is_some_and(|w| w.contains("git")) {
        return (plain, None);
    }
    let (items, error) = xargs_items(original);
    let mut words = Vec::new();
    for item in items {
        // `xargs -n 1` runs `echo ITEM`: a bare `-n` prints nothing, `-e`/`-E` print an
        // empty line (ref §1.1 table).
        let is_echo_flag = item.len() > 1
            && item.starts_with('-')
            && item[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E'));
        if is_echo_flag {
            if !item.contains('n') {
                words.push(String::new());
            }
            continue;
        }
        words.push(item);
    }
    (words, error)
}

/// GNU xargs item splitting: blanks separate; single/double quotes group (no newline inside);
/// a backslash escapes the next character.
fn xargs_items(input: &str) -> (Vec<String>, Option<String>) {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut in_item = false;
    let mut quote: Option<char> = None;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if c == '\n' {
                let which = if q == '\'' { "single" } else { "double" };
                return (
                    items,
                    Some(format!(
                        "unmatched {which} quote; by default quotes are special to xargs unless you use the -0 option"
                    )),
                );
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' => {
                if in_item {
                    items.push(std::mem::take(&mut cur));
                    in_item = false;
                }
            }
            '\'' | '"' => {
                quote = Some(c);
                in_item = true;
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
                in_item = true;
            }
            _ => {
                cur.push(c);
                in_item = true;
            }
        }
    }
    if let Some(q) = quote {
        let which = if q == '\'' { "single" } else { "double" };
        return (
            items,
            Some(format!(
                "unmatched {which} quote; by default quotes are special to xargs unless you use the -0 option"
            )),
        );
    }
    if in_item {
        items.push(cur);
    }
    (items, None)
}

/// ref §1.1 parse_args: global flags anywhere are exported; leading ones are shifted off.
fn split_globals(words: Vec<String>) -> (Globals, Vec<String>) {
    let mut g = Globals {
        quiet: false,
        force: false,
        app: None,
        flags: Vec::new(),
    };
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        match w.as_str() {
            "--quiet" => g.quiet = true,
            "--force" => g.force = true,
            "--app" => g.app = words.get(i + 1).cloned(),
            _ => {}
        }
        if w.starts_with("--") {
            g.flags.push(w.clone());
        }
        i += 1;
    }
    let mut rest = Vec::new();
    let mut leading = true;
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
            continue;
        }
        if leading && w.starts_with("--") {
            if w == "--app" {
                skip = true;
            }
            continue;
        }
        leading = false;
        rest.push(w);
    }
    (g, rest)
}

fn run(root: &Path, state: &mut State, words: Vec<String>) -> Out {
    let (g, mut words) = split_globals(words);
    if words.is_empty() {
        let mut o = Out::default();
        o.out("Usage: dokku [--quiet|--trace|--force] COMMAND <app> [command-specific-options]");
        return o;
    }
    let command = words.remove(0);
    // Core plugins get `--app X` inserted as the first argument (ref §1.2).
    let core = !command.starts_with("postgres:")
        && !command.starts_with("redis:")
        && !command.starts_with("letsencrypt:");
    if let (Some(app), true) = (&g.app, core) {
        words.insert(0, app.clone());
    }
    let args = words;
    let version = state.version.clone().unwrap_or_else(|| VERSION.to_string());
    match command.as_str() {
        "version" => {
            let mut o = Out::default();
            o.out(format!("dokku version {version}"));
            o
        }
        "plugin:list" => plugin_list(&args),
        c if c.starts_with("apps:") => apps(state, c, &args, &g),
        c if c.starts_with("config:") => config(state, c, args, &g),
        c if c.starts_with("domains:") => domains(state, c, &args, &g),
        c if c.starts_with("ps:") => ps(state, c, &args, &g),
        "git:from-image" => from_image(root, state, &args),
        "registry:login" => registry_login(root, state, &args),
        c if c.starts_with("resource:") => resource(state, c, &args, &g),
        c if c.starts_with("storage:") => storage(state, c, &args, &g),
        c if c.starts_with("postgres:") => service(state, "postgres", c, &args, &g),
        c if c.starts_with("redis:") => service(state, "redis", c, &args, &g),
        c if c.starts_with("letsencrypt:") => letsencrypt(state, c, &args, &g),
        "certs:report" => certs_report(state, &args, &g),
        c if c.starts_with("ports:") => ports(state, c, &args, &g),
        c if c.starts_with("docker-options:") => docker_options(state, c, &args, &g),
        _ => unknown(&command, &args),
    }
}

fn unknown(command: &str, args: &[String]) -> Out {
    // ref §1.2: the whole argument list is echoed back.
    let mut o = Out::default();
    let all = std::iter::once(command.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    o.err(format!("{FAIL}`{all}` is not a dokku command."));
    o.err(format!(
        "{FAIL}See `dokku help` for a list of available commands."
    ));
    o.code = 1;
    o
}

/// pflag-style split: `--name value` / `--name=value` / bare flags; unknown flags → exit 2.
struct Flags {
    values: BTreeMap<String, String>,
    positional: Vec<String>,
}

fn flags(args: &[String], with_value: &[&str], bare: &[&str]) -> Result<Flags, Out> {
    let mut f = Flags {
        values: BTreeMap::new(),
        positional: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(name) = a.strip_prefix("--").filter(|n| !n.is_empty()) {
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if with_value.contains(&name) {
                let value = inline.or_else(|| {
                    i += 1;
                    args.get(i).cloned()
                });
                f.values.insert(name.to_string(), value.unwrap_or_default());
            } else if bare.contains(&name) {
                f.values.insert(name.to_string(), "true".into());
            } else {
                let mut o = Out::default();
                o.err(format!("unknown flag: --{name}"));
                o.err("Usage of dokku:");
                o.code = 2;
                return Err(o);
            }
        } else {
            f.positional.push(a.clone());
        }
        i += 1;
    }
    Ok(f)
}

fn go_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// ref §1.6: Go stdout report: header, sorted keys, RightPad(key, max(31, longest)), trailing
/// spaces kept.
fn report_stdout(o: &mut Out, quiet: bool, subject: &str, kind: &str, fields: &[(String, String)]) {
    if !quiet {
        o.out(format!("=====> {subject} {kind} information"));
    }
    let mut fields: Vec<&(String, String)> = fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let width = fields
        .iter()
        .map(|(f, _)| f.len())
        .max()
        .unwrap_or(0)
        .max(31);
    for (flag, value) in fields {
        let mut key: String = flag
            .trim_start_matches("--")
            .chars()
            .map(|c| if c == '-' || c == '.' { ' ' } else { c })
            .collect();
        if let Some(first) = key.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        o.out(format!("       {:<width$}{value}", format!("{key}:")));
    }
}

/// A generic `:report` over apps (ref §1.6): all apps, one app, `--format json`, info flag.
fn report(
    state: &State,
    args: &[String],
    kind: &str,
    quiet: bool,
    build: &dyn Fn(&str, &App) -> Vec<(String, String)>,
    json_keys: &dyn Fn(&str) -> Vec<String>,
) -> Out {
    let mut o = Out::default();
    let format = args
        .iter()
        .position(|a| a == "--format")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let info: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--") && *a != "--format")
        .filter(|a| {
            args.iter()
                .position(|x| x == "--format")
                .is_none_or(|i| args.get(i + 1) != Some(a))
        })
        .collect();
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[*i - 1] != "--format"))
        .map(|(_, a)| a)
        .collect();
    if format.is_some() && !info.is_empty() {
        return o.fail(
            "--format flag cannot be specified when specifying an info flag",
            1,
        );
    }
    let apps: Vec<(&String, &App)> = match positional.first() {
        Some(name) => match state.apps.get_key_value(*name) {
            Some(pair) => vec![pair],
            None => return o.fail(format!("App {name} does not exist"), 20),
        },
        None => {
            if state.apps.is_empty() {
                o.err(format!("{FAIL}You haven't deployed any applications yet"));
                return o;
            }
            state.apps.iter().collect()
        }
    };
    for (name, app) in apps {
        let fields = build(name, app);
        if let Some(flag) = info.first() {
            match fields.iter().find(|(f, _)| f == *flag) {
                Some((_, v)) => o.out(v),
                None => {
                    let valid: Vec<String> = fields.iter().map(|(f, _)| f.clone()).collect();
                    return o.fail(
                        format!("Invalid flag passed, valid flags: {}", valid.join(", ")),
                        1,
                    );
                }
            }
            continue;
        }
        if format.as_deref() == Some("json") {
            let mut map = BTreeMap::new();
            for (flag, value) in &fields {
                for key in json_keys(flag.trim_start_matches("--")) {
                    map.insert(key, value.clone());
                }
            }
            o.out(go_json(&map));
        } else {
            report_stdout(&mut o, quiet, name, kind, &fields);
        }
    }
    o
}

/// JSON keys of a plugin with the legacy prefix emitted too (ref §1.6, 0.38.8+).
fn legacy_and_stripped(plugin: &'static str) -> impl Fn(&str) -> Vec<String> {
    move |flag: &str| {
        let prefix = format!("{plugin}-");
        match flag.strip_prefix(&prefix) {
            Some(stripped) => vec![stripped.to_string(), flag.to_string()],
            None => vec![flag.to_string()],
        }
    }
}

fn stripped_only(plugin: &'static str) -> impl Fn(&str) -> Vec<String> {
    move |flag: &str| {
        let prefix = format!("{plugin}-");
        vec![flag.strip_prefix(&prefix).unwrap_or(flag).to_string()]
    }
}

fn plugin_list(args: &[String]) -> Out {
    let mut o = Out::default();
    let plugins = [
        ("postgres", "1.48.0"),
        ("redis", "1.43.0"),
        ("letsencrypt", "0.25.1"),
    ];
    if args.iter().any(|a| a == "json") {
        let list: Vec<_> = plugins
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "version": v, "enabled": true}))
            .collect();
        o.out(go_json(&list));
    } else {
        for (n, v) in plugins {
            o.out(format!(
                "  {n:<20} {v:<8} enabled    dokku {n} service plugin"
            ));
        }
    }
    o
}

fn valid_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

fn default_vhosts(state: &State, app: &str) -> Vec<String> {
    state
        .global_vhosts
        .iter()
        .filter(|g| g.parse::<std::net::IpAddr>().is_err())
        .map(|g| {
            if app.contains('.') {
                app.to_string()
            } else {
                format!("{app}.{g}")
            }
        })
        .collect()
}

fn need_app<'s>(state: &'s mut State, name: Option<&String>) -> Result<&'s mut App, Out> {
    let Some(name) = name else {
        return Err(Out::default().fail("Please specify an app to run the command on", 1));
    };
    state
        .apps
        .get_mut(name)
        .ok_or_else(|| Out::default().fail(format!("App {name} does not exist"), 20))
}

fn confirm(o: &mut Out, what: &str, name: &str) -> bool {
    // ref §2 apps:destroy without --force: warnings, a `> ` prompt, one line from stdin.
    o.err(format!("{FAIL}WARNING: Potentially Destructive Action"));
    o.err(format!("{FAIL}This command will destroy {what} {name}."));
    o.err(format!("{FAIL}To proceed, type \"{name}\""));
    o.stdout.push_str("> ");
    let mut line = String::new();
    let read = std::io::stdin().read_to_string(&mut line).unwrap_or(0);
    if read == 0 {
        o.err(format!("{FAIL}EOF"));
        o.code = 1;
        return false;
    }
    if line.lines().next().unwrap_or_default().trim() != name {
        o.err("Confirmation did not match test. Aborted.");
        o.code = 1;
        return false;
    }
    true
}

fn apps(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "apps:list" => {
            let f = match flags(args, &["format"], &[]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            if f.values.get("format").map(String::as_str) == Some("json") {
                let names: Vec<&String> = state.apps.keys().collect();
                o.out(go_json(&names));
                return o;
            }
            if !g.quiet {
                o.out("=====> My Apps");
            }
            if state.apps.is_empty() {
                o.err(format!("{FAIL}You haven't deployed any applications yet"));
            }
            for name in state.apps.keys() {
                o.out(name);
            }
            o
        }
        "apps:exists" => match args.first() {
            None => o.fail("Please specify an app to run the command on", 1),
            Some(name) if state.apps.contains_key(name) => o,
            Some(name) => o.fail(format!("App {name} does not exist"), 20),
        },
        "apps:create" => {
            let Some(name) = args.first() else {
                return o.fail("Please specify an app to run the command on", 1);
            };
            if !valid_app_name(name) {
                return o.fail("App name must begin with lowercase alphanumeric character, and may only contain lowercase alphanumerics, dots, and hyphens", 1);
            }
            if state.apps.contains_key(name) {
                return o.fail("Name is already taken", 1);
            }
            let vhosts = default_vhosts(state, name);
            let mut app = App {
                created_at: now(),
                scale: BTreeMap::from([("web".to_string(), 1)]),
                restore: true,
                ..App::default()
            };
            o.out(format!("-----> Creating {name}..."));
            if vhosts.is_empty() {
                o.out("-----> Global server virtual host not set, disabling app vhost...");
                app.env.insert("NO_VHOST".into(), "1".into());
            } else {
                o.out("-----> Creating new app virtual host file...");
                app.env.insert("NO_VHOST".into(), "0".into());
            }
            app.vhosts = vhosts;
            state.apps.insert(name.clone(), app);
            o.changed = true;
            o
        }
        "apps:destroy" => {
            let force = g.force || args.iter().any(|a| a == "--force");
            let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
            let Some(name) = positional.first().copied() else {
                return o.fail("Please specify an app to run the command on", 1);
            };
            if !state.apps.contains_key(name) {
                return o.fail(format!("App {name} does not exist"), 20);
            }
            if !force && !confirm(&mut o, "app", name) {
                return o;
            }
            o.out(format!("-----> Destroying {name} (including all add-ons)"));
            for svc in state.services.values_mut() {
                if svc.links.contains(name) {
                    o.out(format!("       Unlinking from {}", svc.name));
                    svc.links.retain(|a| a != name);
                }
            }
            o.out("-----> Retiring old containers and images");
            state.apps.remove(name);
            o.changed = true;
            o
        }
        "apps:report" => report(
            state,
            args,
            "app",
            g.quiet,
            &|name, app| {
                vec![
                    ("--app-created-at".into(), app.created_at.to_string()),
                    (
                        "--app-deploy-source".into(),
                        if app.source_image.is_some() {
                            "docker-image".into()
                        } else {
                            String::new()
                        },
                    ),
                    (
                        "--app-deploy-source-metadata".into(),
                        app.source_image.clone().unwrap_or_default(),
                    ),
                    ("--app-dir".into(), format!("/home/dokku/{name}")),
                    ("--app-global-disable-autocreation".into(), String::new()),
                    ("--app-locked".into(), "false".into()),
                ]
            },
            &legacy_and_stripped("app"),
        ),
        _ => unknown(command, args),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// ref §3: redeploy after config changes when the app is deployed and not stopped.
fn release_and_deploy(o: &mut Out, name: &str, app: &mut App) {
    o.merged = true;
    o.out(format!("-----> Restarting app {name}"));
    o.out(format!("-----> Releasing {name}..."));
    o.out(format!(
        "-----> Deploying {name} via the docker-local scheduler..."
    ));
    app.releases += 1;
    app.running = app.scale.values().any(|n| *n > 0);
    o.out("=====> Application deployed:");
    for vhost in &app.vhosts {
        o.out(format!("       http://{vhost}"));
    }
}

fn config(state: &mut State, command: &str, args: Vec<String>, g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "config:export" => {
            let f = match flags(&args, &["format"], &["merged"]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let app = match need_app(state, f.positional.first()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            match f.values.get("format").map_or("exports", String::as_str) {
                "json" => o.out(go_json(&app.env)),
                "exports" => {
                    for (k, v) in &app.env {
                        o.out(format!("export {k}='{}'", v.replace('\'', "'\\''")));
                    }
                }
                other => return o.fail(format!("Unknown export format: {other}"), 1),
            }
            o
        }
        "config:get" => {
            let f = match flags(&args, &[], &["quoted"]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let app = match need_app(state, f.positional.first()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            match f.positional.get(1) {
                None => o.fail("Expected: key", 1),
                Some(key) => match app.env.get(key) {
                    Some(v) => {
                        o.out(v);
                        o
                    }
                    None => {
                        o.code = 1;
                        o
                    }
                },
            }
        }
        "config:show" => {
            let app = match need_app(state, args.first()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            if !g.quiet {
                o.out(format!("=====> {} env vars", args[0]));
            }
            let width = app.env.keys().map(|k| k.len() + 1).max().unwrap_or(0) + 2;
            for (k, v) in &app.env {
                o.out(format!("{:<width$}{v}", format!("{k}:")));
            }
            o
        }
        "config:set" => {
            let f = match flags(&args, &[], &["encoded", "no-restart"]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let name = f.positional.first().cloned();
            let encoded = f.values.contains_key("encoded");
            let pairs: Vec<String> = f.positional.iter().skip(1).cloned().collect();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            if pairs.is_empty() {
                return o.fail("At least one env pair must be given", 1);
            }
            let mut parsed = Vec::new();
            for pair in &pairs {
                let Some((k, v)) = pair.split_once('=') else {
                    return o.fail(format!("Invalid env pair: {pair}"), 1);
                };
                let key_ok = k
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !key_ok {
                    return o.fail(format!("Invalid key name: '{k}'"), 1);
                }
                let value = if encoded {
                    use base64::Engine as _;
                    match base64::engine::general_purpose::STANDARD.decode(v) {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        Err(e) => {
                            return o.fail(
                                format!(
                                    "illegal base64 data at input byte {} for key '{k}'",
                                    base64_offset(&e)
                                ),
                                1,
                            );
                        }
                    }
                } else {
                    v.to_string()
                };
                parsed.push((k.to_string(), value));
            }
            if !g.quiet {
                o.out("-----> Setting config vars");
                let width = parsed.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
                for (k, v) in &parsed {
                    // ref §3: values are echoed in clear text unless --quiet.
                    o.out(format!("       {:<width$}{v}", format!("{k}:")));
                }
            }
            for (k, v) in parsed {
                app.env.insert(k, v);
            }
            if !f.values.contains_key("no-restart") && app.deployed && app.restore {
                let n = name.unwrap();
                release_and_deploy(&mut o, &n, app);
            }
            o.changed = true;
            o
        }
        "config:unset" => {
            let f = match flags(&args, &[], &["no-restart"]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let name = f.positional.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let keys: Vec<&String> = f.positional.iter().skip(1).collect();
            if keys.is_empty() {
                return o.fail("At least one key must be given", 1);
            }
            for key in keys {
                if app.env.remove(key).is_some() {
                    o.out(format!("-----> Unsetting {key}"));
                } else {
                    o.out(format!(
                        "-----> Skipping {key}, it is not set in the environment"
                    ));
                }
            }
            // ref §3: restarts even if nothing was unset.
            if !f.values.contains_key("no-restart") && app.deployed && app.restore {
                let n = name.unwrap();
                release_and_deploy(&mut o, &n, app);
            }
            o.changed = true;
            o
        }
        _ => unknown(command, &args),
    }
}

fn base64_offset(e: &base64::DecodeError) -> usize {
    match e {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        _ => 0,
    }
}

fn valid_domain(d: &str) -> bool {
    let d = d.to_lowercase();
    if d == "_" {
        return true;
    }
    let ok_chars = d
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '*' | '-'));
    ok_chars && d.chars().last().is_some_and(|c| c != '.')
}

fn domains(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "domains:report" => {
            if args.iter().any(|a| a == "--global") {
                let fields = vec![
                    ("--domains-global-enabled".to_string(), "true".to_string()),
                    (
                        "--domains-global-vhosts".to_string(),
                        state.global_vhosts.join(" "),
                    ),
                ];
                if args.iter().any(|a| a == "json") {
                    let map: BTreeMap<&str, &String> = fields
                        .iter()
                        .map(|(f, v)| (f.trim_start_matches("--domains-"), v))
                        .collect();
                    o.out(go_json(&map));
                } else {
                    report_stdout(&mut o, g.quiet, "--global", "domains", &fields);
                }
                return o;
            }
            let global = state.global_vhosts.join(" ");
            report(
                state,
                args,
                "domains",
                g.quiet,
                &|_, app| {
                    let enabled = app
                        .env
                        .get("NO_VHOST")
                        .map_or("true", |v| if v == "1" { "false" } else { "true" });
                    vec![
                        ("--domains-app-enabled".into(), enabled.into()),
                        ("--domains-app-vhosts".into(), app.vhosts.join(" ")),
                        ("--domains-global-enabled".into(), "true".into()),
                        ("--domains-global-vhosts".into(), global.clone()),
                    ]
                },
                &stripped_only("domains"),
            )
        }
        "domains:set-global" => {
            if args.is_empty() {
                return o.fail("Please specify a domain name. Usage: dokku domains:set-global DOMAIN [DOMAIN ...]", 1);
            }
            state.global_vhosts = args.to_vec();
            o.out(format!("-----> Set {}", args.join(" ")));
            o.changed = true;
            o
        }
        // ref §4 `domains:disable` / `domains:enable`: the VHOST file and `NO_VHOST` (the
        // app vhost is enabled unless `NO_VHOST=1`); `--all` acts on every app.
        "domains:disable" | "domains:enable" => {
            let Some(target) = args.first().cloned() else {
                return o.fail("Please specify an app to run the command on", 1);
            };
            let names: Vec<String> = if target == "--all" {
                state.apps.keys().cloned().collect()
            } else if state.apps.contains_key(&target) {
                vec![target]
            } else {
                return o.fail(format!("App {target} does not exist"), 20);
            };
            for name in names {
                let defaults = default_vhosts(state, &name);
                let app = state.apps.get_mut(&name).unwrap();
                let enabled = app.env.get("NO_VHOST").map(String::as_str) != Some("1");
                if command == "domains:disable" {
                    if !enabled {
                        o.out(format!(
                            "-----> Domains (VHOST) support is already disabled for app ({name})"
                        ));
                        continue;
                    }
                    if !app.vhosts.is_empty() {
                        o.out("-----> App virtual host support disabled");
                    }
                    app.vhosts.clear();
                    app.env.insert("NO_VHOST".into(), "1".into());
                } else {
                    if enabled {
                        o.out(format!(
                            "-----> Domains (VHOST) support is already enabled for app ({name})"
                        ));
                        continue;
                    }
                    app.vhosts = defaults;
                    app.env.insert("NO_VHOST".into(), "0".into());
                }
                o.out(format!(
                    "-----> Configuring {name}...(using built-in template)"
                ));
                o.out("-----> Creating http nginx.conf");
                o.out("       Reloading nginx");
                o.changed = true;
            }
            o
        }
        "domains:set" | "domains:add" | "domains:remove" | "domains:clear" => {
            let name = args.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let name = name.unwrap();
            let list: Vec<String> = args.iter().skip(1).map(|d| d.to_lowercase()).collect();
            if command != "domains:clear" {
                if list.is_empty() {
                    return o.fail(format!("Please specify a domain name. Usage: dokku {command} <app> DOMAIN [DOMAIN ...]"), 1);
                }
                if let Some(bad) = list.iter().find(|d| !valid_domain(d)) {
                    return o.fail(format!("{bad} is invalid. exiting..."), 1);
                }
            }
            match command {
                "domains:set" => {
                    app.vhosts = list.clone();
                    app.env.insert("NO_VHOST".into(), "0".into());
                    o.out(format!("-----> Set {} for {name}", list.join(" ")));
                }
                "domains:add" => {
                    for d in list {
                        if app.vhosts.contains(&d) {
                            o.out(format!("-----> Skipping: {d} already added to {name}"));
                        } else {
                            o.out(format!("-----> Added {d} to {name}"));
                            app.vhosts.push(d);
                        }
                    }
                    app.env.insert("NO_VHOST".into(), "0".into());
                }
                "domains:remove" => {
                    for d in list {
                        app.vhosts.retain(|v| *v != d);
                        o.out(format!("-----> Removed {d} from {name}"));
                    }
                }
                _ => {
                    app.vhosts.clear();
                    o.out(format!("-----> Cleared domains in {name}"));
                }
            }
            o.out(format!(
                "-----> Configuring {name}...(using built-in template)"
            ));
            o.out("-----> Creating http nginx.conf");
            o.out("       Reloading nginx");
            o.changed = true;
            o
        }
        _ => unknown(command, args),
    }
}

fn ps(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "ps:scale" => {
            let f = match flags(args, &["format"], &["skip-deploy"]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let name = f.positional.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let name = name.unwrap();
            let tuples: Vec<&String> = f.positional.iter().skip(1).collect();
            if tuples.is_empty() {
                if f.values.get("format").map(String::as_str) == Some("json") {
                    let list: Vec<_> = app
                        .scale
                        .iter()
                        .map(|(p, n)| serde_json::json!({"process_type": p, "quantity": n}))
                        .collect();
                    o.out(go_json(&list));
                } else {
                    if !g.quiet {
                        o.out(format!("-----> Scaling for {name}"));
                        o.out("proctype: qty");
                        o.out("--------: ---");
                    }
                    for (p, n) in &app.scale {
                        o.out(format!("{:<5} {n}", format!("{p}:")));
                    }
                }
                return o;
            }
            let mut changed = Vec::new();
            for t in tuples {
                let Some((p, n)) = t.split_once('=') else {
                    return o.fail(format!("Missing count for process type {t}"), 1);
                };
                let Ok(n) = n.parse::<u32>() else {
                    return o.fail(format!("Invalid count for process type {p}"), 1);
                };
                if app.scale.get(p) != Some(&n) {
                    changed.push(p.to_string());
                }
                app.scale.insert(p.to_string(), n);
            }
            o.out(format!(
                "-----> Scaling {name} processes: {}",
                f.positional
                    .iter()
                    .skip(1)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            if app.deployed && !changed.is_empty() && !f.values.contains_key("skip-deploy") {
                o.merged = true;
                o.out(format!(
                    "-----> Deploying {name} via the docker-local scheduler..."
                ));
                app.running = app.scale.values().any(|n| *n > 0);
            }
            o.changed = true;
            o
        }
        "ps:report" => report(
            state,
            args,
            "ps",
            g.quiet,
            &|_, app| {
                vec![
                    ("--deployed".into(), app.deployed.to_string()),
                    (
                        "--processes".into(),
                        app.scale.values().sum::<u32>().to_string(),
                    ),
                    ("--ps-can-scale".into(), "true".into()),
                    (
                        "--ps-computed-restart-policy".into(),
                        app.ps_props
                            .get("restart-policy")
                            .cloned()
                            .unwrap_or_else(|| "on-failure:10".into()),
                    ),
                    ("--ps-global-restart-policy".into(), String::new()),
                    (
                        "--ps-restart-policy".into(),
                        app.ps_props
                            .get("restart-policy")
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    ("--restore".into(), app.restore.to_string()),
                    ("--running".into(), app.running.to_string()),
                ]
            },
            &legacy_and_stripped("ps"),
        ),
        "ps:restart" | "ps:rebuild" | "ps:start" => {
            let name = args.iter().find(|a| !a.starts_with("--")).cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let name = name.unwrap();
            if !app.deployed {
                o.err(format!("{FAIL}App {name} has not been deployed"));
                return o;
            }
            if command == "ps:start" {
                // ref §5.2: a running app is left alone; a stopped or mixed one is released.
                if app.running {
                    o.err(format!("{FAIL}App {name} already running"));
                    return o;
                }
                o.err(format!(
                    "{FAIL}App has been detected as not running, releasing"
                ));
            }
            app.restore = true;
            release_and_deploy(&mut o, &name, app);
            o.changed = true;
            o
        }
        "ps:set" => {
            // ref §5.2: generic property set; no restart (read at container creation).
            let valid = [
                "dockerfile-start-cmd",
                "procfile-path",
                "restart-policy",
                "restore",
                "skip-deploy",
                "start-cmd",
                "stop-timeout-seconds",
            ];
            let name = args.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let Some(key) = args.get(1) else {
                return o.fail("No property specified", 1);
            };
            if !valid.contains(&key.as_str()) {
                return o.fail(
                    format!(
                        "Invalid property specified, valid properties include: {}",
                        valid.join(", ")
                    ),
                    1,
                );
            }
            match args.get(2) {
                Some(value) => {
                    if key == "restart-policy" && !valid_restart_policy(value) {
                        return o.fail("Invalid restart-policy specified", 1);
                    }
                    o.out(format!("=====> Setting {key} to {value}"));
                    app.ps_props.insert(key.clone(), value.clone());
                }
                None => {
                    o.out(format!("=====> Unsetting {key}"));
                    app.ps_props.remove(key);
                }
            }
            o.changed = true;
            o
        }
        "ps:stop" => {
            let name = args.iter().find(|a| !a.starts_with("--")).cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            if !g.quiet {
                o.out(format!("-----> Stopping {}", name.unwrap()));
            }
            app.running = false;
            app.restore = false;
            o.changed = true;
            o
        }
        _ => unknown(command, args),
    }
}

/// ref §6.1 `git:from-image`: arguments arrive unparsed (first word contains `git`).
fn from_image(root: &Path, state: &mut State, args: &[String]) -> Out {
    let mut o = Out::default();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(name) = positional.first().copied() else {
        return o.fail("Please specify an app to run the command on", 1);
    };
    let Some(image) = positional.get(1).copied() else {
        return o.fail("Please specify a docker image", 1);
    };
    let fail_images = std::fs::read_to_string(root.join("fail_images")).unwrap_or_default();
    state.counter += 1;
    let counter = state.counter;
    let Some(app) = state.apps.get_mut(name) else {
        return o.fail(format!("App {name} does not exist"), 20);
    };
    o.merged = true;
    o.out("-----> Generating build context");
    if app.source_image.as_ref() == Some(image) {
        o.err(format!("{FAIL}No changes detected, skipping git commit"));
        o.err(format!(
            "{FAIL}Call 'ps:rebuild' on app to rebuild the app from existing source"
        ));
        o.code = 1;
        return o;
    }
    if fail_images.lines().any(|l| l.trim() == image) {
        o.out("-----> Pulling image");
        o.err(format!("{FAIL}Failed to pull image: {image}"));
        o.code = 1;
        return o;
    }
    if let Some(server) = registry_server(image)
        && let Some(password) = registry_passwords(root).get(server)
    {
        o.out("-----> Pulling image");
        if app.registry_logins.get(server).map(|(_, p)| p) != Some(password) {
            o.err(format!(
                "{FAIL}Failed to pull image: {image}: unauthorized: authentication required"
            ));
            o.code = 1;
            return o;
        }
    } else {
        o.out("-----> Image exists on host, skipping pull");
    }
    o.out("-----> Updating git repository with specified build context");
    o.out(format!("-----> Releasing {name}..."));
    o.out(format!(
        "-----> Deploying {name} via the docker-local scheduler..."
    ));
    app.source_image = Some(image.clone());
    app.deployed = true;
    app.restore = true;
    app.running = app.scale.values().any(|n| *n > 0);
    app.releases += 1;
    app.env.insert(
        "GIT_REV".into(),
        format!("{:040x}", counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    );
    o.out("=====> Application deployed:");
    for vhost in &app.vhosts {
        o.out(format!("       http://{vhost}"));
    }
    o.changed = true;
    o
}

/// The registry server of an image reference (Docker's rule: a first component with a dot
/// or a port, or `localhost`).
fn registry_server(image: &str) -> Option<&str> {
    let (first, rest) = image.split_once('/')?;
    ((first.contains('.') || first.contains(':') || first == "localhost") && !rest.is_empty())
        .then_some(first)
}

/// `$DOKKU_SIM_ROOT/registries`: server → the password it accepts.
fn registry_passwords(root: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(root.join("registries"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (server, password) = l.trim().split_once(' ')?;
            Some((server.to_string(), password.to_string()))
        })
        .collect()
}

/// The command's stdin, read once (a command that changes state runs twice, ref the main
/// loop).
fn stdin_text() -> &'static str {
    static STDIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STDIN.get_or_init(|| {
        let mut text = String::new();
        let _ = std::io::stdin().read_to_string(&mut text);
        text
    })
}

/// `registry:login [--global|--password-stdin] [<app>] <server> <username> [<password>]`
/// (Dokku 0.38 registry-management docs). `--global` is not simulated.
fn registry_login(root: &Path, state: &mut State, args: &[String]) -> Out {
    let mut o = Out::default();
    let stdin = args.iter().any(|a| a == "--password-stdin");
    if args.iter().any(|a| a == "--global") {
        return o.fail("dokku-sim: registry:login --global is not simulated", 1);
    }
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let want = if stdin { 3 } else { 4 };
    if positional.len() != want {
        return o.fail("Usage: dokku registry:login [--global|--password-stdin] [<app>] <server> <username> [<password>]", 1);
    }
    let (name, server, username) = (positional[0], positional[1], positional[2]);
    let password = if stdin {
        stdin_text().trim_end_matches(['\n', '\r']).to_string()
    } else {
        positional[3].clone()
    };
    if password.is_empty() {
        return o.fail("Missing password", 1);
    }
    if registry_passwords(root)
        .get(server.as_str())
        .is_some_and(|p| *p != password)
    {
        return o.fail(
            format!("Error response from daemon: login attempt to https://{server}/v2/ failed with status: 401 Unauthorized"),
            1,
        );
    }
    let app = match need_app(state, Some(name)) {
        Ok(a) => a,
        Err(e) => return e,
    };
    app.registry_logins
        .insert(server.clone(), (username.clone(), password));
    o.out("Login Succeeded");
    o.changed = true;
    o
}

fn resource(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "resource:limit" | "resource:reserve" => {
            let keys = [
                "cpu",
                "memory",
                "memory-swap",
                "network",
                "network-ingress",
                "network-egress",
                "nvidia-gpu",
                "process-type",
            ];
            let f = match flags(args, &keys, &[]) {
                Ok(f) => f,
                Err(e) => return e,
            };
            let name = f.positional.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let kind = if command == "resource:limit" {
                "limit"
            } else {
                "reserve"
            };
            let process = f
                .values
                .get("process-type")
                .cloned()
                .unwrap_or_else(|| "_default_".into());
            let set: Vec<(&String, &String)> = f
                .values
                .iter()
                .filter(|(k, _)| *k != "process-type")
                .collect();
            if set.is_empty() {
                o.out(format!(
                    "=====> resource limits {} information [defaults]",
                    name.unwrap()
                ));
                for k in &keys[..7] {
                    o.out(format!(
                        "       {k}: {}",
                        app.limits
                            .get(&format!("{process}.{kind}.{k}"))
                            .cloned()
                            .unwrap_or_default()
                    ));
                }
                return o;
            }
            if !g.quiet {
                o.out(format!(
                    "=====> Setting resource limits for {}",
                    name.unwrap()
                ));
            }
            for (k, v) in set {
                let key = format!("{process}.{kind}.{k}");
                if v == "clear" {
                    app.limits.remove(&key);
                    o.out(format!("       {k}: cleared"));
                } else {
                    app.limits.insert(key, v.clone());
                    o.out(format!("       {k}: {v}"));
                }
            }
            o.changed = true;
            o
        }
        "resource:report" => {
            let format_json = args.iter().any(|a| a == "json");
            let positional: Vec<&String> = args
                .iter()
                .filter(|a| !a.starts_with("--") && *a != "json")
                .collect();
            let names: Vec<String> = match positional.first() {
                Some(n) if !state.apps.contains_key(*n) => {
                    return o.fail(format!("App {n} does not exist"), 20);
                }
                Some(n) => vec![(*n).clone()],
                None => {
                    if state.apps.is_empty() {
                        o.err(format!("{FAIL}You haven't deployed any applications yet"));
                        return o;
                    }
                    state.apps.keys().cloned().collect()
                }
            };
            for name in names {
                let app = &state.apps[&name];
                if format_json {
                    let mut map = BTreeMap::new();
                    for (k, v) in &app.limits {
                        let stored =
                            if k.ends_with(".memory") && v.chars().all(|c| c.is_ascii_digit()) {
                                format!("{v}m")
                            } else {
                                v.clone()
                            };
                        map.insert(k.clone(), stored.clone());
                        map.insert(format!("resource-{k}"), stored);
                    }
                    o.out(go_json(&map));
                } else {
                    let fields: Vec<(String, String)> = app
                        .limits
                        .iter()
                        .map(|(k, v)| (format!("--resource-{k}"), v.clone()))
                        .collect();
                    report_stdout(&mut o, g.quiet, &name, "resource", &fields);
                }
            }
            o
        }
        _ => unknown(command, args),
    }
}

fn storage(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "storage:mount" | "storage:unmount" => {
            let name = args.first().cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let Some(mount) = args.get(1) else {
                return o.fail("Storage path must be two valid paths divided by colon.", 1);
            };
            let valid =
                mount.split(':').count() >= 2 && mount.split(':').take(2).all(|p| !p.is_empty());
            if !valid {
                return o.fail("Storage path must be two valid paths divided by colon.", 1);
            }
            if command == "storage:mount" {
                if app.mounts.contains(mount) {
                    return o.fail("Mount path already exists.", 1);
                }
                app.mounts.push(mount.clone());
            } else {
                if !app.mounts.contains(mount) {
                    return o.fail("Mount path does not exist.", 1);
                }
                app.mounts.retain(|m| m != mount);
            }
            o.changed = true;
            o
        }
        "storage:list" => {
            let name = args
                .iter()
                .find(|a| !a.starts_with("--") && *a != "json")
                .cloned();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            if args.iter().any(|a| a == "json") {
                let list: Vec<_> = app
                    .mounts
                    .iter()
                    .map(|m| {
                        let (h, c) = m.split_once(':').unwrap_or((m, ""));
                        serde_json::json!({"entry_name": format!("legacy-{:08x}", m.len() * 2_654_435_761 % 0xffff_ffff), "host_path": h, "container_path": c})
                    })
                    .collect();
                o.out(go_json(&list));
            } else {
                if !g.quiet {
                    o.out(format!("-----> {} volume bind-mounts:", name.unwrap()));
                }
                for m in &app.mounts {
                    o.out(format!("       {m}"));
                }
            }
            o
        }
        "storage:report" => report(
            state,
            args,
            "storage",
            g.quiet,
            &|_, app| {
                let mounts = app
                    .mounts
                    .iter()
                    .map(|m| format!("-v {m}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    ("--storage-build-mounts".into(), String::new()),
                    ("--storage-deploy-mounts".into(), mounts.clone()),
                    ("--storage-run-mounts".into(), mounts),
                ]
            },
            &legacy_and_stripped("storage"),
        ),
        _ => unknown(command, args),
    }
}

fn service(
    state: &mut State,
    kind: &'static str,
    command: &str,
    args: &[String],
    g: &Globals,
) -> Out {
    let mut o = Out::default();
    let title = if kind == "postgres" {
        "Postgres"
    } else {
        "Redis"
    };
    let sub = command.split_once(':').map_or("", |(_, s)| s);
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let key = |name: &str| format!("{kind}:{name}");
    let dsn = |s: &Service| match kind {
        "postgres" => format!(
            "postgres://postgres:{}@dokku-postgres-{}:5432/{}",
            s.password,
            s.name,
            s.name.replace(['.', '-'], "_")
        ),
        _ => format!("redis://:{}@dokku-redis-{}:6379", s.password, s.name),
    };
    let alias_var = if kind == "postgres" {
        "DATABASE"
    } else {
        "REDIS"
    };
    match sub {
        "list" => {
            let names: Vec<&Service> = state.services.values().filter(|s| s.kind == kind).collect();
            if names.is_empty() {
                o.err(format!("{FAIL}There are no {title} services"));
                return o;
            }
            if !g.quiet {
                o.out(format!("=====> {title} services"));
            }
            for s in names {
                o.out(&s.name);
            }
            o
        }
        "create" => {
            let Some(name) = positional.first().copied() else {
                return o.fail("Please specify a valid name for the service. Valid characters are: [A-Za-z0-9_]+", 1);
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return o.fail("Please specify a valid name for the service. Valid characters are: [A-Za-z0-9_]+", 1);
            }
            if state.services.contains_key(&key(name)) {
                return o.fail(format!("{title} service {name} already exists"), 1);
            }
            let value_of = |short: &str, long: &str| {
                args.iter()
                    .position(|a| a == short || a == long)
                    .and_then(|i| args.get(i + 1))
                    .cloned()
            };
            let (image, version) = if kind == "postgres" {
                ("postgres", "18.4")
            } else {
                ("redis", "8.8.0")
            };
            state.counter += 1;
            let s = Service {
                kind: kind.to_string(),
                name: name.clone(),
                password: format!("{:032x}", state.counter.wrapping_mul(0x2545_f491_4f6c_dd1d)),
                image: value_of("-i", "--image").unwrap_or_else(|| image.into()),
                version: value_of("-I", "--image-version").unwrap_or_else(|| version.into()),
                links: Vec::new(),
                status: "running".into(),
            };
            o.out("       Waiting for container to be ready");
            o.out("       Creating container database");
            o.out("       Securing connection to database");
            o.out(format!("=====> {title} container created: {name}"));
            state.services.insert(key(name), s);
            o.changed = true;
            o
        }
        "exists" => match positional.first() {
            Some(n) if state.services.contains_key(&key(n)) => {
                o.out(format!("-----> Service {n} exists"));
                o
            }
            Some(n) => o.fail(format!("{title} service {n} does not exist"), 1),
            None => o.fail("Please specify a valid name for the service", 1),
        },
        "info" | "links" | "link" | "unlink" | "destroy" | "linked" | "upgrade" => {
            let Some(name) = positional.first().copied() else {
                return o.fail("Please specify a valid name for the service", 1);
            };
            let Some(s) = state.services.get(&key(name)).cloned() else {
                return o.fail(format!("{title} service {name} does not exist"), 1);
            };
            match sub {
                "info" => {
                    let links = if s.links.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{} ", s.links.join(" "))
                    };
                    let fields = [
                        ("Dsn:", dsn(&s)),
                        ("Links:", links),
                        ("Status:", s.status.clone()),
                        ("Version:", format!("{}:{}", s.image, s.version)),
                    ];
                    if let Some(flag) = args.iter().find(|a| a.starts_with("--")) {
                        let value = match flag.as_str() {
                            "--dsn" => dsn(&s),
                            "--links" => s.links.join(" "),
                            "--status" => s.status.clone(),
                            "--version" => format!("{}:{}", s.image, s.version),
                            _ => return o.fail("Invalid flag passed, valid flags: --config-dir --data-dir --dsn --exposed-ports --id --internal-ip --initial-network --links --post-create-network --post-start-network --service-root --status --version", 1),
                        };
                        o.out(value);
                        return o;
                    }
                    o.out(format!("=====> {name} {kind} service information"));
                    for (k, v) in fields {
                        o.out(format!("       {k:<20} {v:<25}"));
                    }
                    o
                }
                "upgrade" => {
                    // ref §12 `<kind>:upgrade`: the container is recreated from the new
                    // image on the same data directory; password and links are kept.
                    let value_of = |short: &str, long: &str| {
                        args.iter()
                            .position(|a| a == short || a == long)
                            .and_then(|i| args.get(i + 1))
                            .cloned()
                    };
                    let svc = state.services.get_mut(&key(name)).unwrap();
                    if let Some(image) = value_of("-i", "--image") {
                        svc.image = image;
                    }
                    if let Some(version) = value_of("-I", "--image-version") {
                        svc.version = version;
                    }
                    o.out(format!(
                        "-----> Upgrading {name} to {}:{}",
                        svc.image, svc.version
                    ));
                    o.out("=====> Stopping container");
                    o.out("       Starting container");
                    o.out(format!("=====> {title} container upgraded: {name}"));
                    o.changed = true;
                    o
                }
                "links" => {
                    for a in &s.links {
                        o.out(a);
                    }
                    o
                }
                "linked" => {
                    let Some(app) = positional.get(1) else {
                        return o.fail("Please specify an app to run the command on", 1);
                    };
                    if s.links.contains(app) {
                        o.out(format!("-----> Service {name} is linked to {app}"));
                        o
                    } else {
                        o.fail(format!("Service {name} is not linked to {app}"), 1)
                    }
                }
                "link" => {
                    let Some(app_name) = positional
                        .get(1)
                        .copied()
                        .cloned()
                        .or_else(|| g.app.clone())
                    else {
                        return o.fail("Please specify an app to run the command on", 1);
                    };
                    let no_restart = args.iter().any(|a| a == "-n" || a == "--no-restart")
                        || g.flags.iter().any(|f| f == "--no-restart");
                    let Some(app) = state.apps.get_mut(&app_name) else {
                        return o.fail(format!("App {app_name} does not exist"), 20);
                    };
                    let url = dsn(&s);
                    if app.env.values().any(|v| *v == url) {
                        return o.fail(format!("Already linked as {alias_var}_URL"), 1);
                    }
                    let var = if app.env.contains_key(&format!("{alias_var}_URL")) {
                        format!("DOKKU_{}_AQUA_URL", kind.to_uppercase())
                    } else {
                        format!("{alias_var}_URL")
                    };
                    app.env.insert(var.clone(), url.clone());
                    for phase in ["build", "deploy", "run"] {
                        app.docker_options
                            .entry(phase.to_string())
                            .or_default()
                            .push(format!("--link dokku.{kind}.{name}:dokku-{kind}-{name}"));
                    }
                    if !g.quiet {
                        o.out("-----> Setting config vars");
                        o.out(format!("       {var}:  {url}"));
                    }
                    if no_restart || !app.deployed {
                        o.out("       Skipping restart of linked app");
                    } else {
                        release_and_deploy(&mut o, &app_name, app);
                    }
                    state
                        .services
                        .get_mut(&key(name))
                        .unwrap()
                        .links
                        .push(app_name);
                    o.changed = true;
                    o
                }
                "unlink" => {
                    let Some(app_name) = positional
                        .get(1)
                        .copied()
                        .cloned()
                        .or_else(|| g.app.clone())
                    else {
                        return o.fail("Please specify an app to run the command on", 1);
                    };
                    let no_restart = args.iter().any(|a| a == "-n" || a == "--no-restart")
                        || g.flags.iter().any(|f| f == "--no-restart");
                    // ref §12: the LINKS entry and docker options go first, then the check.
                    state
                        .services
                        .get_mut(&key(name))
                        .unwrap()
                        .links
                        .retain(|a| *a != app_name);
                    o.changed = true;
                    let Some(app) = state.apps.get_mut(&app_name) else {
                        return o.fail(format!("App {app_name} does not exist"), 20);
                    };
                    for options in app.docker_options.values_mut() {
                        options.retain(|d| !d.contains(&format!("dokku.{kind}.{name}:")));
                    }
                    let url = dsn(&s);
                    let Some(var) = app
                        .env
                        .iter()
                        .find(|(_, v)| **v == url)
                        .map(|(k, _)| k.clone())
                    else {
                        return o.fail(format!("Not linked to app {app_name}"), 1);
                    };
                    app.env.remove(&var);
                    o.out(format!("-----> Unsetting {var}"));
                    if no_restart || !app.deployed {
                        o.out("       Skipping restart of linked app");
                    } else {
                        release_and_deploy(&mut o, &app_name, app);
                    }
                    o
                }
                _ => {
                    let force = g.force
                        || args
                            .iter()
                            .any(|a| a == "-f" || a == "--force" || a == "force");
                    if !s.links.is_empty() {
                        return o.fail("Cannot delete linked service", 1);
                    }
                    if !force {
                        o.err(format!("{FAIL}WARNING: Potentially Destructive Action"));
                        o.err(format!(
                            "{FAIL}This command will destroy {name} {title} service."
                        ));
                        o.err(format!("{FAIL}To proceed, type \"{name}\""));
                        let mut line = String::new();
                        if std::io::stdin().read_to_string(&mut line).unwrap_or(0) == 0
                            || line.trim() != name
                        {
                            o.code = 1;
                            return o;
                        }
                    }
                    o.out(format!("=====> Deleting {name}"));
                    o.out("=====> Pausing container");
                    o.out("       Container paused");
                    o.out("       Removing container");
                    o.out("       Removing data");
                    o.out(format!("=====> {title} container deleted: {name}"));
                    state.services.remove(&key(name));
                    o.changed = true;
                    o
                }
            }
        }
        _ => unknown(command, args),
    }
}

fn letsencrypt(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    match command {
        "letsencrypt:set" => {
            if args.first().map(String::as_str) == Some("--global")
                && args.get(1).map(String::as_str) == Some("email")
            {
                state.letsencrypt_email = args.get(2).cloned();
                o.out(format!(
                    "=====> Setting email to {}",
                    args.get(2).cloned().unwrap_or_default()
                ));
                o.changed = true;
                return o;
            }
            o.fail("Invalid key specified, valid keys include: dns-provider, dns-provider-*, email, graceperiod, server, lego-args, lego-docker-options", 1)
        }
        "letsencrypt:enable" | "letsencrypt:disable" | "letsencrypt:active" => {
            let name = args
                .iter()
                .find(|a| !a.starts_with("--"))
                .cloned()
                .or_else(|| g.app.clone());
            let email = state.letsencrypt_email.clone();
            let app = match need_app(state, name.as_ref()) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let name = name.unwrap();
            match command {
                "letsencrypt:active" => {
                    o.out(app.letsencrypt.to_string());
                    o
                }
                "letsencrypt:enable" => {
                    o.out(format!("=====> Enabling letsencrypt for {name}"));
                    // ref §13 (0.25.0+): skipped only while the certificate covers the
                    // app's current domains; `_` is never certified.
                    let wanted: std::collections::BTreeSet<&String> =
                        app.vhosts.iter().filter(|d| *d != "_").collect();
                    let covered: std::collections::BTreeSet<&String> =
                        app.cert_hostnames.iter().collect();
                    let force = args.iter().any(|a| a == "--force");
                    if app.letsencrypt && wanted == covered && !force {
                        o.out(format!("-----> Certificate is still valid for {name}, skipping certificate request"));
                        o.out("-----> Pass --force to force a certificate request");
                        return o;
                    }
                    if email.is_none() {
                        return o.fail(
                            "ERROR: Cannot request a certificate without an e-mail address!",
                            1,
                        );
                    }
                    if app.vhosts.is_empty() {
                        return o.fail(format!("No domains detected for {name}"), 1);
                    }
                    o.out(format!("-----> Enabling ACME proxy for {name}..."));
                    o.out(format!(
                        "-----> Getting letsencrypt certificate for {name} via HTTP-01"
                    ));
                    o.out("-----> Certificate retrieved successfully.");
                    o.out("-----> Installing let's encrypt certificates");
                    o.out(format!("-----> Disabling ACME proxy for {name}..."));
                    o.out("-----> Done");
                    app.letsencrypt = true;
                    app.cert_hostnames = app.vhosts.iter().filter(|d| *d != "_").cloned().collect();
                    // ref §13: installing the certificate adds `https:443:<port>` beside the
                    // app's HTTP mapping.
                    let http = app
                        .ports
                        .iter()
                        .find_map(|m| m.strip_prefix("http:80:").map(str::to_string));
                    if let Some(port) = http
                        && !app.ports.iter().any(|m| m.starts_with("https:443:"))
                    {
                        app.ports.push(format!("https:443:{port}"));
                    }
                    o.changed = true;
                    o
                }
                _ => {
                    o.out("-----> Disabling letsencrypt for app");
                    o.out("-----> Done");
                    app.letsencrypt = false;
                    app.cert_hostnames.clear();
                    o.changed = true;
                    o
                }
            }
        }
        "letsencrypt:report" => {
            // A bash report: `dokku_apps` fails when there are no apps (ref §1.6).
            if state.apps.is_empty() && args.iter().all(|a| a.starts_with("--") || a == "json") {
                return o.fail("You haven't deployed any applications yet", 1);
            }
            let email = state.letsencrypt_email.clone().unwrap_or_default();
            report(
                state,
                args,
                "letsencrypt",
                g.quiet,
                &|_, app| {
                    vec![
                        ("--letsencrypt-active".into(), app.letsencrypt.to_string()),
                        ("--letsencrypt-autorenew".into(), "true".into()),
                        ("--letsencrypt-computed-email".into(), email.clone()),
                        ("--letsencrypt-email".into(), String::new()),
                        ("--letsencrypt-global-email".into(), email.clone()),
                    ]
                },
                &stripped_only("letsencrypt"),
            )
        }
        _ => unknown(command, args),
    }
}

/// ref §11.3 `certs:report`: a Go report since 0.38.22 (header type `ssl`, stripped JSON keys).
fn certs_report(state: &State, args: &[String], g: &Globals) -> Out {
    report(
        state,
        args,
        "ssl",
        g.quiet,
        &|name, app| {
            let enabled = !app.cert_hostnames.is_empty();
            let when = |v: &str| {
                if enabled {
                    v.to_string()
                } else {
                    String::new()
                }
            };
            vec![
                ("--ssl-dir".into(), format!("/home/dokku/{name}/tls")),
                ("--ssl-enabled".into(), enabled.to_string()),
                ("--ssl-expires-at".into(), when("2026-12-01 00:00:00")),
                ("--ssl-hostnames".into(), app.cert_hostnames.join(" ")),
                ("--ssl-issuer".into(), when("C=US, O=Let's Encrypt, CN=R11")),
                ("--ssl-starts-at".into(), when("2026-09-02 00:00:00")),
                (
                    "--ssl-subject".into(),
                    app.cert_hostnames
                        .first()
                        .map(|h| format!("CN={h}"))
                        .unwrap_or_default(),
                ),
                ("--ssl-verified".into(), when("self signed")),
            ]
        },
        &stripped_only("ssl"),
    )
}

fn valid_restart_policy(value: &str) -> bool {
    matches!(value, "no" | "always" | "unless-stopped" | "on-failure")
        || value
            .strip_prefix("on-failure:")
            .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// ref §11.1: `scheme:host-port:container-port`, ports 0–65535.
fn port_map_error(map: &str) -> Option<String> {
    let parts: Vec<&str> = map.split(':').collect();
    if parts.len() != 3 {
        return Some(format!("Invalid port map {map} [len={}]", parts.len()));
    }
    if parts[1].parse::<u16>().is_err() {
        return Some(format!("Invalid port map {map} [hostPort={}]", parts[1]));
    }
    if parts[2].parse::<u16>().is_err() {
        return Some(format!(
            "Invalid port map {map} [containerPort={}]",
            parts[2]
        ));
    }
    None
}

/// Detected map after a deploy: `http:80:5000`, plus HTTPS once a certificate exists.
fn detected_ports(app: &App) -> Vec<String> {
    if !app.deployed {
        return Vec::new();
    }
    let mut map = vec!["http:80:5000".to_string()];
    if !app.cert_hostnames.is_empty() {
        map.push("https:443:5000".into());
    }
    map
}

fn ports_json(map: &[String]) -> String {
    let list: Vec<_> = map
        .iter()
        .filter_map(|m| {
            let p: Vec<&str> = m.split(':').collect();
            Some(serde_json::json!({
                "container_port": p.get(2)?.parse::<u16>().ok()?,
                "host_port": p.get(1)?.parse::<u16>().ok()?,
                "scheme": p.first()?,
            }))
        })
        .collect();
    go_json(&list)
}

fn ports(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    if command == "ports:report" {
        return report(
            state,
            args,
            "ports",
            g.quiet,
            &|_, app| {
                let detected = detected_ports(app);
                vec![
                    ("--ports-map".into(), app.ports.join(" ")),
                    ("--ports-map-detected".into(), detected.join(" ")),
                    ("--ports-map-detected-json".into(), ports_json(&detected)),
                    ("--ports-map-json".into(), ports_json(&app.ports)),
                ]
            },
            &legacy_and_stripped("ports"),
        );
    }
    let name = args.first().cloned();
    let app = match need_app(state, name.as_ref()) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let name = name.unwrap();
    let maps: Vec<String> = args.iter().skip(1).cloned().collect();
    match command {
        "ports:list" => {
            let shown = if app.ports.is_empty() {
                detected_ports(app)
            } else {
                app.ports.clone()
            };
            if shown.is_empty() {
                return o.fail("No port mappings configured for app", 1);
            }
            if !g.quiet {
                o.out(format!("-----> Port mappings for {name}"));
                o.out("-----> scheme:host port:container port");
            }
            for m in shown {
                o.out(format!("    {}", m.replace(':', "  ")));
            }
            return o;
        }
        "ports:set" | "ports:add" => {
            if maps.is_empty() {
                return o.fail("No port mapping specified", 1);
            }
            if let Some(e) = maps.iter().find_map(|m| port_map_error(m)) {
                return o.fail(e, 1);
            }
            let mut next = if command == "ports:set" {
                Vec::new()
            } else {
                app.ports.clone()
            };
            for m in maps {
                let key: String = m.rsplit_once(':').map_or("", |x| x.0).to_string();
                if next
                    .iter()
                    .any(|n| n.rsplit_once(':').map(|x| x.0) == Some(key.as_str()))
                {
                    return o.fail(
                        format!(
                            "Error validating all port mappings: The same scheme:host-port is being reused: {key}"
                        ),
                        1,
                    );
                }
                next.push(m);
            }
            app.ports = next;
        }
        "ports:remove" => {
            for m in &maps {
                if m.parse::<u16>().is_ok() {
                    app.ports
                        .retain(|p| p.split(':').nth(1) != Some(m.as_str()));
                } else {
                    app.ports.retain(|p| p != m);
                }
            }
        }
        "ports:clear" => app.ports.clear(),
        _ => return unknown(command, args),
    }
    // post-proxy-ports-update: nginx rebuilt, no container restart.
    o.out(format!(
        "-----> Configuring {name}...(using built-in template)"
    ));
    o.out("-----> Creating http nginx.conf");
    o.out("       Reloading nginx");
    o.changed = true;
    o
}

/// ref §6.3 `docker-options:*` (Go, 0.38.x): options stored per phase and per shell word;
/// no restart (they apply at the next container creation).
fn docker_options(state: &mut State, command: &str, args: &[String], g: &Globals) -> Out {
    let mut o = Out::default();
    if command == "docker-options:report" {
        return report(
            state,
            args,
            "docker-options",
            g.quiet,
            &|_, app| {
                let phase = |p: &str| app.docker_options.get(p).cloned().unwrap_or_default();
                let mut fields = Vec::new();
                for p in ["build", "deploy", "run"] {
                    fields.push((format!("--docker-options-{p}"), phase(p).join(" ")));
                }
                fields
            },
            &legacy_and_stripped("docker-options"),
        );
    }
    // `--process P` precedes the app; everything after the phase is an option, `-`-led
    // words included.
    let mut rest: Vec<&String> = args.iter().collect();
    if rest.first().is_some_and(|a| *a == "--process") {
        rest.drain(..2.min(rest.len()));
    }
    let name = rest.first().map(|s| (*s).clone());
    let app = match need_app(state, name.as_ref()) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let name = name.unwrap();
    let phases: Vec<String> = rest
        .get(1)
        .map(|p| p.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(bad) = phases
        .iter()
        .find(|p| !matches!(p.as_str(), "build" | "deploy" | "run"))
    {
        return o.fail(
            format!("Phase must be one of [build deploy run], got {bad}"),
            1,
        );
    }
    let options: Vec<String> = rest.iter().skip(2).map(|s| (*s).clone()).collect();
    match command {
        "docker-options:add" | "docker-options:remove" => {
            if phases.is_empty() || options.is_empty() {
                return o.fail("Please specify docker options to add to the phase", 1);
            }
            for phase in &phases {
                let list = app.docker_options.entry(phase.clone()).or_default();
                for opt in &options {
                    if command == "docker-options:add" {
                        if !list.contains(opt) {
                            list.push(opt.clone());
                        }
                    } else {
                        list.retain(|x| x != opt);
                    }
                }
            }
        }
        "docker-options:clear" => {
            if phases.is_empty() {
                app.docker_options.clear();
                o.out(format!(
                    "-----> Clearing docker-options for {name} on all phases"
                ));
            } else {
                for phase in &phases {
                    app.docker_options.remove(phase);
                    o.out(format!(
                        "-----> Clearing docker-options for {name} on phase {phase}"
                    ));
                }
            }
        }
        _ => return unknown(command, args),
    }
    o.changed = true;
    o
}
