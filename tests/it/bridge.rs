//! The Stripe bridge against real parts: the real `berth bridge` binary on loopback, a real
//! bare git remote on disk (and people pushing to it at the same time), signed events exactly
//! as Stripe signs them, the fixture events of every API version, and localstripe (PyPI), a
//! Stripe emulator nobody here wrote, delivering its own signed webhooks and answering the
//! bridge's re-fetches through async-stripe.

pub mod harness;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth::billing::edit::{self, BillingKey, Patch};
use berth::billing::signature;
use proptest::prelude::*;

use crate::support::crate_root;
use harness::{
    Bridge, ENV, OLD_SECRET, Remote, SECRET, git, http, http_declared_only, now,
    push_like_a_person, sub_event,
};

/// An existing, hand-written tenant: comments and layout the bridge must keep.
const ACME: &str = "# yaml-language-server: $schema=../schema/tenant.schema.json
# ACME pays yearly; talk to Dana before changing anything by hand.
name: ACME Corporation
environment: production
tier: starter   # upgraded from the free trial

apps:
  web:
    image: registry.example.app/app:1.4.2
    env: { LOG_LEVEL: info }

billing:
  customer: cus_acme
  subscription: sub_acme
  status: active
";

#[test]
fn healthz_and_a_new_tenant_from_the_template() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    assert_eq!(http(bridge.port, "GET", "/healthz", &[], b"").0, 200);
    let body = sub_event(
        "evt_new1",
        "customer.subscription.created",
        now(),
        Some("globex"),
        "active",
        "price_1Pro",
    );
    let r = bridge.send(&body);
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert!(r.1.contains("\"committed\""), "{r:?}");
    let file = remote.file("globex").expect("created");
    // The template's bytes, with the tier replaced and a billing block added.
    assert!(file.starts_with(
        "# yaml-language-server: $schema=../schema/tenant.schema.json\n# New tenants created by the Stripe bridge start from this file.\nname: \"globex\"\nenvironment: production\ntier: pro\napps:\n"
    ), "{file}");
    assert!(file.contains("billing:\n  customer: cus_acme\n  subscription: sub_globex\n  status: active\n  price: price_1Pro\n  updated: "), "{file}");
    let messages = remote.messages("main");
    assert_eq!(messages.len(), 2);
    assert!(
        messages[0].starts_with("globex: new tenant on tier pro (customer.subscription.created)"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("\nStripe-Event: evt_new1\n"));
    let author = git(&remote.bare(), &["log", "-1", "--format=%an", "main"]);
    assert_eq!(author.trim(), "berth-bridge");
    // The result validates as a whole repo.
    let check = tempfile::tempdir().unwrap();
    git(
        check.path(),
        &[
            "clone",
            "-q",
            "--no-local",
            remote.bare().to_str().unwrap(),
            "c",
        ],
    );
    assert_validates(&check.path().join("c"));
}

