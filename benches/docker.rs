//! Benchmark: Engine API calls and wall time of a no-op plan with many tenant stacks running.
//!
//! `cargo bench --bench docker` seeds tenant stacks (an app and a Postgres-role container each,
//! with network and volume) on the local engine through berth itself, then times no-op passes.
//! The default is 200 stacks; tenant networks take /24s from the host's `subnets` block
//! (a stock engine's default address pools hold only about 30 bridge networks).
//! `BENCH_TENANTS=N` changes the size. Under `cargo test` it runs a 3-tenant smoke pass.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/dockerhost.rs"]
mod dockerhost;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth::driver::docker::DockerDriver;
use berth::driver::secrets::SecretProvider;
use berth::driver::{AnyDriver, Drivers, observe_all};
use berth::execute::{ExecOptions, Silent, execute};
use berth::model::live::HostRef;
use berth::plan::{PlanOptions, plan};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 200 } else { 3 });
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = dockerhost::Run::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("environments")).unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join(format!("environments/{}.yaml", run.env)),
        "version: 1\nhosts:\n  local:\n    docker: { endpoint: unix:///var/run/docker.sock }\n    ports: 26000-26999\n    subnets: 10.240.0.0/16\n",
    )
    .unwrap();
    for i in 0..n {
        std::fs::write(
            dir.path().join(format!("tenants/{}.yaml", run.tenant(&format!("t{i}")))),
            format!(
                "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    ports: [{{ container: 8080 }}]\n    memory: 16M\n    uses: [db]\nservices:\n  db: {{ kind: postgres, image: berth-stub:v1, command: [\"/stub\", \"serve\", \"--port\", \"5432\"], memory: 16M }}\n",
                run.env
            ),
        )
        .unwrap();
    }
    let sources = berth::repo::load_dir(dir.path()).unwrap();
    let (fleet, diags) = berth::validate::validate(&sources);
    let fleet = fleet.unwrap_or_else(|| panic!("{diags:?}"));
    let host = HostRef::new(&run.env, "local");
    let driver = DockerDriver::connect(&host, "unix:///var/run/docker.sock", SecretProvider::None)
        .await
        .unwrap();
    let drivers = Drivers {
        hosts: BTreeMap::from([(host.clone(), AnyDriver::Docker(driver))]),
    };
    let options = PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };

    let started = Instant::now();
    let live = observe_all(&drivers)
        .await
        .map_err(|e| e.source.chain())
        .unwrap();
    let mut first = plan(&fleet, &live, &options);
    first.steps.retain(|s| s.environment == run.env);
    let report = execute(
        &first,
        &drivers,
        &ExecOptions {
            per_host: 8,
            ..ExecOptions::default()
        },
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(
        report.success(),
        "{:?}",
        report
            .outcomes
            .values()
            .find(|o| **o != berth::execute::Outcome::Succeeded)
    );
    eprintln!(
        "seeded {n} stacks ({} steps) in {:.1} s",
        first.steps.len(),
        started.elapsed().as_secs_f64()
    );

    let AnyDriver::Docker(d) = &drivers.hosts[&host] else {
        unreachable!()
    };
    let mut best = f64::MAX;
    let mut calls = 0;
    for _ in 0..5 {
        let before = d.calls();
        let started = Instant::now();
        let live = observe_all(&drivers)
            .await
            .map_err(|e| e.source.chain())
            .unwrap();
        let mut p = plan(&fleet, &live, &options);
        p.steps.retain(|s| s.environment == run.env);
        best = best.min(started.elapsed().as_secs_f64());
        calls = d.calls() - before;
        assert!(
            p.steps.is_empty(),
            "no-op plan expected:\n{}",
            berth::output::plan::render_text(&p, false)
        );
    }
    let containers = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .build(),
        ))
        .await
        .unwrap()
        .len();
    println!(
        "docker no-op plan benchmark: {n} tenant stacks ({containers} containers on the engine)"
    );
    println!("  engine API calls per pass: {calls}");
    println!("  observe + plan, best of 5: {:.1} ms", best * 1e3);
}
