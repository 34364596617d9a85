//! Benchmark: the daemon's memory with many tenants (issue 17 P6: ≤ 100 MiB RSS with 10,000
//! tenants after 10 passes) and a soak (issue 16 item 5: RSS, open descriptors and passes per
//! minute over a bounded run with faults injected).
//!
//! The daemon runs in a child process (this binary again, with `BERTH_SECRET_OPENAI` set) so
//! its `/proc/<pid>/status` holds nothing but the daemon: `berth::daemon::run` — the code
//! `berth daemon --repo` runs — following a local copy of examples/dokku-fleet with `acme`
//! copied under N ids (`benches/support/acme.rs`), its hosts in-memory hosts
//! (`Connector::Memory`, which also live in the child: their live state is counted). A drift
//! scan every second makes every wake a full pass (observe every host, plan every tenant).
//!
//! `cargo bench --bench daemon` runs both: memory with `BENCH_TENANTS` (10,000) for
//! `BENCH_PASSES` (10) passes, then the soak with `BENCH_SOAK_TENANTS` (1,000) for
//! `BENCH_SOAK_SECS` (180) seconds. Under `cargo test` (no `--bench`) it runs 20 tenants for
//! 3 passes and a 4-second soak.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/acme.rs"]
mod acme;
#[path = "support/daemonkit.rs"]
mod daemonkit;
use daemonkit::{env_or, get, proc_status};

/// The allocator the `berth` binary uses (src/main.rs), so the child measures what it would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4] == "soak",
            &args[5],
        );
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let tenants = env_or("BENCH_TENANTS", if full { 10_000 } else { 20 }) as usize;
    let passes = env_or("BENCH_PASSES", if full { 10 } else { 3 });
    memory(tenants, passes);
    let soak_tenants = env_or("BENCH_SOAK_TENANTS", if full { 1_000 } else { 20 }) as usize;
    let soak_secs = env_or("BENCH_SOAK_SECS", if full { 180 } else { 4 });
    if soak_secs > 0 {
        soak(soak_tenants, soak_secs);
    }
}