fn assert_validates(repo: &std::path::Path) {
    let out = crate::support::berth(&["validate", "--repo", repo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn edits_keep_every_other_byte_and_name_the_change() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    let t = now();
    let r = bridge.send(&sub_event(
        "evt_up1",
        "customer.subscription.updated",
        t,
        Some("acme"),
        "active",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    let file = remote.file("acme").unwrap();
    let expected = ACME.replace("tier: starter   #", "tier: pro   #").replace(
        "  status: active\n",
        &format!("  status: active\n  price: price_1Pro\n  updated: {t}\n"),
    );
    assert_eq!(file, expected);
    let subject = remote.messages("main")[0]
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        subject,
        "acme: tier starter → pro (customer.subscription.updated)"
    );

    // past_due keeps the tenant active and says so in billing.status.
    let r = bridge.send(&sub_event(
        "evt_up2",
        "customer.subscription.updated",
        t + 1,
        Some("acme"),
        "past_due",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200, "{r:?}");
    let file = remote.file("acme").unwrap();
    assert!(
        file.contains("  status: past_due\n") && !file.contains("state:"),
        "{file}"
    );
    // unpaid suspends, canceled cancels; data is never the bridge's business.
    bridge.send(&sub_event(
        "evt_up3",
        "customer.subscription.updated",
        t + 2,
        Some("acme"),
        "unpaid",
        "price_1Pro",
    ));
    assert!(
        remote
            .file("acme")
            .unwrap()
            .contains("\nstate: suspended\n")
    );
    let r = bridge.send(&sub_event(
        "evt_del",
        "customer.subscription.deleted",
        t + 3,
        Some("acme"),
        "canceled",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200);
    let file = remote.file("acme").unwrap();
    assert!(file.contains("\nstate: cancelled\n"), "{file}");
    assert!(
        remote.messages("main")[0].starts_with(
            "acme: state suspended → cancelled (canceled) (customer.subscription.deleted)"
        ),
        "{}",
        remote.messages("main")[0]
    );
    // Everything but the changed lines is byte for byte the hand-written file.
    let kept: Vec<&str> = ACME
        .lines()
        .filter(|l| !l.starts_with("tier:") && !l.contains("status:"))
        .collect();
    for line in kept {
        assert!(file.contains(line), "lost `{line}`:\n{file}");
    }
}

#[test]
fn duplicates_and_out_of_order_events_change_nothing() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    let t = now();
    let newer = sub_event(
        "evt_b",
        "customer.subscription.updated",
        t,
        Some("acme"),
        "active",
        "price_1Pro",
    );
    assert_eq!(bridge.send(&newer).0, 200);
    let commits = remote.commits();
    // The same event again (a Stripe retry): 2xx, no commit.
    let r = bridge.send(&newer);
    assert_eq!(r.0, 200);
    assert!(r.1.contains("duplicate"), "{r:?}");
    // An older snapshot arriving late, and one as old: 2xx, no commit.
    for (id, created) in [("evt_a", t - 60), ("evt_same", t)] {
        let r = bridge.send(&sub_event(
            id,
            "customer.subscription.updated",
            created,
            Some("acme"),
            "unpaid",
            "price_1Starter",
        ));
        assert_eq!(r.0, 200, "{r:?}");
        assert!(r.1.contains("no-change"), "{r:?}");
    }
    // `incomplete` changes nothing; unknown event types are acknowledged.
    let r = bridge.send(&sub_event(
        "evt_inc",
        "customer.subscription.updated",
        t + 5,
        Some("acme"),
        "incomplete",
        "price_1Pro",
    ));
    assert!(r.0 == 200 && r.1.contains("no-change"), "{r:?}");
    let r = bridge.send(r#"{"id":"evt_unknown","object":"event","type":"charge.dispute.created","created":1,"data":{"object":{"object":"dispute"}}}"#);
    assert!(r.0 == 200 && r.1.contains("ignored"), "{r:?}");
    assert_eq!(remote.commits(), commits);
    assert!(remote.file("acme").unwrap().contains("tier: pro"));
    // After a restart the history is still the dedupe index.
    drop(bridge);
    let bridge = Bridge::start(&remote, &[]);
    let r = bridge.send(&newer);
    assert!(r.0 == 200 && r.1.contains("duplicate"), "{r:?}");
    assert_eq!(remote.commits(), commits);
}

#[test]
fn signatures_are_checked_exactly() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(
        &remote,
        &[
            "--webhook-secret",
            "stripe-webhook",
            "--webhook-secret",
            "stripe-webhook-old",
        ],
    );
    let marker = "BODY-MARKER-never-logged";
    let body = sub_event(
        "evt_sig",
        "customer.subscription.updated",
        now(),
        Some("acme"),
        "active",
        "price_1Pro",
    )
    .replace(
        "\"object\":\"event\"",
        &format!("\"object\":\"event\",\"note\":\"{marker}\""),
    );
    let b = body.as_bytes();
    let t = now();
    let good = signature::signature(SECRET.as_bytes(), t, b);
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("unsigned", None, b.to_vec()),
        (
            "forged",
            Some(signature::header(&[b"whsec_attacker"], t, b)),
            b.to_vec(),
        ),
        (
            "tampered",
            Some(format!("t={t},v1={good}")),
            body.replace("price_1Pro", "price_1Starter").into_bytes(),
        ),
        (
            "stale",
            Some(signature::header(&[SECRET.as_bytes()], t - 301, b)),
            b.to_vec(),
        ),
        (
            "future",
            Some(signature::header(&[SECRET.as_bytes()], t + 400, b)),
            b.to_vec(),
        ),
        ("v0 only", Some(format!("t={t},v0={good}")), b.to_vec()),
        (
            "v0 valid, v1 forged",
            Some(format!("t={t},v1={},v0={good}", "ab".repeat(32))),
            b.to_vec(),
        ),
        ("garbage header", Some("nonsense".into()), b.to_vec()),
    ];
    for (name, header, body) in &cases {
        let r = bridge.post(body, header.as_deref());
        assert_eq!(r.0, 400, "{name}: {r:?}");
    }
    assert_eq!(remote.commits(), 1, "nothing written");
    let log = bridge.log();
    assert!(log.contains("refused webhook: signature"), "{log}");
    assert!(!log.contains(marker), "the body reached the log:\n{log}");
    assert!(
        !log.contains(SECRET) && !log.contains(OLD_SECRET),
        "a secret reached the log"
    );
    // Rotation: a header with two v1 (old and new secret) is accepted, and so is one signed
    // with the old secret alone while both are configured.
    let two = signature::header(&[OLD_SECRET.as_bytes(), SECRET.as_bytes()], t, b);
    let r = bridge.post(b, Some(&two));
    assert_eq!(r.0, 200, "{r:?}\n{log}");
    let body2 = sub_event(
        "evt_sig2",
        "customer.subscription.updated",
        now() + 1,
        Some("acme"),
        "active",
        "price_1Starter",
    );
    let old = signature::header(&[OLD_SECRET.as_bytes()], t + 1, body2.as_bytes());
    let r = bridge.post(body2.as_bytes(), Some(&old));
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(remote.commits(), 3);
}

#[test]
fn unmapped_price_is_retried_until_mapped() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    let body = sub_event(
        "evt_enterprise",
        "customer.subscription.updated",
        now(),
        Some("acme"),
        "active",
        "price_1Enterprise",
    );
    let r = bridge.send(&body);
    assert_eq!(r.0, 422, "{r:?}");
    assert!(bridge.log_shows("price_1Enterprise"), "{}", bridge.log());
    assert_eq!(remote.commits(), 1);
    // A person maps the price; Stripe's retry of the same event now applies.
    remote.human_commit(
        "environments/production.yaml",
        &ENV.replace(
            "tiers:\n",
            "tiers:\n  enterprise: { processes: { web: 4 } }\n",
        )
        .replace(
            "price_1Pro: pro }",
            "price_1Pro: pro, price_1Enterprise: enterprise }",
        ),
        "map the enterprise price",
    );
    let r = bridge.send(&body);
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert!(remote.file("acme").unwrap().contains("tier: enterprise"));
}

#[test]
fn missing_and_hostile_tenant_ids_never_become_paths() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    for (i, id) in [
        "../../etc/passwd",
        "ACME",
        "",
        "acme/../../x",
        "a b",
        "-acme",
        "acme\nstate: purge",
        &"a".repeat(64),
    ]
    .iter()
    .enumerate()
    {
        let r = bridge.send(&sub_event(
            &format!("evt_hostile{i}"),
            "customer.subscription.created",
            now(),
            Some(id),
            "active",
            "price_1Pro",
        ));
        assert_eq!(r.0, 422, "{id:?}: {r:?}");
    }
    // No tenant id at all, and no file that records the subscription: refused too.
    let mut anon: serde_json::Value = serde_json::from_str(&sub_event(
        "evt_anon",
        "customer.subscription.created",
        now(),
        None,
        "active",
        "price_1Pro",
    ))
    .unwrap();
    anon["data"]["object"]["customer"] = "cus_unknown".into();
    let r = bridge.send(&anon.to_string());
    assert_eq!(r.0, 422, "{r:?}");
    assert_eq!(remote.commits(), 1);
    let tree = git(&remote.bare(), &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(
        tree.lines().collect::<Vec<_>>(),
        vec![
            "environments/production.yaml",
            "templates/tenant.yaml",
            "tenants/acme.yaml"
        ]
    );
    // Without metadata, an event still finds the tenant whose file records its subscription.
    let mut body: serde_json::Value = serde_json::from_str(&sub_event(
        "evt_by_sub",
        "customer.subscription.updated",
        now(),
        None,
        "active",
        "price_1Pro",
    ))
    .unwrap();
    body["data"]["object"]["id"] = "sub_acme".into();
    let r = bridge.send(&body.to_string());
    assert_eq!(r.0, 200, "{r:?}");
    assert!(remote.file("acme").unwrap().contains("tier: pro"));
}

#[test]
fn malformed_events_and_oversized_bodies() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    assert_eq!(bridge.send("{\"id\": \"evt_x\", truncated").0, 400);
    assert_eq!(bridge.send("[1,2,3]").0, 400);
    let no_data = r#"{"id":"evt_nodata","object":"event","type":"customer.subscription.updated","created":1}"#;
    assert_eq!(bridge.send(no_data).0, 400);
    let wrong_object = r#"{"id":"evt_wrong","object":"event","type":"customer.subscription.updated","created":1,"data":{"object":{"object":"invoice","id":"in_1"}}}"#;
    assert_eq!(bridge.send(wrong_object).0, 400);
    // Over the default 512 KiB: 413, nothing parsed (the signature is even valid).
    let big = format!(
        "{{\"id\":\"evt_big\",\"type\":\"x\",\"created\":1,\"pad\":\"{}\"}}",
        "x".repeat(600 * 1024)
    );
    let h = signature::header(&[SECRET.as_bytes()], now(), big.as_bytes());
    let r = http_declared_only(bridge.port, big.len(), &h);
    assert_eq!(r.0, 413, "{}", &r.1);
    assert_eq!(remote.commits(), 1);
    assert!(bridge.log_shows("body too large"), "{}", bridge.log());
    // The bridge is still healthy afterwards.
    assert_eq!(http(bridge.port, "GET", "/healthz", &[], b"").0, 200);
}

#[test]
fn a_result_that_fails_validation_is_refused() {
    // `other` already owns the domain the template would give `acme`.
    let other = "environment: production\napps:\n  web:\n    image: registry.example.app/app:1\n    domains: [acme.example.app]\n";
    let remote = Remote::new(&[("other", other)]);
    let bridge = Bridge::start(&remote, &[]);
    let r = bridge.send(&sub_event(
        "evt_clash",
        "customer.subscription.created",
        now(),
        Some("acme"),
        "active",
        "price_1Pro",
    ));
    assert_eq!(r.0, 422, "{r:?}");
    assert!(r.1.contains("berth validate"), "{r:?}");
    assert!(remote.file("acme").is_none());
    assert!(bridge.log_shows("validate") || bridge.log().contains("acme.example.app"));
}

/// Every API version Stripe still delivers: the fixture events of each, in order.
#[test]
fn every_api_version() {
    let dir = crate_root().join("tests/fixtures/stripe");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    assert!(versions.len() >= 10, "{versions:?}");
    assert!(versions.first().unwrap().starts_with("2020-08-27"));
    assert!(versions.last().unwrap().starts_with("2026-"));
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let read = |v: &str, name: &str| {
        std::fs::read_to_string(dir.join(v).join(format!("{name}.json"))).unwrap()
    };
    for v in &versions {
        let tenant = format!("t{}", &v[..10].replace('-', ""));
        // The pure reader finds the same things in every shape.
        for name in [
            "customer.subscription.created",
            "invoice.paid",
            "checkout.session.completed",
        ] {
            let e = berth::billing::event::parse(read(v, name).as_bytes()).unwrap();
            assert_eq!(e.tenant_id(), Some(tenant.as_str()), "{v} {name}");
            assert_eq!(
                e.subscription_id(),
                Some(format!("sub_1{tenant}").as_str()),
                "{v} {name}"
            );
        }
        // Events are signed "now" with their own created inside (Stripe signs at delivery).
        let send = |name: &str| bridge.send(&read(v, name));
        let r = send("customer.subscription.created");
        assert_eq!(r.0, 200, "{v}: {r:?}\n{}", bridge.log());
        let file = remote.file(&tenant).unwrap_or_default();
        assert!(file.contains("tier: starter"), "{v}: {file}");
        let r = send("invoice.paid");
        assert!(r.0 == 200 && r.1.contains("no-change"), "{v}: {r:?}");
        let r = send("customer.subscription.updated");
        assert_eq!(r.0, 200, "{v}: {r:?}");
        assert!(remote.file(&tenant).unwrap().contains("tier: pro"), "{v}");
        let r = send("checkout.session.completed");
        assert!(r.0 == 200 && r.1.contains("no-change"), "{v}: {r:?}");
        let r = send("customer.subscription.deleted");
        assert_eq!(r.0, 200, "{v}: {r:?}");
        assert!(
            remote.file(&tenant).unwrap().contains("state: cancelled"),
            "{v}"
        );
    }
}

#[test]
fn a_checkout_alone_creates_the_tenant() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let body = std::fs::read_to_string(
        crate_root().join("tests/fixtures/stripe/2025-03-31.basil/checkout.session.completed.json"),
    )
    .unwrap();
    let r = bridge.send(&body);
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    let file = remote.file("t20250331").unwrap();
    assert!(
        file.contains("tier: starter") && file.contains("subscription: sub_1t20250331"),
        "{file}"
    );
}

