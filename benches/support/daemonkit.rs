//! What the daemon benchmarks share: reading a process's memory and asking a daemon over
//! HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use berth::model::live::Live;

/// `BENCH_*` knobs: the variable's number, or `default`.
pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fill `world` with the hosts a `live.json` (a list of host/state pairs) holds.
pub(crate) fn load_hosts(world: &berth::driver::memory::World, live: &Path) {
    let hosts: Vec<(berth::model::live::HostRef, berth::model::live::LiveHost)> =
        serde_json::from_slice(&std::fs::read(live).unwrap()).unwrap();
    world.state().live.hosts = hosts.into_iter().collect();
}

/// The hosts as a converged apply of the repo at `repo` leaves them (in-memory hosts).
pub(crate) fn converged(repo: &Path) -> Live {
    let sources = berth::repo::load_dir(repo).unwrap();
    let (fleet, diags) = berth::reconcile::validate(&sources);
    assert!(diags.is_empty(), "{:?}", diags.first());
    let options = berth::plan::PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };
    let plan = berth::plan::plan(&fleet.unwrap(), &Live::default(), &options);
    let mut live = Live::default();
    let secrets =
        std::collections::BTreeMap::from([("openai".to_string(), "sk-bench".to_string())]);
    berth::driver::memory::apply(&plan, &mut live, &secrets).unwrap();
    live
}

pub(crate) struct ProcStatus {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

pub(crate) fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    ProcStatus {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// `GET path` on the daemon (loopback, no token).
pub(crate) fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// A daemon following the local repo `repo` with in-memory hosts of `world`: a drift scan
/// every second, so every wake is a full pass.
pub(crate) fn config(
    repo: &Path,
    state: &Path,
    world: &berth::driver::memory::World,
    holder: &str,
) -> berth::daemon::Config {
    use berth::daemon::{Config, backoff::Backoff, follow::Follow, webhook::WebhookSecrets};
    Config {
        follow: Follow::Local(repo.to_path_buf()),
        state_dir: state.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        token: None,
        webhooks: WebhookSecrets::default(),
        max_body: 1 << 20,
        poll: Duration::from_millis(500),
        poll_jitter: 0.1,
        drift_scan: Duration::from_secs(1),
        full_pass: Duration::from_secs(1),
        debounce: Duration::from_millis(200),
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        },
        exec: berth::execute::ExecOptions::default(),
        lease_ttl: Duration::from_secs(60),
        holder: holder.into(),
        connector: berth::driver::Connector::Memory(world.clone()),
        refresh: 10,
        shutdown_grace: Duration::from_secs(10),
    }
}
