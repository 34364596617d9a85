//! Planner cases: one folder per case under tests/fixtures/plan, snapshot-tested as text, JSON
//! and Markdown, plus the invariants every case must satisfy:
//! - planning is deterministic (same bytes twice);
//! - no secret value reaches text, JSON, Markdown or `Debug` output;
//! - applying the plan to the in-memory driver, then planning again, gives no steps;
//! - reconciling twice changes nothing the second time.
//!
//! A case folder holds `tenants/` (the desired files), optionally `environments/` (else
//! `_env/`), `prior/tenants/` (files applied to empty hosts first, to build a realistic live
//! state) and `case.json` (`mutations` made by hand on the hosts afterwards, plan `options`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth::driver::memory;
use berth::model::Fleet;
use berth::model::desired::{self, Desired};
use berth::model::live::{
    ContainerState, HostRef, Live, LiveContainer, LiveDokkuApp, LiveValue, PortBinding,
};
use berth::output::plan as render;
use berth::plan::{Plan, PlanOptions, plan};

use crate::support::crate_root;

/// Secret values the provider hands out; none may ever be printed.
fn provider_secrets() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "openai".to_string(),
            "sk-live-OPENAI-9f8e7d6c5b4a".to_string(),
        ),
        (
            "stripe".to_string(),
            "sk_live_STRIPE-1a2b3c4d5e".to_string(),
        ),
        (
            "registry".to_string(),
            "reg-PW-fixture-0c1d2e3f".to_string(),
        ),
    ])
}

fn fixtures() -> PathBuf {
    crate_root().join("tests/fixtures/plan")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Load and validate a repo made of the case's environments and the given tenants folder.
fn fleet(case: &Path, tenants: Option<&Path>) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let envs = if case.join("environments").is_dir() {
        case.join("environments")
    } else {
        fixtures().join("_env/environments")
    };
    copy_dir(&envs, &dir.path().join("environments"));
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    if let Some(tenants) = tenants.filter(|t| t.is_dir()) {
        copy_dir(tenants, &dir.path().join("tenants"));
    }
    let sources = berth::repo::load_dir(dir.path()).unwrap();
    let (fleet, diags) = berth::validate::validate(&sources);
    let text = berth::output::diagnostics::render_text(&sources, &diags, false);
    fleet.unwrap_or_else(|| panic!("{} does not validate:\n{text}", case.display()))
}

fn reconcile(fleet: &Fleet, live: &mut Live, options: &PlanOptions<'_>) -> Plan {
    let p = plan(fleet, live, options);
    memory::apply(&p, live, &provider_secrets()).unwrap();
    p
}

struct Case {
    name: String,
    fleet: Fleet,
    live: Live,
    allow_destroys: bool,
    allow_empty: bool,
    baseline: Option<Desired>,
    now: Option<u64>,
}