#[test]
fn a_push_that_keeps_failing_leaves_nothing_behind() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &["--push-attempts", "2"]);
    // Someone holds the branch's lock (git's own lock file): every push attempt loses.
    let lock = remote.bare().join("refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    let body = sub_event(
        "evt_locked",
        "customer.subscription.updated",
        now(),
        Some("acme"),
        "active",
        "price_1Pro",
    );
    let r = bridge.send(&body);
    assert_eq!(r.0, 503, "{r:?}\n{}", bridge.log());
    assert_eq!(remote.commits(), 1);
    std::fs::remove_file(&lock).unwrap();
    // Stripe delivers it again: it lands exactly once, on the remote tip.
    let r = bridge.send(&body);
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert_eq!(remote.event_trailers().get("evt_locked"), Some(&1));
    assert_eq!(remote.commits(), 2);
}

#[test]
fn review_branch_for_cancellations() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &["--review", "cancel"]);
    let t = now();
    let r = bridge.send(&sub_event(
        "evt_cancel",
        "customer.subscription.deleted",
        t,
        Some("acme"),
        "canceled",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert!(r.1.contains("berth-bridge/acme-cancel-evt_cancel"), "{r:?}");
    assert!(
        !remote.file("acme").unwrap().contains("cancelled"),
        "main is untouched"
    );
    let branch = remote
        .show("berth-bridge/acme-cancel-evt_cancel", "tenants/acme.yaml")
        .unwrap();
    assert!(branch.contains("state: cancelled"));
    // Tier changes still go to main, and the cancellation is not proposed twice.
    let r = bridge.send(&sub_event(
        "evt_tier",
        "customer.subscription.updated",
        t - 10,
        Some("acme"),
        "active",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200);
    assert!(remote.file("acme").unwrap().contains("tier: pro"));
    let r = bridge.send(&sub_event(
        "evt_cancel",
        "customer.subscription.deleted",
        t,
        Some("acme"),
        "canceled",
        "price_1Pro",
    ));
    assert!(r.1.contains("duplicate"), "{r:?}");
}

/// The bridge and people push to the same branch at the same time: no commit is lost or
/// duplicated, every human commit is kept.
#[test]
fn concurrent_human_pushes_lose_nothing() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let events = 120;
    let bare = remote.bare();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_human = stop.clone();
    // A person pushing back to back for as long as the events come in: notes, and edits of a
    // tenant file of their own (which changes the bridge's inputs, so a lost race means a
    // full recompute on their commit).
    let human = std::thread::spawn(move || {
        let work = tempfile::tempdir().unwrap();
        git(
            work.path(),
            &["clone", "-q", "--no-local", bare.to_str().unwrap(), "w"],
        );
        let w = work.path().join("w");
        std::fs::create_dir_all(w.join("notes")).unwrap();
        let mut i = 0;
        while !stop_human.load(std::sync::atomic::Ordering::Relaxed) || i < 5 {
            if i % 2 == 0 {
                std::fs::write(w.join(format!("notes/human-{i}.md")), format!("note {i}\n"))
                    .unwrap();
            } else {
                std::fs::write(
                    w.join("tenants/zeta.yaml"),
                    format!("environment: production\napps:\n  web:\n    image: registry.example.app/app:1\n    env: {{ LOG_LEVEL: level-{i} }}\n"),
                )
                .unwrap();
            }
            git(&w, &["add", "-A"]);
            git(&w, &["commit", "-q", "-m", &format!("human note {i}")]);
            push_like_a_person(&w);
            i += 1;
        }
        i
    });
    let t = now();
    let port = bridge.port;
    let senders: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for i in (k..events).step_by(4) {
                    let body = sub_event(
                        &format!("evt_burst{i}"),
                        "customer.subscription.created",
                        t,
                        Some(&format!("tenant-{i}")),
                        "active",
                        "price_1Starter",
                    );
                    let h = signature::header(&[SECRET.as_bytes()], now(), body.as_bytes());
                    let headers = [("Stripe-Signature", h)];
                    codes.push(http(port, "POST", "/stripe/webhook", &headers, body.as_bytes()).0);
                }
                codes
            })
        })
        .collect();
    let codes: Vec<u16> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let humans = human.join().unwrap();
    assert!(
        codes.iter().all(|c| *c == 200),
        "{codes:?}\n{}",
        bridge.log()
    );
    let trailers = remote.event_trailers();
    assert_eq!(trailers.len(), events, "every event committed");
    assert!(
        trailers.values().all(|n| *n == 1),
        "none twice: {trailers:?}"
    );
    let subjects = git(&remote.bare(), &["log", "--format=%s", "main"]);
    for i in 0..humans {
        assert_eq!(
            subjects
                .lines()
                .filter(|s| *s == format!("human note {i}"))
                .count(),
            1,
            "human commit {i} kept once"
        );
    }
    for i in 0..events {
        assert!(remote.file(&format!("tenant-{i}")).is_some());
    }
    let last_edit = (0..humans).rev().find(|i| i % 2 == 1).unwrap();
    assert!(
        remote
            .file("zeta")
            .unwrap()
            .contains(&format!("level-{last_edit}")),
        "the person's last edit is what the branch says"
    );
    eprintln!(
        "{} lost push races recovered",
        bridge.log().matches("push failed").count()
    );
}

