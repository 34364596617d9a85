//! Benchmark: `validate` over 10,000 generated tenant files (target: ≤ 1 s).
//!
//! `cargo bench --bench validate` prints the figures recorded in docs/benchmarks.md.
//! Under `cargo test` (no `--bench` argument) it runs a 100-file smoke pass instead.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full { 10_000 } else { 100 };
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), n);

    let mut best_load = f64::MAX;
    let mut best_validate = f64::MAX;
    let runs = if full { 5 } else { 1 };
    for _ in 0..runs {
        let started = Instant::now();
        let sources = berth::repo::load_dir(dir.path()).unwrap();
        let loaded = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let (fleet, diags) = berth::validate::validate(&sources);
        let validated = started.elapsed().as_secs_f64();
        assert!(diags.is_empty(), "{:?}", diags.first());
        assert_eq!(fleet.unwrap().tenants.len(), n);
        best_load = best_load.min(loaded);
        best_validate = best_validate.min(validated);
    }
    // The whole command, as a user runs it.
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/berth");
    let cli = if full && bin.exists() {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let out = std::process::Command::new(&bin)
                .args(["validate", "--repo"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success());
            best = best.min(started.elapsed().as_secs_f64());
        }
        Some(best)
    } else {
        None
    };
    println!("validate benchmark: {n} tenant files, best of {runs}");
    println!("  load (read files)   {:>8.1} ms", best_load * 1e3);
    println!("  validate (pure)     {:>8.1} ms", best_validate * 1e3);
    println!(
        "  load + validate     {:>8.1} ms",
        (best_load + best_validate) * 1e3
    );
    if let Some(cli) = cli {
        println!(
            "  `berth validate`    {:>8.1} ms (release binary, best of 3)",
            cli * 1e3
        );
    }
}

fn write_repo(root: &std::path::Path, n: usize) {
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    let mut env = String::from(
        "version: 1\ndomain: example.app\ntiers:\n  starter: { processes: { web: 1 }, memory: 512M }\n  pro: { processes: { web: 2, worker: 1 }, memory: 2G, cpus: 1 }\nsecrets: { provider: env, names: [openai] }\nhosts:\n",
    );
    for h in 0..50 {
        env.push_str(&format!(
            "  dokku-{h}:\n    dokku: {{ ssh: dokku@10.0.{}.{}:22, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" }}\n    capacity: 250\n",
            h / 200,
            h % 200 + 1
        ));
    }
    std::fs::write(root.join("environments/production.yaml"), env).unwrap();
    for i in 0..n {
        let text = format!(
            "# yaml-language-server: $schema=../schema/tenant.schema.json\nversion: 1\nname: Tenant {i}\nenvironment: production\ntier: {}\nhost: dokku-{}\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    tls: true\n    env:\n      LOG_LEVEL: info\n      SECRET_KEY: {{ generate: 32 }}\n      OPENAI_KEY: {{ secret: openai }}\n    uses: [db, cache]\nservices:\n  db: {{ kind: postgres }}\n  cache: {{ kind: redis }}\nbilling:\n  customer: cus_{i:08}\n  subscription: sub_{i:08}\n  status: active\n",
            if i % 3 == 0 { "pro" } else { "starter" },
            i % 50
        );
        std::fs::write(root.join(format!("tenants/t{i:05}.yaml")), text).unwrap();
    }
}
