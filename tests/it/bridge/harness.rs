//! The bridge test harness, shared by `tests/it/bridge.rs` and `benches/bridge.rs`: a bare
//! remote seeded with a berth repo, the real `berth bridge` binary on a loopback port, raw
//! HTTP/1.1 requests, and subscription events in Stripe's shape.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth::billing::signature;

fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

pub const SECRET: &str = "whsec_test_berth_bridge_secret";
pub const OLD_SECRET: &str = "whsec_test_berth_bridge_old";

pub const ENV: &str = "# yaml-language-server: $schema=../schema/environment.schema.json
version: 1
domain: example.app
hosts:
  d1:
    docker: { endpoint: unix:///var/run/docker.sock }
tiers:
  starter: { processes: { web: 1 } }
  pro: { processes: { web: 2 } }
stripe:
  prices: { price_1Starter: starter, price_1Pro: pro }
  new-tenant: templates/tenant.yaml
secrets: { provider: env }
";

pub const TEMPLATE: &str = "# yaml-language-server: $schema=../schema/tenant.schema.json
# New tenants created by the Stripe bridge start from this file.
name: \"{tenant}\"
environment: production
tier: starter
apps:
  web:
    image: registry.example.app/app:1.4.2
";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    git_as(dir, ("Human", "human@example.test"), args)
}

pub use crate::support::git_as;

/// Push the clone at `work` to `origin main` as a person does: after a rejected push,
/// `pull --rebase` and push again.
pub fn push_like_a_person(work: &Path) {
    loop {
        let pushed = Command::new("git")
            .args(["push", "-q", "origin", "main"])
            .current_dir(work)
            .output()
            .unwrap();
        if pushed.status.success() {
            return;
        }
        git(work, &["pull", "-q", "--rebase", "origin", "main"]);
    }
}

/// A bare remote seeded with an environment, the template and some tenants.
pub struct Remote {
    pub dir: tempfile::TempDir,
}

impl Remote {
    pub fn new(tenants: &[(&str, &str)]) -> Remote {
        Remote::with_env(ENV, tenants)
    }

    pub fn with_env(env: &str, tenants: &[(&str, &str)]) -> Remote {
        let dir = tempfile::Builder::new()
            .prefix("berth-bridge-remote-")
            .tempdir()
            .unwrap();
        let work = dir.path().join("seed");
        std::fs::create_dir_all(work.join("environments")).unwrap();
        std::fs::create_dir_all(work.join("tenants")).unwrap();
        std::fs::create_dir_all(work.join("templates")).unwrap();
        std::fs::write(work.join("environments/production.yaml"), env).unwrap();
        std::fs::write(work.join("templates/tenant.yaml"), TEMPLATE).unwrap();
        for (id, text) in tenants {
            std::fs::write(work.join(format!("tenants/{id}.yaml")), text).unwrap();
        }
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "seed"]);
        let bare = dir.path().join("tenants.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", "seed", bare.to_str().unwrap()],
        );
        Remote { dir }
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("tenants.git")
    }

    /// A file on a branch of the remote.
    pub fn show(&self, branch: &str, path: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["show", &format!("{branch}:{path}")])
            .current_dir(self.bare())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    pub fn file(&self, id: &str) -> Option<String> {
        self.show("main", &format!("tenants/{id}.yaml"))
    }

    /// Full messages of the commits on a branch, newest first.
    pub fn messages(&self, branch: &str) -> Vec<String> {
        let out = git(&self.bare(), &["log", "--format=%B%x00", branch]);
        out.split('\0')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect()
    }

    pub fn commits(&self) -> usize {
        self.messages("main").len()
    }

    /// How often each event id appears in `Stripe-Event:` trailers on main.
    pub fn event_trailers(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for m in self.messages("main") {
            for line in m.lines() {
                if let Some(id) = line.strip_prefix("Stripe-Event: ") {
                    *out.entry(id.trim().to_string()).or_insert(0) += 1;
                }
            }
        }
        out
    }

    /// Commit a change as a person would (clone, edit, commit, push).
    pub fn human_commit(&self, path: &str, text: &str, message: &str) {
        let work = tempfile::tempdir().unwrap();
        git(
            work.path(),
            &[
                "clone",
                "-q",
                "--no-local",
                self.bare().to_str().unwrap(),
                "w",
            ],
        );
        let w = work.path().join("w");
        std::fs::create_dir_all(w.join(path).parent().unwrap()).unwrap();
        std::fs::write(w.join(path), text).unwrap();
        git(&w, &["add", "-A"]);
        git(&w, &["commit", "-q", "-m", message]);
        git(&w, &["push", "-q", "origin", "main"]);
    }
}