/// A person pushes at the worst moment — after the bridge built its commit, before it pushed —
/// and edits the same tenant file: the bridge's push loses, it fetches, recomputes its edit on
/// the person's version and pushes again. Both changes are on the branch.
#[test]
fn a_lost_race_is_recomputed_on_the_new_tip() {
    use berth::billing::git::{Auth, GitSettings, Job, Outcome, PushHook, prepare};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let remote = Arc::new(Remote::new(&[("acme", ACME)]));
    let calls = Arc::new(AtomicUsize::new(0));
    let hook = {
        let remote = remote.clone();
        let calls = calls.clone();
        move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                remote.human_commit(
                    "tenants/acme.yaml",
                    &ACME.replace("LOG_LEVEL: info", "LOG_LEVEL: debug"),
                    "acme: debug logging",
                );
            }
        }
    };
    let state = tempfile::tempdir().unwrap();
    let settings = GitSettings {
        remote: remote.bare().to_string_lossy().into_owned(),
        branch: "main".into(),
        state_dir: state.path().to_path_buf(),
        environment: None,
        review: Default::default(),
        review_prefix: "berth-bridge/".into(),
        push_options: Vec::new(),
        attempts: 4,
        backoff: Duration::from_millis(1),
        max_batch: 10,
        author: ("berth-bridge".into(), "berth-bridge@berth.invalid".into()),
        auth: Auth::default(),
        before_push: PushHook(Some(Arc::new(hook))),
    };
    let (writer, thread) = prepare(settings).unwrap().spawn().unwrap();
    let body = sub_event(
        "evt_race",
        "customer.subscription.updated",
        now(),
        Some("acme"),
        "active",
        "price_1Pro",
    );
    let event = berth::billing::event::parse(body.as_bytes()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        assert!(
            writer
                .send(Job {
                    event,
                    refetched: None,
                    reply: tx,
                })
                .await
        );
        rx.await.unwrap()
    });
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one lost race, one win");
    let file = remote.file("acme").unwrap();
    assert!(
        file.contains("LOG_LEVEL: debug"),
        "the person's edit: {file}"
    );
    assert!(file.contains("tier: pro"), "the bridge's edit: {file}");
    let subjects = git(&remote.bare(), &["log", "--format=%s", "main"]);
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        vec![
            "acme: tier starter → pro (customer.subscription.updated)",
            "acme: debug logging",
            "seed"
        ]
    );
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn ctrl_c_stops_the_bridge() {
    let remote = Remote::new(&[("acme", ACME)]);
    let bridge = Bridge::start(&remote, &[]);
    let status = bridge.interrupt();
    assert!(status.success(), "{status:?}");
}

