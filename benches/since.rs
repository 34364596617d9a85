//! Benchmark: `berth plan --since HEAD~1` for a one-tenant change in a 1,000-tenant repo vs
//! the same change in a 1-tenant repo (target ratio ≤ 1.5), each against its own simulated
//! Dokku host (20 ms per command) holding that repo's tenants.
//!
//! `cargo bench --bench since` prints the figures; `BENCH_TENANTS=N` changes the large repo.
//! Under `cargo test` it runs with 5 tenants.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/sshd.rs"]
mod sshd;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@example.test",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "git {args:?}");
}

const TENANT: &str = "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env: { LOG_LEVEL: info }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n";

fn berth(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .arg("--repo")
        .arg(dir)
        .output()
        .unwrap()
}

/// Seed a host with `n` tenants through berth, commit a one-tenant change, time the plan.
fn measure(n: usize) -> (f64, usize) {
    let host = sshd::DokkuHost::start().expect("sshd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(d.join("environments")).unwrap();
    std::fs::create_dir_all(d.join("tenants")).unwrap();
    std::fs::write(
        d.join("environments/prod.yaml"),
        format!(
            "version: 1\ndomain: example.app\nhosts:\n{}",
            host.env_host("dokku-1")
        ),
    )
    .unwrap();
    for i in 0..n {
        std::fs::write(d.join(format!("tenants/t{i:04}.yaml")), TENANT).unwrap();
    }
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "base"]);
    let out = berth(d, &["apply", "--auto-approve", "--per-host", "6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        d.join("tenants/t0000.yaml"),
        TENANT.replace("1.4.2", "1.5.0"),
    )
    .unwrap();
    git(d, &["commit", "-q", "-am", "bump t0000"]);
    host.set_latency(20);
    let mut best = f64::MAX;
    let mut steps = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let out = berth(d, &["plan", "--since", "HEAD~1", "--format", "json"]);
        best = best.min(started.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        steps = plan["steps"].as_array().unwrap().len();
    }
    (best, steps)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1000 } else { 5 });
    if sshd::DokkuHost::start().is_none() {
        return;
    }
    let (large, large_steps) = measure(n);
    let (small, small_steps) = measure(1);
    println!("plan --since benchmark: one tenant's image changed, 20 ms per Dokku command");
    println!(
        "  {n:>5}-tenant repo: {:>7.1} ms ({large_steps} steps)",
        large * 1e3
    );
    println!(
        "  {:>5}-tenant repo: {:>7.1} ms ({small_steps} steps)",
        1,
        small * 1e3
    );
    println!("  ratio: {:.2}", large / small);
}
