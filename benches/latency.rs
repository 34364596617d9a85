//! Benchmark: commit → applied latency of `berth daemon` for a one-tenant change in a
//! 1,000-tenant repo, push-webhook triggered. One simulated Dokku host behind a real sshd
//! (20 ms injected per command) holds the fleet, seeded by `berth apply`; the daemon follows a
//! bare remote. Each round edits one tenant, pushes, sends the signed GitHub push webhook and
//! polls `/api/status` until the host records the new commit as applied. Prints p50/p99/max.
//!
//! `cargo bench --bench latency` runs 1,000 tenants and 20 commits (`BENCH_TENANTS`,
//! `BENCH_COMMITS` change them). Under `cargo test` it runs 5 tenants and 2 commits.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/bridge/harness.rs"]
mod harness;
#[path = "../tests/it/sshd.rs"]
mod sshd;
#[path = "../tests/it/support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::daemon::webhook::github_signature;
use harness::http;
use support::{berth_bin, commit, git, head};

const TENANT: &str = "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env: { LOG_LEVEL: LEVEL }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n";

fn env_var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_var("BENCH_TENANTS", if full { 1000 } else { 5 });
    let rounds = env_var("BENCH_COMMITS", if full { 20 } else { 2 });
    let Some(host) = sshd::DokkuHost::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("remote.git");
    let work = dir.path().join("work");
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    git(dir.path(), &["init", "-q", "-b", "main", "work"]);
    git(&work, &["remote", "add", "origin", "../remote.git"]);
    std::fs::create_dir_all(work.join("environments")).unwrap();
    std::fs::create_dir_all(work.join("tenants")).unwrap();
    std::fs::write(
        work.join("environments/prod.yaml"),
        format!(
            "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 0, self-heal: true }}\n",
            host.env_host("dokku-1")
        ),
    )
    .unwrap();
    let tenant = |i: usize, level: &str| {
        std::fs::write(
            work.join(format!("tenants/t{i:04}.yaml")),
            TENANT.replace("LEVEL", level),
        )
        .unwrap();
    };
    for i in 0..n {
        tenant(i, "info");
    }
    commit(&work, "fleet");
    git(&work, &["push", "-q", "origin", "main"]);

    // Seed with berth itself, without latency.
    let seeded = Instant::now();
    let out = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--per-host", "8", "--repo"])
        .arg(&work)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "seeded {n} tenants in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    host.set_latency(20);

    let state = dir.path().join("daemon");
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new(berth_bin())
        .arg("daemon")
        .arg("--remote")
        .arg(&bare)
        .args([
            "--poll",
            "3600",
            "--drift-scan",
            "3600",
            "--full-pass",
            "3600",
            "--github-secret",
            "hook",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(&state)
        .env("BERTH_SECRET_HOOK", "bench-hook-secret")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port = wait_for_port(&log);
    let applied = |commit: &str| {
        let (status, body) = http(port, "GET", "/api/status", &[], b"");
        status == 200
            && serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|s| s["hosts"]["prod/dokku-1"]["applied"]["id"] == commit)
    };
    // The host records the seeded commit already (`berth apply` did), so wait for the end of
    // the daemon's first pass itself: a commit pushed during that deep pass would wait for
    // it (a daemon runs one pass at a time) and measure the scan, not the commit.
    let passes = || {
        http(port, "GET", "/metrics", &[], b"")
            .1
            .lines()
            .filter(|l| l.starts_with("berth_daemon_passes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let started = Instant::now();
    let seeded_head = head(&work);
    while !applied(&seeded_head) || passes() < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the daemon never took up the fleet:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "daemon's first (deep) pass over {n} tenants: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut latencies = Vec::new();
    for round in 0..rounds {
        let i = round % n;
        tenant(i, if round % 2 == 0 { "warn" } else { "debug" });
        commit(&work, &format!("t{i:04}: log level"));
        git(&work, &["push", "-q", "origin", "main"]);
        let pushed = head(&work);
        let t = Instant::now();
        let body = format!(
            r#"{{"ref":"refs/heads/main","after":"{pushed}","repository":{{"full_name":"fleet/tenants"}}}}"#
        );
        let (status, answer) = http(
            port,
            "POST",
            "/hooks/git",
            &[
                ("X-GitHub-Event", "push".to_string()),
                (
                    "X-Hub-Signature-256",
                    github_signature(b"bench-hook-secret", body.as_bytes()),
                ),
                ("Content-Type", "application/json".to_string()),
            ],
            body.as_bytes(),
        );
        assert!((200..300).contains(&status), "webhook: {status} {answer}");
        while !applied(&pushed) {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "commit {pushed} never applied:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies.push(t.elapsed());
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    latencies.sort();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64()
    };
    println!(
        "daemon commit → applied: {n} tenants on one simulated Dokku host, 20 ms per command, {rounds} one-tenant commits, push webhook"
    );
    println!(
        "  p50 {:.2} s   p99 {:.2} s   max {:.2} s   min {:.2} s",
        pick(0.5),
        pick(0.99),
        latencies.last().unwrap().as_secs_f64(),
        latencies[0].as_secs_f64()
    );
}

fn wait_for_port(log: &std::path::Path) -> u16 {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("status on http://127.0.0.1:").nth(1) {
            return rest.split('/').next().and_then(|p| p.parse().ok()).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon never listened:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