// === localstripe ===

/// A localstripe (PyPI) server on a loopback port below the ephemeral range, started and
/// stopped by this test. Its store is kept in memory (it would write /tmp/localstripe.pickle).
pub struct LocalStripe {
    child: Child,
    pub port: u16,
}

const LOCALSTRIPE: &str = "
import sys
from aiohttp import web
import localstripe.server as server
server.store.dump_to_disk = lambda: None
web.run_app(server.app, host='127.0.0.1', port=int(sys.argv[1]), access_log=None, print=None)
";

impl LocalStripe {
    pub fn start() -> Option<LocalStripe> {
        let available = Command::new("python3")
            .args(["-c", "import localstripe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(
                std::env::var_os("CI").is_none(),
                "localstripe is missing in CI: scripts/test.sh must install it"
            );
            eprintln!(
                "skipping: localstripe is not installed (run scripts/test.sh, or `pip install localstripe`)"
            );
            return None;
        }
        for _ in 0..20 {
            let port = 20000 + (std::process::id() as u16 % 1000) * 10 + rand_port_offset();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut child = Command::new("python3")
                .args(["-c", LOCALSTRIPE, &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 runs");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("localstripe exited: {status:?}");
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(LocalStripe { child, port });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("localstripe did not start");
    }

    /// A form-encoded API call; returns the JSON.
    pub fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let headers = [
            ("Authorization", "Bearer sk_test_berth".to_string()),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        let (status, text) = http(self.port, method, path, &headers, body.as_bytes());
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

fn rand_port_offset() -> u16 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 10) as u16
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn localstripe_webhooks_and_refetch() {
    let Some(stripe) = LocalStripe::start() else {
        return;
    };
    let remote = Remote::new(&[]);
    let base = format!("http://127.0.0.1:{}", stripe.port);
    let bridge = Bridge::start_with(
        &remote.bare().to_string_lossy(),
        &["--refetch", "--stripe-api-base", &base],
        &[("BERTH_SECRET_STRIPE_API_KEY", "sk_test_berth")],
    );
    let url = format!("http://127.0.0.1:{}/stripe/webhook", bridge.port);
    stripe.call(
        "POST",
        "/_config/webhooks/berth",
        &[("url", &url), ("secret", SECRET)],
    );
    // Plans whose ids are the environment's prices (localstripe has plans, not prices; the
    // bridge reads `items.data[].plan.id` when there is no `price`). Free, so the first
    // invoice is paid at once and the subscription is active.
    for (id, name) in [("price_1Starter", "Starter"), ("price_1Pro", "Pro")] {
        stripe.call(
            "POST",
            "/v1/plans",
            &[
                ("id", id),
                ("amount", "0"),
                ("currency", "usd"),
                ("interval", "month"),
                ("product[name]", name),
            ],
        );
    }
    let customer = stripe.call("POST", "/v1/customers", &[("email", "ops@initech.test")]);
    let customer = customer["id"].as_str().unwrap().to_string();
    let sub = stripe.call(
        "POST",
        "/v1/subscriptions",
        &[
            ("customer", &customer),
            ("items[0][plan]", "price_1Starter"),
            ("metadata[tenant_id]", "initech"),
        ],
    );
    let sub_id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(sub["status"], "active", "{sub}");
    // localstripe delivers `customer.subscription.created`, signed, about a second later.
    wait_for("the tenant file", || remote.file("initech").is_some());
    let file = remote.file("initech").unwrap();
    assert!(file.contains("tier: starter"), "{file}");
    assert!(file.contains(&format!("subscription: {sub_id}")), "{file}");
    assert!(file.contains(&format!("customer: {customer}")), "{file}");
    assert!(
        remote.messages("main")[0].contains("re-fetched from the Stripe API"),
        "{}",
        remote.messages("main")[0]
    );

    // An upgrade made through the API (localstripe sends no `updated` event for it), then a
    // stale `customer.subscription.updated` that still says starter: the bridge re-fetches
    // through async-stripe and writes what the API says now.
    let item = sub["items"]["data"][0]["id"].as_str().unwrap().to_string();
    stripe.call(
        "POST",
        &format!("/v1/subscriptions/{sub_id}"),
        &[("items[0][id]", &item), ("items[0][plan]", "price_1Pro")],
    );
    let mut stale: serde_json::Value = serde_json::from_str(&sub_event(
        "evt_stale_snapshot",
        "customer.subscription.updated",
        now(),
        Some("initech"),
        "active",
        "price_1Starter",
    ))
    .unwrap();
    stale["data"]["object"]["id"] = sub_id.clone().into();
    stale["data"]["object"]["customer"] = customer.clone().into();
    let r = bridge.send(&stale.to_string());
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert!(remote.file("initech").unwrap().contains("tier: pro"));

    // Cancelling through the API: localstripe delivers `customer.subscription.deleted`.
    stripe.call("DELETE", &format!("/v1/subscriptions/{sub_id}"), &[]);
    wait_for("the cancellation", || {
        remote
            .file("initech")
            .is_some_and(|f| f.contains("state: cancelled"))
    });
    // localstripe's other deliveries (plan.created, customer.created, invoice.*) were all
    // acknowledged: nothing in its log of the bridge is a failure.
    let log = bridge.log();
    assert!(!log.contains("refused webhook"), "{log}");
    assert_eq!(remote.event_trailers().values().max(), Some(&1));
}

// === the lossless edit, as a property ===

/// How a scalar is written in a generated file.
#[derive(Debug, Clone, Copy)]
enum Quote {
    Plain,
    Single,
    Double,
}

fn quote(v: &str, q: Quote) -> String {
    match q {
        Quote::Plain => v.to_string(),
        Quote::Single => format!("'{v}'"),
        Quote::Double => format!("\"{v}\""),
    }
}

/// Comment and blank lines, indented or not.
fn filler(indent: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            Just(String::new()),
            "[ ]{0,3}".prop_map(|s| s),
            "[a-zA-Z0-9 :,.'\"#{}-]{0,30}"
                .prop_map(move |s| format!("{}# {s}", " ".repeat(indent))),
        ],
        0..3,
    )
}

fn trailing() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ ]{1,3}".prop_map(|s| s),
        "[a-z0-9 :#'\"]{0,12}".prop_map(|s| format!("   # {s}")),
    ]
}

