//! The example repos under `examples/`, reconciled end to end on the real parts: the files
//! are applied as they are (only the host entries of the environment are pointed at this
//! machine), from empty to converged, then a tier change, a cancellation (data kept) and a
//! new tenant.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::dockerhost;
use crate::examplekit::{self, Bao, apply, assert_converged, commit, edit, request};
use crate::support::{Repo, berth_bin, berth_in, text};

fn berth(repo: &Repo, args: &[&str]) -> Output {
    berth_in(repo, args)
}

/// agistaffers: templated sites behind Caddy. Requests for a tenant's subdomain reach that
/// tenant's container; a removed or cancelled tenant's host gets 404; a route changed by
/// hand in Caddy is drift and is put back; a replacement drops no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_sites_route_through_caddy_end_to_end() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    let (repo, caddy) = examplekit::customer_sites(&docker).await;

    // From empty.
    let plan = berth(&repo, &["plan"]);
    let shown = text(&plan);
    assert!(shown.contains("route bakery.web"), "{shown}");
    apply(&repo);
    assert_converged(&repo);
    let (status, body) = caddy.get("bakery.sites.example.com");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("bakery-web-1"), "{body}");
    let (status, body) = caddy.get("www.petals.example");
    assert_eq!(status, 200);
    assert!(body.contains("florist-web-"), "{body}");
    let (status, _) = caddy.get("nobody.sites.example.com");
    assert_eq!(status, 404, "an unknown host gets the fallback");

    // A route changed by hand in Caddy is drift, and apply puts it back.
    let (status, answer) = caddy.admin(
        "PATCH",
        "/id/berth.sites.web-1.bakery.web/match",
        Some(r#"[{"host":["hijacked.example"]}]"#),
    );
    assert_eq!(status, 200, "{answer}");
    let plan = berth(&repo, &["plan", "--detailed-exitcode"]);
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("route bakery.web") && shown.contains("[drift]"),
        "{shown}"
    );
    assert!(shown.contains("hijacked.example"), "{shown}");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(caddy.get("bakery.sites.example.com").0, 200);
    assert_eq!(caddy.get("hijacked.example").0, 404);

    // A replacement (the template's theme changes) while requests keep coming: none fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, port) = (stop.clone(), caddy.http);
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = request(port, "GET", "/", "bakery.sites.example.com", None);
                if status == 200 && body.contains("bakery-web-1") {
                    ok += 1;
                } else {
                    failed.push(status);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failed)
        })
    };
    edit(
        &repo,
        "tenants/bakery.yaml",
        "THEME: classic",
        "THEME: rustic",
    );
    commit(&repo, "bakery: rustic theme");
    apply(&repo);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    eprintln!(
        "rollout through caddy: {} requests, {} failed",
        ok as usize + failed.len(),
        failed.len()
    );
    assert!(ok > 10, "requests went through during the rollout ({ok})");
    assert!(
        failed.is_empty(),
        "requests failed during the rollout: {failed:?} ({ok} ok)"
    );
    assert_converged(&repo);

    // A tier change: two replicas behind one route.
    edit(
        &repo,
        "tenants/plumber.yaml",
        "tier: basic",
        "tier: business",
    );
    commit(&repo, "plumber: business tier");
    apply(&repo);
    assert_converged(&repo);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (status, body) = caddy.get("plumber.sites.example.com");
        assert_eq!(status, 200);
        seen.insert(
            body.split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(
        seen.iter().all(|c| c.starts_with("plumber-web-")),
        "{seen:?}"
    );

    // A cancellation: the site stops answering, its container is kept (stopped).
    edit(
        &repo,
        "tenants/florist.yaml",
        "tier: business",
        "tier: business\nstate: cancelled",
    );
    commit(&repo, "florist: cancelled");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(caddy.get("florist.sites.example.com").0, 404);
    assert_eq!(caddy.get("www.petals.example").0, 404);

    // A new tenant: a copy of the bakery under another id.
    let bakery = std::fs::read_to_string(repo.path().join("tenants/bakery.yaml")).unwrap();
    repo.write(
        "tenants/cafe.yaml",
        &bakery.replace("The Bakery", "The Cafe"),
    );
    commit(&repo, "cafe: new site");
    apply(&repo);
    assert_converged(&repo);
    let (status, body) = caddy.get("cafe.sites.example.com");
    assert_eq!(status, 200);
    assert!(body.contains("cafe-web-1"), "{body}");

    // A removed tenant file: its host gets 404.
    std::fs::remove_file(repo.path().join("tenants/cafe.yaml")).unwrap();
    commit(&repo, "cafe: gone");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(caddy.get("cafe.sites.example.com").0, 404);
    drop(caddy);
    dockerhost::clean_environment("sites");
}

