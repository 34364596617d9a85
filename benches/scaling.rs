//! Benchmark: past one machine, by simulation (issue 17; written up in docs/scaling.md).
//!
//! `T` tenants (examples/dokku-fleet's `acme`, copied and pinned round-robin to `H` hosts)
//! live on `H` in-memory Dokku hosts whose every call waits `L` ms (a simulated network).
//! For each daemon count `N`, `N` daemons (`berth::daemon::run`, the code `berth daemon`
//! runs) follow the same repo, each on its own thread and tokio runtime with its own lease
//! holder name — as `N` machines would, but in one process so that they share the simulated
//! hosts. Each runs full passes back to back (a drift scan every second). A pass claims the
//! lease of every host it can win (a host another daemon's pass holds is left to that one),
//! observes, plans, records, releases.
//!
//! Printed first: the memory of one daemon, run alone in a process of its own (this binary
//! again, `--memory-child`) with its own copy of the simulated hosts, whose share is read
//! before the daemon starts — every daemon loads and plans the whole fleet, so that is each
//! one's in an `N`-daemon setup too (in one process, the allocator's handling of `N`
//! runtimes' freed pages makes a per-daemon RSS unreadable). Then per `N`: the mean no-op
//! pass time (passes 2…, each daemon) and the share of lease samples each daemon held.
//! Then, for `N ≥ 2`, one daemon is killed in the middle of a
//! pass — its runtime dropped, its leases left on the hosts as a crashed machine leaves them
//! — and the time until no host carries its lease any more (each one expired and taken by
//! another daemon's pass) is measured, with the daemons' lease time to live `BENCH_TTL`.
//!
//! `cargo bench --bench scaling`: 100,000 tenants on 500 hosts at 20 ms per call, 1, 2 and 4
//! daemons, 3 passes each (`BENCH_TENANTS`, `BENCH_HOSTS`, `BENCH_LATENCY_MS`,
//! `BENCH_DAEMONS=1,2,4`, `BENCH_PASSES`, `BENCH_TTL` seconds, default 30). Under
//! `cargo test` (no `--bench`) it runs 40 tenants on 4 hosts, 1 and 2 daemons, 2 passes.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "support/daemonkit.rs"]
mod daemonkit;
use daemonkit::{env_or, get, proc_status};

/// The allocator the `berth` binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--memory-child") {
        memory_child(Path::new(&args[2]), Path::new(&args[3]));
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let tenants = env_or("BENCH_TENANTS", if full { 100_000 } else { 40 }) as usize;
    let hosts = env_or("BENCH_HOSTS", if full { 500 } else { 4 }) as usize;
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", if full { 20 } else { 1 }));
    let passes = env_or("BENCH_PASSES", if full { 3 } else { 2 });
    let ttl = Duration::from_secs(env_or("BENCH_TTL", if full { 30 } else { 4 }));
    let counts: Vec<usize> = std::env::var("BENCH_DAEMONS")
        .unwrap_or_else(|_| if full { "1,2,4".into() } else { "1,2".into() })
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    write_repo(&repo, tenants, hosts);
    let world = berth::driver::memory::World::with_latency(latency);
    let started = Instant::now();
    let live = daemonkit::converged(&repo);
    world.state().live = live;
    println!(
        "scaling: {tenants} tenants on {hosts} in-memory Dokku hosts, {} ms per call, lease ttl {} s; hosts seeded in {:.1} s",
        latency.as_millis(),
        ttl.as_secs(),
        started.elapsed().as_secs_f64(),
    );
    memory_alone(&repo, dir.path(), &world, passes);
    for n in counts {
        run(&repo, dir.path(), &world, n, passes, ttl);
    }
}