fn style() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

#[derive(Debug, Clone)]
struct Entry {
    before: Vec<String>,
    quote: Quote,
    comment: String,
}

fn entry(indent: usize) -> impl Strategy<Value = Entry> {
    (filler(indent), style(), trailing()).prop_map(|(before, quote, comment)| Entry {
        before,
        quote,
        comment,
    })
}

/// A billing block: lines before `billing:`, then `customer` (optional), `status`, `updated`
/// (optional).
type Billing = (Vec<String>, Option<Entry>, Entry, Option<Entry>);

#[derive(Debug, Clone)]
struct Layout {
    head: Vec<String>,
    env: Entry,
    tier: Option<Entry>,
    indent: usize,
    apps: bool,
    billing: Option<Billing>,
    tail: Vec<String>,
}

fn layout() -> impl Strategy<Value = Layout> {
    (2usize..=4).prop_flat_map(|indent| {
        (
            filler(0),
            entry(0),
            prop::option::of(entry(0)),
            any::<bool>(),
            prop::option::of((
                filler(0),
                prop::option::of(entry(indent)),
                entry(indent),
                prop::option::of(entry(indent)),
            )),
            filler(0),
        )
            .prop_map(move |(head, env, tier, apps, billing, tail)| Layout {
                head,
                env,
                tier,
                indent,
                apps,
                billing,
                tail,
            })
    })
}

