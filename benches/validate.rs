//! Benchmark: `validate` over 10,000 tenant files (issue 17 P7: ≤ 400 ms for the whole
//! command; P6: peak memory of `validate` and `plan --offline`).
//!
//! The repo is examples/dokku-fleet with its `acme` tenant copied under 10,000 ids
//! (`benches/support/acme.rs`). `cargo bench --bench validate` prints the figures recorded
//! in docs/benchmarks.md; the command figures need `target/release/berth` (`cargo build
//! --release`) and peak RSS needs `/usr/bin/time`. Under `cargo test` (no `--bench`
//! argument) it runs a 100-file smoke pass instead. `BENCH_TENANTS=N` changes the count.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "support/acme.rs"]
mod acme;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10_000 } else { 100 });
    let dir = tempfile::tempdir().unwrap();
    acme::write(dir.path(), n);
    let yaml_bytes: u64 = std::fs::read_dir(dir.path().join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

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
    println!(
        "validate benchmark: {n} tenant files ({:.1} MB of YAML), best of {runs}",
        yaml_bytes as f64 / 1e6
    );
    println!("  load (read files)   {:>8.1} ms", best_load * 1e3);
    println!("  validate (pure)     {:>8.1} ms", best_validate * 1e3);
    println!(
        "  load + validate     {:>8.1} ms",
        (best_load + best_validate) * 1e3
    );

    // The whole commands, as a user runs them.
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/berth");
    if !full {
        return;
    }
    if !bin.exists() {
        println!("  (no target/release/berth: `cargo build --release` for the command figures)");
        return;
    }
    let repo = dir.path().to_str().unwrap();
    for (what, args) in [
        ("berth validate", vec!["validate", "--repo", repo]),
        (
            "berth plan --offline",
            vec!["plan", "--offline", "--repo", repo],
        ),
    ] {
        let runs = 5;
        let mut best = f64::MAX;
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let out = Command::new(&bin).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let t = started.elapsed().as_secs_f64();
            times.push(format!("{:.0}", t * 1e3));
            best = best.min(t);
        }
        let rss = peak_rss_kib(&bin, &args);
        println!(
            "  `{what}` {:>8.1} ms best of {runs} (runs: {} ms){}",
            best * 1e3,
            times.join(", "),
            rss.map(|k| format!(", peak RSS {:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_default()
        );
    }
}

/// Peak resident set of one run, from GNU time (`%M`, KiB), when it is installed.
fn peak_rss_kib(bin: &Path, args: &[&str]) -> Option<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "BERTH_PEAK_RSS=%M"])
        .arg(bin)
        .args(args)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("BERTH_PEAK_RSS="))
        .and_then(|v| v.trim().parse().ok())
}