/// Sixty Sales: an isolated stack per customer (app, worker, Postgres, Redis on a private
/// network), ports from the host's range, generated credentials stable across redeploys,
/// health-gated, memory limits app 2G / db 512M / redis 256M, two host entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_stacks_end_to_end() {
    use crate::dockerhost::{env_of, inspect};
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    let repo = examplekit::isolated_stacks(&docker).await;

    apply(&repo);
    assert_converged(&repo);
    let gib = (2u64 << 30).to_string();
    assert_eq!(inspect("northwind-web-1", "{{.HostConfig.Memory}}"), gib);
    assert_eq!(inspect("contoso-web-2", "{{.HostConfig.Memory}}"), gib);
    assert_eq!(
        inspect("northwind-db", "{{.HostConfig.Memory}}"),
        (512u64 << 20).to_string()
    );
    assert_eq!(
        inspect("northwind-cache", "{{.HostConfig.Memory}}"),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        inspect("northwind-worker-1", "{{.HostConfig.Memory}}"),
        (512u64 << 20).to_string()
    );
    assert_eq!(inspect("northwind-worker-1", "{{.State.Running}}"), "true");
    // Private networks: the db is on its tenant's network only.
    assert_eq!(
        inspect(
            "northwind-db",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
        ),
        "northwind_net"
    );
    // The published port is from the host's range and answers.
    let port: u16 = inspect(
        "northwind-web-1",
        r#"{{(index (index .NetworkSettings.Ports "8080/tcp") 0).HostPort}}"#,
    )
    .parse()
    .unwrap();
    assert!((31000..=31019).contains(&port), "{port}");
    let (status, body) = request(port, "GET", "/", "localhost", None);
    assert_eq!(status, 200);
    assert!(body.contains("northwind-web-1"), "{body}");
    let secret = env_of("northwind-web-1", "APP_SECRET").unwrap();
    let password = env_of("northwind-db", "POSTGRES_PASSWORD").unwrap();
    assert_eq!(
        env_of("contoso-web-1", "APP_SECRET"),
        env_of("contoso-web-2", "APP_SECRET")
    );

    // A tier change: two replicas with the same credentials; the database untouched.
    let db_id = inspect("northwind-db", "{{.Id}}");
    edit(&repo, "tenants/northwind.yaml", "tier: team", "tier: scale");
    commit(&repo, "northwind: scale tier");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(
        env_of("northwind-web-1", "APP_SECRET").as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(
        env_of("northwind-web-2", "APP_SECRET").as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(
        inspect("northwind-db", "{{.Id}}"),
        db_id,
        "the database was not replaced"
    );
    assert_eq!(
        env_of("northwind-db", "POSTGRES_PASSWORD").as_deref(),
        Some(password.as_str())
    );

    // A cancellation: everything stops, the data volumes stay.
    edit(
        &repo,
        "tenants/contoso.yaml",
        "tier: scale",
        "tier: scale\nstate: cancelled",
    );
    commit(&repo, "contoso: cancelled");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(inspect("contoso-db", "{{.State.Running}}"), "false");
    assert_eq!(inspect("contoso-web-1", "{{.State.Running}}"), "false");
    let volumes = inspect("contoso-db", "{{range .Mounts}}{{.Name}} {{end}}");
    assert!(!volumes.trim().is_empty(), "the db keeps its volume");
    for volume in volumes.split_whitespace() {
        assert_eq!(inspect(volume, "{{.Name}}"), volume);
    }

    // A new tenant on the first host.
    let northwind = std::fs::read_to_string(repo.path().join("tenants/northwind.yaml")).unwrap();
    repo.write(
        "tenants/fabrikam.yaml",
        &northwind
            .replace("Northwind", "Fabrikam")
            .replace("tier: scale", "tier: team"),
    );
    commit(&repo, "fabrikam: new customer");
    apply(&repo);
    assert_converged(&repo);
    assert_eq!(inspect("fabrikam-web-1", "{{.State.Running}}"), "true");
    assert_ne!(
        env_of("fabrikam-db", "POSTGRES_PASSWORD"),
        Some(password),
        "each tenant gets its own credentials"
    );
    dockerhost::clean_environment("stacks");
}

/// BizOSaaS: shared platform services (API, dashboard, event bus, shared Postgres and
/// Redis) beside per-tenant apps, secrets by reference in Vault (OpenBao here): values
/// resolved into the containers, never shown, a rotation rolled out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_with_vault_end_to_end() {
    use crate::dockerhost::{env_of, inspect};
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    let Some(bao) = Bao::start() else {
        return;
    };
    let repo = examplekit::platform(&docker, &bao).await;
    let with_token = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .arg("--repo")
            .arg(repo.path())
            .env("NO_COLOR", "1")
            .env("VAULT_TOKEN", &bao.token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let apply = || {
        let out = with_token(&["apply", "--auto-approve", "--attempts", "1"]);
        assert!(out.status.success(), "apply failed:\n{}", text(&out));
        out
    };
    let converged = || {
        let plan = with_token(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "not converged:\n{}",
            text(&plan)
        );
    };

    let out = apply();
    converged();
    let shown = text(&out);
    assert!(
        !shown.contains("canary"),
        "a secret value was printed:\n{shown}"
    );
    assert_eq!(
        env_of("shared-api-1", "JWT_SIGNING_KEY").as_deref(),
        Some("jwt-canary-9f2e")
    );
    assert_eq!(
        env_of("shared-api-1", "STRIPE_KEY").as_deref(),
        Some("sk_live_canary_5c1d")
    );
    assert_eq!(
        env_of("alpha-web-1", "SMTP_PASSWORD").as_deref(),
        Some("smtp-canary-one")
    );
    assert_eq!(inspect("shared-events", "{{.State.Running}}"), "true");
    assert_eq!(
        inspect("shared-postgres", "{{.HostConfig.Memory}}"),
        (2u64 << 30).to_string()
    );

    // A rotation in Vault: shown as sensitive, rolled out to every reader.
    bao.put("secret/bizosaas/prod/smtp-password", "smtp-canary-two");
    let plan = with_token(&["plan"]);
    let shown = text(&plan);
    assert!(shown.contains("(sensitive, changed)"), "{shown}");
    assert!(!shown.contains("canary"), "{shown}");
    apply();
    converged();
    assert_eq!(
        env_of("alpha-web-1", "SMTP_PASSWORD").as_deref(),
        Some("smtp-canary-two")
    );
    assert_eq!(
        env_of("beta-web-1", "SMTP_PASSWORD").as_deref(),
        Some("smtp-canary-two")
    );

    // A tier change, a cancellation, a new tenant.
    edit(
        &repo,
        "tenants/alpha.yaml",
        "tier: growth",
        "tier: enterprise",
    );
    edit(
        &repo,
        "tenants/beta.yaml",
        "tier: growth",
        "tier: growth\nstate: cancelled",
    );
    let alpha = std::fs::read_to_string(repo.path().join("tenants/alpha.yaml")).unwrap();
    repo.write(
        "tenants/gamma.yaml",
        &alpha
            .replace("Alpha Retail", "Gamma Retail")
            .replace("TENANT: alpha", "TENANT: gamma")
            .replace("tier: enterprise", "tier: growth"),
    );
    commit(&repo, "alpha enterprise, beta cancelled, gamma new");
    apply();
    converged();
    assert_eq!(inspect("alpha-web-2", "{{.State.Running}}"), "true");
    assert_eq!(inspect("beta-web-1", "{{.State.Running}}"), "false");
    assert_eq!(inspect("gamma-web-1", "{{.State.Running}}"), "true");
    assert_eq!(inspect("shared-api-1", "{{.State.Running}}"), "true");
    dockerhost::clean_environment("saas");
}

/// MindRoom's fleet: per tenant a Dokku app from an image, Postgres and Redis from the
/// plugins, linked; `<tenant>.<domain>` and extra domains; Let's Encrypt; tiers; a cancelled
/// tenant — on two simulated Dokku hosts behind real sshd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dokku_fleet_end_to_end() {
    use crate::sshd::DokkuHost;
    let (Some(one), Some(two)) = (DokkuHost::start(), DokkuHost::start()) else {
        return;
    };
    let repo = examplekit::dokku_fleet(&one, &two);
    let run = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .arg("--repo")
            .arg(repo.path())
            .env("NO_COLOR", "1")
            .env("BERTH_SECRET_OPENAI", "sk-fleet-canary")
            .env("BERTH_SECRET_SENTRY_DSN", "https://canary@sentry.example/1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let apply = || {
        let out = run(&["apply", "--auto-approve", "--attempts", "1"]);
        assert!(out.status.success(), "apply failed:\n{}", text(&out));
        assert!(!text(&out).contains("canary"), "{}", text(&out));
    };
    let converged = || {
        let plan = run(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "not converged:\n{}",
            text(&plan)
        );
    };

    apply();
    converged();
    let s1 = one.state();
    let acme = &s1["apps"]["acme-web"];
    assert_eq!(acme["source_image"], "registry.mindroom.example/app:1.4.2");
    assert_eq!(acme["env"]["OPENAI_API_KEY"], "sk-fleet-canary");
    assert_eq!(acme["scale"]["web"], 2, "{acme}");
    assert_eq!(acme["scale"]["worker"], 1);
    assert_eq!(acme["letsencrypt"], true);
    assert!(
        acme["vhosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "acme.mindroom.example"),
        "{acme}"
    );
    for service in ["postgres:acme-db", "redis:acme-cache"] {
        assert!(
            s1["services"][service]["links"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a == "acme-web")),
            "{service}: {}",
            s1["services"]
        );
    }
    // A tenant already cancelled when it reaches berth gets nothing made for it.
    assert!(s1["apps"].get("cirrus-web").is_none(), "{}", s1["apps"]);
    assert!(s1["services"].get("postgres:cirrus-db").is_none());
    let s2 = two.state();
    let bluebird = &s2["apps"]["bluebird-web"];
    assert_eq!(bluebird["letsencrypt"], true);
    assert!(
        s2["services"]["postgres:bluebird-db"]["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|a| a == "bluebird-web"))
    );
    assert!(
        s2["apps"].get("acme-web").is_none(),
        "each tenant on its host"
    );

    // A tier change: bluebird starter → pro (two web, one worker, 2G).
    edit(&repo, "tenants/bluebird.yaml", "tier: starter", "tier: pro");
    commit(&repo, "bluebird: pro");
    apply();
    converged();
    let s2 = two.state();
    let bluebird = &s2["apps"]["bluebird-web"];
    assert_eq!(bluebird["scale"]["web"], 2, "{bluebird}");
    assert_eq!(
        bluebird["limits"]["_default_.limit.memory"], "2048m",
        "{bluebird}"
    );

    // A cancellation: acme is suspended, its databases kept.
    edit(
        &repo,
        "tenants/acme.yaml",
        "tier: pro",
        "tier: pro\nstate: cancelled",
    );
    commit(&repo, "acme: cancelled");
    apply();
    converged();
    let s1 = one.state();
    let acme = &s1["apps"]["acme-web"];
    assert!(
        acme["scale"].as_object().unwrap().values().all(|n| n == 0),
        "{acme}"
    );
    assert!(s1["services"]["postgres:acme-db"].is_object());
    assert!(s1["services"]["redis:acme-cache"].is_object());

    // A new tenant from the example's own template, on the first host.
    let template = std::fs::read_to_string(repo.path().join("templates/tenant.yaml")).unwrap();
    repo.write(
        "tenants/delta.yaml",
        &template.replace("{tenant}", "Delta Co"),
    );
    commit(&repo, "delta: new tenant");
    apply();
    converged();
    let (s1, s2) = (one.state(), two.state());
    let s1 = if s1["apps"]["delta-web"].is_object() {
        s1
    } else {
        s2
    };
    assert_eq!(s1["apps"]["delta-web"]["deployed"], true);
    assert!(
        s1["services"]["postgres:delta-db"]["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|a| a == "delta-web"))
    );
}