/// Render a layout with the given values; keys whose entry is `None` and that `inserted`
/// lists are rendered where the bridge inserts them.
fn render(l: &Layout, tier: &str, status: &str, updated: Option<&str>, fresh: bool) -> String {
    let mut out = String::new();
    let lines = |out: &mut String, ls: &[String]| {
        for s in ls {
            out.push_str(s);
            out.push('\n');
        }
    };
    lines(&mut out, &l.head);
    lines(&mut out, &l.env.before);
    out.push_str(&format!(
        "environment: {}{}\n",
        quote("production", l.env.quote),
        l.env.comment
    ));
    match &l.tier {
        Some(e) => {
            lines(&mut out, &e.before);
            out.push_str(&format!("tier: {}{}\n", quote(tier, e.quote), e.comment));
        }
        None if fresh => out.push_str(&format!("tier: {tier}\n")),
        None => {}
    }
    let pad = " ".repeat(l.indent);
    if l.apps {
        out.push_str(&format!("apps:\n{pad}web:\n{pad}{pad}image: app:1\n"));
    }
    match &l.billing {
        Some((before, customer, st, up)) => {
            lines(&mut out, before);
            out.push_str("billing:\n");
            if let Some(c) = customer {
                lines(&mut out, &c.before);
                out.push_str(&format!(
                    "{pad}customer: {}{}\n",
                    quote("cus_1", c.quote),
                    c.comment
                ));
            }
            lines(&mut out, &st.before);
            out.push_str(&format!(
                "{pad}status: {}{}\n",
                quote(status, st.quote),
                st.comment
            ));
            match (up, updated) {
                (Some(u), Some(v)) => {
                    lines(&mut out, &u.before);
                    out.push_str(&format!("{pad}updated: {v}{}\n", u.comment));
                }
                (None, Some(v)) if fresh => out.push_str(&format!("{pad}updated: {v}\n")),
                _ => {}
            }
        }
        None if fresh => {
            // Appended after the last top-level entry, with the file's indentation step.
            let step = if l.apps { l.indent } else { 2 };
            out.push_str(&format!("billing:\n{}status: {status}\n", " ".repeat(step)));
            if let Some(v) = updated {
                out.push_str(&format!("{}updated: {v}\n", " ".repeat(step)));
            }
        }
        None => {}
    }
    lines(&mut out, &l.tail);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever comments, blank lines, quoting and indentation surround the keys the bridge
    /// changes, the result is byte for byte the same file with only those values changed (or
    /// the missing keys inserted where documented).
    #[test]
    fn lossless_edit_keeps_every_other_byte(
        l in layout(),
        tier in "(starter|pro|enterprise|team-2)",
        status in "(active|past_due|unpaid|canceled)",
        updated in 1_000_000_000u64..2_000_000_000u64,
    ) {
        let updated = updated.to_string();
        let old_updated = l.billing.as_ref().and_then(|b| b.3.as_ref()).map(|_| "999");
        let before = render(&l, "starter", "active", old_updated, false);
        let patch = Patch {
            tier: Some(tier.clone()),
            state: None,
            billing: [(BillingKey::Status, status.clone()), (BillingKey::Updated, updated.clone())]
                .into_iter()
                .collect(),
        };
        let after = edit::apply(&before, &patch).unwrap();
        let expected = render(&l, &tier, &status, Some(&updated), true);
        prop_assert_eq!(after, expected, "input:\n{}", before);
    }
}