/// P6: RSS after each of the first `passes` passes.
fn memory(tenants: usize, passes: u64) {
    let dir = tempfile::tempdir().unwrap();
    acme::write(&dir.path().join("repo"), tenants);
    let (mut child, addr) = start(dir.path(), false);
    let pid = child.id();
    println!(
        "daemon memory: {tenants} tenants (examples/dokku-fleet acme copies), in-memory hosts"
    );
    let seeded: f64 = std::fs::read_to_string(dir.path().join("seeded-rss"))
        .map(|t| t.trim().parse().unwrap_or(0.0))
        .unwrap_or(0.0);
    println!(
        "  hosts seeded, before the daemon's first load: VmRSS {:>6.1} MiB (the in-memory hosts' share)",
        seeded / 1024.0
    );
    let started = Instant::now();
    let mut seen = 0;
    while seen < passes {
        let now = passes_total(addr);
        if now > seen {
            seen = now;
            let s = proc_status(pid);
            println!(
                "  after pass {seen:>2} ({:>6.1} s): VmRSS {:>6.1} MiB, VmHWM {:>6.1} MiB, {} fds",
                started.elapsed().as_secs_f64(),
                s.rss_kib as f64 / 1024.0,
                s.hwm_kib as f64 / 1024.0,
                fds(pid)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the daemon made {seen} passes in 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Issue 16 item 5: a bounded run with faults, sampled every 10 s.
fn soak(tenants: usize, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    acme::write(&repo, tenants);
    let (mut child, addr) = start(dir.path(), true);
    let pid = child.id();
    println!(
        "daemon soak: {tenants} tenants, {secs} s; faults: a tenant's app deleted on its host every 5 s (healed by the next pass), an image bumped every 7 s, an unparsable tenant file for 3 s of every 20 s, every host call 1 ms late"
    );
    let started = Instant::now();
    let sample_every = Duration::from_secs(if secs >= 60 { 10 } else { 1 });
    let mut next_sample = started;
    let mut samples: Vec<(f64, u64, usize, u64)> = Vec::new();
    let acme_text = std::fs::read_to_string(repo.join("tenants/t00000.yaml")).unwrap();
    let mut bump = 0u64;
    let mut next_bump = started + Duration::from_secs(7);
    let mut next_break = started + Duration::from_secs(20);
    let mut broken_until: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if now >= next_bump {
            bump += 1;
            let i = bump as usize % tenants;
            let text = acme_text.replace("app:1.4.2", &format!("app:1.4.{}", 2 + bump));
            std::fs::write(repo.join(format!("tenants/t{i:05}.yaml")), text).unwrap();
            next_bump = now + Duration::from_secs(7);
        }
        if now >= next_break {
            std::fs::write(
                repo.join("tenants/broken.yaml"),
                "environment: [production\n",
            )
            .unwrap();
            broken_until = Some(now + Duration::from_secs(3));
            next_break = now + Duration::from_secs(20);
        }
        if broken_until.is_some_and(|b| now >= b) {
            std::fs::remove_file(repo.join("tenants/broken.yaml")).unwrap();
            broken_until = None;
        }
        if now >= next_sample {
            let s = proc_status(pid);
            samples.push((
                started.elapsed().as_secs_f64(),
                s.rss_kib,
                fds(pid),
                passes_total(addr),
            ));
            next_sample += sample_every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let end = proc_status(pid);
    let total = passes_total(addr);
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = get(addr, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "  {:>7} {:>10} {:>5} {:>7}",
        "t (s)", "RSS (MiB)", "fds", "passes"
    );
    for (t, rss, fd, p) in &samples {
        println!("  {t:>7.0} {:>10.1} {fd:>5} {p:>7}", *rss as f64 / 1024.0);
    }
    // Growth: the last sample against the first one after the first tenth of the run (the
    // first pass applies the whole fleet).
    let warm = samples
        .iter()
        .find(|(t, ..)| *t >= elapsed / 10.0)
        .unwrap_or(&samples[0]);
    let last = samples.last().unwrap();
    let fd_min = samples.iter().map(|s| s.2).min().unwrap();
    let fd_max = samples.iter().map(|s| s.2).max().unwrap();
    let results: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("berth_daemon_passes_total{"))
        .collect();
    println!(
        "  passes: {total} in {elapsed:.0} s = {:.1}/min; RSS {:.1} MiB at {:.0} s, {:.1} MiB at the end ({:+.1} MiB), VmHWM {:.1} MiB; fds {fd_min}..{fd_max}",
        total as f64 * 60.0 / elapsed,
        warm.1 as f64 / 1024.0,
        warm.0,
        last.1 as f64 / 1024.0,
        (last.1 as f64 - warm.1 as f64) / 1024.0,
        end.hwm_kib as f64 / 1024.0,
    );
    for line in results {
        println!("    {line}");
    }
}

/// The hosts' live state once the fleet is applied (planned from empty hosts and applied
/// in memory here, so the child starts from a converged fleet and its passes are no-ops
/// unless something changes), written as JSON for the child to load.
fn seed(dir: &Path) -> PathBuf {
    let live = daemonkit::converged(&dir.join("repo"));
    let path = dir.join("live.json");
    // Hosts are keyed by a struct, which JSON cannot key by: a list of pairs.
    let hosts: Vec<_> = live.hosts.into_iter().collect();
    std::fs::write(&path, serde_json::to_vec(&hosts).unwrap()).unwrap();
    path
}

/// Start the child daemon; returns it and its HTTP address.
fn start(dir: &Path, soak: bool) -> (Child, SocketAddr) {
    let live = seed(dir);
    // `BENCH_WRAP="heaptrack -o /tmp/daemon"` runs the child under a profiler.
    let wrap: Vec<String> = std::env::var("BENCH_WRAP")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let exe = std::env::current_exe().unwrap();
    let mut command = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .arg("--child")
        .arg(dir.join("repo"))
        .arg(dir.join("state"))
        .arg(if soak { "soak" } else { "memory" })
        .arg(live)
        .env("BERTH_SECRET_OPENAI", "sk-bench")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line that is an address (a profiler may print its own lines first).
    let addr = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.trim().parse().ok())
        .expect("the child prints its address");
    (child, addr)
}

/// The daemon itself, in this process.
fn child(repo: &Path, state: &Path, soak: bool, live: &str) {
    let world = if soak {
        berth::driver::memory::World::with_latency(Duration::from_millis(1))
    } else {
        berth::driver::memory::World::new()
    };
    daemonkit::load_hosts(&world, Path::new(live));
    // What the in-memory hosts cost on their own, before the daemon reads a file.
    let seeded = proc_status(std::process::id());
    std::fs::write(
        state.with_file_name("seeded-rss"),
        seeded.rss_kib.to_string(),
    )
    .unwrap();
    let config = daemonkit::config(repo, state, &world, "bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        if soak {
            // Hand drift: delete one tenant's app on its host every 5 s.
            let world = world.clone();
            tokio::spawn(async move {
                let mut n = 0usize;
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    n += 1;
                    let mut state = world.state();
                    if let Some(host) = state.live.hosts.values_mut().next() {
                        let len = host.dokku.apps.len();
                        if let Some(name) = host.dokku.apps.keys().nth(n % len.max(1)).cloned() {
                            host.dokku.apps.remove(&name);
                        }
                    }
                }
            });
        }
        berth::daemon::run(config, std::future::pending(), |addr| {
            let mut out = std::io::stdout();
            writeln!(out, "{addr}").unwrap();
            out.flush().unwrap();
        })
        .await
        .unwrap();
    });
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Passes the daemon has finished (every trigger and result).
fn passes_total(addr: SocketAddr) -> u64 {
    get(addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with("berth_daemon_passes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