fn load(name: &str) -> Case {
    let dir = fixtures().join(name);
    let fleet = fleet(&dir, Some(&dir.join("tenants")));
    let mut live = Live::default();
    let mut prior_fleet = None;
    if dir.join("prior").is_dir() {
        let prior = self::fleet(&dir, Some(&dir.join("prior/tenants")));
        let options = PlanOptions {
            allow_destroys: true,
            allow_empty: true,
            allow_upgrades: false,
            baseline: None,
            scope: None,
            now: None,
            purge_now: &[],
        };
        reconcile(&prior, &mut live, &options);
        prior_fleet = Some(prior);
    }
    // A second earlier stage (a cancellation before a purge, say).
    if dir.join("prior2").is_dir() {
        let prior = self::fleet(&dir, Some(&dir.join("prior2/tenants")));
        let options = PlanOptions {
            allow_destroys: true,
            allow_empty: true,
            allow_upgrades: false,
            ..PlanOptions::default()
        };
        reconcile(&prior, &mut live, &options);
        prior_fleet = Some(prior);
    }
    let spec: serde_json::Value = std::fs::read_to_string(dir.join("case.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|_| serde_json::json!({}));
    for m in spec["mutations"].as_array().cloned().unwrap_or_default() {
        mutate(&mut live, &m);
    }
    let options = &spec["options"];
    let baseline = (options["baseline"] == true).then(|| {
        let prior = prior_fleet.as_ref().expect("baseline needs prior/");
        desired::compile(prior, &desired::place(prior, &live))
    });
    Case {
        name: name.to_string(),
        fleet,
        live,
        allow_destroys: options["allow_destroys"] == true,
        allow_empty: options["allow_empty"] == true,
        baseline,
        now: options["now"].as_u64(),
    }
}

/// Changes a person makes by hand on a host.
fn mutate(live: &mut Live, m: &serde_json::Value) {
    let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
    let (env, host) = s("host")
        .split_once('/')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    let host = live.hosts.entry(HostRef::new(&env, &host)).or_default();
    fn app<'h>(host: &'h mut berth::model::live::LiveHost, name: &str) -> &'h mut LiveDokkuApp {
        host.dokku.apps.get_mut(name).expect("app exists")
    }
    match s("op").as_str() {
        "set-config" => match m["value"].as_str() {
            Some(v) => {
                app(host, &s("app"))
                    .config
                    .insert(s("key"), LiveValue(v.to_string()));
            }
            None => {
                app(host, &s("app")).config.remove(&s("key"));
            }
        },
        "scale" => {
            app(host, &s("app"))
                .processes
                .insert(s("process"), m["count"].as_u64().unwrap() as u32);
        }
        "add-domain" => app(host, &s("app")).domains.push(s("domain")),
        "unlink" => {
            let svc = host.dokku.services.get_mut(&s("service")).unwrap();
            svc.links.retain(|a| *a != s("app"));
        }
        "destroy-app" => {
            // `apps:destroy` also removes the app from every service's links.
            host.dokku.apps.remove(&s("app")).unwrap();
            for svc in host.dokku.services.values_mut() {
                svc.links.retain(|a| *a != s("app"));
            }
        }
        "foreign-app" => {
            host.dokku.apps.insert(
                s("app"),
                LiveDokkuApp {
                    image: Some("someone/else:1".into()),
                    config: BTreeMap::from([("OWNER".into(), LiveValue("ops-team".into()))]),
                    ..LiveDokkuApp::default()
                },
            );
        }
        "stop-container" => {
            host.docker
                .containers
                .get_mut(&s("container"))
                .unwrap()
                .state = ContainerState::Exited
        }
        "remove-container" => {
            host.docker.containers.remove(&s("container")).unwrap();
        }
        "foreign-container" => {
            let port = m["port"].as_u64().unwrap() as u16;
            host.docker.ports_in_use.insert(port);
            host.docker.containers.insert(
                s("container"),
                LiveContainer {
                    state: ContainerState::Running,
                    ports: vec![PortBinding {
                        host: port,
                        container: 80,
                    }],
                    ..LiveContainer::default()
                },
            );
        }
        "image-id" => {
            host.docker.images.insert(s("image"), s("id"));
        }
        other => panic!("unknown mutation {other}"),
    }
}

/// Every generated or provided secret value present in the live state.
fn secret_values(live: &Live) -> Vec<String> {
    let mut values: Vec<String> = provider_secrets().into_values().collect();
    for host in live.hosts.values() {
        for app in host.dokku.apps.values() {
            for (key, value) in &app.config {
                let secret = key.contains("SECRET") || key.contains("KEY") || key.ends_with("_URL");
                if secret && key != "BERTH_SPEC" {
                    values.push(value.0.clone());
                }
            }
        }
    }
    values
}

