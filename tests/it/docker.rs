//! The Docker driver on the real Docker Engine (tests/it/dockerhost.rs).

use std::collections::{BTreeMap, BTreeSet};

use berth::driver::docker::DockerDriver;
use berth::driver::secrets::SecretProvider;
use berth::driver::{AnyDriver, Drivers, observe_all};
use berth::execute::{ExecOptions, Silent, execute};
use berth::model::Fleet;
use berth::model::desired::{self, Desired};
use berth::model::live::HostRef;
use berth::plan::{Cause, Change, Plan, PlanOptions, plan};
use bollard::Docker;

use crate::dockerhost::{self, Run};
use crate::support::Repo;

fn stack(env: &str, image: &str, mode: &str) -> String {
    format!(
        "environment: {env}
tier: team
apps:
  web:
    image: {image}
    port: 8080
    command: [\"/stub\", \"serve\", \"--port\", \"8080\"]
    health: {{ command: [\"/stub\", \"health\", \"--port\", \"8080\"], interval: 1, timeout: 1, retries: 20 }}
    ports: [{{ container: 8080 }}]
    env:
      APP_SECRET: {{ generate: 24 }}
      MODE: {mode}
    uses: [db, cache]
  worker:
    image: berth-stub:v1
    command: [\"/stub\", \"work\"]
    memory: 32M
    uses: [db, cache]
services:
  db:
    kind: postgres
    image: berth-stub:v1
    command: [\"/stub\", \"serve\", \"--port\", \"5432\"]
    memory: 64M
    health: {{ command: [\"/stub\", \"health\", \"--port\", \"5432\"], interval: 1, timeout: 1, retries: 20 }}
  cache:
    kind: redis
    image: berth-stub:v1
    command: [\"/stub\", \"serve\", \"--port\", \"6379\"]
    memory: 32M
"
    )
}

struct Rig {
    run: Run,
    repo: Repo,
    docker: Docker,
}

impl Rig {
    async fn start() -> Option<Rig> {
        let docker = dockerhost::docker().await?;
        dockerhost::images(&docker).await;
        let run = Run::new();
        let repo = Repo::new();
        repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
        Some(Rig { run, repo, docker })
    }

    fn tenant(&self, name: &str, text: &str) -> String {
        let id = self.run.tenant(name);
        self.repo.write(&format!("tenants/{id}.yaml"), text);
        id
    }

    fn remove_tenant(&self, id: &str) {
        std::fs::remove_file(self.repo.path().join(format!("tenants/{id}.yaml"))).unwrap();
    }

    fn fleet(&self) -> Fleet {
        let sources = berth::repo::load_dir(self.repo.path()).unwrap();
        let (fleet, diags) = berth::validate::validate(&sources);
        fleet.unwrap_or_else(|| panic!("{diags:?}"))
    }

    fn host(&self) -> HostRef {
        HostRef::new(&self.run.env, "local")
    }

    async fn drivers(&self) -> Drivers {
        let driver = DockerDriver::connect(
            &self.host(),
            "unix:///var/run/docker.sock",
            SecretProvider::None,
        )
        .await
        .expect("connect");
        Drivers {
            hosts: BTreeMap::from([(self.host(), AnyDriver::Docker(driver))]),
        }
    }

    async fn plan(&self, drivers: &Drivers, baseline: Option<&Desired>) -> Plan {
        let mut live = observe_all(drivers)
            .await
            .map_err(|e| e.source.chain())
            .unwrap();
        // Only this run's host matters; other tests' objects on the same engine are foreign.
        live.hosts.retain(|h, _| *h == self.host());
        let fleet = self.fleet();
        let mut p = plan(
            &fleet,
            &live,
            &PlanOptions {
                allow_destroys: true,
                allow_empty: true,
                allow_upgrades: false,
                baseline,
                scope: None,
                now: None,
                purge_now: &[],
            },
        );
        // The embedded local environment points at the same engine; this run plans its own.
        p.steps.retain(|s| s.environment == self.run.env);
        p
    }

    async fn converge(&self, drivers: &Drivers) -> Plan {
        let first = self.plan(drivers, None).await;
        assert!(first.refusals.is_empty(), "{:?}", first.refusals);
        let report = execute(
            &first,
            drivers,
            &ExecOptions {
                attempts: 1,
                ..ExecOptions::default()
            },
            &Silent,
            &|| false,
            &BTreeSet::new(),
        )
        .await;
        assert!(report.success(), "{:#?}", report.outcomes);
        let again = self.plan(drivers, None).await;
        assert!(
            again.steps.is_empty(),
            "plan after apply:\n{}",
            berth::output::plan::render_text(&again, false)
        );
        first
    }

    async fn env_of(&self, container: &str) -> BTreeMap<String, String> {
        let info = self
            .docker
            .inspect_container(container, None)
            .await
            .unwrap();
        berth::driver::docker::convert::env_map(&info.config.unwrap().env.unwrap_or_default())
    }

    async fn container_id(&self, container: &str) -> String {
        self.docker
            .inspect_container(container, None)
            .await
            .unwrap()
            .id
            .unwrap()
    }

    fn baseline(&self) -> Desired {
        let fleet = self.fleet();
        desired::compile(
            &fleet,
            &desired::place(&fleet, &berth::model::live::Live::default()),
        )
    }
}

fn recreated(plan: &Plan) -> BTreeSet<String> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.change {
            Change::RecreateContainer { spec, .. } => Some(spec.name.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_sales_stack_applies_from_empty_then_plans_empty() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let id = rig.tenant("north", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    let web = rig
        .docker
        .inspect_container(&format!("{id}-web-1"), None)
        .await
        .unwrap();
    let state = web.state.clone().unwrap();
    assert_eq!(state.health.unwrap().status.unwrap().to_string(), "healthy");
    let host_config = web.host_config.clone().unwrap();
    assert_eq!(host_config.memory, Some(64 << 20));
    let binding = &host_config.port_bindings.unwrap()["8080/tcp"]
        .clone()
        .unwrap()[0];
    assert_eq!(
        binding.host_port.as_deref(),
        Some(rig.run.ports.0.to_string().as_str()),
        "first port of the range"
    );
    let labels = web.config.clone().unwrap().labels.unwrap();
    assert_eq!(labels["com.docker.compose.project"], id);
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["io.berth.tenant"], id);
    // The app reaches the database with the password the database was created with.
    let db = rig.env_of(&format!("{id}-db")).await;
    let app = rig.env_of(&format!("{id}-web-1")).await;
    assert_eq!(db["POSTGRES_PASSWORD"].len(), 32);
    assert_eq!(
        app["DATABASE_URL"],
        format!(
            "postgres://postgres:{}@db:5432/{}",
            db["POSTGRES_PASSWORD"],
            id.replace('-', "_")
        )
    );
    assert_eq!(app["REDIS_URL"], "redis://cache:6379");
    // The volume of the database and the network exist with berth's labels.
    let volume = rig
        .docker
        .inspect_volume(&format!("{id}_db-data"))
        .await
        .unwrap();
    assert_eq!(volume.labels["io.berth.tenant"], id);
    let network = rig
        .docker
        .inspect_network(
            &format!("{id}_net"),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(network.internal, Some(false), "the tenant publishes a port");
    // `docker compose -p <tenant> ps` shows the stack.
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={id}"),
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_recreate_only_the_containers_they_touch_and_secrets_survive() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let env = rig.run.env.clone();
    let id = rig.tenant("south", &stack(&env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    let db_password = rig.env_of(&format!("{id}-db")).await["POSTGRES_PASSWORD"].clone();
    let secret = rig.env_of(&format!("{id}-web-1")).await["APP_SECRET"].clone();
    let worker_id = rig.container_id(&format!("{id}-worker-1")).await;

    // Image change: only the web container uses the new image.
    rig.tenant("south", &stack(&env, "berth-stub:v2", "production"));
    let p = rig.converge(&drivers).await;
    assert_eq!(recreated(&p), BTreeSet::from([format!("{id}-web-1")]));
    assert_eq!(
        rig.container_id(&format!("{id}-worker-1")).await,
        worker_id,
        "worker untouched"
    );
    let web = rig
        .docker
        .inspect_container(&format!("{id}-web-1"), None)
        .await
        .unwrap();
    assert_eq!(web.config.unwrap().image.as_deref(), Some("berth-stub:v2"));

    // Env change: likewise, and the generated secret is read back, not regenerated.
    rig.tenant("south", &stack(&env, "berth-stub:v2", "maintenance"));
    let p = rig.converge(&drivers).await;
    assert_eq!(recreated(&p), BTreeSet::from([format!("{id}-web-1")]));
    let app = rig.env_of(&format!("{id}-web-1")).await;
    assert_eq!(app["MODE"], "maintenance");
    assert_eq!(
        app["APP_SECRET"], secret,
        "generated secret survives recreation"
    );
    assert_eq!(
        rig.env_of(&format!("{id}-db")).await["POSTGRES_PASSWORD"],
        db_password
    );

    // A database recreated (memory change) keeps its password too.
    rig.tenant(
        "south",
        &stack(&env, "berth-stub:v2", "maintenance").replace("memory: 64M", "memory: 96M"),
    );
    let p = rig.converge(&drivers).await;
    assert!(recreated(&p).contains(&format!("{id}-db")));
    assert_eq!(
        rig.env_of(&format!("{id}-db")).await["POSTGRES_PASSWORD"],
        db_password
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_container_holding_a_port_is_avoided() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let port = rig.run.ports.0;
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &format!("foreign-{}", rig.run.id),
            "--label",
            &format!("berth-test-run={}", rig.run.env),
            "-p",
            &format!("{port}:8080"),
            "berth-stub:v1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = rig.tenant("east", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    let web = rig
        .docker
        .inspect_container(&format!("{id}-web-1"), None)
        .await
        .unwrap();
    let binding = &web.host_config.unwrap().port_bindings.unwrap()["8080/tcp"]
        .clone()
        .unwrap()[0];
    assert_eq!(
        binding.host_port.as_deref(),
        Some((port + 1).to_string().as_str()),
        "skips the taken port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_stopped_or_removed_by_hand_are_drift_and_healed() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let id = rig.tenant("west", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    for args in [vec!["stop", "-t", "1"], vec!["rm", "-f"]] {
        let target = if args[0] == "stop" {
            format!("{id}-web-1")
        } else {
            format!("{id}-worker-1")
        };
        let out = std::process::Command::new("docker")
            .args(&args)
            .arg(&target)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let baseline = rig.baseline();
    let p = rig.plan(&drivers, Some(&baseline)).await;
    let kinds: Vec<(&str, Cause)> = p
        .steps
        .iter()
        .map(|s| (s.change.kind_name(), s.cause))
        .collect();
    assert!(
        kinds.contains(&("start-container", Cause::Drift)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("create-container", Cause::Drift)),
        "{kinds:?}"
    );
    let report = execute(
        &p,
        &drivers,
        &ExecOptions::default(),
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(report.success(), "{:?}", report.outcomes);
    assert!(rig.plan(&drivers, None).await.steps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_keeps_volumes_and_tenants_share_no_network() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let a = rig.tenant("alpha", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let b = rig.tenant("beta", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    for (mine, other) in [(&a, &b), (&b, &a)] {
        let info = rig
            .docker
            .inspect_container(&format!("{mine}-web-1"), None)
            .await
            .unwrap();
        let nets: Vec<String> = info
            .network_settings
            .unwrap()
            .networks
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(nets, [format!("{mine}_net")]);
        assert!(!nets.contains(&format!("{other}_net")));
    }
    rig.tenant(
        "alpha",
        &format!(
            "state: cancelled\n{}",
            stack(&rig.run.env, "berth-stub:v1", "production")
        ),
    );
    let p = rig.converge(&drivers).await;
    assert!(
        p.steps.iter().all(|s| matches!(
            s.change,
            Change::StopContainer { .. } | Change::RecordCancellation { .. }
        )),
        "cancel only stops (and records when, for data retention)"
    );
    let info = rig
        .docker
        .inspect_container(&format!("{a}-db"), None)
        .await
        .unwrap();
    assert_eq!(info.state.unwrap().running, Some(false));
    assert!(
        rig.docker
            .inspect_volume(&format!("{a}_db-data"))
            .await
            .is_ok(),
        "data kept"
    );
    // Removing the tenant file removes containers and network, never the volumes.
    rig.remove_tenant(&a);
    rig.converge(&drivers).await;
    assert!(
        rig.docker
            .inspect_container(&format!("{a}-db"), None)
            .await
            .is_err()
    );
    assert!(
        rig.docker
            .inspect_volume(&format!("{a}_db-data"))
            .await
            .is_ok(),
        "data kept after removal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_is_a_clear_transient_error() {
    let host = HostRef::new("prod", "docker-9");
    let err = DockerDriver::connect(&host, "tcp://127.0.0.1:1", SecretProvider::None)
        .await
        .err()
        .expect("unreachable");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("tcp://127.0.0.1:1") && err.to_string().contains("prod/docker-9"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_scan_catches_edits_the_labels_cannot_see() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let id = rig.tenant("deep", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    let web = format!("{id}-web-1");
    let out = std::process::Command::new("docker")
        .args(["update", "--memory", "96m", "--memory-swap", "96m", &web])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The list-only pass cannot see it (compose cannot either).
    assert!(rig.plan(&drivers, None).await.steps.is_empty());
    let deep = rig.drivers().await;
    deep.set_deep(true);
    let p = rig.plan(&deep, None).await;
    assert_eq!(recreated(&p), BTreeSet::from([web.clone()]));
    let step = &p.steps[0];
    assert_eq!(step.cause, Cause::Drift);
    let Change::RecreateContainer { reasons, .. } = &step.change else {
        panic!()
    };
    assert!(
        reasons
            .iter()
            .any(|r| r == "memory limit changed outside berth"),
        "{reasons:?}"
    );
    let report = execute(
        &p,
        &deep,
        &ExecOptions::default(),
        &Silent,
        &|| false,
        &BTreeSet::new(),
    )
    .await;
    assert!(report.success());
    assert!(
        rig.plan(&deep, None).await.steps.is_empty(),
        "deep plan after healing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_networks_get_subnets_from_the_host_block() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let env_file = rig
        .run
        .env_file()
        .replace("    ports:", "    subnets: 10.213.0.0/22\n    ports:");
    rig.repo
        .write(&format!("environments/{}.yaml", rig.run.env), &env_file);
    let a = rig.tenant("neta", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let b = rig.tenant("netb", &stack(&rig.run.env, "berth-stub:v1", "production"));
    let drivers = rig.drivers().await;
    rig.converge(&drivers).await;
    let mut subnets = BTreeSet::new();
    for id in [&a, &b] {
        let net = rig
            .docker
            .inspect_network(
                &format!("{id}_net"),
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .unwrap();
        let subnet = net.ipam.unwrap().config.unwrap()[0].subnet.clone().unwrap();
        assert!(subnet.starts_with("10.213."), "{subnet}");
        subnets.insert(subnet);
    }
    assert_eq!(subnets.len(), 2, "each tenant has its own /24");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_leases_are_exclusive_renewable_and_expire() {
    use berth::reconcile::lease::{self, LeaseRecord as LeaseInfo};
    let Some(rig) = Rig::start().await else {
        return;
    };
    let drivers = rig.drivers().await;
    let host = rig.host();
    let driver = &drivers.hosts[&host];
    let info = |token: &str, expires: u64| LeaseInfo {
        holder: format!("test {token}"),
        purpose: "apply".into(),
        started: 100,
        expires,
        token: token.into(),
    };
    lease::acquire(driver, &info("a", 1_000), 500)
        .await
        .unwrap();
    // Held: a second holder is refused with the first one's name.
    let err = lease::acquire(driver, &info("b", 2_000), 600)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("test a"), "{err}");
    // Renewed: the expiry moves, so at a time past the first expiry it is still held.
    lease::renew(driver, &info("a", 5_000)).await.unwrap();
    assert_eq!(lease::status(driver).await.unwrap().unwrap().expires, 5_000);
    assert!(
        lease::acquire(driver, &info("b", 9_000), 2_000)
            .await
            .is_err()
    );
    // Expired: the next holder takes over.
    lease::acquire(driver, &info("b", 9_000), 6_000)
        .await
        .unwrap();
    assert_eq!(lease::status(driver).await.unwrap().unwrap().token, "b");
    lease::release(driver, "b").await.unwrap();
    assert!(lease::status(driver).await.unwrap().is_none());
    let left = rig
        .docker
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap();
    assert!(
        !left
            .volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.name.starts_with(&format!("berth-lease-{}", rig.run.env)))
    );
}
