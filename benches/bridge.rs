//! Benchmark P5: a burst of distinct Stripe events (one new tenant each) sent at once to a
//! `berth bridge` pushing to a bare remote on this machine; then the same burst while a person
//! pushes commits to the same branch as fast as git lets them. Prints p50/p99/max of event →
//! pushed (the bridge answers only after the push landed), commits made, lost, duplicated,
//! and how many pushes the bridge needed. Like Stripe, a sender delivers an event again when
//! the bridge answers non-2xx (a batch that lost every push race is answered 503); latency
//! counts from the first delivery.
//!
//! `cargo bench --bench bridge` runs 200 events; `BENCH_EVENTS=N` changes that. Under
//! `cargo test` it runs 20.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    unreachable_pub,
    dead_code
)]

#[path = "../tests/it/bridge/harness.rs"]
mod harness;
#[path = "../tests/it/support.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use berth::billing::signature;
use harness::{Bridge, Remote, SECRET, git, http, now, push_like_a_person, sub_event};

struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
    wall: Duration,
    ok: usize,
    redelivered: usize,
    commits: usize,
    lost: usize,
    duplicates: usize,
    pushes: usize,
    retries: usize,
    humans: usize,
    humans_kept: usize,
}

/// Who else pushes during the burst.
#[derive(Clone, Copy, PartialEq)]
enum Human {
    None,
    /// A commit and push every `pause` (a very busy person, or CI writing back).
    Paced(Duration),
    /// A script committing and pushing back to back, as fast as git allows.
    BackToBack,
}

fn burst(events: usize, human_kind: Human) -> Figures {
    let with_human = human_kind != Human::None;
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let human = with_human.then(|| {
        let bare = remote.bare();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let work = tempfile::tempdir().unwrap();
            git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "w"]);
            let w = work.path().join("w");
            std::fs::create_dir_all(w.join("notes")).unwrap();
            let mut pushed = 0;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(w.join(format!("notes/n{pushed}.md")), "x\n").unwrap();
                git(&w, &["add", "-A"]);
                git(&w, &["commit", "-q", "-m", &format!("human note {pushed}")]);
                push_like_a_person(&w);
                pushed += 1;
                if let Human::Paced(pause) = human_kind {
                    std::thread::sleep(pause);
                }
            }
            pushed
        })
    });
    // Let the human pusher get going first.
    if with_human {
        std::thread::sleep(Duration::from_millis(300));
    }
    let created = now();
    let bodies: Vec<String> = (0..events)
        .map(|i| {
            sub_event(
                &format!("evt_p5_{i}"),
                "customer.subscription.created",
                created,
                Some(&format!("tenant-{i:04}")),
                "active",
                "price_1Pro",
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(events + 1));
    let port = bridge.port;
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let h = signature::header(&[SECRET.as_bytes()], now(), body.as_bytes());
                let headers = [("Stripe-Signature", h)];
                barrier.wait();
                let started = Instant::now();
                // Like Stripe: a non-2xx answer is delivered again (Stripe waits longer).
                let mut answers = Vec::new();
                for _ in 0..20 {
                    let (status, _) =
                        http(port, "POST", "/stripe/webhook", &headers, body.as_bytes());
                    answers.push(status);
                    if status == 200 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                (answers, started.elapsed())
            })
        })
        .collect();
    barrier.wait();
    let wall_start = Instant::now();
    if std::env::var_os("BENCH_LOG").is_some() {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        eprintln!("burst released at unix {:.3}", since.as_secs_f64());
    }
    let results: Vec<(Vec<u16>, Duration)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let wall = wall_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let humans = human.map_or(0, |h| h.join().unwrap());
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.1).collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let trailers = remote.event_trailers();
    let log = bridge.log();
    if std::env::var_os("BENCH_LOG").is_some() {
        eprintln!("{log}");
    }
    let subjects = git(&remote.bare(), &["log", "--format=%s", "main"]);
    let humans_kept = (0..humans)
        .filter(|i| subjects.lines().any(|s| s == format!("human note {i}")))
        .count();
    Figures {
        p50: pct(0.50),
        p99: pct(0.99),
        max: *latencies.last().unwrap(),
        wall,
        ok: results.iter().filter(|r| r.0.last() == Some(&200)).count(),
        redelivered: results.iter().map(|r| r.0.len() - 1).sum(),
        commits: trailers.len(),
        lost: (0..events)
            .filter(|i| !trailers.contains_key(&format!("evt_p5_{i}")))
            .count(),
        duplicates: trailers.values().map(|n| n - 1).sum(),
        pushes: log.matches("batch pushed").count(),
        retries: log.matches("push failed").count(),
        humans,
        humans_kept,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let events = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 200 } else { 20 });
    println!(
        "bridge benchmark (P5): {events} distinct events sent at once, bare remote on this machine"
    );
    println!(
        "| run | p50 | p99 | max | burst wall | 200 OK | redelivered | commits | lost | duplicates | pushes | lost races | human commits kept |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for human in [
        Human::None,
        Human::Paced(Duration::from_millis(100)),
        Human::BackToBack,
    ] {
        let with_human = human != Human::None;
        let f = burst(events, human);
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} | {} | {} | {} | {} | {} |",
            match human {
                Human::None => "bridge alone",
                Human::Paced(_) => "a person pushing every 100 ms",
                Human::BackToBack => "a script pushing back to back",
            },
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.max.as_secs_f64() * 1e3,
            f.wall.as_secs_f64() * 1e3,
            f.ok,
            f.redelivered,
            f.commits,
            f.lost,
            f.duplicates,
            f.pushes,
            f.retries,
            if with_human {
                format!("{}/{}", f.humans_kept, f.humans)
            } else {
                "-".into()
            },
        );
        failed |= f.ok != events
            || f.commits != events
            || f.lost != 0
            || f.duplicates != 0
            || f.humans_kept != f.humans;
    }
    assert!(
        !failed,
        "events were lost, duplicated or refused, or a human commit was lost"
    );
}
