//! The library's reconcile session, driven directly (no CLI): on the in-memory driver, and on
//! the real Docker Engine.

use berth::driver::Connector;
use berth::driver::memory::World;
use berth::reconcile::{
    ApplySettings, PlanSettings, Session, SessionError, Source, StopSignal, Stopped, TenantOutcome,
    Unattended,
};

use crate::dockerhost::{self, Run};
use crate::support::Repo;

const ENV: &str = "version: 1
domain: example.app
hosts:
  docker-1:
    docker: { endpoint: unix:///var/run/docker.sock }
    ports: 20000-20099
policy: { max-destroys: 2 }
secrets: { provider: env, names: [] }
";

fn tenant(image: &str) -> String {
    format!(
        "environment: prod\napps:\n  web:\n    image: {image}\n    ports: [{{ container: 8080 }}]\n    env: {{ TOKEN: {{ generate: 16 }} }}\n    uses: [db]\nservices:\n  db: {{ kind: postgres, image: postgres:16 }}\n"
    )
}

fn repo(tenants: &[&str]) -> Repo {
    let repo = Repo::new();
    repo.write("environments/prod.yaml", ENV);
    for t in tenants {
        repo.write(&format!("tenants/{t}.yaml"), &tenant("app:1"));
    }
    repo
}

async fn session(repo: &Repo, world: &World, commit: &str) -> Session {
    let loaded = berth::reconcile::load(&Source {
        repo: repo.path().to_path_buf(),
        rev: None,
    })
    .unwrap();
    Session::connect(
        loaded.fleet,
        Some(commit.to_string()),
        &Connector::Memory(world.clone()),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_session_applies_records_releases_and_converges_in_memory() {
    let world = World::new();
    let repo = repo(&["acme", "bolt"]);
    let s = session(&repo, &world, "c1").await;
    let stop = StopSignal::default();
    let outcome = s
        .apply(&ApplySettings::default(), &Unattended, &stop)
        .await
        .unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.tenants.len(), 2);
    assert!(
        outcome
            .tenants
            .values()
            .all(|t| *t == TenantOutcome::Converged)
    );
    let host = berth::model::live::HostRef::new("prod", "docker-1");
    assert_eq!(outcome.recorded, vec![host.clone()]);
    {
        let state = world.state();
        assert_eq!(state.applied.get(&host).map(String::as_str), Some("c1"));
        assert!(state.leases.is_empty(), "the lease was released");
        assert_eq!(state.live.hosts[&host].docker.containers.len(), 4);
    }
    // Plan again: nothing to do; apply again: nothing runs.
    let plan = s.plan(&PlanSettings::default()).await.unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    let again = s
        .apply(&ApplySettings::default(), &Unattended, &stop)
        .await
        .unwrap();
    assert_eq!(again.stopped, Some(Stopped::NothingToDo));
}

#[tokio::test]
async fn a_saved_plan_is_stale_after_a_hand_change_and_a_refused_plan_runs_nothing() {
    let world = World::new();
    let repo = repo(&["acme", "bolt"]);
    let s = session(&repo, &world, "c1").await;
    let stop = StopSignal::default();
    s.apply(&ApplySettings::default(), &Unattended, &stop)
        .await
        .unwrap();
    // A saved plan for a new tenant, then a hand change on the host.
    let repo2 = repo_with(&repo, "cora");
    let s2 = session(&repo2, &world, "c2").await;
    let saved = s2.plan(&PlanSettings::default()).await.unwrap();
    assert!(!saved.is_empty());
    {
        let mut state = world.state();
        let host = berth::model::live::HostRef::new("prod", "docker-1");
        let live = state.live.hosts.get_mut(&host).unwrap();
        live.docker.containers.remove("acme-web-1");
    }
    let err = s2
        .apply(
            &ApplySettings {
                saved: Some(saved),
                ..ApplySettings::default()
            },
            &Unattended,
            &stop,
        )
        .await
        .unwrap_err();
    let SessionError::StalePlan { moved } = &err else {
        panic!("{err}")
    };
    assert!(
        moved
            .iter()
            .any(|m| m.key.ends_with("container/acme-web-1")),
        "{moved:?}"
    );
    assert!(world.state().leases.is_empty(), "released after a refusal");
    // Removing both tenant files destroys 6 objects > max-destroys 2: refused, nothing ran.
    let empty = Repo::new();
    empty.write("environments/prod.yaml", ENV);
    empty.write("tenants/cora.yaml", &tenant("app:1"));
    let s3 = session(&empty, &world, "c3").await;
    let calls_before = world.state().calls;
    let outcome = s3
        .apply(&ApplySettings::default(), &Unattended, &stop)
        .await
        .unwrap();
    assert_eq!(outcome.stopped, Some(Stopped::Refused));
    assert!(
        outcome
            .tenants
            .values()
            .all(|t| *t == TenantOutcome::Refused)
    );
    // Only the lease, one observation and the release touched the host.
    let calls = world.state().calls - calls_before;
    assert!(calls <= 5, "{calls} calls for a refused plan");
}

fn repo_with(base: &Repo, extra: &str) -> Repo {
    let repo = Repo::new();
    for entry in walk(base.path()) {
        let rel = entry.strip_prefix(base.path()).unwrap();
        repo.write(
            &rel.to_string_lossy(),
            &std::fs::read_to_string(&entry).unwrap(),
        );
    }
    repo.write(&format!("tenants/{extra}.yaml"), &tenant("app:1"));
    repo
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_applies_on_the_docker_engine() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let repo = Repo::new();
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let id = run.tenant("lib");
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    ports: [{{ container: 8080 }}]\n    env: {{ TOKEN: {{ generate: 16 }} }}\n",
            run.env
        ),
    );
    let loaded = berth::reconcile::load(&Source {
        repo: repo.path().to_path_buf(),
        rev: None,
    })
    .unwrap();
    let s = Session::connect(
        loaded.fleet,
        Some("0123456789abcdef0123456789abcdef01234567".into()),
        &Connector::Real,
        None,
    )
    .await
    .unwrap();
    let stop = StopSignal::default();
    let outcome = s
        .apply(&ApplySettings::default(), &Unattended, &stop)
        .await
        .unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.tenants.get(&id), Some(&TenantOutcome::Converged));
    let plan = s.plan(&PlanSettings::default()).await.unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    let applied = s.applied_commits().await;
    assert_eq!(
        applied.values().next().cloned().flatten().as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    let locks = berth::reconcile::lock_status(&s.fleet, &Connector::Real)
        .await
        .unwrap();
    assert!(
        locks.iter().all(|(_, l)| l.is_none()),
        "released: {locks:?}"
    );
}