/// Memory per daemon: one daemon in a process of its own (this binary again) with its own
/// copy of the simulated hosts, whose share is read before the daemon starts. Every daemon
/// loads, observes and plans the whole fleet, so this is each one's in an N-daemon setup too.
fn memory_alone(repo: &Path, dir: &Path, world: &berth::driver::memory::World, passes: u64) {
    let live = dir.join("live.json");
    let hosts: Vec<_> = world.state().live.hosts.clone().into_iter().collect();
    std::fs::write(&live, serde_json::to_vec(&hosts).unwrap()).unwrap();
    drop(hosts);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--memory-child")
        .arg(repo)
        .arg(&live)
        .env("BENCH_PASSES", passes.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn memory_child(repo: &Path, live: &Path) {
    let passes = env_or("BENCH_PASSES", 2);
    let world = berth::driver::memory::World::new();
    daemonkit::load_hosts(&world, live);
    std::thread::sleep(Duration::from_secs(1));
    let seeded = proc_status(std::process::id()).rss_kib;
    let state = live.with_file_name("state-alone");
    let daemon = Daemon::start(repo, &state, &world, "alone", Duration::from_secs(120));
    let started = Instant::now();
    while daemon.passes().0 < passes {
        assert!(started.elapsed() < Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = proc_status(std::process::id());
    println!(
        "  one daemon alone: VmRSS {:.1} MiB after {passes} passes, {:.1} MiB of it the simulated hosts (before it started): {:.1} MiB the daemon's; VmHWM {:.1} MiB",
        after.rss_kib as f64 / 1024.0,
        seeded as f64 / 1024.0,
        after.rss_kib.saturating_sub(seeded) as f64 / 1024.0,
        after.hwm_kib as f64 / 1024.0
    );
}

/// The example's environment with `hosts` hosts `h000…`, and `tenants` copies of acme pinned
/// round-robin to them.
fn write_repo(root: &Path, tenants: usize, hosts: usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dokku-fleet");
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    let env = std::fs::read_to_string(example.join("environments/production.yaml")).unwrap();
    let (head, rest) = env.split_once("hosts:\n").unwrap();
    let (_, tail) = rest.split_once("tiers:\n").unwrap();
    let capacity = tenants.div_ceil(hosts) + 10;
    let mut text = format!("{head}hosts:\n");
    for h in 0..hosts {
        text.push_str(&format!(
            "  h{h:03}:\n    dokku:\n      ssh: dokku@10.1.{}.{}\n      host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    capacity: {capacity}\n",
            h / 250,
            h % 250 + 1
        ));
    }
    text.push_str("tiers:\n");
    text.push_str(tail);
    std::fs::write(root.join("environments/production.yaml"), text).unwrap();
    let acme = std::fs::read_to_string(example.join("tenants/acme.yaml")).unwrap();
    assert!(acme.contains("host: dokku-1\n"), "acme's pin moved");
    for i in 0..tenants {
        let file = acme.replace("host: dokku-1\n", &format!("host: h{:03}\n", i % hosts));
        std::fs::write(root.join(format!("tenants/t{i:06}.yaml")), file).unwrap();
    }
}

/// One daemon on its own thread and runtime; dropping the runtime kills it mid-pass.
struct Daemon {
    holder: String,
    addr: SocketAddr,
    kill: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(
        repo: &Path,
        state: &Path,
        world: &berth::driver::memory::World,
        holder: &str,
        ttl: Duration,
    ) -> Daemon {
        let mut config = daemonkit::config(repo, state, world, holder);
        config.lease_ttl = ttl;
        let (addr_tx, addr_rx) = mpsc::channel();
        let (kill_tx, kill_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.spawn(async move {
                berth::daemon::run(config, std::future::pending(), move |addr| {
                    addr_tx.send(addr).unwrap();
                })
                .await
                .unwrap();
            });
            // Until told to die: then the runtime goes with every task in the middle of
            // whatever it was doing (no lease released, as a crashed machine).
            let _ = kill_rx.recv();
            runtime.shutdown_background();
        });
        Daemon {
            holder: holder.to_string(),
            addr: addr_rx.recv().unwrap(),
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        drop(self.kill.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// (full passes finished, their summed seconds).
    fn passes(&self) -> (u64, f64) {
        let metrics = get(self.addr, "/metrics");
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("berth_daemon_pass_duration_seconds_count") as u64,
            value("berth_daemon_pass_duration_seconds_sum"),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(
    repo: &Path,
    dir: &Path,
    world: &berth::driver::memory::World,
    n: usize,
    passes: u64,
    ttl: Duration,
) {
    world.state().leases.clear();
    let started = Instant::now();
    let mut daemons: Vec<Daemon> = (0..n)
        .map(|i| {
            let holder = format!("daemon-{i}");
            Daemon::start(
                repo,
                &dir.join(format!("state-{n}-{i}")),
                world,
                &holder,
                ttl,
            )
        })
        .collect();
    // Sample who holds which lease while the passes run.
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    let mut first: Vec<Option<(u64, f64)>> = vec![None; n];
    loop {
        {
            let state = world.state();
            for lease in state.leases.values() {
                *held.entry(lease.holder.clone()).or_default() += 1;
            }
        }
        let counts: Vec<(u64, f64)> = daemons.iter().map(Daemon::passes).collect();
        for (i, c) in counts.iter().enumerate() {
            if first[i].is_none() && c.0 >= 1 {
                first[i] = Some(*c);
            }
        }
        if counts.iter().all(|c| c.0 >= passes) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "{n} daemons made {counts:?} passes in an hour"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let samples: u64 = held.values().sum::<u64>().max(1);
    println!("  {n} daemon(s):");
    for (i, d) in daemons.iter().enumerate() {
        let (count, sum) = d.passes();
        let (c1, s1) = first[i].unwrap();
        let later = count.saturating_sub(c1).max(1);
        println!(
            "    {}: first pass {:.1} s, no-op pass {:.1} s (mean of {} later), {:.0}% of lease samples",
            d.holder,
            s1 / c1.max(1) as f64,
            (sum - s1) / later as f64,
            later,
            100.0 * held.get(&d.holder).copied().unwrap_or(0) as f64 / samples as f64
        );
    }
    if n >= 2 {
        // Kill daemon 0 while it holds leases, then wait until none is left in its name.
        let victim = daemons[0].holder.clone();
        let waited = Instant::now();
        loop {
            let holding = world
                .state()
                .leases
                .values()
                .filter(|l| l.holder == victim)
                .count();
            if holding > 0 {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(600),
                "{victim} never held a lease"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        daemons[0].kill();
        let killed = Instant::now();
        let orphaned = world
            .state()
            .leases
            .values()
            .filter(|l| l.holder == victim)
            .count();
        loop {
            let left = world
                .state()
                .leases
                .values()
                .filter(|l| l.holder == victim)
                .count();
            if left == 0 {
                break;
            }
            assert!(
                killed.elapsed() < ttl * 4 + Duration::from_secs(600),
                "{left} hosts still carry {victim}'s lease"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "    {victim} killed mid-pass holding {orphaned} host lease(s): all taken over {:.1} s later (lease ttl {} s)",
            killed.elapsed().as_secs_f64(),
            ttl.as_secs()
        );
    }
    drop(daemons);
}
