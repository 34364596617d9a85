//! The Dokku driver over real SSH against the simulator (tests/it/sshd.rs).

use std::collections::{BTreeMap, BTreeSet};

use berth::driver::dokku::DokkuDriver;
use berth::driver::secrets::SecretProvider;
use berth::driver::{AnyDriver, Drivers, observe_all};
use berth::execute::{ExecOptions, Report, Silent, execute};
use berth::model::desired::{self, Desired};
use berth::model::live::HostRef;
use berth::model::{Fleet, HostTarget};
use berth::plan::{Cause, Plan, PlanOptions, plan};

use crate::sshd::DokkuHost;
use crate::support::Repo;

const SECRET: &str = "sk-live-Dokku-TEST-5e3b";

fn env_file(host: &DokkuHost) -> String {
    format!(
        "version: 1\ndomain: example.app\nhosts:\n{}tiers:\n  starter: {{ processes: {{ web: 1 }}, memory: 512M, cpus: 0.5 }}\n  pro: {{ processes: {{ web: 2, worker: 1 }}, memory: 1G, cpus: 1 }}\npolicy: {{ max-destroys: 10 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
        host.env_host("dokku-1")
    )
}

const ACME: &str = "\
environment: prod
tier: pro
apps:
  web:
    image: registry.example.app/app:1.4.2
    domains: [acme.example.app, www.acme.example]
    tls: true
    env:
      LOG_LEVEL: info
      SECRET_KEY: { generate: 32 }
      OPENAI_KEY: { secret: openai }
    uses: [db, cache]
    storage: [{ volume: uploads, path: /app/uploads }]
services:
  db: { kind: postgres }
  cache: { kind: redis }
";

const BOLT: &str = "\
environment: prod
tier: starter
apps:
  web:
    image: registry.example.app/app:1.4.2
    uses: [db]
services:
  db: { kind: postgres, image: postgres:16 }
";

struct Rig {
    host: DokkuHost,
    repo: Repo,
}

impl Rig {
    fn start() -> Option<Rig> {
        let host = DokkuHost::start()?;
        let repo = Repo::new();
        repo.write("environments/prod.yaml", &env_file(&host));
        Some(Rig { host, repo })
    }

    fn tenant(&self, id: &str, text: &str) {
        self.repo.write(&format!("tenants/{id}.yaml"), text);
    }

    fn fleet(&self) -> Fleet {
        let sources = berth::repo::load_dir(self.repo.path()).unwrap();
        let (fleet, diags) = berth::validate::validate(&sources);
        fleet.unwrap_or_else(|| panic!("{diags:?}"))
    }

    async fn drivers(&self) -> Drivers {
        let fleet = self.fleet();
        let HostTarget::Dokku(target) = &fleet.environments["prod"].hosts["dokku-1"].target else {
            panic!("dokku host")
        };
        let secrets =
            SecretProvider::Map(BTreeMap::from([("openai".to_string(), SECRET.to_string())]));
        let host = HostRef::new("prod", "dokku-1");
        let driver = DokkuDriver::connect(&host, target, secrets)
            .await
            .expect("connect");
        Drivers {
            hosts: BTreeMap::from([(host, AnyDriver::Dokku(driver))]),
        }
    }

    fn baseline(&self) -> Desired {
        let fleet = self.fleet();
        desired::compile(
            &fleet,
            &desired::place(&fleet, &berth::model::live::Live::default()),
        )
    }
}

async fn plan_now(fleet: &Fleet, drivers: &Drivers, baseline: Option<&Desired>) -> Plan {
    plan_with(fleet, drivers, baseline, false).await
}

async fn plan_with(
    fleet: &Fleet,
    drivers: &Drivers,
    baseline: Option<&Desired>,
    allow_upgrades: bool,
) -> Plan {
    let live = observe_all(drivers)
        .await
        .map_err(|e| format!("{}: {}", e.host, e.source.chain()))
        .unwrap();
    plan(
        fleet,
        &live,
        &PlanOptions {
            allow_destroys: true,
            allow_empty: false,
            allow_upgrades,
            baseline,
            scope: None,
            now: None,
            purge_now: &[],
        },
    )
}

