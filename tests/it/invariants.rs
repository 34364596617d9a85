//! Planner invariants over randomly generated fleets (proptest): for any prior fleet applied
//! to empty hosts and any current fleet, planning is deterministic, applying the plan and
//! planning again leaves nothing to do, and reconciling twice changes nothing.

use std::collections::BTreeMap;

use berth::driver::memory;
use berth::model::live::Live;
use berth::plan::{PlanOptions, plan};
use proptest::prelude::*;

const ENV: &str = "\
version: 1
domain: example.app
hosts:
  dokku-1:
    dokku: { ssh: dokku@10.0.0.5, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" }
  docker-1:
    docker: { endpoint: unix:///var/run/docker.sock }
    ports: 20000-20100
tiers:
  small: { processes: { web: 1 }, memory: 256M }
  big: { processes: { web: 2, worker: 1 }, memory: 1G, cpus: 1 }
policy: { max-destroys: 1000 }
secrets: { provider: env, names: [openai] }
";

#[derive(Debug, Clone)]
struct TenantGen {
    host: u8,
    state: u8,
    tier: bool,
    apps: Vec<AppGen>,
    services: Vec<u8>,
}

#[derive(Debug, Clone)]
struct AppGen {
    image: u8,
    processes: Option<u8>,
    env: u8,
    uses: Vec<usize>,
    domain: bool,
    tls: bool,
    port: bool,
}

fn app_gen() -> impl Strategy<Value = AppGen> {
    (
        0u8..3,
        proptest::option::of(0u8..3),
        0u8..4,
        proptest::collection::vec(0usize..3, 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(image, processes, env, uses, domain, tls, port)| AppGen {
            image,
            processes,
            env,
            uses,
            domain,
            tls,
            port,
        })
}

fn tenant_gen() -> impl Strategy<Value = TenantGen> {
    (
        0u8..3,
        0u8..6,
        any::<bool>(),
        proptest::collection::vec(app_gen(), 1..3),
        proptest::collection::vec(0u8..2, 0..3),
    )
        .prop_map(|(host, state, tier, apps, services)| TenantGen {
            host,
            state,
            tier,
            apps,
            services,
        })
}

fn fleet_gen() -> impl Strategy<Value = BTreeMap<u8, TenantGen>> {
    proptest::collection::btree_map(0u8..6, tenant_gen(), 0..5)
}

fn tenant_yaml(id: &str, t: &TenantGen) -> String {
    let mut y = String::from("environment: prod\n");
    match t.host {
        0 => y.push_str("host: dokku-1\n"),
        1 => y.push_str("host: docker-1\n"),
        _ => {}
    }
    // States: mostly active, sometimes suspended, cancelled or purge.
    y.push_str(match t.state {
        3 => "state: suspended\n",
        4 => "state: cancelled\n",
        5 => "state: purge\n",
        _ => "state: active\n",
    });
    y.push_str(if t.tier {
        "tier: big\n"
    } else {
        "tier: small\n"
    });
    let services: Vec<(String, &str)> = t
        .services
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                format!("svc{i}"),
                if *k == 0 { "postgres" } else { "redis" },
            )
        })
        .collect();
    y.push_str("apps:\n");
    for (i, a) in t.apps.iter().enumerate() {
        let name = if i == 0 {
            "web".to_string()
        } else {
            format!("app{i}")
        };
        y.push_str(&format!(
            "  {name}:\n    image: registry.example/app:{}\n",
            a.image
        ));
        if let Some(p) = a.processes {
            y.push_str(&format!("    processes: {{ web: {p} }}\n"));
        }
        if a.domain {
            y.push_str(&format!("    domains: [{name}.{id}.example.org]\n"));
            y.push_str(&format!("    tls: {}\n", a.tls));
        }
        if a.port && t.host != 0 {
            y.push_str("    ports: [{ container: 8080 }]\n");
        }
        y.push_str("    env:\n");
        y.push_str(&format!("      MODE: m{}\n", a.env));
        if a.env % 2 == 0 {
            y.push_str("      TOKEN: { generate: 16 }\n");
        }
        if a.env == 3 {
            y.push_str("      OPENAI: { secret: openai }\n");
        }
        let uses: Vec<&str> = a
            .uses
            .iter()
            .filter_map(|u| services.get(*u).map(|(n, _)| n.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !uses.is_empty() {
            y.push_str(&format!("    uses: [{}]\n", uses.join(", ")));
        }
    }
    if !services.is_empty() {
        y.push_str("services:\n");
        for (name, kind) in &services {
            y.push_str(&format!("  {name}: {{ kind: {kind} }}\n"));
        }
    }
    y
}

fn fleet(tenants: &BTreeMap<u8, TenantGen>) -> berth::model::Fleet {
    let mut files = vec![berth::spec::source::SourceFile {
        path: "environments/prod.yaml".into(),
        kind: berth::spec::source::FileKind::Environment,
        text: Ok(ENV.into()),
    }];
    for (n, t) in tenants {
        let id = format!("t{n}");
        files.push(berth::spec::source::SourceFile {
            path: format!("tenants/{id}.yaml"),
            kind: berth::spec::source::FileKind::Tenant,
            text: Ok(tenant_yaml(&id, t)),
        });
    }
    let sources = berth::spec::source::SourceSet { files };
    let (fleet, diags) = berth::validate::validate(&sources);
    fleet.unwrap_or_else(|| panic!("generated fleet is invalid: {diags:?}"))
}

fn secrets() -> BTreeMap<String, String> {
    BTreeMap::from([("openai".to_string(), "sk-generated-test".to_string())])
}

const OPTIONS: PlanOptions<'static> = PlanOptions {
    allow_destroys: true,
    allow_empty: true,
    allow_upgrades: false,
    baseline: None,
    scope: None,
    now: None,
    purge_now: &[],
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_converge_and_are_deterministic(prior in fleet_gen(), current in fleet_gen()) {
        let prior = fleet(&prior);
        let current = fleet(&current);
        let mut live = Live::default();
        let first = plan(&prior, &live, &OPTIONS);
        memory::apply(&first, &mut live, &secrets()).unwrap();

        let p = plan(&current, &live, &OPTIONS);
        let defects = berth::plan::check::check(&p, &live);
        prop_assert!(defects.is_empty(), "malformed plan: {:?}", defects);
        let again = plan(&current, &live, &OPTIONS);
        prop_assert_eq!(&p, &again);
        prop_assert_eq!(serde_json::to_string(&p).unwrap(), serde_json::to_string(&again).unwrap());

        memory::apply(&p, &mut live, &secrets()).unwrap();
        let after = plan(&current, &live, &OPTIONS);
        prop_assert!(after.steps.is_empty(), "not converged:\n{}", berth::output::plan::render_text(&after, false));

        let before = live.clone();
        memory::apply(&after, &mut live, &secrets()).unwrap();
        prop_assert_eq!(before, live);
        // Data is only ever destroyed for tenants in purge.
        for step in &p.steps {
            if step.change.destroys_data() {
                prop_assert_eq!(current.tenants.get(&step.tenant).map(|t| t.state), Some(berth::model::TenantState::Purge));
            }
        }
    }
}