fn check(name: &str) {
    let case = load(name);
    let options = PlanOptions {
        allow_destroys: case.allow_destroys,
        allow_empty: case.allow_empty,
        allow_upgrades: false,
        baseline: case.baseline.as_ref(),
        scope: None,
        now: case.now,
        purge_now: &[],
    };
    let p = plan(&case.fleet, &case.live, &options);
    let text = render::render_text(&p, false);
    let json = serde_json::to_string_pretty(&render::render_json(&p)).unwrap();
    let markdown = render::render_markdown(&p);

    // Deterministic: the same inputs give the same bytes.
    let again = plan(&case.fleet, &case.live, &options);
    assert_eq!(
        json,
        serde_json::to_string_pretty(&render::render_json(&again)).unwrap()
    );
    assert_eq!(text, render::render_text(&again, false));

    // No secret anywhere.
    let debug = format!("{p:?}");
    for secret in secret_values(&case.live) {
        for (what, out) in [
            ("text", &text),
            ("json", &json),
            ("markdown", &markdown),
            ("debug", &debug),
        ] {
            assert!(
                !out.contains(&secret),
                "{name}: a secret value appears in the {what} plan"
            );
        }
    }
    // The plan file round-trips.
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    // The plan checker finds it well-formed.
    let defects = berth::plan::check::check(&p, &case.live);
    assert!(defects.is_empty(), "{name}: malformed plan: {defects:?}");

    // A plan refused for data retention is never applied, and applying it by force would
    // plan the record of the purge next: convergence is judged on plans that may run.
    let retention = p
        .refusals
        .iter()
        .any(|r| r.rule == berth::plan::RefusalRule::RetentionNotPassed);
    if retention {
        insta::assert_snapshot!(format!("plan_{name}_text"), text);
        insta::assert_snapshot!(format!("plan_{name}_json"), json);
        insta::assert_snapshot!(format!("plan_{name}_markdown"), markdown);
        return;
    }
    // Convergence: apply, plan again, nothing left to do.
    let mut live = case.live.clone();
    memory::apply(&p, &mut live, &provider_secrets()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let after = plan(
        &case.fleet,
        &live,
        &PlanOptions {
            baseline: None,
            scope: None,
            now: None,
            purge_now: &[],
            ..options
        },
    );
    assert!(
        after.steps.is_empty(),
        "{name}: plan after apply is not empty:\n{}",
        render::render_text(&after, false)
    );
    // Idempotence: reconciling again changes nothing.
    let mut twice = live.clone();
    reconcile(&case.fleet, &mut twice, &options);
    assert_eq!(
        twice, live,
        "{name}: a second reconcile changed the live state"
    );

    insta::assert_snapshot!(format!("plan_{name}_text"), text);
    insta::assert_snapshot!(format!("plan_{name}_json"), json);
    insta::assert_snapshot!(format!("plan_{name}_markdown"), markdown);
    let _ = case.name;
}

macro_rules! cases {
    ($($fn:ident => $dir:expr),+ $(,)?) => {
        $(#[test] fn $fn() { check($dir); })+

        #[test]
        fn every_fixture_folder_is_a_case() {
            let listed = [$($dir),+];
            for entry in std::fs::read_dir(fixtures()).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if !name.starts_with('_') {
                    assert!(listed.contains(&name.as_str()), "fixture {name} has no test");
                }
            }
            assert!(listed.len() >= 30);
        }
    };
}

cases! {
    dokku_new_tenant => "dokku-new-tenant",
    dokku_registry_login => "dokku-registry-login",
    dokku_noop => "dokku-noop",
    dokku_image_change => "dokku-image-change",
    dokku_env_literal_change => "dokku-env-literal-change",
    dokku_env_add_remove => "dokku-env-add-remove",
    dokku_tier_change => "dokku-tier-change",
    dokku_domains_change => "dokku-domains-change",
    dokku_tls_enable => "dokku-tls-enable",
    dokku_add_service => "dokku-add-service",
    dokku_remove_service => "dokku-remove-service",
    dokku_storage_add => "dokku-storage-add",
    dokku_drift_config => "dokku-drift-config",
    dokku_drift_scaled => "dokku-drift-scaled",
    dokku_drift_domain_added => "dokku-drift-domain-added",
    dokku_drift_unlinked => "dokku-drift-unlinked",
    dokku_drift_app_destroyed => "dokku-drift-app-destroyed",
    dokku_suspend => "dokku-suspend",
    dokku_cancel => "dokku-cancel",
    dokku_purge => "dokku-purge",
    retention_too_early => "retention-too-early",
    dokku_tenant_file_removed => "dokku-tenant-file-removed",
    dokku_unmanaged_conflict => "dokku-unmanaged-conflict",
    dokku_unmanaged_ignored => "dokku-unmanaged-ignored",
    breaker_max_destroys => "breaker-max-destroys",
    breaker_override => "breaker-override",
    empty_desired => "empty-desired",
    empty_desired_override => "empty-desired-override",
    placement_chosen => "placement-chosen",
    placement_sticky => "placement-sticky",
    docker_new_stack => "docker-new-stack",
    docker_noop => "docker-noop",
    docker_image_change => "docker-image-change",
    docker_env_change => "docker-env-change",
    docker_foreign_port => "docker-foreign-port",
    docker_fixed_port_conflict => "docker-fixed-port-conflict",
    docker_drift_stopped => "docker-drift-stopped",
    docker_drift_removed => "docker-drift-removed",
    docker_image_id_moved => "docker-image-id-moved",
    docker_suspend => "docker-suspend",
    docker_purge => "docker-purge",
    docker_tenant_removed => "docker-tenant-removed",
    docker_two_tenants => "docker-two-tenants",
    docker_ports_exhausted => "docker-ports-exhausted",
    shared_services => "shared-services",
}

/// The plan checker is not a rubber stamp: each rule catches a plan made to break it.
#[test]
fn the_plan_checker_catches_malformed_plans() {
    use berth::plan::Change;
    use berth::plan::check::{Defect, check};
    let case = load("dokku-tier-change");
    let options = PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };
    let good = plan(&case.fleet, &case.live, &options);
    assert!(good.steps.len() >= 2, "a plan with steps");
    assert!(check(&good, &case.live).is_empty());

    // Rule 1: a dependency on a later step (a cycle in waiting).
    let mut p = good.clone();
    p.steps[0].after.push(1);
    assert!(matches!(
        check(&p, &case.live)[..],
        [Defect::BadDependency { step: 0, after: 1 }]
    ));
    // Rule 2: the same change twice on one object.
    let mut p = good.clone();
    let mut twin = p.steps[0].clone();
    twin.id = u32::try_from(p.steps.len()).unwrap();
    p.steps.push(twin);
    assert!(
        check(&p, &case.live)
            .iter()
            .any(|d| matches!(d, Defect::Conflict { .. })),
        "{:?}",
        check(&p, &case.live)
    );
    // Rule 3: data destroyed for a tenant that is not purging.
    let mut p = good.clone();
    p.steps[0].change = Change::DestroyService {
        service_kind: berth::model::ServiceKind::Postgres,
        service: format!("{}-db", p.steps[0].tenant),
    };
    assert!(
        check(&p, &case.live)
            .iter()
            .any(|d| matches!(d, Defect::UnprotectedData { .. }))
    );
    // Rule 4: a step of one tenant on another tenant's live app.
    let mut p = good.clone();
    let owned: Vec<_> = case
        .live
        .hosts
        .values()
        .flat_map(|h| h.dokku.apps.iter())
        .filter(|(_, a)| a.owner.is_some())
        .map(|(n, a)| (n.clone(), a.owner.clone().unwrap()))
        .collect();
    let (app, owner) = owned.first().cloned().expect("a managed app");
    p.steps[0].change = Change::Restart { app };
    p.steps[0].tenant = format!("not-{owner}");
    assert!(
        check(&p, &case.live)
            .iter()
            .any(|d| matches!(d, Defect::WrongOwner { .. })),
        "{:?}",
        check(&p, &case.live)
    );
}

