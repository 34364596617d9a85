//! `berth daemon` end to end, as a process: real git remotes and work trees, the real Docker
//! Engine, a real sshd with the Dokku simulator, real HTTP, headless Chromium for the status
//! page. Waits are bounded (generous, never a timing assertion).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::daemon::webhook::github_signature;
use serde_json::Value;

use crate::bridge::harness::http;
use crate::dockerhost::{self, Run};
use crate::sshd::DokkuHost;
use crate::support::{berth_bin, commit, git, head};

/// A running `berth daemon`.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    /// The bearer token sent with every request of [`Daemon::request`] (`--token-env`).
    token: Option<String>,
    _state: tempfile::TempDir,
}

impl Daemon {
    /// Start `berth daemon ARGS` on a free loopback port and wait until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let state = tempfile::tempdir().unwrap();
        let log = state.path().join("daemon.log");
        let mut cmd = Command::new(berth_bin());
        cmd.arg("daemon")
            .args(args)
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .args(["--listen", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut daemon = Daemon {
            child: Some(child),
            port: 0,
            log,
            token: None,
            _state: state,
        };
        let started = Instant::now();
        loop {
            let text = daemon.log();
            if let Some(rest) = text.split("status on http://127.0.0.1:").nth(1) {
                daemon.port = rest.split('/').next().and_then(|p| p.parse().ok()).unwrap();
                return daemon;
            }
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited with {status}:\n{text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon never listened:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Send `token` as the bearer token from now on (the daemon runs with `--token-env`).
    pub fn with_token(mut self, token: &str) -> Daemon {
        self.token = Some(token.to_string());
        self
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// One request with the bearer token (when set); the status and the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String) {
        let mut all = headers.to_vec();
        if let Some(t) = &self.token {
            all.push(("Authorization", format!("Bearer {t}")));
        }
        crate::bridge::harness::request(self.port, method, path, &all, body)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, response) = self.request("GET", path, &[], b"");
        (code, crate::bridge::harness::body_of(&response))
    }

    pub fn status(&self) -> Value {
        let (code, body) = self.get("/api/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Wait (bounded) until `ok` holds for `/api/status`; returns that status.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status();
            if ok(&status) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; status:\n{}\nlog tail:\n{}",
                serde_json::to_string_pretty(&status).unwrap(),
                tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; wait (bounded) for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the daemon did not stop:\n{}",
                tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn tenant<'a>(status: &'a Value, id: &str) -> &'a Value {
    &status["tenants"][id]
}

pub fn state_of(status: &Value, id: &str) -> String {
    tenant(status, id)["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `--remote BARE` polled hourly, with the full-pass and drift-scan intervals given.
pub fn following<'a>(bare: &'a str, full_pass: &'a str, drift_scan: &'a str) -> Vec<&'a str> {
    vec![
        "--remote",
        bare,
        "--poll",
        "3600",
        "--full-pass",
        full_pass,
        "--drift-scan",
        drift_scan,
    ]
}

/// The API token from `BERTH_DAEMON_TOKEN`, GitHub and GitLab push secrets from
/// `BERTH_SECRET_GH` and `BERTH_SECRET_GL`.
pub const GUARDED: [&str; 6] = [
    "--token-env",
    "BERTH_DAEMON_TOKEN",
    "--github-secret",
    "gh",
    "--gitlab-secret",
    "gl",
];

/// A bare remote and a work clone that pushes to it.
pub struct Remote {
    pub dir: tempfile::TempDir,
}

impl Remote {
    pub fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            &dir.path().join("work"),
            &["remote", "add", "origin", "../remote.git"],
        );
        Remote { dir }
    }

    pub fn bare(&self) -> String {
        self.dir.path().join("remote.git").display().to_string()
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.work().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Commit everything and push; returns the commit.
    pub fn push(&self, message: &str) -> String {
        commit(&self.work(), message);
        git(&self.work(), &["push", "-q", "origin", "main"]);
        head(&self.work())
    }
}

fn docker_tenant(env: &str, extra: &str) -> String {
    format!(
        "environment: {env}\napps:\n  web:\n    image: berth-stub:v1\n    ports: [{{ container: 8080 }}]\n{extra}"
    )
}

fn container_state(name: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker_stop(name: &str) {
    let out = Command::new("docker")
        .args(["stop", "-t", "1", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn webhook(d: &Daemon, secret: &[u8], body: &[u8]) -> (u16, String) {
    http(
        d.port,
        "POST",
        "/hooks/git",
        &[
            ("X-GitHub-Event", "push".to_string()),
            ("X-Hub-Signature-256", github_signature(secret, body)),
            ("Content-Type", "application/json".to_string()),
        ],
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_applied_on_docker_webhooks_trigger_at_once_drift_heals_only_with_self_heal() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let remote = Remote::new();
    let (a, b, p) = (run.tenant("da"), run.tenant("db"), run.tenant("dp"));
    remote.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    remote.write(&format!("tenants/{a}.yaml"), &docker_tenant(&run.env, ""));
    remote.write(
        &format!("tenants/{p}.yaml"),
        &docker_tenant(&run.env, "reconcile: paused\n"),
    );
    remote.push("two tenants, one paused");
    // No polling: after the first pass only a webhook (or the drift scan) wakes it.
    let d = Daemon::start(
        &[
            "--remote",
            &remote.bare(),
            "--poll",
            "3600",
            "--drift-scan",
            "2",
            "--github-secret",
            "gh",
        ],
        &[
            ("BERTH_SECRET_GH", "push-secret"),
            ("BERTH_SECRET_OPENAI", "x"),
        ],
    );
    let status = d.wait_for("the first tenant synced", |s| state_of(s, &a) == "synced");
    assert_eq!(state_of(&status, &p), "out-of-sync", "{status:#}");
    assert_eq!(tenant(&status, &p)["mode"], "paused");
    assert_eq!(
        container_state(&format!("{a}-web-1")).as_deref(),
        Some("running")
    );
    assert_eq!(
        container_state(&format!("{p}-web-1")),
        None,
        "paused: untouched"
    );

    // A push, then its webhook: applied at once (the poll interval is an hour).
    remote.write(&format!("tenants/{b}.yaml"), &docker_tenant(&run.env, ""));
    let pushed = remote.push("add a tenant");
    let body = format!("{{\"ref\":\"refs/heads/main\",\"after\":\"{pushed}\"}}");
    let (code, answer) = webhook(&d, b"push-secret", body.as_bytes());
    assert_eq!(code, 202, "{answer}");
    let status = d.wait_for("the pushed tenant synced", |s| state_of(s, &b) == "synced");
    assert_eq!(status["daemon"]["head"]["id"], pushed.as_str());
    assert_eq!(
        container_state(&format!("{b}-web-1")).as_deref(),
        Some("running")
    );
    let host = format!("{}/local", run.env);
    d.wait_for("the commit recorded on the host", |s| {
        s["hosts"][&host]["applied"]["id"] == pushed.as_str()
    });

    // A forged webhook is refused and wakes nothing.
    let (code, _) = webhook(&d, b"guessed", body.as_bytes());
    assert_eq!(code, 401);
    let (code, _) = http(d.port, "POST", "/hooks/git", &[], body.as_bytes());
    assert_eq!(code, 401, "unsigned");
    let m = d.metrics();
    assert_eq!(
        metric(&m, "berth_daemon_webhooks_total{forge=\"refused\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "berth_daemon_webhooks_total{forge=\"github\"}"),
        1.0
    );
    assert!(
        metric(
            &m,
            "berth_daemon_passes_total{trigger=\"webhook\",result=\"ok\"}"
        ) >= 1.0,
        "{m}"
    );

    // Drift by hand: `docker stop`. Self-heal is on: the drift scan starts it again.
    docker_stop(&format!("{a}-web-1"));
    wait_until("the stopped container healed", || {
        container_state(&format!("{a}-web-1")).as_deref() == Some("running")
    });
    d.wait_for("the healing step counted", |_| {
        metric(
            &d.metrics(),
            "berth_daemon_steps_total{kind=\"start-container\",result=\"succeeded\"}",
        ) >= 1.0
    });

    // Self-heal off for the environment: the same drift is only reported.
    remote.write(
        &format!("environments/{}.yaml", run.env),
        &run.env_file().replace(
            "policy: { max-destroys: 100 }",
            "policy: { max-destroys: 100, self-heal: false }",
        ),
    );
    let pushed = remote.push("self-heal off");
    assert_eq!(webhook(&d, b"push-secret", b"{}").0, 202);
    d.wait_for("the policy commit recorded", |s| {
        s["hosts"][&host]["applied"]["id"] == pushed.as_str()
    });
    docker_stop(&format!("{a}-web-1"));
    let status = d.wait_for("the drift reported", |s| {
        state_of(s, &a) == "out-of-sync" && tenant(s, &a)["drift"].as_u64() >= Some(1)
    });
    assert_eq!(tenant(&status, &a)["mode"], "report");
    // Two more drift scans later it is still stopped.
    let passes = status["daemon"]["passes"].as_u64().unwrap();
    d.wait_for("two more passes", |s| {
        s["daemon"]["passes"].as_u64() >= Some(passes + 2)
    });
    assert_eq!(
        container_state(&format!("{a}-web-1")).as_deref(),
        Some("exited")
    );
    let m = d.metrics();
    assert!(
        metric(
            &m,
            &format!("berth_daemon_drifted_objects{{tenant=\"{a}\"}}")
        ) >= 1.0,
        "{m}"
    );
    let mut d = d;
    assert_eq!(d.terminate(), Some(0), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_never_gets_healthy_backs_off_while_the_others_converge() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let repo = crate::support::Repo::new();
    let (good, bad, later) = (run.tenant("ok"), run.tenant("sick"), run.tenant("late"));
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    repo.write(
        &format!("tenants/{good}.yaml"),
        &docker_tenant(&run.env, ""),
    );
    repo.write(
        &format!("tenants/{bad}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    health: {{ path: /health, interval: 1, timeout: 1, retries: 2 }}\n    env: {{ STUB_UNHEALTHY: \"1\" }}\n",
            run.env
        ),
    );
    let repo_path = repo.path().display().to_string();
    let d = Daemon::start(
        &[
            "--repo",
            &repo_path,
            "--poll",
            "3600",
            "--drift-scan",
            "3600",
            "--backoff",
            "1",
            "--backoff-max",
            "3",
            "--attempts",
            "1",
            "--debounce-ms",
            "200",
        ],
        &[("BERTH_SECRET_OPENAI", "x")],
    );
    let status = d.wait_for("the sick tenant failing for the third time", |s| {
        tenant(s, &bad)["failures"].as_u64() >= Some(3)
    });
    assert_eq!(state_of(&status, &good), "synced", "{status:#}");
    let sick = tenant(&status, &bad);
    assert_eq!(sick["state"], "degraded", "{status:#}");
    assert!(
        sick["last-error"].as_str().unwrap().contains("healthy"),
        "{sick}"
    );
    assert!(sick["next-try-at"].is_string(), "{sick}");
    assert_eq!(sick["waiting-for-change"], false);
    // While it backs off, a new tenant written to the watched repo converges.
    repo.write(
        &format!("tenants/{later}.yaml"),
        &docker_tenant(&run.env, ""),
    );
    d.wait_for("the new tenant synced", |s| state_of(s, &later) == "synced");
    let m = d.metrics();
    assert!(
        metric(
            &m,
            &format!("berth_daemon_tenant_failures{{tenant=\"{bad}\"}}")
        ) >= 3.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "berth_daemon_passes_total{trigger=\"retry\",result=\"partial\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "berth_daemon_passes_total{trigger=\"watch\"") >= 1.0
            || m.contains("trigger=\"watch\""),
        "{m}"
    );
    assert!(
        metric(&m, "berth_daemon_tenants{state=\"degraded\"}") >= 1.0,
        "{m}"
    );
    let mut d = d;
    assert_eq!(d.terminate(), Some(0));
}

pub const DOKKU_TENANT: &str = "environment: prod
apps:
  web:
    image: registry.example.app/app:1.4.2
    env: { LOG_LEVEL: THE_LEVEL }
";

pub fn dokku_env(host: &DokkuHost, heal: bool) -> String {
    format!(
        "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 50, self-heal: {heal} }}\nsecrets: {{ provider: env, names: [] }}\n",
        host.env_host("dokku-1")
    )
}

pub fn config_get(host: &DokkuHost, app: &str, key: &str) -> String {
    let out = host.ssh(&format!("config:get {app} {key}"));
    assert!(
        out.status.success(),
        "config:get {app} {key}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pushes_are_applied_on_dokku_and_a_hand_config_set_is_healed_only_with_self_heal() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let remote = Remote::new();
    remote.write("environments/prod.yaml", &dokku_env(&host, true));
    remote.write(
        "tenants/acme.yaml",
        &DOKKU_TENANT.replace("THE_LEVEL", "info"),
    );
    remote.push("acme");
    let d = Daemon::start(
        &[
            "--remote",
            &remote.bare(),
            "--poll",
            "0.5",
            "--drift-scan",
            "2",
        ],
        &[],
    );
    d.wait_for("acme synced", |s| state_of(s, "acme") == "synced");
    assert!(
        host.commands()
            .iter()
            .any(|c| c.contains(&"apps:create".to_string()) && c.contains(&"acme-web".to_string()))
    );
    // A push is picked up by the poll and recorded on the host.
    remote.write(
        "tenants/acme.yaml",
        &DOKKU_TENANT.replace("THE_LEVEL", "warn"),
    );
    let pushed = remote.push("acme logs less");
    d.wait_for("the push applied", |s| {
        s["hosts"]["prod/dokku-1"]["applied"]["id"] == pushed.as_str()
    });
    assert_eq!(config_get(&host, "acme-web", "LOG_LEVEL"), "warn");

    // Drift by hand over ssh, healed by the drift scan.
    assert!(
        host.ssh("config:set acme-web LOG_LEVEL=debug")
            .status
            .success()
    );
    wait_until("the hand edit healed", || {
        config_get(&host, "acme-web", "LOG_LEVEL") == "warn"
    });

    // The tenant says `reconcile: report`: the same edit is reported, never repaired.
    remote.write(
        "tenants/acme.yaml",
        &format!(
            "{}reconcile: report\n",
            DOKKU_TENANT.replace("THE_LEVEL", "warn")
        ),
    );
    let pushed = remote.push("acme: report only");
    d.wait_for("the report commit applied", |s| {
        s["hosts"]["prod/dokku-1"]["applied"]["id"] == pushed.as_str()
    });
    assert!(
        host.ssh("config:set acme-web LOG_LEVEL=debug")
            .status
            .success()
    );
    let status = d.wait_for("the drift reported", |s| {
        state_of(s, "acme") == "out-of-sync" && tenant(s, "acme")["drift"].as_u64() >= Some(1)
    });
    let passes = status["daemon"]["passes"].as_u64().unwrap();
    d.wait_for("two more passes", |s| {
        s["daemon"]["passes"].as_u64() >= Some(passes + 2)
    });
    assert_eq!(config_get(&host, "acme-web", "LOG_LEVEL"), "debug");
    let mut d = d;
    assert_eq!(d.terminate(), Some(0), "{}", d.log());
}

/// Issue 17.3: between drift scans, full passes observe Dokku fast — apps are confirmed by
/// their spec labels (no per-app reads), an app stopped by hand is still seen and healed, a
/// hand `config:set` waits for the deep drift scan.
#[test]
fn full_passes_on_dokku_confirm_apps_by_label_and_heal_what_the_reports_show() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let remote = Remote::new();
    remote.write("environments/prod.yaml", &dokku_env(&host, true));
    for id in ["acme", "bolt", "crane"] {
        remote.write(
            &format!("tenants/{id}.yaml"),
            &DOKKU_TENANT.replace("THE_LEVEL", "info"),
        );
    }
    remote.push("three tenants");
    let d = Daemon::start(&following(&remote.bare(), "0.5", "3600"), &[]);
    let status = d.wait_for("all synced and recorded", |s| {
        ["acme", "bolt", "crane"]
            .iter()
            .all(|t| state_of(s, t) == "synced")
            && s["hosts"]["prod/dokku-1"]["applied"]["id"].is_string()
    });
    let passes = status["daemon"]["passes"].as_u64().unwrap();
    d.wait_for("a full pass after the records", |s| {
        s["daemon"]["passes"].as_u64() >= Some(passes + 1)
    });
    host.clear_log();
    let status = d.wait_for("three more passes", |s| {
        s["daemon"]["passes"].as_u64() >= Some(passes + 4)
    });
    let last = &status["daemon"]["last-pass"];
    assert_eq!(last["kind"], "full", "{last}");
    assert_eq!(last["deep"], false, "{last}");
    let commands = host.commands();
    let per_app = commands
        .iter()
        .filter(|c| c.iter().any(|w| w == "config:export") && c.iter().any(|w| w.ends_with("-web")))
        .count();
    assert_eq!(per_app, 0, "fast passes read no app's config: {commands:?}");
    assert!(!commands.is_empty(), "the passes read the host");

    // What the all-app reports show is healed by the next full pass.
    assert!(host.ssh("ps:stop bolt-web").status.success());
    wait_until("the stopped app started again", || {
        host.state()["apps"]["bolt-web"]["running"] == true
    });
    // A hand config:set is not seen by fast passes.
    assert!(
        host.ssh("config:set --no-restart crane-web LOG_LEVEL=debug")
            .status
            .success()
    );
    let status = d.status();
    let passes = status["daemon"]["passes"].as_u64().unwrap();
    d.wait_for("three more passes", |s| {
        s["daemon"]["passes"].as_u64() >= Some(passes + 3)
    });
    assert_eq!(config_get(&host, "crane-web", "LOG_LEVEL"), "debug");
    let mut d = d;
    assert_eq!(d.terminate(), Some(0), "{}", d.log());
}

fn dokku_work_tree(host: &DokkuHost, tenants: &[&str], level: &str) -> crate::support::Repo {
    let repo = crate::support::Repo::new();
    repo.write("environments/prod.yaml", &dokku_env(host, true));
    for t in tenants {
        repo.write(
            &format!("tenants/{t}.yaml"),
            &DOKKU_TENANT.replace("THE_LEVEL", level),
        );
    }
    repo
}

fn lease_is_free(repo: &Path) -> bool {
    let out = Command::new(berth_bin())
        .args(["lock", "status", "--repo"])
        .arg(repo)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prod/dokku-1: free")
}

#[test]
fn sigterm_mid_pass_finishes_in_flight_steps_releases_the_lease_and_exits_zero() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_work_tree(&host, &["acme", "bolt", "crux", "dune"], "info");
    host.set_latency(150);
    let path = repo.path().display().to_string();
    let mut d = Daemon::start(&["--repo", &path, "--poll", "3600", "--per-host", "1"], &[]);
    wait_until("the pass is under way", || {
        host.commands()
            .iter()
            .any(|c| c.contains(&"apps:create".to_string()) && c.contains(&"acme-web".to_string()))
    });
    assert_eq!(d.terminate(), Some(0), "{}", d.log());
    assert!(d.log().contains("stopping"), "{}", d.log());
    host.set_latency(0);
    assert!(lease_is_free(repo.path()), "the lease was released");
    // It stopped mid-pass: not every tenant was created.
    let created: Vec<String> = host
        .commands()
        .iter()
        .filter(|c| c.contains(&"apps:create".to_string()))
        .flat_map(|c| c.iter().filter(|w| w.ends_with("-web")).cloned())
        .collect();
    assert!(created.len() < 4, "{created:?}");
}

/// The `LOG_LEVEL` values `config:set` wrote to tenant apps, in the order they ran.
fn levels_written(host: &DokkuHost) -> Vec<String> {
    use base64::Engine as _;
    host.commands()
        .iter()
        .filter(|c| c.contains(&"config:set".to_string()))
        .filter(|c| !c.iter().any(|w| w.starts_with("berth-")))
        .flat_map(|c| {
            c.iter()
                .filter_map(|w| w.strip_prefix("LOG_LEVEL="))
                .filter_map(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_daemon_and_an_apply_never_interleave_on_a_host() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let tenants = ["acme", "bolt", "crux", "dune"];
    // CI applies `info` from a work tree; the daemon follows a remote that says `warn`.
    let ci = dokku_work_tree(&host, &tenants, "info");
    let remote = Remote::new();
    remote.write("environments/prod.yaml", &dokku_env(&host, true));
    for t in tenants {
        remote.write(
            &format!("tenants/{t}.yaml"),
            &DOKKU_TENANT.replace("THE_LEVEL", "warn"),
        );
    }
    remote.push("warn everywhere");
    host.set_latency(250);
    let apply = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--per-host", "1", "--repo"])
        .arg(ci.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the apply holds the lease", || {
        host.commands().iter().any(|c| {
            c.iter().any(|w| w == "berth-lease-prod") && c.contains(&"config:set".to_string())
        })
    });
    let d = Daemon::start(&["--remote", &remote.bare(), "--poll", "0.5"], &[]);
    d.wait_for("the daemon found the host busy", |_| {
        metric(
            &d.metrics(),
            "berth_daemon_lease_waits_total{host=\"prod/dokku-1\"}",
        ) >= 1.0
    });
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_for("the daemon converged after the apply", |s| {
        tenants.iter().all(|t| state_of(s, t) == "synced")
            && s["hosts"]["prod/dokku-1"]["applied"]["id"].is_string()
    });
    // Every write of the apply came before every write of the daemon: never interleaved.
    let levels = levels_written(&host);
    let first_warn = levels.iter().position(|l| l == "warn").unwrap();
    assert!(
        levels[..first_warn].iter().all(|l| l == "info")
            && levels[first_warn..].iter().all(|l| l == "warn"),
        "{levels:?}"
    );
    assert!(levels.iter().filter(|l| *l == "info").count() >= tenants.len());
    for t in tenants {
        assert_eq!(config_get(&host, &format!("{t}-web"), "LOG_LEVEL"), "warn");
    }
    let mut d = d;
    host.set_latency(0);
    assert_eq!(d.terminate(), Some(0));
}

fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI: scripts/test.sh must install it"
        );
        eprintln!("skipping: chromium is not installed (run scripts/test.sh)");
    }
    found
}

fn chromium_run(browser: &Path, args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_headless_chromium_with_a_state_filter() {
    let Some(browser) = chromium() else { return };
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let repo = crate::support::Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let (up, held) = (run.tenant("pgup"), run.tenant("pgheld"));
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    repo.write(&format!("tenants/{up}.yaml"), &docker_tenant(&run.env, ""));
    repo.write(
        &format!("tenants/{held}.yaml"),
        &docker_tenant(&run.env, "reconcile: paused\n"),
    );
    commit(repo.path(), "status page <fleet> & friends");
    let path = repo.path().display().to_string();
    let d = Daemon::start(&["--repo", &path, "--poll", "3600", "--refresh", "5"], &[]);
    d.wait_for("both tenants looked at", |s| {
        state_of(s, &up) == "synced" && state_of(s, &held) == "out-of-sync"
    });
    let base = format!("http://127.0.0.1:{}", d.port);
    let out = chromium_run(&browser, &["--dump-dom"], &format!("{base}/"));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(&format!("data-tenant=\"{up}\" data-state=\"synced\"")),
        "{dom}"
    );
    assert!(dom.contains(&format!(
        "data-tenant=\"{held}\" data-state=\"out-of-sync\""
    )));
    assert!(dom.contains(&format!("data-environment=\"{}\"", run.env)));
    assert!(
        dom.contains("status page &lt;fleet&gt; &amp; friends"),
        "the commit message, escaped"
    );
    assert!(dom.contains("http-equiv=\"refresh\" content=\"5\""));
    assert!(dom.contains("out-of-sync (1)"));
    // The filter shows only tenants in that state.
    let out = chromium_run(
        &browser,
        &["--dump-dom"],
        &format!("{base}/?state=out-of-sync"),
    );
    let filtered = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        filtered.contains(&format!("data-tenant=\"{held}\"")),
        "{filtered}"
    );
    assert!(!filtered.contains(&format!("data-tenant=\"{up}\"")));
    // A screenshot, kept as a CI artifact.
    let shots = crate::support::crate_root().join("target/artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("daemon-status-page.png");
    let _ = std::fs::remove_file(&png);
    let out = chromium_run(
        &browser,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
        &format!("{base}/"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
    let mut d = d;
    assert_eq!(d.terminate(), Some(0));
}
