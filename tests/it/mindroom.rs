//! MindRoom's whole loop on real parts: a Stripe subscription made in localstripe → its signed
//! webhook → `berth bridge` commits a tenant file to a bare remote → `berth daemon` follows
//! that remote and applies it → the Dokku app, Postgres, Redis, links, domain and TLS exist
//! on the simulated Dokku hosts (real sshd) → an upgrade changes the tier and resources → a
//! cancellation scales the app to zero and keeps the databases.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bridge::LocalStripe;
use crate::bridge::harness::{Bridge, Remote, SECRET, now, sub_event};
use crate::sshd::DokkuHost;
use crate::support::{berth_bin, crate_root};

/// A running `berth daemon`; killed on drop.
struct Daemon {
    child: Child,
    _state: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `f` holds; the time it took.
fn wait_until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < bound, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn a_stripe_subscription_becomes_a_running_dokku_tenant_through_bridge_and_daemon() {
    let Some(stripe) = LocalStripe::start() else {
        return;
    };
    let (Some(one), Some(two)) = (DokkuHost::start(), DokkuHost::start()) else {
        return;
    };
    // The dokku-fleet example's environment and template, the hosts pointed at the simulator.
    let example = crate_root().join("examples/dokku-fleet");
    let mut env = std::fs::read_to_string(example.join("environments/production.yaml")).unwrap();
    for (name, host) in [("dokku-1", &one), ("dokku-2", &two)] {
        let start = env.find(&format!("  {name}:\n    dokku:\n")).unwrap();
        let end = start + env[start..].find("    capacity:").unwrap();
        env = format!("{}{}{}", &env[..start], host.env_host(name), &env[end..]);
    }
    let remote = Remote::with_env(&env, &[]);
    remote.human_commit(
        "templates/tenant.yaml",
        &std::fs::read_to_string(example.join("templates/tenant.yaml")).unwrap(),
        "the example's template",
    );
    let bridge = Bridge::start_with(
        &remote.bare().to_string_lossy(),
        &[
            "--refetch",
            "--stripe-api-base",
            &format!("http://127.0.0.1:{}", stripe.port),
        ],
        &[("BERTH_SECRET_STRIPE_API_KEY", "sk_test_berth")],
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon {
        child: Command::new(berth_bin())
            .args(["daemon", "--remote"])
            .arg(remote.bare())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--listen", "127.0.0.1:0", "--poll", "1", "--attempts", "2"])
            .env("BERTH_SECRET_OPENAI", "sk-mindroom-test")
            .env("BERTH_SECRET_SENTRY_DSN", "https://t@sentry.example/1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("berth daemon starts"),
        _state: state,
    };

    let url = format!("http://127.0.0.1:{}/stripe/webhook", bridge.port);
    stripe.call(
        "POST",
        "/_config/webhooks/berth",
        &[("url", &url), ("secret", SECRET)],
    );
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
    let started = Instant::now();
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
    let host_of = || {
        [one.state(), two.state()]
            .into_iter()
            .find(|s| s["apps"]["initech-web"].is_object())
    };
    let synced = |s: &serde_json::Value| {
        let app = &s["apps"]["initech-web"];
        app["deployed"] == true
            && app["letsencrypt"] == true
            && s["services"]["postgres:initech-db"]["links"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a == "initech-web"))
            && s["services"]["redis:initech-cache"]["links"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a == "initech-web"))
    };
    wait_until(
        "the new tenant on a Dokku host",
        Duration::from_secs(90),
        || host_of().is_some_and(|s| synced(&s)),
    );
    let created = started.elapsed();
    let s = host_of().unwrap();
    let app = &s["apps"]["initech-web"];
    assert!(
        app["vhosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "initech.mindroom.example"),
        "{app}"
    );
    assert_eq!(app["env"]["OPENAI_API_KEY"], "sk-mindroom-test");
    assert_eq!(app["scale"]["web"], 1, "{app}");

    // An upgrade (localstripe sends no `updated` event for an API change, so a stale one is
    // sent; the bridge re-fetches and writes what the API says now): tier pro.
    let item = sub["items"]["data"][0]["id"].as_str().unwrap().to_string();
    stripe.call(
        "POST",
        &format!("/v1/subscriptions/{sub_id}"),
        &[("items[0][id]", &item), ("items[0][plan]", "price_1Pro")],
    );
    let mut stale: serde_json::Value = serde_json::from_str(&sub_event(
        "evt_mindroom_upgrade",
        "customer.subscription.updated",
        now(),
        Some("initech"),
        "active",
        "price_1Starter",
    ))
    .unwrap();
    stale["data"]["object"]["id"] = sub_id.clone().into();
    stale["data"]["object"]["customer"] = customer.clone().into();
    let started = Instant::now();
    let r = bridge.send(&stale.to_string());
    assert_eq!(r.0, 200, "{r:?}\n{}", bridge.log());
    wait_until("the pro tier on the host", Duration::from_secs(60), || {
        host_of().is_some_and(|s| {
            let app = &s["apps"]["initech-web"];
            app["scale"]["web"] == 2
                && app["scale"]["worker"] == 1
                && app["limits"]["_default_.limit.memory"] == "2048m"
        })
    });
    let upgraded = started.elapsed();

    // A cancellation: suspended (scaled to zero), databases kept.
    let started = Instant::now();
    stripe.call("DELETE", &format!("/v1/subscriptions/{sub_id}"), &[]);
    wait_until(
        "the cancellation on the host",
        Duration::from_secs(60),
        || {
            host_of().is_some_and(|s| {
                s["apps"]["initech-web"]["scale"]
                    .as_object()
                    .is_some_and(|m| m.values().all(|n| n == 0))
            })
        },
    );
    let cancelled = started.elapsed();
    let s = host_of().unwrap();
    assert!(s["services"]["postgres:initech-db"].is_object());
    assert!(s["services"]["redis:initech-cache"].is_object());
    eprintln!(
        "mindroom loop: event → synced {:.1} s (new tenant), {:.1} s (upgrade), {:.1} s (cancellation)",
        created.as_secs_f64(),
        upgraded.as_secs_f64(),
        cancelled.as_secs_f64()
    );
    drop(daemon);
}
