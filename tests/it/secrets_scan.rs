//! Secrets on every channel (issue 16): one scenario over real parts — apply to a Dokku host
//! (sshd + simulator) and a Docker host (the real engine), drift, a secret rotation, a failing
//! apply, the Stripe bridge — with canary secret values, then every channel berth writes is
//! scanned for the canaries and their base64 / URL-encoded forms: plan text, JSON and
//! markdown, saved plans, journals, logs at `trace`, error messages, status output, HTTP
//! responses, the bridge's commits, and the argv of every process berth starts (read from
//! `/proc` while it runs). The expected count is zero.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::bridge::harness::{Bridge, Remote, now, sub_event};
use crate::dockerhost::{self, Run};
use crate::sshd::DokkuHost;
use crate::support::{Repo, berth_bin};

/// Canary values: characters that every encoding changes (`/`, `+`, `=`, `&`, space).
const OPENAI_1: &str = "sk-canary-openai-1/Zq8+x=y&z w";
const OPENAI_2: &str = "sk-canary-openai-2/Rt5+q=p&k v";
const WEBHOOK: &str = "whsec_canary-webhook/Jm3+b=c&d";

/// The forms a value could leak in.
pub fn forms(secret: &str) -> Vec<String> {
    let b = secret.as_bytes();
    let e = base64::engine::general_purpose::STANDARD;
    let u = base64::engine::general_purpose::URL_SAFE;
    let np = base64::engine::general_purpose::STANDARD_NO_PAD;
    let unp = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let percent: String = b
        .iter()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(c) {
                (*c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    let mut out = vec![
        secret.to_string(),
        e.encode(b),
        u.encode(b),
        np.encode(b),
        unp.encode(b),
        percent.clone(),
        percent.to_lowercase(),
        secret.replace(' ', "+"),
        hex::encode(b),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_string(),
    ];
    // A recognisable stretch of the secret (its distinctive middle) catches partial leaks.
    out.push(secret[3..secret.len() - 3].to_string());
    out.sort();
    out.dedup();
    out
}

/// Everything berth showed or wrote, by channel.
#[derive(Default)]
struct Channels {
    seen: BTreeMap<String, Vec<u8>>,
}

impl Channels {
    fn add(&mut self, channel: impl Into<String>, bytes: &[u8]) {
        let channel = channel.into();
        let n = self.seen.len();
        self.seen
            .insert(format!("{n:03} {channel}"), bytes.to_vec());
    }

    fn output(&mut self, channel: &str, o: &Output) {
        self.add(format!("{channel} stdout"), &o.stdout);
        self.add(format!("{channel} stderr"), &o.stderr);
    }

    fn files_under(&mut self, channel: &str, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.files_under(channel, &path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.add(format!("{channel} {}", path.display()), &bytes);
            }
        }
    }

    /// Every occurrence of every form of every secret, as `channel: form`.
    fn leaks(&self, secrets: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for secret in secrets {
            for form in forms(secret) {
                for (channel, bytes) in &self.seen {
                    if memfind(bytes, form.as_bytes()) {
                        out.push(format!("{channel}: {form:?}"));
                    }
                }
            }
        }
        out
    }

    fn bytes(&self) -> usize {
        self.seen.values().map(Vec::len).sum()
    }

    /// [`Channels::leaks`], with the figures printed under `what` (for docs/reliability.md).
    fn scan(&self, what: &str, secrets: &[&str], argvs: usize) -> Vec<String> {
        let leaks = self.leaks(secrets);
        eprintln!(
            "{what}: {} secrets ({} forms each), {} channels, {} bytes, {argvs} process argvs: {} found",
            secrets.len(),
            forms(OPENAI_1).len(),
            self.seen.len(),
            self.bytes(),
            leaks.len()
        );
        leaks
    }
}

/// The scanner can fail: the simulated host's own state holds `secret`, and the scan finds it.
fn assert_scanner_finds(host: &DokkuHost, secret: &str) {
    let mut control = Channels::default();
    control.add(
        "host state",
        &std::fs::read(host.state_dir().join("state.json")).unwrap(),
    );
    assert!(
        !control.leaks(&[secret]).is_empty(),
        "the scanner finds nothing even where the secret is"
    );
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Records the argv of every descendant of a process while it runs (polling `/proc`).
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    /// The simulated Dokku host's own processes (sshd's forced command), seen meanwhile: not
    /// berth's, reported for the threat model (what a user on the host can see in `ps`).
    host: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

impl ArgvWatch {
    fn start(root: u32) -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let host = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, seen, host) = (stop.clone(), seen.clone(), host.clone());
            std::thread::spawn(move || {
                let mut polls = 0;
                while !stop.load(Ordering::Relaxed) {
                    polls += 1;
                    let pids: Vec<u32> = std::fs::read_dir("/proc")
                        .unwrap()
                        .flatten()
                        .filter_map(|e| e.file_name().to_str()?.parse().ok())
                        .collect();
                    for pid in pids {
                        // Descendant of `root`?
                        let mut p = pid;
                        let mut mine = false;
                        for _ in 0..32 {
                            if p == root {
                                mine = true;
                                break;
                            }
                            match ppid(p) {
                                Some(q) if q > 1 => p = q,
                                _ => break,
                            }
                        }
                        if !mine {
                            if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
                                && memfind(&cmdline, b"dokku-sim")
                            {
                                let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                                host.lock().unwrap().insert(format!("[{pid}] {argv}"));
                            }
                            continue;
                        }
                        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                            let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                            seen.lock().unwrap().insert(format!("[{pid}] {argv}"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                polls
            })
        };
        ArgvWatch {
            stop,
            seen,
            host,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (BTreeSet<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let _polls = self.thread.take().unwrap().join().unwrap();
        (
            std::mem::take(&mut *self.seen.lock().unwrap()),
            std::mem::take(&mut *self.host.lock().unwrap()),
        )
    }
}

/// Run berth in `repo` with the environment given; the argv of it and every process it
/// starts are recorded.
fn berth(
    repo: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    argv: &mut BTreeSet<String>,
    host_argv: &mut BTreeSet<String>,
) -> Output {
    let child = Command::new(berth_bin())
        .args(args)
        .arg("--repo")
        .arg(repo)
        .env("NO_COLOR", "1")
        .env_remove("BERTH_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = ArgvWatch::start(child.id());
    let out = child.wait_with_output().unwrap();
    let (seen, host) = watch.finish();
    argv.extend(seen);
    host_argv.extend(host);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_on_any_channel() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        &format!(
            "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 10 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
            host.env_host("dokku-1")
        ),
    );
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    repo.write(
        "tenants/acme.yaml",
        "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env:\n      LOG_LEVEL: info\n      SECRET_KEY: { generate: 32 }\n      OPENAI_KEY: { secret: openai }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n",
    );
    let docker_tenant = run.tenant("sec");
    repo.write(
        &format!("tenants/{docker_tenant}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    env:\n      TOKEN: {{ generate: 24 }}\n      OPENAI_KEY: {{ secret: openai }}\n    uses: [db]\nservices:\n  db: {{ kind: postgres, image: berth-stub:v1, command: [\"/stub\", \"serve\", \"--port\", \"5432\"] }}\n",
            run.env
        ),
    );
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "tenants"]);

    let mut ch = Channels::default();
    let mut argv = BTreeSet::new();
    let mut host_argv = BTreeSet::new();
    let repo_path = repo.path().to_path_buf();
    let trace = [("BERTH_SECRET_OPENAI", OPENAI_1), ("BERTH_LOG", "trace")];
    let plain = [("BERTH_SECRET_OPENAI", OPENAI_1)];
    let mut step = |ch: &mut Channels, name: &str, args: &[&str], env: &[(&str, &str)]| {
        let o = berth(&repo_path, args, env, &mut argv, &mut host_argv);
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("panicked"),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        ch.output(name, &o);
        o
    };

    step(&mut ch, "validate", &["validate"], &plain);
    step(
        &mut ch,
        "validate json",
        &["validate", "--format", "json"],
        &plain,
    );
    for format in ["text", "json", "markdown"] {
        step(
            &mut ch,
            &format!("plan {format}"),
            &["plan", "--format", format],
            &trace,
        );
    }
    let saved = repo.path().join("first.plan.json");
    let saved_s = saved.to_string_lossy().to_string();
    // Other tests share the engine (and its image tags): a saved plan can go stale between
    // plan and apply, which berth rightly refuses. Plan again then (the refusal is scanned
    // too).
    let mut applied = false;
    for attempt in 0..3 {
        step(
            &mut ch,
            &format!("plan --out {attempt}"),
            &["plan", "--out", &saved_s],
            &trace,
        );
        step(&mut ch, "show saved", &["show", &saved_s], &plain);
        let o = step(
            &mut ch,
            &format!("apply saved plan {attempt}"),
            &["apply", &saved_s, "--auto-approve"],
            &trace,
        );
        if o.status.success() {
            applied = true;
            break;
        }
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("stale"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(applied, "the saved plan never applied");
    step(
        &mut ch,
        "apply json",
        &["apply", "--auto-approve", "--format", "json"],
        &trace,
    );
    step(&mut ch, "status", &["status"], &trace);
    step(
        &mut ch,
        "status json",
        &["status", "--format", "json"],
        &plain,
    );

    // The generated values, as the hosts hold them, are canaries too.
    let state = host.state();
    let mut generated: Vec<String> = Vec::new();
    let mut dokku_app = String::new();
    for (name, app) in state["apps"].as_object().unwrap() {
        if let Some(v) = app["env"]["SECRET_KEY"].as_str() {
            generated.push(v.to_string());
            dokku_app = name.clone();
        }
        if let Some(v) = app["env"]["OPENAI_KEY"].as_str() {
            assert_eq!(v, OPENAI_1, "the secret reached the host intact");
        }
    }
    for (_, svc) in state["services"].as_object().unwrap() {
        if let Some(p) = svc["password"].as_str() {
            generated.push(p.to_string());
        }
    }
    assert!(!dokku_app.is_empty(), "the Dokku app got its generated key");
    let inspect = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=io.berth.tenant={docker_tenant}"),
        ])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&inspect.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(!ids.is_empty(), "the Docker tenant runs");

    // Drift: a person changes a value on the host.
    let o = host.ssh(&format!(
        "config:set --no-restart {dokku_app} LOG_LEVEL=debug"
    ));
    assert!(o.status.success(), "{o:?}");
    for format in ["text", "json", "markdown"] {
        step(
            &mut ch,
            &format!("drift plan {format}"),
            &["plan", "--format", format],
            &trace,
        );
    }
    step(&mut ch, "drift apply", &["apply", "--auto-approve"], &trace);

    // Rotation: the provider now answers a new value.
    let rotated = [("BERTH_SECRET_OPENAI", OPENAI_2), ("BERTH_LOG", "trace")];
    for format in ["text", "json", "markdown"] {
        step(
            &mut ch,
            &format!("rotate plan {format}"),
            &["plan", "--format", format],
            &rotated,
        );
    }
    let saved2 = repo.path().join("rotate.plan.json");
    let saved2_s = saved2.to_string_lossy().to_string();
    step(
        &mut ch,
        "rotate plan --out",
        &["plan", "--out", &saved2_s],
        &rotated,
    );
    let o = step(
        &mut ch,
        "rotate apply",
        &["apply", "--auto-approve"],
        &rotated,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = host.state();
    assert_eq!(state["apps"][&dokku_app]["env"]["OPENAI_KEY"], OPENAI_2);

    // Errors: the secret missing, and a step failing on the host.
    let o = step(
        &mut ch,
        "missing secret",
        &["apply", "--auto-approve"],
        &[("BERTH_LOG", "trace")],
    );
    assert!(!o.status.success());
    std::fs::write(
        host.state_dir().join("fail_images"),
        "registry.example.app/app:1.4.3\n",
    )
    .unwrap();
    let acme = std::fs::read_to_string(repo.path().join("tenants/acme.yaml")).unwrap();
    repo.write("tenants/acme.yaml", &acme.replace("app:1.4.2", "app:1.4.3"));
    let o = step(
        &mut ch,
        "failing step",
        &["apply", "--auto-approve", "--skip-preflight"],
        &rotated,
    );
    assert!(
        !o.status.success(),
        "the injected pull failure fails the apply"
    );
    step(
        &mut ch,
        "failing step json",
        &[
            "apply",
            "--auto-approve",
            "--skip-preflight",
            "--format",
            "json",
        ],
        &rotated,
    );

    // Journals, saved plans and anything else berth left in the repo.
    ch.files_under("repo file", repo.path());

    // The bridge: its endpoint secret is a canary; its responses, its log at trace and its
    // commits are scanned.
    let remote = Remote::new(&[]);
    let bridge = Bridge::start_with(
        &remote.bare().to_string_lossy(),
        &[],
        &[
            ("BERTH_SECRET_STRIPE_WEBHOOK", WEBHOOK),
            ("BERTH_LOG", "trace"),
        ],
    );
    for (i, (kind, status, price)) in [
        ("customer.subscription.created", "active", "price_1Starter"),
        ("customer.subscription.updated", "active", "price_1Pro"),
        ("customer.subscription.updated", "unpaid", "price_1Pro"),
        ("customer.subscription.deleted", "canceled", "price_1Pro"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = sub_event(
            &format!("evt_sec{i}"),
            kind,
            now() + i as i64,
            Some("canary"),
            status,
            price,
        );
        let header =
            berth::billing::signature::header(&[WEBHOOK.as_bytes()], now(), body.as_bytes());
        let (code, answer) = bridge.post(body.as_bytes(), Some(&header));
        assert_eq!(code, 200, "{answer}\n{}", bridge.log());
        ch.add(format!("bridge response {i}"), answer.as_bytes());
        // A forged one, and one signed with the canary but stale.
        let (_, answer) = bridge.post(body.as_bytes(), Some("t=1,v1=00"));
        ch.add(format!("bridge refusal {i}"), answer.as_bytes());
        let stale =
            berth::billing::signature::header(&[WEBHOOK.as_bytes()], now() - 9999, body.as_bytes());
        let (_, answer) = bridge.post(body.as_bytes(), Some(&stale));
        ch.add(format!("bridge stale {i}"), answer.as_bytes());
    }
    let (_, health) = crate::bridge::harness::http(bridge.port, "GET", "/healthz", &[], b"");
    ch.add("bridge healthz", health.as_bytes());
    let history = Command::new("git")
        .args(["log", "-p", "--all", "--format=%H%n%an %ae%n%B"])
        .current_dir(remote.bare())
        .output()
        .unwrap();
    ch.add("bridge commits", &history.stdout);
    let log = bridge.log();
    drop(bridge);
    ch.add("bridge log", log.as_bytes());
    for line in &argv {
        ch.add("argv", line.as_bytes());
    }

    let mut secrets: Vec<&str> = vec![OPENAI_1, OPENAI_2, WEBHOOK];
    secrets.extend(generated.iter().map(String::as_str));
    let leaks = ch.scan("secrets scan", &secrets, argv.len());
    // The host side, for the threat model: Dokku's own command line carries `config:set
    // --encoded` values (base64) to anyone on the host who runs `ps` at the right moment.
    let mut host_side = Channels::default();
    for line in &host_argv {
        host_side.add("host argv", line.as_bytes());
    }
    eprintln!(
        "host-side (simulated Dokku) argvs seen: {}, with a secret form: {}",
        host_argv.len(),
        host_side.leaks(&secrets).len()
    );
    assert!(
        argv.len() > 20,
        "the argv watch saw berth's processes: {argv:?}"
    );
    assert!(
        argv.iter().any(|a| a.contains("ssh")),
        "the argv watch saw the ssh processes berth starts: {argv:?}"
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    assert_scanner_finds(&host, OPENAI_2);
}

/// Canaries of the daemon's own secrets: two push-webhook secrets and the bearer token.
const GITHUB_PUSH: &str = "gh-canary-push/Hk4+w=e&r t";
const GITLAB_PUSH: &str = "gl-canary-push/Ux7+n=m&s q";
const BEARER: &str = "bearer-canary/Pd2+v=f&g h";

/// Every HTTP route of a running daemon, headers and body, into `ch`: the guarded ones with
/// the token and refused without it or with a wrong one.
fn scrape_daemon(ch: &mut Channels, d: &crate::daemon::Daemon, phase: &str) {
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/status",
        "/",
        "/?state=synced",
        "/?state=degraded",
    ] {
        let (code, response) = d.request("GET", path, &[], b"");
        assert_eq!(code, 200, "{phase} {path}: {response}");
        ch.add(format!("daemon {phase} GET {path}"), response.as_bytes());
    }
    for (name, auth) in [
        ("no token", None),
        ("wrong token", Some("Bearer guessed".to_string())),
        ("token + 1", Some(format!("Bearer {BEARER}x"))),
    ] {
        let headers: Vec<(&str, String)> = auth.into_iter().map(|a| ("Authorization", a)).collect();
        for path in ["/metrics", "/api/status", "/"] {
            let (code, response) =
                crate::bridge::harness::request(d.port, "GET", path, &headers, b"");
            assert_eq!(code, 401, "{phase} {path} {name}: {response}");
            ch.add(format!("daemon {phase} {name} {path}"), response.as_bytes());
        }
    }
}

/// Push webhooks to a daemon, genuine and forged, every response into `ch`.
fn daemon_hooks(ch: &mut Channels, d: &crate::daemon::Daemon, phase: &str, pushed: &str) {
    let body = format!("{{\"ref\":\"refs/heads/main\",\"after\":\"{pushed}\"}}");
    let github = berth::daemon::webhook::github_signature;
    for (name, header, want) in [
        (
            "github",
            (
                "X-Hub-Signature-256",
                github(GITHUB_PUSH.as_bytes(), body.as_bytes()),
            ),
            202,
        ),
        (
            "github forged",
            ("X-Hub-Signature-256", github(b"guessed", body.as_bytes())),
            401,
        ),
        ("gitlab", ("X-Gitlab-Token", GITLAB_PUSH.to_string()), 202),
        (
            "gitlab wrong",
            ("X-Gitlab-Token", format!("{GITLAB_PUSH}x")),
            401,
        ),
    ] {
        let (code, response) = d.request("POST", "/hooks/git", &[header], body.as_bytes());
        assert_eq!(code, want, "{phase} {name}: {response}");
        ch.add(format!("daemon {phase} hook {name}"), response.as_bytes());
    }
    let (code, response) =
        crate::bridge::harness::post_declared_only(d.port, "/hooks/git", (1 << 20) + 1, &[]);
    assert_eq!(code, 413, "{response}");
    ch.add(
        format!("daemon {phase} hook too large"),
        response.as_bytes(),
    );
}

/// `berth daemon` following `bare` (drift scan every 2 s) with `--log-format format` at
/// `BERTH_LOG=trace`, the provider secret `openai`, both push secrets and the bearer token
/// as canaries; requests carry the token.
fn canary_daemon(bare: &str, format: &str, openai: &str) -> crate::daemon::Daemon {
    let args = [
        &crate::daemon::following(bare, "3600", "2")[..],
        &crate::daemon::GUARDED,
        &["--log-format", format],
    ]
    .concat();
    crate::daemon::Daemon::start(
        &args,
        &[
            ("BERTH_LOG", "trace"),
            ("BERTH_SECRET_OPENAI", openai),
            ("BERTH_SECRET_GH", GITHUB_PUSH),
            ("BERTH_SECRET_GL", GITLAB_PUSH),
            ("BERTH_DAEMON_TOKEN", BEARER),
        ],
    )
    .with_token(BEARER)
}

/// Issue 16.2 for the daemon: the real `berth daemon` over a Dokku host (sshd + simulator),
/// canaries for a provider secret (then its rotated value), both push-webhook secrets, the
/// bearer token and the values generated on the host; passes from empty, a hand drift
/// healed, file changes woken by webhooks, a restart with the secret rotated — once with
/// `--log-format json`, once human, both at `BERTH_LOG=trace`. Every HTTP response (headers
/// and body), both logs and the argv of every process below the daemon are scanned.
#[test]
fn no_secret_on_any_daemon_channel() {
    use crate::daemon::{Remote as GitRemote, config_get, state_of, wait_until};
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let remote = GitRemote::new();
    remote.write(
        "environments/prod.yaml",
        &format!(
            "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 10 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
            host.env_host("dokku-1")
        ),
    );
    let tenant = |level: &str| {
        format!(
            "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env:\n      LOG_LEVEL: {level}\n      SECRET_KEY: {{ generate: 32 }}\n      OPENAI_KEY: {{ secret: openai }}\n    uses: [db]\nservices:\n  db: {{ kind: postgres }}\n"
        )
    };
    remote.write("tenants/acme.yaml", &tenant("info"));
    remote.push("acme");
    let applied = |s: &serde_json::Value, commit: &str| {
        state_of(s, "acme") == "synced" && s["hosts"]["prod/dokku-1"]["applied"]["id"] == commit
    };

    let mut ch = Channels::default();
    let mut argv = BTreeSet::new();
    let mut host_argv = BTreeSet::new();
    let mut generated: Vec<String> = Vec::new();
    let mut levels = ["info", "warn", "error"].into_iter();
    let mut level = levels.next().unwrap();
    let bare = remote.bare();
    for (phase, format, openai) in [("json", "json", OPENAI_1), ("human", "human", OPENAI_2)] {
        let d = canary_daemon(&bare, format, openai);
        let watch = ArgvWatch::start(d.pid());
        let head = crate::support::head(&remote.work());
        d.wait_for("the first pass applied", |s| applied(s, &head));
        // From empty (json), or with the rotated secret the first (deep) pass finds (human).
        wait_until("the secret value on the host", || {
            host.state()["apps"]["acme-web"]["env"]["OPENAI_KEY"] == openai
        });
        scrape_daemon(&mut ch, &d, &format!("{phase} first pass"));
        if generated.is_empty() {
            let state = host.state();
            generated.extend(
                state["apps"]["acme-web"]["env"]["SECRET_KEY"]
                    .as_str()
                    .map(str::to_string),
            );
            for (_, svc) in state["services"].as_object().unwrap() {
                generated.extend(svc["password"].as_str().map(str::to_string));
            }
            assert_eq!(
                generated.len(),
                2,
                "a generated key and a password: {state:#}"
            );
        }
        // Drift by hand, healed by the drift scan.
        assert!(
            host.ssh("config:set --no-restart acme-web LOG_LEVEL=debug")
                .status
                .success()
        );
        wait_until("the hand edit healed", || {
            config_get(&host, "acme-web", "LOG_LEVEL") == level
        });
        scrape_daemon(&mut ch, &d, &format!("{phase} healed"));
        // A file change, woken by webhooks (the poll is an hour).
        let next = levels.next().unwrap();
        remote.write("tenants/acme.yaml", &tenant(next));
        let pushed = remote.push(&format!("acme logs at {next}"));
        daemon_hooks(&mut ch, &d, phase, &pushed);
        d.wait_for("the push applied", |s| applied(s, &pushed));
        assert_eq!(config_get(&host, "acme-web", "LOG_LEVEL"), next);
        level = next;
        scrape_daemon(&mut ch, &d, &format!("{phase} pushed"));
        let mut d = d;
        assert_eq!(d.terminate(), Some(0), "{}", d.log());
        let (seen, host_seen) = watch.finish();
        argv.extend(seen);
        host_argv.extend(host_seen);
        let log = d.log();
        assert!(log.lines().count() > 20, "{phase}: a trace log:\n{log}");
        if format == "json" {
            assert!(
                log.lines()
                    .filter(|l| !l.starts_with("berth daemon:"))
                    .all(|l| l.starts_with('{')),
                "{log}"
            );
        }
        eprintln!(
            "daemon {phase} log: {} lines, {} at TRACE",
            log.lines().count(),
            log.lines().filter(|l| l.contains("TRACE")).count()
        );
        ch.add(format!("daemon {phase} log"), log.as_bytes());
    }
    assert!(
        argv.iter().any(|a| a.contains("ssh")),
        "the argv watch saw the daemon's ssh processes: {argv:?}"
    );
    for line in &argv {
        ch.add("daemon argv", line.as_bytes());
    }
    let mut secrets: Vec<&str> = vec![OPENAI_1, OPENAI_2, GITHUB_PUSH, GITLAB_PUSH, BEARER];
    secrets.extend(generated.iter().map(String::as_str));
    eprintln!("daemon: {} host-side argvs seen", host_argv.len());
    let leaks = ch.scan("daemon secrets scan", &secrets, argv.len());
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    assert_scanner_finds(&host, OPENAI_2);
}

/// The environment of container `name` on the local engine, as `KEY=value` lines (empty
/// when it does not exist).
fn container_env(name: &str) -> BTreeMap<String, String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{json .Config.Env}}", name])
        .output()
        .unwrap();
    let env: Vec<String> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn container_running(name: &str) -> bool {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// [`no_secret_on_any_daemon_channel`] on a Docker host (the local engine): the daemon
/// applies from empty, heals a container stopped by hand, applies pushes woken by webhooks,
/// and after a restart rolls out the rotated provider secret — `--log-format json`, then
/// human, at `BERTH_LOG=trace`. Scanned: every HTTP response, both logs, the argv of every
/// process below the daemon. The control: the containers' own environment holds the
/// values, and the scanner finds them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_on_any_daemon_channel_docker() {
    use crate::daemon::{Remote as GitRemote, state_of, wait_until};
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let id = run.tenant("dsc");
    let web = format!("{id}-web-1");
    let remote = GitRemote::new();
    remote.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let tenant = |level: &str| {
        format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    env:\n      LOG_LEVEL: {level}\n      SECRET_KEY: {{ generate: 32 }}\n      OPENAI_KEY: {{ secret: openai }}\n    uses: [db]\nservices:\n  db: {{ kind: postgres, image: berth-stub:v1, command: [\"/stub\", \"serve\", \"--port\", \"5432\"] }}\n",
            run.env
        )
    };
    remote.write(&format!("tenants/{id}.yaml"), &tenant("info"));
    remote.push("a tenant");
    let host_key = format!("{}/local", run.env);
    let applied = |s: &serde_json::Value, commit: &str| {
        state_of(s, &id) == "synced" && s["hosts"][&host_key]["applied"]["id"] == commit
    };
    let mut ch = Channels::default();
    let mut argv = BTreeSet::new();
    let mut generated: Vec<String> = Vec::new();
    let mut levels = ["info", "warn", "error"].into_iter();
    levels.next();
    let bare = remote.bare();
    for (phase, format, openai) in [("json", "json", OPENAI_1), ("human", "human", OPENAI_2)] {
        let d = canary_daemon(&bare, format, openai);
        let watch = ArgvWatch::start(d.pid());
        let head = crate::support::head(&remote.work());
        d.wait_for("the first pass applied", |s| applied(s, &head));
        wait_until("the secret value in the container", || {
            container_env(&web).get("OPENAI_KEY").map(String::as_str) == Some(openai)
        });
        scrape_daemon(&mut ch, &d, &format!("docker {phase} first pass"));
        if generated.is_empty() {
            generated.extend(container_env(&web).get("SECRET_KEY").cloned());
            generated.extend(
                container_env(&format!("{id}-db"))
                    .get("POSTGRES_PASSWORD")
                    .cloned(),
            );
            assert_eq!(generated.len(), 2, "a generated key and a password");
        }
        // Drift by hand: the container stopped, started again by the drift scan.
        assert!(
            Command::new("docker")
                .args(["stop", "-t", "1", &web])
                .status()
                .unwrap()
                .success()
        );
        wait_until("the stopped container healed", || container_running(&web));
        scrape_daemon(&mut ch, &d, &format!("docker {phase} healed"));
        let next = levels.next().unwrap();
        remote.write(&format!("tenants/{id}.yaml"), &tenant(next));
        let pushed = remote.push(&format!("logs at {next}"));
        daemon_hooks(&mut ch, &d, &format!("docker {phase}"), &pushed);
        d.wait_for("the push applied", |s| applied(s, &pushed));
        assert_eq!(
            container_env(&web).get("LOG_LEVEL").map(String::as_str),
            Some(next)
        );
        scrape_daemon(&mut ch, &d, &format!("docker {phase} pushed"));
        let mut d = d;
        assert_eq!(d.terminate(), Some(0), "{}", d.log());
        let (seen, _) = watch.finish();
        argv.extend(seen);
        let log = d.log();
        assert!(log.lines().count() > 10, "{phase}: a trace log:\n{log}");
        ch.add(format!("docker daemon {phase} log"), log.as_bytes());
    }
    for line in &argv {
        ch.add("docker daemon argv", line.as_bytes());
    }
    let mut secrets: Vec<&str> = vec![OPENAI_1, OPENAI_2, GITHUB_PUSH, GITLAB_PUSH, BEARER];
    secrets.extend(generated.iter().map(String::as_str));
    let leaks = ch.scan("docker daemon secrets scan", &secrets, argv.len());
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    // The control: the container's environment holds the rotated value and a generated one.
    let mut control = Channels::default();
    let inspect = Command::new("docker")
        .args(["inspect", &web])
        .output()
        .unwrap();
    control.add("docker inspect", &inspect.stdout);
    assert!(
        !control.leaks(&[OPENAI_2]).is_empty(),
        "the scanner finds nothing"
    );
    assert!(!control.leaks(&[generated[0].as_str()]).is_empty());
}