/// A running `berth bridge`.
pub struct Bridge {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
    _state: tempfile::TempDir,
}

impl Bridge {
    pub fn start(remote: &Remote, extra: &[&str]) -> Bridge {
        Bridge::start_with(&remote.bare().to_string_lossy(), extra, &[])
    }

    pub fn start_with(remote: &str, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let state = tempfile::Builder::new()
            .prefix("berth-bridge-state-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(berth_bin())
            .args(["bridge", "--remote", remote, "--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state.path())
            .args(extra)
            .env("BERTH_SECRET_STRIPE_WEBHOOK", SECRET)
            .env("BERTH_SECRET_STRIPE_WEBHOOK_OLD", OLD_SECRET)
            .env("NO_COLOR", "1")
            .env_remove("BERTH_LOG")
            // `BRIDGE_TEST_LOG=debug` shows the bridge's debug log (per-push timings).
            .envs(std::env::var("BRIDGE_TEST_LOG").map(|v| ("BERTH_LOG", v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth bridge starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                        let port: u16 = rest.split('/').next().unwrap().parse().unwrap();
                        let _ = tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("the bridge did not start:\n{}", log.lock().unwrap());
            }
        };
        Bridge {
            child,
            port,
            log,
            _state: state,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the log shows `needle` within 10 s (a reader thread copies the bridge's
    /// stderr, so a line can land just after the response that it explains).
    pub fn log_shows(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn post(&self, body: &[u8], signature: Option<&str>) -> (u16, String) {
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(s) = signature {
            headers.push(("Stripe-Signature", s.to_string()));
        }
        http(self.port, "POST", "/stripe/webhook", &headers, body)
    }

    /// Post an event signed with the current secret, now.
    pub fn send(&self, body: &str) -> (u16, String) {
        let h = signature::header(&[SECRET.as_bytes()], now(), body.as_bytes());
        self.post(body.as_bytes(), Some(&h))
    }

    /// Stop with SIGINT (Ctrl-C) and wait.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the bridge did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let (status, response) = request(port, method, path, headers, body);
    (status, body_of(&response))
}

/// The body of a whole HTTP response.
pub fn body_of(response: &str) -> String {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// One HTTP/1.1 request over a fresh connection; returns status and the whole response
/// (status line, headers and body).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body: a broken pipe is fine.
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

/// Status code and the whole response (until the server closes).
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// A request that declares a body it never sends: the bridge must answer from the headers.
pub fn http_declared_only(port: u16, declared: usize, signature: &str) -> (u16, String) {
    post_declared_only(
        port,
        "/stripe/webhook",
        declared,
        &[("Stripe-Signature", signature.to_string())],
    )
}

/// A `POST path` that declares a body of `declared` bytes and never sends it: the server
/// must answer from the headers (the read gives up after 30 s).
pub fn post_declared_only(
    port: u16,
    path: &str,
    declared: usize,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {declared}\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// A subscription event in the 2024-06-20 shape.
pub fn sub_event(
    id: &str,
    event_type: &str,
    created: i64,
    tenant: Option<&str>,
    status: &str,
    price: &str,
) -> String {
    let metadata = match tenant {
        Some(t) => serde_json::json!({ "tenant_id": t }),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "type": event_type,
        "livemode": false,
        "data": { "object": {
            "id": format!("sub_{}", tenant.unwrap_or("anon").replace('-', "_").replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "x")),
            "object": "subscription",
            "customer": "cus_acme",
            "status": status,
            "cancel_at_period_end": false,
            "pause_collection": null,
            "metadata": metadata,
            "current_period_start": created,
            "current_period_end": created + 2_592_000,
            "items": { "object": "list", "data": [
                { "id": "si_1", "object": "subscription_item", "price": { "id": price, "object": "price" }, "quantity": 1 }
            ]}
        }}
    })
    .to_string()
}
