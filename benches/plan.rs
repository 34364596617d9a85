//! Benchmark: plan 10,000 tenants against an in-memory live state.
//!
//! `cargo bench --bench plan` prints the figures recorded in docs/benchmarks.md. Under
//! `cargo test` (no `--bench` argument) it runs a 50-tenant smoke pass instead.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use berth::driver::memory;
use berth::model::live::Live;
use berth::plan::{PlanOptions, plan};
use berth::spec::source::{FileKind, SourceFile, SourceSet};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 10_000 } else { 50 };
    let options = PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };
    let secrets = BTreeMap::from([("openai".to_string(), "sk-bench".to_string())]);

    let sources = repo(n, None);
    let (fleet, diags) = berth::validate::validate(&sources);
    assert!(diags.is_empty(), "{:?}", diags.first());
    let fleet = fleet.unwrap();

    let started = Instant::now();
    let first = plan(&fleet, &Live::default(), &options);
    let from_empty = started.elapsed();
    let mut live = Live::default();
    memory::apply(&first, &mut live, &secrets).unwrap();

    let runs = if full { 5 } else { 1 };
    let mut noop = f64::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        let p = plan(&fleet, &live, &options);
        noop = noop.min(started.elapsed().as_secs_f64());
        assert!(p.steps.is_empty());
    }
    let changed = repo(n, Some(n / 2));
    let (changed, _) = berth::validate::validate(&changed);
    let changed = changed.unwrap();
    let mut one = f64::MAX;
    let mut steps = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let p = plan(&changed, &live, &options);
        one = one.min(started.elapsed().as_secs_f64());
        steps = p.steps.len();
    }
    println!(
        "plan benchmark: {n} tenants (half Dokku, half Docker), in-memory live state, best of {runs}"
    );
    println!(
        "  from empty hosts     {:>8.1} ms  ({} steps)",
        from_empty.as_secs_f64() * 1e3,
        first.steps.len()
    );
    println!("  no-op plan           {:>8.1} ms", noop * 1e3);
    println!(
        "  one tenant changed   {:>8.1} ms  ({steps} steps)",
        one * 1e3
    );
}

fn repo(n: usize, changed: Option<usize>) -> SourceSet {
    let mut env = String::from(
        "version: 1\ndomain: example.app\ntiers:\n  pro: { processes: { web: 2, worker: 1 }, memory: 2G, cpus: 1 }\nsecrets: { provider: env, names: [openai] }\nhosts:\n",
    );
    for h in 0..20 {
        env.push_str(&format!(
            "  dokku-{h}:\n    dokku: {{ ssh: dokku@10.0.0.{}, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" }}\n  docker-{h}:\n    docker: {{ endpoint: unix:///var/run/docker.sock }}\n    ports: 20000-29999\n",
            h + 1
        ));
    }
    let mut files = vec![SourceFile {
        path: "environments/prod.yaml".into(),
        kind: FileKind::Environment,
        text: Ok(env),
    }];
    for i in 0..n {
        let image = if changed == Some(i) { "2.0.0" } else { "1.4.2" };
        let host = if i % 2 == 0 {
            format!("dokku-{}", i % 20)
        } else {
            format!("docker-{}", i % 20)
        };
        let text = format!(
            "environment: prod\ntier: pro\nhost: {host}\napps:\n  web:\n    image: registry.example.app/app:{image}\n    env:\n      LOG_LEVEL: info\n      SECRET_KEY: {{ generate: 32 }}\n      OPENAI_KEY: {{ secret: openai }}\n    uses: [db, cache]\nservices:\n  db: {{ kind: postgres }}\n  cache: {{ kind: redis }}\n"
        );
        files.push(SourceFile {
            path: format!("tenants/t{i:05}.yaml"),
            kind: FileKind::Tenant,
            text: Ok(text),
        });
    }
    SourceSet { files }
}