/// A 1,000-tenant plan still fits in a pull-request comment: the summary table always, the
/// details collapsed to counts, a pointer to the full plan.
#[test]
fn a_thousand_tenant_plan_fits_in_a_comment() {
    use berth::spec::source::{FileKind, SourceFile, SourceSet};
    let mut files = vec![SourceFile {
        path: "environments/prod.yaml".into(),
        kind: FileKind::Environment,
        text: Ok("version: 1\ndomain: example.app\nhosts:\n  d1:\n    docker: { endpoint: unix:///var/run/docker.sock }\n    ports: 20000-29999\n".into()),
    }];
    for i in 0..1000 {
        files.push(SourceFile {
            path: format!("tenants/t{i:04}.yaml"),
            kind: FileKind::Tenant,
            text: Ok("environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    ports: [{ container: 8080 }]\n    env: { LOG_LEVEL: info, SECRET_KEY: { generate: 32 } }\n    uses: [db]\nservices:\n  db: { kind: postgres }\n".into()),
        });
    }
    let (fleet, diags) = berth::validate::validate(&SourceSet { files });
    let fleet = fleet.unwrap_or_else(|| panic!("{diags:?}"));
    let p = plan(
        &fleet,
        &Live::default(),
        &PlanOptions {
            allow_destroys: true,
            allow_empty: true,
            allow_upgrades: false,
            ..PlanOptions::default()
        },
    );
    let markdown = render::render_markdown(&p);
    println!(
        "1,000-tenant plan: {} steps, Markdown comment {} bytes",
        p.steps.len(),
        markdown.len()
    );
    assert!(
        markdown.len() <= render::MARKDOWN_BUDGET,
        "{}",
        markdown.len()
    );
    assert!(
        markdown.contains("| host | create |"),
        "the summary table is always there"
    );
    assert!(markdown.contains("do not fit in a comment"));
    assert!(markdown.contains("berth show plan.json"));
    // A small plan keeps its details.
    let small = render::render_markdown_within(&p, usize::MAX);
    println!("with every detail it would be {} bytes", small.len());
    assert!(small.contains("<details>") && small.len() > render::MARKDOWN_BUDGET);
}