async fn apply(plan: &Plan, drivers: &Drivers) -> Report {
    let options = ExecOptions {
        attempts: 1,
        ..ExecOptions::default()
    };
    execute(
        plan,
        drivers,
        &options,
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await
}

/// Apply until converged, asserting the second plan is empty.
async fn converge(rig: &Rig, drivers: &Drivers) -> Plan {
    let fleet = rig.fleet();
    let first = plan_now(&fleet, drivers, None).await;
    assert!(first.refusals.is_empty(), "{:?}", first.refusals);
    let report = apply(&first, drivers).await;
    assert!(report.success(), "{:?}", report.outcomes);
    let again = plan_now(&fleet, drivers, None).await;
    assert!(
        again.steps.is_empty(),
        "plan after apply:\n{}",
        berth::output::plan::render_text(&again, false)
    );
    first
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.change.kind_name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_applies_from_empty_then_plans_empty() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    let first = converge(&rig, &drivers).await;
    let kinds: BTreeSet<&str> = kinds(&first).into_iter().collect();
    for k in [
        "create-app",
        "set-config",
        "set-domains",
        "create-service",
        "link-service",
        "mount-storage",
        "set-limits",
        "deploy-image",
        "scale",
        "enable-tls",
    ] {
        assert!(kinds.contains(k), "missing {k} in {kinds:?}");
    }
    let state = rig.host.state();
    let web = &state["apps"]["acme-web"];
    assert_eq!(web["env"]["OPENAI_KEY"], SECRET);
    assert_eq!(web["env"]["SECRET_KEY"].as_str().unwrap().len(), 32);
    assert_eq!(web["env"]["BERTH_TENANT"], "acme");
    assert_eq!(web["scale"]["worker"], 1);
    assert_eq!(web["limits"]["_default_.limit.memory"], "1024m");
    assert_eq!(web["letsencrypt"], true);
    assert_eq!(web["source_image"], "registry.example.app/app:1.4.2");
    assert!(
        state["services"]["postgres:acme-db"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "acme-web")
    );
    assert_eq!(state["services"]["postgres:bolt-db"]["version"], "16");
    // A second apply changes nothing: no mutating command is sent.
    rig.host.clear_log();
    let noop = plan_now(&rig.fleet(), &drivers, None).await;
    assert!(noop.steps.is_empty());
    let mutations: Vec<_> = rig
        .host
        .commands()
        .into_iter()
        .filter(|c| !is_read(c))
        .collect();
    assert!(mutations.is_empty(), "{mutations:?}");
}

pub fn is_read(argv: &[String]) -> bool {
    let word = argv
        .iter()
        .find(|w| !w.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    word == "version"
        || word.ends_with(":report")
        || word.ends_with(":list")
        || word.ends_with(":export")
        || word.ends_with(":links")
        || word.ends_with(":info")
        || (word == "ps:scale" && argv.iter().any(|a| a == "json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_kind_alone_converges() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    // Each edit builds on the previous one, so every plan holds exactly one kind of change.
    let edits: [(&str, &str, &str, &[&str]); 7] = [
        ("image", "app:1.4.2", "app:1.5.0", &["deploy-image"]),
        (
            "env",
            "LOG_LEVEL: info",
            "LOG_LEVEL: debug",
            &["set-config", "restart"],
        ),
        (
            "tier",
            "tier: pro",
            "tier: starter",
            &["set-limits", "scale"],
        ),
        (
            "domains",
            "www.acme.example",
            "shop.acme.example",
            &["set-domains"],
        ),
        ("tls", "tls: true", "tls: false", &["disable-tls"]),
        (
            "unlink",
            "uses: [db, cache]",
            "uses: [db]",
            &["unlink-service"],
        ),
        (
            "suspend",
            "tier: starter",
            "state: suspended\ntier: starter",
            &["scale"],
        ),
    ];
    let mut text = ACME.to_string();
    for (what, from, to, expect) in edits {
        assert!(text.contains(from), "{what}");
        text = text.replace(from, to);
        rig.tenant("acme", &text);
        let plan = converge(&rig, &drivers).await;
        let got = kinds(&plan);
        for k in expect {
            assert!(got.contains(k), "{what}: expected {k} in {got:?}");
        }
        assert!(
            !got.contains(&"deploy-image") || what == "image",
            "{what}: unexpected deploy in {got:?}"
        );
    }
    let state = rig.host.state();
    assert!(
        state["apps"]["acme-web"]["scale"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "suspended"
    );
    assert!(
        state["services"]["postgres:acme-db"].is_object(),
        "data kept"
    );
    // Purge destroys the app and, only now, the data.
    rig.tenant("acme", &text.replace("state: suspended", "state: purge"));
    let plan = converge(&rig, &drivers).await;
    assert!(kinds(&plan).contains(&"destroy-service"));
    let state = rig.host.state();
    assert!(
        state["apps"]
            .as_object()
            .unwrap()
            .keys()
            .all(|a| a == "berth-state")
    );
    assert!(state["services"].as_object().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_drift_is_detected_and_healed() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    for cmd in [
        "config:set acme-web LOG_LEVEL=trace",
        "ps:scale acme-web web=5",
        "domains:add acme-web evil.example",
        "postgres:unlink acme-db acme-web",
        "--force apps:destroy bolt-web",
    ] {
        let out = rig.host.ssh(cmd);
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let baseline = rig.baseline();
    let drift = plan_now(&rig.fleet(), &drivers, Some(&baseline)).await;
    assert!(!drift.steps.is_empty());
    for step in &drift.steps {
        assert_eq!(
            step.cause,
            Cause::Drift,
            "{:?} should be drift",
            step.change
        );
    }
    let text = berth::output::plan::render_text(&drift, false);
    for needle in [
        "LOG_LEVEL",
        "scale app acme-web",
        "domains of app acme-web",
        "link postgres acme-db",
        "+ app bolt-web",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let report = apply(&drift, &drivers).await;
    assert!(report.success(), "{:?}", report.outcomes);
    let again = plan_now(&rig.fleet(), &drivers, None).await;
    assert!(
        again.steps.is_empty(),
        "{}",
        berth::output::plan::render_text(&again, false)
    );
    assert_eq!(
        rig.host.state()["apps"]["acme-web"]["env"]["LOG_LEVEL"],
        "info"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_arrive_byte_exact_and_stay_out_of_argv() {
    let Some(rig) = Rig::start() else { return };
    let values = [
        ("QUOTES", "it's a \"quoted\" 'value'"),
        ("SPACES", "  two  spaces  "),
        ("NEWLINE", "line one\nline two"),
        ("SUBST", "$(touch /tmp/berth-pwned) and `id`"),
        ("SEMI", "a; rm -rf / ; b"),
        ("UNICODE", "Zürich ☃ 東京"),
        ("FLAGLIKE", "-n"),
    ];
    let mut env = String::new();
    for (k, v) in values {
        env.push_str(&format!(
            "      {k}: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    rig.tenant("acme", &format!("environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env:\n{env}"));
    let drivers = rig.drivers().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = std::process::Command::new("ps")
                    .args(["-eo", "args"])
                    .output()
                    .unwrap();
                seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            seen
        })
    };
    converge(&rig, &drivers).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let snapshots = watcher.join().unwrap();
    let state = rig.host.state();
    for (k, v) in values {
        assert_eq!(
            state["apps"]["acme-web"]["env"][k], v,
            "{k} arrived altered"
        );
    }
    assert!(
        !std::path::Path::new("/tmp/berth-pwned").exists(),
        "a value was executed"
    );
    let log = std::fs::read_to_string(rig.host.state_dir().join("commands.log")).unwrap();
    for (k, v) in values.iter().filter(|(_, v)| v.len() > 3) {
        assert!(!log.contains(v), "{k} appears in the remote argv log");
        for ps in &snapshots {
            assert!(!ps.contains(v), "{k} appears in `ps` output");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused() {
    let Some(rig) = Rig::start() else { return };
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap();
    let wrong = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let wrong: Vec<&str> = wrong.split_whitespace().take(2).collect();
    let env = env_file(&rig.host).replace(&rig.host.host_key, &wrong.join(" "));
    rig.repo.write("environments/prod.yaml", &env);
    let fleet = rig.fleet();
    let HostTarget::Dokku(target) = &fleet.environments["prod"].hosts["dokku-1"].target else {
        panic!()
    };
    let err = DokkuDriver::connect(
        &HostRef::new("prod", "dokku-1"),
        target,
        SecretProvider::None,
    )
    .await
    .err()
    .expect("refused");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(
        text.contains("does not match the pinned `host-key`"),
        "{text}"
    );
    assert!(!err.is_transient());
    assert!(
        rig.host.commands().is_empty(),
        "no command ran on a host with the wrong key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_is_a_clear_error_and_a_rerun_converges() {
    let Some(mut rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    let fleet = rig.fleet();
    let drivers = rig.drivers().await;
    let first = plan_now(&fleet, &drivers, None).await;
    // Apply the first few steps, then cut the connection.
    let head = Plan {
        steps: first.steps[..4].to_vec(),
        ..first.clone()
    };
    assert!(apply(&head, &drivers).await.success());
    rig.host.stop();
    let report = apply(&first, &drivers).await;
    let failed: Vec<_> = report
        .outcomes
        .values()
        .filter(|o| matches!(o, berth::execute::Outcome::Failed { .. }))
        .collect();
    assert!(!failed.is_empty());
    let berth::execute::Outcome::Failed { error, .. } = failed[0] else {
        unreachable!()
    };
    assert!(
        error.contains("prod/dokku-1"),
        "the error names the host: {error}"
    );
    rig.host.restart();
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_dokku_is_refused_with_the_version_found() {
    let Some(rig) = Rig::start() else { return };
    let mut state = rig.host.state();
    state["version"] = "0.37.5".into();
    rig.host.write_state(&state);
    let drivers = rig.drivers().await;
    let err = observe_all(&drivers).await.expect_err("refused").source;
    let text = err.chain();
    assert!(
        text.contains("0.37.5") && text.contains("0.38.21"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_costs_fifteen_commands_plus_two_per_app_and_one_per_service() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    rig.host.clear_log();
    let _ = observe_all(&drivers).await.unwrap();
    // 2 apps + berth-state; 3 services.
    let n = rig.host.commands().len();
    assert_eq!(n, 6 + 9 + 2 * 2 + 3, "{:?}", rig.host.commands());
}

/// Issue 17.3 (P1b): a fast observation confirms apps whose spec label holds the wanted
/// hash from the all-app reports alone — 15 commands whatever the tenant count — and still
/// sees what those reports show (a stopped app), reads an app whose spec changed, and does
/// not see a hand `config:set` (the deep scan's job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_scan_confirms_apps_by_their_spec_label_in_fixed_commands() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    for id in ["bolt", "crane", "delta", "ember"] {
        rig.tenant(id, BOLT);
    }
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let fast = |fleet: &Fleet| drivers.set_fast(Some(&desired::expected(fleet)));

    fast(&rig.fleet());
    rig.host.clear_log();
    let live = observe_all(&drivers).await.unwrap();
    let commands = rig.host.commands();
    assert_eq!(commands.len(), 6 + 9, "{commands:?}");
    let host = &live.hosts[&HostRef::new("prod", "dokku-1")].dokku;
    assert!(host.apps["acme-web"].shallow);
    assert_eq!(
        host.services["postgres:acme-db"].links,
        ["acme-web"],
        "links come from the apps' --link options"
    );
    let plan = plan_now(&rig.fleet(), &drivers, None).await;
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);

    // What the all-app reports show is seen: a stopped app.
    assert!(rig.host.ssh("ps:stop bolt-web").status.success());
    let drift = plan_now(&rig.fleet(), &drivers, Some(&rig.baseline())).await;
    assert_eq!(kinds(&drift), ["start-app"], "{:?}", drift.steps);
    assert!(apply(&drift, &drivers).await.success());

    // A hand `config:set` is not (no all-app report has config); a full read sees it.
    assert!(
        rig.host
            .ssh("config:set --no-restart acme-web LOG_LEVEL=debug")
            .status
            .success()
    );
    let unseen = plan_now(&rig.fleet(), &drivers, None).await;
    assert!(unseen.steps.is_empty(), "{:?}", unseen.steps);
    drivers.set_fast(None);
    let seen = plan_now(&rig.fleet(), &drivers, None).await;
    assert_eq!(kinds(&seen), ["set-config", "restart"], "{:?}", seen.steps);
    assert!(apply(&seen, &drivers).await.success());

    // A changed file changes the app's spec hash: that app and its tenant's services are
    // read, and the change is planned and applied as usual.
    rig.tenant("crane", &BOLT.replace("tier: starter", "tier: pro"));
    let fleet = rig.fleet();
    fast(&fleet);
    rig.host.clear_log();
    let changed = plan_now(&fleet, &drivers, None).await;
    let commands = rig.host.commands();
    assert_eq!(commands.len(), 6 + 9 + 2 + 1, "{commands:?}");
    assert!(
        commands.iter().any(|c| c
            .join(" ")
            .contains("config:export --format json crane-web")),
        "{commands:?}"
    );
    assert!(kinds(&changed).contains(&"scale"), "{:?}", changed.steps);
    assert!(apply(&changed, &drivers).await.success());
    let again = plan_now(&fleet, &drivers, None).await;
    assert!(again.steps.is_empty(), "{:?}", again.steps);
}

/// Issue 13.1: a domain added to a TLS app gets a certificate for the new set of names
/// (reference/dokku.md §4, §13), and a certificate that no longer covers the app's names is
/// drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_change_on_a_tls_app_renews_its_certificate() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let names = |rig: &Rig| -> BTreeSet<String> {
        rig.host.state()["apps"]["acme-web"]["cert_hostnames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&rig).contains("www.acme.example"));
    rig.tenant(
        "acme",
        &ACME.replace("www.acme.example]", "www.acme.example, shop.acme.example]"),
    );
    let plan = converge(&rig, &drivers).await;
    let got = kinds(&plan);
    assert!(
        got.contains(&"set-domains") && got.contains(&"enable-tls"),
        "{got:?}"
    );
    assert!(
        names(&rig).contains("shop.acme.example"),
        "{:?}",
        names(&rig)
    );
    // Domains changed by hand: the certificate no longer matches, which is drift.
    let out = rig.host.ssh("domains:set acme-web acme.example.app");
    assert!(out.status.success());
    let baseline = rig.baseline();
    let drift = plan_now(&rig.fleet(), &drivers, Some(&baseline)).await;
    let got = kinds(&drift);
    assert!(
        got.contains(&"set-domains") && got.contains(&"enable-tls"),
        "{got:?}"
    );
    assert!(apply(&drift, &drivers).await.success());
    assert!(names(&rig).contains("www.acme.example"));
}

/// Issue 13.2: `port` becomes the proxy's port map and `restart` the app's restart policy,
/// both read back (`ports:report`, `ps:report`) so hand edits are drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_restart_policy_are_applied_and_read_back() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant(
        "acme",
        &ACME.replace(
            "    tls: true\n",
            "    tls: true\n    port: 8080\n    restart: always\n",
        ),
    );
    let drivers = rig.drivers().await;
    let first = converge(&rig, &drivers).await;
    let got = kinds(&first);
    assert!(
        got.contains(&"set-ports") && got.contains(&"set-restart-policy"),
        "{got:?}"
    );
    let state = rig.host.state();
    let web = &state["apps"]["acme-web"];
    assert_eq!(
        web["ports"],
        serde_json::json!(["http:80:8080", "https:443:8080"])
    );
    assert_eq!(web["ps_props"]["restart-policy"], "always");
    for cmd in [
        "ports:set acme-web http:80:5000",
        "ps:set acme-web restart-policy no",
    ] {
        assert!(rig.host.ssh(cmd).status.success(), "{cmd}");
    }
    let baseline = rig.baseline();
    let drift = plan_now(&rig.fleet(), &drivers, Some(&baseline)).await;
    let got = kinds(&drift);
    for k in ["set-ports", "set-restart-policy", "restart"] {
        assert!(got.contains(&k), "{k} missing in {got:?}");
    }
    assert!(drift.steps.iter().all(|s| s.cause == Cause::Drift));
    assert!(apply(&drift, &drivers).await.success());
    converge(&rig, &drivers).await;
    assert_eq!(
        rig.host.state()["apps"]["acme-web"]["ps_props"]["restart-policy"],
        "always"
    );
}

/// Issue 13.3: an app stopped by hand (`ps:report` running false) is drift and is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_app_is_drift_and_is_started() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    assert!(rig.host.ssh("ps:stop acme-web").status.success());
    assert_eq!(rig.host.state()["apps"]["acme-web"]["running"], false);
    let baseline = rig.baseline();
    let drift = plan_now(&rig.fleet(), &drivers, Some(&baseline)).await;
    assert_eq!(kinds(&drift), ["start-app"], "{:?}", drift.steps);
    assert_eq!(drift.steps[0].cause, Cause::Drift);
    assert!(apply(&drift, &drivers).await.success());
    let state = rig.host.state();
    assert_eq!(state["apps"]["acme-web"]["running"], true);
    assert_eq!(state["apps"]["acme-web"]["restore"], true);
    // A suspended tenant's app runs nothing on purpose: not started.
    rig.tenant(
        "acme",
        &ACME.replace("tier: pro", "tier: pro\nstate: suspended"),
    );
    converge(&rig, &drivers).await;
    assert_eq!(rig.host.state()["apps"]["acme-web"]["running"], false);
}

/// Issue 13.4: a link whose env var was edited by hand (`config:set DATABASE_URL=…`) is
/// drift: the service still lists the app, but the app no longer reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_link_is_drift_and_is_repaired() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("acme", ACME);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let dsn = rig.host.state()["apps"]["acme-web"]["env"]["DATABASE_URL"].clone();
    assert!(dsn.as_str().unwrap().starts_with("postgres://"));
    let out = rig
        .host
        .ssh("config:set --no-restart acme-web DATABASE_URL=postgres://evil@x/db");
    assert!(out.status.success());
    let baseline = rig.baseline();
    let drift = plan_now(&rig.fleet(), &drivers, Some(&baseline)).await;
    let got = kinds(&drift);
    assert!(
        got.contains(&"relink-service") && got.contains(&"restart"),
        "{got:?}"
    );
    assert!(drift.steps.iter().all(|s| s.cause == Cause::Drift));
    let text = berth::output::plan::render_text(&drift, false);
    assert!(!text.contains("evil"), "{text}");
    assert!(apply(&drift, &drivers).await.success());
    let state = rig.host.state();
    assert_eq!(state["apps"]["acme-web"]["env"]["DATABASE_URL"], dsn);
    converge(&rig, &drivers).await;
}

/// Issue 13.5: a service image change is shown in the plan, refused without the override,
/// and with it applied through `<kind>:upgrade`, data kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_image_change_is_an_upgrade_behind_a_flag() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let password = rig.host.state()["services"]["postgres:bolt-db"]["password"].clone();
    rig.tenant("bolt", &BOLT.replace("postgres:16", "postgres:17"));
    let refused = plan_now(&rig.fleet(), &drivers, None).await;
    assert_eq!(kinds(&refused), ["upgrade-service", "restart"]);
    assert_eq!(refused.refusals.len(), 1, "{:?}", refused.refusals);
    let refusal = &refused.refusals[0];
    assert_eq!(refusal.rule, berth::plan::RefusalRule::ServiceUpgrade);
    assert_eq!(
        refusal.override_flag.as_deref(),
        Some("--allow-service-upgrades")
    );
    assert!(refusal.message.contains("postgres:16") && refusal.message.contains("postgres:17"));
    let text = berth::output::plan::render_text(&refused, false);
    assert!(text.contains("image: postgres:16 → postgres:17"), "{text}");
    let allowed = plan_with(&rig.fleet(), &drivers, None, true).await;
    assert!(allowed.refusals.is_empty());
    assert!(apply(&allowed, &drivers).await.success());
    let state = rig.host.state();
    assert_eq!(state["services"]["postgres:bolt-db"]["version"], "17");
    assert_eq!(state["services"]["postgres:bolt-db"]["password"], password);
    assert!(
        plan_now(&rig.fleet(), &drivers, None)
            .await
            .steps
            .is_empty()
    );
}

/// Issue 13.6: a deploy that finds the app's deploy lock held by another build (reference
/// §1.7) is retried, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_waits_out_another_deploys_lock() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    rig.tenant("bolt", &BOLT.replace("app:1.4.2", "app:1.5.0"));
    let plan = plan_now(&rig.fleet(), &drivers, None).await;
    assert!(kinds(&plan).contains(&"deploy-image"));
    // Someone rebuilds the app by hand; the build holds the lock for a while.
    std::fs::write(rig.host.state_dir().join("build_ms"), "1500").unwrap();
    let lock = rig.host.state_dir().join("locks/bolt-web.deploy.lock");
    let by_hand = std::thread::spawn(rig.host.ssh_command("ps:rebuild bolt-web"));
    while !lock.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rig.host.clear_log();
    let options = ExecOptions {
        backoff: std::time::Duration::from_millis(400),
        ..ExecOptions::default()
    };
    let report = execute(
        &plan,
        &drivers,
        &options,
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(by_hand.join().unwrap().status.success());
    assert!(report.success(), "{:?}", report.outcomes);
    let deploys = rig
        .host
        .commands()
        .iter()
        .filter(|c| c.first().is_some_and(|w| w == "git:from-image"))
        .count();
    assert!(
        deploys >= 2,
        "the first deploy met the lock and was retried"
    );
    let _ = std::fs::remove_file(rig.host.state_dir().join("build_ms"));
    assert_eq!(
        rig.host.state()["apps"]["bolt-web"]["source_image"],
        "registry.example.app/app:1.5.0"
    );
}

/// Issue 13.7: config too large for one ssh command (the host's 128 KiB per-argument limit)
/// is split over several `config:set --no-restart` calls, then the app restarts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_config_is_split_over_several_commands_and_restarts_once() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let value = |i: usize| format!("{i}{}", "v".repeat(60 * 1024 - 1));
    let mut env = String::from("    env:\n");
    for i in 0..3 {
        env.push_str(&format!("      BLOB_{i}: \"{}\"\n", value(i)));
    }
    rig.tenant(
        "bolt",
        &BOLT.replace("    uses: [db]\n", &format!("    uses: [db]\n{env}")),
    );
    rig.host.clear_log();
    let plan = converge(&rig, &drivers).await;
    assert_eq!(kinds(&plan), ["set-config", "restart", "record-spec"]);
    let commands = rig.host.commands();
    let count = |word: &str| {
        commands
            .iter()
            .filter(|c| c.iter().any(|w| w == word))
            .count()
    };
    assert!(
        count("config:set") >= 3,
        "one command per value at these sizes"
    );
    assert_eq!(count("ps:restart"), 1);
    let state = rig.host.state();
    for i in 0..3 {
        assert_eq!(
            state["apps"]["bolt-web"]["env"][format!("BLOB_{i}")].as_str(),
            Some(value(i).as_str())
        );
    }
}

/// Issue 13.8: after a failed deploy the retried deploy is an intended change, not drift:
/// berth records the spec it applied only once every step of the app succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_deploy_after_a_failed_one_is_not_drift() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let broken = "registry.example.app/app:1.6.0";
    std::fs::write(rig.host.state_dir().join("fail_images"), broken).unwrap();
    rig.tenant(
        "bolt",
        &BOLT.replace("app:1.4.2", "app:1.6.0").replace(
            "    uses: [db]\n",
            "    uses: [db]\n    env: { LOG_LEVEL: debug }\n",
        ),
    );
    let first = plan_now(&rig.fleet(), &drivers, None).await;
    let report = apply(&first, &drivers).await;
    assert!(!report.success(), "the pull fails");
    assert_eq!(
        rig.host.state()["apps"]["bolt-web"]["env"]["LOG_LEVEL"],
        "debug"
    );
    // No commit was recorded (the apply failed): no baseline, only what the host records.
    let retry = plan_now(&rig.fleet(), &drivers, None).await;
    let deploy = retry
        .steps
        .iter()
        .find(|s| s.change.kind_name() == "deploy-image")
        .expect("the deploy is planned again");
    assert_eq!(deploy.cause, Cause::Intended);
    assert!(!berth::output::plan::render_text(&retry, false).contains("[drift]"));
    std::fs::remove_file(rig.host.state_dir().join("fail_images")).unwrap();
    converge(&rig, &drivers).await;
}

/// Issue 13.9: berth's own apps (the record app, leases) lose the default vhost Dokku gives
/// every new app (reference/dokku.md §2 `apps:create`, §4 `domains:disable`), both when
/// berth creates them and when an older berth left one with its vhost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berths_own_apps_carry_no_default_vhost() {
    let Some(rig) = Rig::start() else { return };
    rig.tenant("bolt", BOLT);
    let drivers = rig.drivers().await;
    converge(&rig, &drivers).await;
    let no_vhost = |app: &str| {
        let state = rig.host.state();
        let a = &state["apps"][app];
        assert!(a.is_object(), "{app} exists");
        a["vhosts"].as_array().unwrap().is_empty() && a["env"]["NO_VHOST"] == "1"
    };
    assert!(
        no_vhost("berth-state"),
        "{}",
        rig.host.state()["apps"]["berth-state"]
    );
    // Tenant apps keep Dokku's default vhost: only berth's own apps lose it.
    assert_eq!(
        rig.host.state()["apps"]["bolt-web"]["vhosts"][0],
        "bolt.example.app"
    );
    let driver = drivers.hosts.values().next().unwrap();
    let record = berth::driver::LeaseRecord {
        holder: "test".into(),
        purpose: "apply".into(),
        started: 1,
        expires: u64::MAX / 2,
        token: "t".into(),
    };
    assert!(matches!(
        driver.lease_claim(&record).await.unwrap(),
        berth::driver::Claim::Taken
    ));
    assert!(no_vhost("berth-lease-prod"));
    driver.lease_clear().await.unwrap();
    // A record app an older berth created, with its vhost: the scan sees it in the
    // all-app `domains:report` and the next record write disables it.
    let mut state = rig.host.state();
    state["apps"]["berth-state"]["vhosts"] = serde_json::json!(["berth-state.dokku.test"]);
    state["apps"]["berth-state"]["env"]["NO_VHOST"] = "0".into();
    rig.host.write_state(&state);
    rig.host.clear_log();
    let _ = observe_all(&drivers).await.unwrap();
    driver.record_applied("0123abcd").await.unwrap();
    assert!(no_vhost("berth-state"));
    let disables = rig
        .host
        .commands()
        .into_iter()
        .filter(|c| c.first().is_some_and(|w| w == "domains:disable"))
        .count();
    assert_eq!(disables, 1);
    // Once disabled, a record write sends no more `domains:disable`.
    rig.host.clear_log();
    let _ = observe_all(&drivers).await.unwrap();
    driver.record_applied("0123abce").await.unwrap();
    assert!(
        !rig.host
            .commands()
            .iter()
            .any(|c| c.first().is_some_and(|w| w == "domains:disable"))
    );
}

/// A host carrying `n` tenants (an app linked to a Postgres each), applied by berth itself,
/// behind an sshd with `MaxSessions max_sessions`.
async fn loaded(max_sessions: u32, n: usize) -> Option<(Rig, Drivers)> {
    let host = DokkuHost::start_with_max_sessions(max_sessions)?;
    let repo = Repo::new();
    repo.write("environments/prod.yaml", &env_file(&host));
    let rig = Rig { host, repo };
    for i in 0..n {
        rig.tenant(
            &format!("t{i:04}"),
            "environment: prod\ntier: starter\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env: { LOG_LEVEL: info }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n",
        );
    }
    let drivers = rig.drivers().await;
    let fleet = rig.fleet();
    let first = plan_now(&fleet, &drivers, None).await;
    let options = ExecOptions {
        per_host: 8,
        attempts: 1,
        ..ExecOptions::default()
    };
    let report = execute(
        &first,
        &drivers,
        &options,
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(report.success(), "seeding: {:?}", report.outcomes);
    Some((rig, drivers))
}

/// Run `runs` no-op plans, each a full scan; every one must succeed and be empty.
async fn noop_plans(
    rig: &Rig,
    drivers: &Drivers,
    runs: usize,
) -> berth::driver::dokku::transport::TransportStats {
    let fleet = rig.fleet();
    for run in 0..runs {
        let live = observe_all(drivers)
            .await
            .unwrap_or_else(|e| panic!("run {run}: {}: {}", e.host, e.source.chain()));
        let p = plan(
            &fleet,
            &live,
            &PlanOptions {
                allow_destroys: false,
                allow_empty: false,
                allow_upgrades: false,
                baseline: None,
                scope: None,
                now: None,
                purge_now: &[],
            },
        );
        assert!(
            p.steps.is_empty(),
            "run {run}:\n{}",
            berth::output::plan::render_text(&p, false)
        );
    }
    let Some(AnyDriver::Dokku(d)) = drivers.hosts.values().next() else {
        unreachable!()
    };
    d.transport_stats()
}

/// Issue 13.11: sshd refuses sessions beyond `MaxSessions` per connection and counts a
/// session until *it* closed the channel, which lags the client. With `MaxSessions 2` every
/// wave is refused at first: refused channels are sent again with backoff and each
/// connection lowers its own limit, so seeding and scans succeed, only slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_and_applies_succeed_against_max_sessions_2() {
    let Some((rig, drivers)) = loaded(2, 30).await else {
        return;
    };
    let stats = noop_plans(&rig, &drivers, 3).await;
    assert!(stats.refusals > 0, "the server refused nothing: {stats:?}");
    assert!(stats.lowest_limit <= 2, "{stats:?}");
    eprintln!("MaxSessions 2, 30 tenants: {stats:?}");
}

/// Issue 13.11: no-op plans of a fleet large enough to keep every channel of every
/// connection busy succeed every time against sshd's default `MaxSessions` (10). The
/// 1,000-tenant, 10-run figure is `benches/dokku.rs` (docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_noop_plans_of_a_large_fleet_always_succeed() {
    let Some((rig, drivers)) = loaded(10, 150).await else {
        return;
    };
    let stats = noop_plans(&rig, &drivers, 5).await;
    eprintln!("MaxSessions 10, 150 tenants, 5 runs: {stats:?}");
}

/// The fleet of `repo` and a driver for environment `env`'s host `dokku-1`.
async fn environment(repo: &Repo, env: &str) -> (Fleet, Drivers) {
    let sources = berth::repo::load_dir(repo.path()).unwrap();
    let (fleet, diags) = berth::validate::validate(&sources);
    let fleet = fleet.unwrap_or_else(|| panic!("{diags:?}"));
    let HostTarget::Dokku(target) = &fleet.environments[env].hosts["dokku-1"].target else {
        panic!("dokku host")
    };
    let host = HostRef::new(env, "dokku-1");
    let driver = DokkuDriver::connect(&host, target, SecretProvider::None)
        .await
        .expect("connect");
    let drivers = Drivers {
        hosts: BTreeMap::from([(host, AnyDriver::Dokku(driver))]),
    };
    (fleet, drivers)
}

fn small_tenant(env: &str) -> String {
    format!(
        "environment: {env}\ntier: starter\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    uses: [db]\nservices:\n  db: {{ kind: postgres }}\n"
    )
}

/// Issue 13.10: two environments (two repos) on one Dokku server. Apps carry their
/// environment as a docker-options label and services in their ownership record, so each
/// environment applies, plans empty, and removing a tenant in one leaves the other's alone;
/// a name the other environment holds is refused naming it; apps and services made before
/// markers are marked by their own environment and left alone by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_share_a_dokku_host() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let prod = Repo::new();
    prod.write("environments/prod.yaml", &env_file(&host));
    prod.write("tenants/acme.yaml", &small_tenant("prod"));
    prod.write("tenants/bolt.yaml", &small_tenant("prod"));
    let staging = Repo::new();
    staging.write("environments/staging.yaml", &env_file(&host));
    staging.write("tenants/cara.yaml", &small_tenant("staging"));
    staging.write("tenants/dune.yaml", &small_tenant("staging"));
    let (prod_fleet, prod_drivers) = environment(&prod, "prod").await;
    let (staging_fleet, staging_drivers) = environment(&staging, "staging").await;
    let (prod_drivers, staging_drivers) = (&prod_drivers, &staging_drivers);
    async fn converge_env(fleet: &Fleet, drivers: &Drivers) -> Plan {
        let first = plan_now(fleet, drivers, None).await;
        assert!(first.refusals.is_empty(), "{:?}", first.refusals);
        let report = apply(&first, drivers).await;
        assert!(report.success(), "{:?}", report.outcomes);
        first
    }
    converge_env(&prod_fleet, prod_drivers).await;
    let staging_first = converge_env(&staging_fleet, staging_drivers).await;
    // Staging's first plan only made staging's tenants: prod's apps were neither foreign
    // name conflicts nor staging's to destroy.
    assert!(
        staging_first
            .steps
            .iter()
            .all(|s| s.tenant == "cara" || s.tenant == "dune"),
        "{}",
        berth::output::plan::render_text(&staging_first, false)
    );
    assert!(
        staging_first.warnings.is_empty(),
        "{:?}",
        staging_first.warnings
    );
    // No steps; `quiet`: no warnings either (prod keeps warning about bolt's database once
    // bolt is gone; staging never warns about prod's objects).
    let empty = |p: &Plan, quiet: bool| {
        assert!(
            p.steps.is_empty() && (!quiet || p.warnings.is_empty()),
            "{}",
            berth::output::plan::render_text(p, false)
        );
    };
    empty(&plan_now(&prod_fleet, prod_drivers, None).await, true);
    empty(&plan_now(&staging_fleet, staging_drivers, None).await, true);
    let state = host.state();
    assert_eq!(
        state["apps"]["cara-web"]["docker_options"]["deploy"][0],
        "--label=io.berth.environment=staging"
    );
    assert_eq!(
        state["apps"]["berth-state"]["env"]["SVC_POSTGRES_ACME_DB"],
        "prod/acme"
    );

    // A scan reads another environment's apps from the all-app reports only.
    host.clear_log();
    let _ = observe_all(staging_drivers).await.unwrap();
    let per_app: Vec<_> = host
        .commands()
        .into_iter()
        .filter(|c| c.iter().any(|w| w == "acme-web" || w == "bolt-web"))
        .collect();
    assert!(per_app.is_empty(), "{per_app:?}");

    // Removing a tenant in prod touches prod's tenant only.
    std::fs::remove_file(prod.path().join("tenants/bolt.yaml")).unwrap();
    let (prod_fleet, _) = environment(&prod, "prod").await;
    let removal = plan_now(&prod_fleet, prod_drivers, None).await;
    assert_eq!(kinds(&removal), ["destroy-app"], "{removal:?}");
    assert!(apply(&removal, prod_drivers).await.success());
    empty(&plan_now(&staging_fleet, staging_drivers, None).await, true);
    let state = host.state();
    for app in ["cara-web", "dune-web", "acme-web"] {
        assert!(state["apps"][app].is_object(), "{app} kept");
    }
    assert!(state["apps"]["bolt-web"].is_null());

    // A tenant id prod already uses: refused, naming the environment that holds the name.
    staging.write("tenants/acme.yaml", &small_tenant("staging"));
    let (staging_with_acme, _) = environment(&staging, "staging").await;
    let refused = plan_now(&staging_with_acme, staging_drivers, None).await;
    assert!(
        refused
            .refusals
            .iter()
            .any(|r| r.message.contains("belongs to environment `prod`")),
        "{:?}",
        refused.refusals
    );
    std::fs::remove_file(staging.path().join("tenants/acme.yaml")).unwrap();

    // Made before markers: prod's acme-web without its label, acme-db's record without
    // the environment. Staging leaves them alone (prod also uses the host); prod marks them.
    let mut state = host.state();
    let deploy: Vec<serde_json::Value> = state["apps"]["acme-web"]["docker_options"]["deploy"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            !o.as_str()
                .unwrap()
                .starts_with("--label=io.berth.environment=")
        })
        .cloned()
        .collect();
    assert!(
        deploy
            .iter()
            .any(|o| o.as_str().unwrap().starts_with("--label=io.berth.spec=")),
        "the spec label stays: {deploy:?}"
    );
    state["apps"]["acme-web"]["docker_options"]["deploy"] = deploy.into();
    state["apps"]["berth-state"]["env"]["SVC_POSTGRES_ACME_DB"] = "acme".into();
    host.write_state(&state);
    let staging_view = plan_now(&staging_fleet, staging_drivers, None).await;
    empty(&staging_view, false);
    assert!(
        staging_view
            .warnings
            .iter()
            .any(|w| w.message.contains("acme-web") && w.message.contains("no environment marker")),
        "{:?}",
        staging_view.warnings
    );
    let prod_view = plan_now(&prod_fleet, prod_drivers, None).await;
    let mut got = kinds(&prod_view);
    got.sort_unstable();
    assert_eq!(got, ["label-app", "mark-service"], "{prod_view:?}");
    assert!(apply(&prod_view, prod_drivers).await.success());
    empty(&plan_now(&prod_fleet, prod_drivers, None).await, false);
    empty(&plan_now(&staging_fleet, staging_drivers, None).await, true);
    let state = host.state();
    assert_eq!(
        state["apps"]["berth-state"]["env"]["SVC_POSTGRES_ACME_DB"],
        "prod/acme"
    );
}

/// The registry password of the tests below: it must never show in a plan, an output, a
/// logged argv or an error.
const REGISTRY_PASSWORD: &str = "reg-PW-never-shown-93af";

/// A repo whose environment logs in to `registry.example.app` (the image's registry), the
/// simulator's registry accepting only [`REGISTRY_PASSWORD`], and one tenant on it.
fn registry_rig() -> Option<Rig> {
    let host = DokkuHost::start()?;
    let repo = Repo::new();
    let env = env_file(&host).replace("names: [openai]", "names: [openai, registry]")
        + "registries:\n  registry.example.app: { username: deploy, password-secret: registry }\n";
    repo.write("environments/prod.yaml", &env);
    std::fs::write(
        host.state_dir().join("registries"),
        format!("registry.example.app {REGISTRY_PASSWORD}\n"),
    )
    .unwrap();
    let rig = Rig { host, repo };
    rig.tenant("bolt", BOLT);
    Some(rig)
}

/// `berth <args> --repo <repo>`, with the registry password in the environment or not.
fn berth_with(rig: &Rig, args: &[&str], password: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(crate::support::berth_bin());
    cmd.args(args)
        .arg("--repo")
        .arg(rig.repo.path())
        .env("NO_COLOR", "1")
        .env_remove("BERTH_SECRET_REGISTRY")
        .stdin(std::process::Stdio::null());
    if password {
        cmd.env("BERTH_SECRET_REGISTRY", REGISTRY_PASSWORD);
    }
    cmd.output().unwrap()
}

fn position(commands: &[Vec<String>], word: &str) -> Option<usize> {
    commands.iter().position(|c| c.iter().any(|w| w == word))
}

#[test]
fn a_registry_image_logs_in_before_its_deploy_with_the_password_on_stdin() {
    let Some(rig) = registry_rig() else { return };
    // The plan, in every format: a login step before the deploy, the password sensitive.
    let json = berth_with(&rig, &["plan", "--format", "json"], true);
    let text_json = crate::support::text(&json);
    assert!(!text_json.contains(REGISTRY_PASSWORD));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect(&text_json);
    let steps = doc["steps"].as_array().unwrap();
    let find = |kind: &str| {
        steps
            .iter()
            .find(|s| s["change"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} step: {text_json}"))
    };
    let login = find("login-registry");
    assert_eq!(login["change"]["app"], "bolt-web");
    assert_eq!(login["change"]["server"], "registry.example.app");
    assert_eq!(login["change"]["username"], "deploy");
    assert_eq!(login["change"]["password_secret"], "registry");
    let deploy = find("deploy-image");
    assert!(
        deploy["after"]
            .as_array()
            .unwrap()
            .contains(&login["id"].clone()),
        "the deploy waits for the login: {text_json}"
    );
    // No health check berth knows of: said on the deploy.
    assert!(
        deploy["notes"][0]
            .as_str()
            .is_some_and(|n| n.starts_with("no health check")),
        "{text_json}"
    );
    let text = berth_with(&rig, &["plan"], true);
    let text = crate::support::text(&text);
    assert!(
        text.contains("note: no health check berth knows of"),
        "{text}"
    );
    assert!(
        text.contains("registry login registry.example.app for app bolt-web")
            && text.contains("password (sensitive), from secret `registry`"),
        "{text}"
    );
    let markdown = berth_with(&rig, &["plan", "--format", "markdown"], true);
    let markdown = crate::support::text(&markdown);
    assert!(
        markdown.contains("registry login registry.example.app"),
        "{markdown}"
    );
    for shown in [&text, &markdown] {
        assert!(!shown.contains(REGISTRY_PASSWORD), "{shown}");
    }

    rig.host.clear_log();
    let out = berth_with(&rig, &["apply", "--auto-approve"], true);
    let said = crate::support::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(REGISTRY_PASSWORD), "{said}");
    let commands = rig.host.commands();
    let login_at = position(&commands, "registry:login").expect("registry:login ran");
    let deploy_at = position(&commands, "git:from-image").expect("git:from-image ran");
    assert!(login_at < deploy_at, "{commands:?}");
    assert_eq!(
        commands[login_at],
        [
            "registry:login",
            "--password-stdin",
            "bolt-web",
            "registry.example.app",
            "deploy"
        ]
    );
    assert!(
        commands
            .iter()
            .flatten()
            .all(|w| !w.contains(REGISTRY_PASSWORD)),
        "the password is in an argv: {commands:?}"
    );
    // It arrived on stdin: the simulator stored it, and the pull it guards succeeded.
    let state = rig.host.state();
    assert_eq!(
        state["apps"]["bolt-web"]["registry_logins"]["registry.example.app"],
        serde_json::json!(["deploy", REGISTRY_PASSWORD])
    );
    assert_eq!(
        state["apps"]["bolt-web"]["source_image"],
        "registry.example.app/app:1.4.2"
    );

    // Converged: no login planned without a deploy.
    let again = berth_with(&rig, &["plan", "--detailed-exitcode"], true);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        crate::support::text(&again)
    );
    // A new image: the login comes back with the deploy, and only then.
    rig.tenant("bolt", &BOLT.replace("app:1.4.2", "app:1.4.3"));
    let next = berth_with(&rig, &["plan", "--format", "json"], true);
    let doc: serde_json::Value = serde_json::from_slice(&next.stdout).unwrap();
    let mut kinds: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["change"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["deploy-image", "login-registry", "record-spec"]);
}

#[test]
fn the_simulated_registry_refuses_pulls_without_the_right_login() {
    let Some(rig) = registry_rig() else { return };
    let ok = |c: &str| {
        let out = rig.host.ssh(c);
        (out.status.success(), crate::support::text(&out))
    };
    assert!(ok("apps:create bolt-web").0);
    let (pulled, said) = ok("git:from-image bolt-web registry.example.app/app:1.4.2");
    assert!(!pulled && said.contains("unauthorized"), "{said}");
    let (logged_in, said) = ok("registry:login bolt-web registry.example.app deploy wrong-pw");
    assert!(!logged_in && said.contains("401"), "{said}");
    let (pulled, _) = ok("git:from-image bolt-web registry.example.app/app:1.4.2");
    assert!(!pulled);
    // Images of other registries need no login.
    let (pulled, said) = ok("git:from-image bolt-web other.example.net/app:1");
    assert!(pulled, "{said}");
}

#[test]
fn a_missing_registry_password_is_a_preflight_problem_and_nothing_changes() {
    let Some(rig) = registry_rig() else { return };
    rig.host.clear_log();
    let out = berth_with(&rig, &["apply", "--auto-approve"], false);
    let said = crate::support::text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("preflight"), "{said}");
    assert!(said.contains("registry"), "{said}");
    let commands = rig.host.commands();
    let touched: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| !is_read(c) && c.iter().any(|w| w.contains("bolt")))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    assert!(rig.host.state()["apps"].get("bolt-web").is_none());
}
