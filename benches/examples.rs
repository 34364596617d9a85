//! Benchmark: apply time from empty for N tenants of each example repo (default 20), on the
//! real parts the end-to-end tests use: the local Docker Engine with a real Caddy
//! (customer-sites), the engine alone (isolated-stacks), the engine with OpenBao (platform),
//! two simulated Dokku hosts behind real sshd (dokku-fleet; 20 ms per command).
//!
//! `cargo bench --bench examples` prints the figures recorded in docs/benchmarks.md;
//! `BENCH_TENANTS=N` changes the count. Under `cargo test` it applies 2 tenants each.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/dockerhost.rs"]
mod dockerhost;
#[path = "../tests/it/examplekit.rs"]
mod examplekit;
#[path = "../tests/it/sshd.rs"]
mod sshd;
#[path = "../tests/it/support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use support::{Repo, berth_bin, text};

/// Add tenants `<prefix>1..=n` as copies of tenant file `from` (its name and any extra
/// domains rewritten), committed.
fn add_tenants(
    repo: &Repo,
    from: &str,
    prefix: &str,
    n: usize,
    rewrite: &dyn Fn(&str, &str) -> String,
) {
    let base = std::fs::read_to_string(repo.path().join(format!("tenants/{from}.yaml"))).unwrap();
    for i in 1..=n {
        let id = format!("{prefix}{i}");
        repo.write(&format!("tenants/{id}.yaml"), &rewrite(&base, &id));
    }
    examplekit::commit(repo, "more tenants");
}

/// Time one `berth apply` (with `envs`), asserting it succeeded and converged.
fn timed_apply(repo: &Repo, envs: &[(&str, &str)]) -> f64 {
    let run = |args: &[&str]| {
        let mut c = Command::new(berth_bin());
        c.args(args)
            .arg("--repo")
            .arg(repo.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let started = Instant::now();
    let out = run(&["apply", "--auto-approve", "--attempts", "1"]);
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let plan = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    took
}

fn report(example: &str, tenants: usize, seconds: f64) {
    println!(
        "{example:<16} {tenants:>3} tenants from empty: {seconds:>6.1} s ({:.2} s per tenant)",
        seconds / tenants as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20 } else { 2 });
    let Some(docker) = dockerhost::docker().await else {
        return;
    };

    // customer-sites: the example's 3 sites and n more, each with its own route in Caddy.
    {
        let (repo, caddy) = examplekit::customer_sites(&docker).await;
        add_tenants(&repo, "bakery", "site", n, &|base, id| {
            base.replace("The Bakery", &format!("Site {id}"))
        });
        let took = timed_apply(&repo, &[]);
        report("customer-sites", n + 3, took);
        let (status, body) = caddy.get("site1.sites.example.com");
        assert_eq!(status, 200, "{body}");
        dockerhost::clean_environment("sites");
    }

    // isolated-stacks: 2 stacks of the example and n more (4 containers each) on 2 hosts.
    {
        let repo = examplekit::isolated_stacks(&docker).await;
        // Every stack publishes one port per web replica: widen the test ranges.
        let env = repo.path().join("environments/stacks.yaml");
        let text_now = std::fs::read_to_string(&env).unwrap();
        std::fs::write(
            &env,
            text_now
                .replace("ports: 31000-31019", "ports: 30000-30099")
                .replace("ports: 31020-31039", "ports: 30100-30199"),
        )
        .unwrap();
        add_tenants(&repo, "northwind", "stack", n, &|base, id| {
            base.replace("Northwind", &format!("Stack {id}"))
        });
        let took = timed_apply(&repo, &[]);
        report("isolated-stacks", n + 2, took);
        dockerhost::clean_environment("stacks");
    }

    // platform: the shared stack, 2 tenants and n more, secrets from OpenBao.
    {
        let bao = examplekit::Bao::start().unwrap();
        let repo = examplekit::platform(&docker, &bao).await;
        add_tenants(&repo, "alpha", "shop", n, &|base, id| {
            base.replace("Alpha Retail", &format!("Shop {id}"))
                .replace("TENANT: alpha", &format!("TENANT: {id}"))
        });
        let took = timed_apply(&repo, &[("VAULT_TOKEN", &bao.token)]);
        report("platform", n + 2, took);
        dockerhost::clean_environment("saas");
    }

    // dokku-fleet: 3 tenants of the example and n more on two simulated hosts, 20 ms per
    // command as on a real server.
    {
        let (one, two) = (
            sshd::DokkuHost::start().unwrap(),
            sshd::DokkuHost::start().unwrap(),
        );
        one.set_latency(20);
        two.set_latency(20);
        let repo = examplekit::dokku_fleet(&one, &two);
        add_tenants(&repo, "bluebird", "team", n, &|base, id| {
            base.replace("Bluebird Labs", &format!("Team {id}"))
                .replace("host: dokku-2\n", "")
                .replace(
                    "domains: [bluebird.mindroom.example, app.bluebird.example]",
                    &format!("domains: [{id}.mindroom.example]"),
                )
        });
        let took = timed_apply(
            &repo,
            &[
                ("BERTH_SECRET_OPENAI", "sk-bench"),
                ("BERTH_SECRET_SENTRY_DSN", "https://bench@sentry.example/1"),
            ],
        );
        report("dokku-fleet", n + 3, took);
    }
}