/// A scoped plan (`--tenant`, `--since`, a daemon's incremental pass) desires only the
/// tenants in scope: the cancellation and adoption records of every other tenant must look
/// like records of tenants it does not see, never like those of tenants whose files are gone.
#[test]
fn a_scoped_plan_leaves_the_records_of_other_tenants_alone() {
    use berth::spec::source::{FileKind, SourceFile, SourceSet};
    let file = |path: &str, kind, text: &str| SourceFile {
        path: path.into(),
        kind,
        text: Ok(text.into()),
    };
    let sources = SourceSet {
        files: vec![
            file(
                "environments/prod.yaml",
                FileKind::Environment,
                "hosts:\n  d1:\n    docker: { endpoint: \"unix:///var/run/docker.sock\" }\n",
            ),
            file(
                "tenants/a.yaml",
                FileKind::Tenant,
                "environment: prod\napps:\n  web: { image: app:1 }\n",
            ),
            file(
                "tenants/b.yaml",
                FileKind::Tenant,
                "environment: prod\nstate: cancelled\napps:\n  web: { image: app:1 }\nservices:\n  db: { kind: postgres }\n",
            ),
        ],
    };
    let (fleet, diags) = berth::validate::validate(&sources);
    let fleet = fleet.unwrap_or_else(|| panic!("{diags:?}"));
    let options = PlanOptions {
        allow_destroys: true,
        allow_empty: true,
        allow_upgrades: false,
        baseline: None,
        scope: None,
        now: None,
        purge_now: &[],
    };
    let mut live = Live::default();
    let first = plan(&fleet, &live, &options);
    memory::apply(&first, &mut live, &BTreeMap::new()).unwrap();
    // Both stacks were adopted; b's cancellation is on record (the apply above may have
    // written it; a second plan would otherwise).
    for host in live.hosts.values_mut() {
        host.adopted.insert("a".into());
        host.adopted.insert("b".into());
        host.cancelled.entry("b".into()).or_insert(1);
    }
    let full = plan(&fleet, &live, &options);
    assert!(full.steps.is_empty(), "{:#?}", full.steps);
    let scope = berth::plan::Scope {
        tenants: ["a".to_string()].into(),
        ..berth::plan::Scope::default()
    };
    let scoped = plan(
        &fleet,
        &live,
        &PlanOptions {
            scope: Some(&scope),
            ..options
        },
    );
    let of_b: Vec<_> = scoped.steps.iter().filter(|s| s.tenant == "b").collect();
    assert!(of_b.is_empty(), "b is out of scope: {of_b:#?}");
}