/// The Dokku example's template, filled in for a new tenant, validates with the example repo.
#[test]
fn the_example_template_makes_a_valid_tenant() {
    let example = crate_root().join("examples/dokku-fleet");
    let repo = crate::support::Repo::new();
    for dir in ["environments", "tenants"] {
        for entry in std::fs::read_dir(example.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            repo.write(
                &format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()),
                &text,
            );
        }
    }
    let template = std::fs::read_to_string(example.join("templates/tenant.yaml")).unwrap();
    repo.write("tenants/newco.yaml", &template.replace("{tenant}", "newco"));
    assert_validates(repo.path());
}

/// A push over ssh (libgit2 + libssh2, feature `bridge-remotes`) to a real OpenSSH server on
/// loopback, with the host key pinned; a different pinned key is refused before anything is
/// read.
#[test]
fn pushes_over_ssh_with_a_pinned_host_key() {
    let Some(sshd) = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "sshd is missing in CI: scripts/test.sh must install openssh-server"
        );
        eprintln!("skipping: sshd is not installed (run scripts/test.sh)");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("berth-bridge-ssh-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    for key in ["host_key", "client_key"] {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(key))
            .stdin(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
             StrictModes no\nUsePAM no\nLogLevel ERROR\n",
            d = d.display()
        ),
    )
    .unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    struct Server(Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Server(
        Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sshd did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let host_key: String = std::fs::read_to_string(d.join("host_key.pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let remote = Remote::new(&[("acme", ACME)]);
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", remote.bare().display());
    let key = d.join("client_key");
    let key = key.to_str().unwrap();

    // A pinned key that is not the server's: refused at the first fetch.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "bridge",
            "--remote",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--ssh-key",
            key,
        ])
        .args(["--ssh-host-key", other])
        .arg("--state-dir")
        .arg(state.path())
        .env("BERTH_SECRET_STRIPE_WEBHOOK", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ssh-host-key"), "{stderr}");

    let bridge = Bridge::start_with(&url, &["--ssh-key", key, "--ssh-host-key", &host_key], &[]);
    let r = bridge.send(&sub_event(
        "evt_ssh",
        "customer.subscription.updated",
        now(),
        Some("acme"),
        "active",
        "price_1Pro",
    ));
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    assert!(remote.file("acme").unwrap().contains("tier: pro"));
}
