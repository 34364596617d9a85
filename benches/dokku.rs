//! Benchmark: no-op plan of 1,000 tenants on one simulated Dokku host with 20 ms injected per
//! command — the full read (`berth plan`, the daemon's drift scan) and the fast one (the
//! daemon's full pass, apps confirmed by their spec labels) — against reading the same state
//! the per-resource way (app by app, report by report, as ansible-dokku and the Terraform
//! providers do) in the same run.
//!
//! `cargo bench --bench dokku` prints the figures recorded in docs/benchmarks.md (takes a few
//! minutes: the baseline is slow, which is the point). `BENCH_TENANTS=N` changes the size,
//! `BENCH_RUNS=N` how many no-op plans are timed (default 10: every one must succeed — issue
//! 13.11, sessions refused under load), `BENCH_MAX_SESSIONS=N` sshd's `MaxSessions` (default
//! 10, sshd's own), `BENCH_BASELINE=0` skips the per-resource baseline.
//! Under `cargo test` it runs a 5-tenant smoke pass.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub
)]

#[path = "../tests/it/sshd.rs"]
mod sshd;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth::driver::dokku::DokkuDriver;
use berth::driver::dokku::command::command;
use berth::driver::secrets::SecretProvider;
use berth::driver::{AnyDriver, Drivers, observe_all};
use berth::execute::{ExecOptions, Silent, execute};
use berth::model::HostTarget;
use berth::model::live::HostRef;
use berth::plan::{PlanOptions, plan};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1000 } else { 5 });
    let latency: u64 = if full { 20 } else { 1 };
    let env_number = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = env_number("BENCH_RUNS", if full { 10 } else { 1 });
    let max_sessions = u32::try_from(env_number("BENCH_MAX_SESSIONS", 10)).unwrap();
    let with_baseline = env_number("BENCH_BASELINE", 1) != 0;
    let Some(host) = sshd::DokkuHost::start_with_max_sessions(max_sessions) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("environments")).unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join("environments/prod.yaml"),
        format!(
            "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 0 }}\n",
            host.env_host("dokku-1")
        ),
    )
    .unwrap();
    for i in 0..n {
        std::fs::write(
            dir.path().join(format!("tenants/t{i:04}.yaml")),
            "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env: { LOG_LEVEL: info, SECRET_KEY: { generate: 32 } }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n",
        )
        .unwrap();
    }
    let sources = berth::repo::load_dir(dir.path()).unwrap();
    let (fleet, diags) = berth::validate::validate(&sources);
    let fleet = fleet.unwrap_or_else(|| panic!("{diags:?}"));
    let HostTarget::Dokku(target) = &fleet.environments["prod"].hosts["dokku-1"].target else {
        panic!()
    };
    let host_ref = HostRef::new("prod", "dokku-1");
    let driver = DokkuDriver::connect(&host_ref, target, SecretProvider::None)
        .await
        .unwrap();
    let drivers = Drivers {
        hosts: BTreeMap::from([(host_ref.clone(), AnyDriver::Dokku(driver))]),
    };

    // Seed the host by applying the fleet with berth itself (no latency).
    let options = PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };
    let seeded = Instant::now();
    let first = plan(
        &fleet,
        &observe_all(&drivers)
            .await
            .map_err(|e| e.source.chain())
            .unwrap(),
        &options,
    );
    let exec = ExecOptions {
        per_host: 8,
        ..ExecOptions::default()
    };
    let report = execute(
        &first,
        &drivers,
        &exec,
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(report.success());
    eprintln!(
        "seeded {n} tenants ({} steps) in {:.1} s",
        first.steps.len(),
        seeded.elapsed().as_secs_f64()
    );

    // One round trip, alone and sixteen at once, to show what a wave costs.
    let AnyDriver::Dokku(d) = &drivers.hosts[&host_ref] else {
        unreachable!()
    };
    let version = command(&["version"]).unwrap();
    let t = Instant::now();
    for _ in 0..10 {
        d.run(&version).await.unwrap();
    }
    let single = t.elapsed().as_secs_f64() / 10.0;
    let t = Instant::now();
    futures_util::future::join_all((0..16).map(|_| d.run(&version))).await;
    let wave16 = t.elapsed().as_secs_f64();
    eprintln!(
        "round trip without latency: {:.1} ms alone, 16 in parallel {:.1} ms",
        single * 1e3,
        wave16 * 1e3
    );

    host.set_latency(latency);
    // `runs` no-op plans in a row, each a full scan: every one must succeed.
    let mut succeeded = 0;
    let mut times = Vec::new();
    let mut observed = f64::MAX;
    let mut berth_commands = 0;
    let before = d.transport_stats();
    for run in 0..runs {
        host.clear_log();
        let started = Instant::now();
        match observe_all(&drivers).await {
            Ok(live) => {
                let seen = started.elapsed().as_secs_f64();
                let p = plan(&fleet, &live, &options);
                let total = started.elapsed().as_secs_f64();
                assert!(p.steps.is_empty(), "no-op plan expected");
                succeeded += 1;
                observed = observed.min(seen);
                times.push(total);
                berth_commands = host.commands().len();
            }
            Err(e) => eprintln!("run {run} failed: {}", e.source.chain()),
        }
    }
    let after = d.transport_stats();
    times.sort_by(f64::total_cmp);
    let total = times.first().copied().unwrap_or(f64::NAN);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let waves = 2;

    // The daemon's fast full pass (issue 17.3): apps confirmed by their spec labels.
    drivers.set_fast(Some(&berth::model::desired::expected(&fleet)));
    host.clear_log();
    let started = Instant::now();
    let live = observe_all(&drivers)
        .await
        .map_err(|e| e.source.chain())
        .unwrap();
    let fast_plan = plan(&fleet, &live, &options);
    let fast_total = started.elapsed().as_secs_f64();
    assert!(fast_plan.steps.is_empty(), "no-op fast plan expected");
    let fast_commands = host.commands().len();
    drivers.set_fast(None);

    // Baseline: the same state read per resource, one command after another.
    let AnyDriver::Dokku(driver) = &drivers.hosts[&host_ref] else {
        unreachable!()
    };
    host.clear_log();
    let started = Instant::now();
    for i in 0..if with_baseline { n } else { 0 } {
        let app = format!("t{i:04}-web");
        for words in [
            vec!["apps:exists", app.as_str()],
            vec!["apps:report", app.as_str(), "--format", "json"],
            vec!["config:export", "--format", "json", app.as_str()],
            vec!["domains:report", app.as_str(), "--format", "json"],
            vec!["ps:scale", app.as_str(), "--format", "json"],
            vec!["resource:report", app.as_str(), "--format", "json"],
            vec!["storage:report", app.as_str(), "--format", "json"],
            vec!["letsencrypt:report", app.as_str(), "--format", "json"],
        ] {
            driver.run(&command(&words).unwrap()).await.unwrap();
        }
        let svc = format!("t{i:04}-db");
        for words in [
            vec!["postgres:exists", svc.as_str()],
            vec!["postgres:links", svc.as_str()],
        ] {
            driver.run(&command(&words).unwrap()).await.unwrap();
        }
    }
    let baseline = started.elapsed().as_secs_f64();
    let baseline_commands = host.commands().len();
    println!(
        "dokku no-op plan benchmark: {n} tenants (app + postgres each) on one host, {latency} ms injected per command"
    );
    println!(
        "  berth:    {succeeded}/{runs} no-op plans succeeded (sshd MaxSessions {max_sessions}); {} session refusals retried, connection limit down to {} at the lowest",
        after.refusals - before.refusals,
        after.lowest_limit
    );
    println!(
        "            {berth_commands:>6} commands in {waves} waves per plan, best observe {observed:>7.2} s, observe + plan best {total:>7.2} s, median {median:>7.2} s"
    );
    println!(
        "            budget 16 + 2 per app + 1 per service = {}",
        16 + 2 * (n + 1) + n
    );
    println!(
        "  fast:     {fast_commands:>6} commands (spec labels, the daemon's full pass), observe + plan {fast_total:>7.2} s"
    );
    println!(
        "  baseline: {baseline_commands:>6} commands, sequential per resource, {baseline:>7.2} s"
    );
    if with_baseline {
        println!("  speed-up: {:.1}x", baseline / total);
    }
    assert_eq!(succeeded, runs, "every no-op plan must succeed");
}
