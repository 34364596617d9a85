//! Daemon passes (`Session::pass`) on the in-memory driver over real git repos: policy
//! (heal / report / paused), per-tenant independence, busy hosts, per-host records and the
//! scope since each host's applied commit.

use std::collections::{BTreeMap, BTreeSet};

use berth::driver::Connector;
use berth::driver::memory::World;
use berth::model::live::{ContainerState, HostRef};
use berth::reconcile::{
    ApplySettings, PassOutcome, PassSettings, PlanSettings, Session, Source, StopSignal,
    TenantPass, Unattended,
};

use crate::support::{Repo, commit, git, head};

const ENV: &str = "version: 1
domain: example.app
hosts:
  docker-1:
    docker: { endpoint: unix:///var/run/docker.sock }
    ports: 20000-20099
policy: { max-destroys: 2 }
secrets: { provider: env, names: [never-set-in-tests] }
";

fn tenant(extra: &str) -> String {
    format!(
        "environment: prod\napps:\n  web:\n    image: app:1\n    ports: [{{ container: 8080 }}]\n{extra}"
    )
}

fn host() -> HostRef {
    HostRef::new("prod", "docker-1")
}

fn git_repo(tenants: &[(&str, &str)]) -> Repo {
    let repo = Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.write("environments/prod.yaml", ENV);
    for (id, extra) in tenants {
        repo.write(&format!("tenants/{id}.yaml"), &tenant(extra));
    }
    commit(repo.path(), "base");
    repo
}

async fn session(repo: &Repo, world: &World) -> Session {
    let source = Source {
        repo: repo.path().to_path_buf(),
        rev: Some("HEAD".into()),
    };
    let loaded = berth::reconcile::load(&source).unwrap();
    Session::connect(
        loaded.fleet,
        loaded.commit,
        &Connector::Memory(world.clone()),
        None,
    )
    .await
    .unwrap()
    .with_history(repo.path())
}

/// The scope of an incremental pass: what changed since each host's applied commit.
async fn incremental(repo: &Repo, s: &Session, extra: &[&str]) -> PassSettings {
    let source = Source {
        repo: repo.path().to_path_buf(),
        rev: Some("HEAD".into()),
    };
    let loaded = berth::reconcile::load(&source).unwrap();
    let applied = s.applied_commits().await;
    let extra: BTreeSet<String> = extra.iter().map(|t| (*t).to_string()).collect();
    let scope = berth::reconcile::since_applied(&source, &loaded, &applied, &extra).unwrap();
    assert!(scope.is_some(), "every host records a known commit");
    PassSettings {
        plan: PlanSettings {
            scope,
            ..PlanSettings::default()
        },
        ..PassSettings::default()
    }
}

async fn pass(s: &Session, settings: &PassSettings) -> PassOutcome {
    s.pass(settings, &Unattended, &StopSignal::default())
        .await
        .unwrap()
}

fn result(outcome: &PassOutcome, tenant: &str) -> TenantPass {
    outcome.tenants[tenant].result.clone()
}

fn stop_by_hand(world: &World, container: &str) {
    let mut state = world.state();
    let live = state.live.hosts.get_mut(&host()).unwrap();
    live.docker.containers.get_mut(container).unwrap().state = ContainerState::Exited;
}

fn state_of(world: &World, container: &str) -> ContainerState {
    world.state().live.hosts[&host()].docker.containers[container].state
}

#[tokio::test]
async fn drift_is_healed_only_where_healing_is_on_and_paused_tenants_are_untouched() {
    let world = World::new();
    let repo = git_repo(&[("heal", ""), ("rep", ""), ("pau", "")]);
    let s = session(&repo, &world).await;
    let first = pass(&s, &PassSettings::default()).await;
    assert!(first.clean(), "{:?}", first.tenants);
    assert!(first.hosts[&host()].recorded);
    let c1 = head(repo.path());
    assert_eq!(world.state().applied[&host()], c1);

    // One tenant reports, one is paused; then someone stops every container by hand.
    repo.write("tenants/rep.yaml", &tenant("reconcile: report\n"));
    repo.write("tenants/pau.yaml", &tenant("reconcile: paused\n"));
    commit(repo.path(), "report and pause");
    let s = session(&repo, &world).await;
    for c in ["heal-web-1", "rep-web-1", "pau-web-1"] {
        stop_by_hand(&world, c);
    }
    let calls = world.state().calls;
    let full = pass(&s, &PassSettings::default()).await;
    assert_eq!(result(&full, "heal"), TenantPass::Converged);
    assert_eq!(result(&full, "rep"), TenantPass::Drifted);
    assert_eq!(result(&full, "pau"), TenantPass::Paused);
    assert_eq!(full.tenants["rep"].drift, 1, "{:?}", full.plan.steps);
    assert_eq!(state_of(&world, "heal-web-1"), ContainerState::Running);
    assert_eq!(state_of(&world, "rep-web-1"), ContainerState::Exited);
    assert_eq!(state_of(&world, "pau-web-1"), ContainerState::Exited);
    assert!(world.state().calls > calls);
    // Drift left alone by policy does not keep the host from reflecting the commit.
    assert!(full.hosts[&host()].recorded);
    assert_eq!(full.hosts[&host()].drift, 3);
    let c2 = head(repo.path());
    assert_eq!(world.state().applied[&host()], c2);

    // A file change of a paused tenant is not applied either (the host still records the
    // commit: the tenant is left alone by policy, and un-pausing is a file change).
    repo.write(
        "tenants/pau.yaml",
        &tenant("reconcile: paused\n").replace("app:1", "app:2"),
    );
    commit(repo.path(), "new image for a paused tenant");
    let s = session(&repo, &world).await;
    let settings = incremental(&repo, &s, &[]).await;
    let scope = settings.plan.scope.clone().unwrap();
    assert_eq!(scope.tenants, BTreeSet::from(["pau".to_string()]));
    let inc = pass(&s, &settings).await;
    assert_eq!(result(&inc, "pau"), TenantPass::Paused);
    assert_eq!(inc.tenants.len(), 1, "only the changed tenant is in scope");
    assert!(inc.hosts[&host()].recorded);
    assert_eq!(world.state().applied[&host()], head(repo.path()));
    let image = world.state().live.hosts[&host()].docker.containers["pau-web-1"]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("app:1"), "paused: untouched");

    // Un-pausing is a file change: the next incremental pass applies the tenant whole, the
    // image change made while it was paused included.
    repo.write("tenants/pau.yaml", &tenant("").replace("app:1", "app:2"));
    commit(repo.path(), "resume pau");
    let s = session(&repo, &world).await;
    let settings = incremental(&repo, &s, &[]).await;
    let inc = pass(&s, &settings).await;
    assert_eq!(
        result(&inc, "pau"),
        TenantPass::Converged,
        "{:?}",
        inc.tenants
    );
    assert!(inc.hosts[&host()].recorded);
    assert_eq!(world.state().applied[&host()], head(repo.path()));
}

#[tokio::test]
async fn one_tenants_refusal_or_missing_secret_never_blocks_the_others() {
    let world = World::new();
    let repo = git_repo(&[
        ("good", ""),
        ("taken", ""),
        (
            "nosecret",
            "    env: { KEY: { secret: never-set-in-tests } }\n",
        ),
    ]);
    // A container berth does not manage holds tenant `taken`'s name.
    {
        let mut state = world.state();
        let live = state.live.hosts.entry(host()).or_default();
        live.docker.containers.insert(
            "taken-web-1".into(),
            berth::model::live::LiveContainer::default(),
        );
    }
    let s = session(&repo, &world).await;
    let outcome = pass(&s, &PassSettings::default()).await;
    assert_eq!(result(&outcome, "good"), TenantPass::Converged);
    let TenantPass::Refused { reasons } = result(&outcome, "taken") else {
        panic!("{:?}", outcome.tenants)
    };
    assert!(reasons[0].contains("taken-web-1"), "{reasons:?}");
    let TenantPass::Blocked { problems } = result(&outcome, "nosecret") else {
        panic!("{:?}", outcome.tenants)
    };
    assert!(problems[0].contains("never-set-in-tests"), "{problems:?}");
    assert!(outcome.refused.is_empty());
    assert!(!outcome.clean());
    assert!(
        !outcome.hosts[&host()].recorded,
        "the host does not reflect the commit"
    );
    let state = world.state();
    assert!(
        state.live.hosts[&host()]
            .docker
            .containers
            .contains_key("good-web-1")
    );
    assert!(
        !state.live.hosts[&host()]
            .docker
            .containers
            .contains_key("nosecret-web-1")
    );
    assert!(state.leases.is_empty(), "released");
}

#[tokio::test]
async fn a_refusal_of_the_whole_plan_is_reported_and_nothing_runs() {
    let world = World::new();
    let repo = git_repo(&[("a", ""), ("b", ""), ("c", "")]);
    let s = session(&repo, &world).await;
    assert!(pass(&s, &PassSettings::default()).await.clean());
    // Removing two of three tenants destroys more than `max-destroys: 2` objects.
    std::fs::remove_file(repo.path().join("tenants/a.yaml")).unwrap();
    std::fs::remove_file(repo.path().join("tenants/b.yaml")).unwrap();
    commit(repo.path(), "remove two");
    let s = session(&repo, &world).await;
    let before = world.state().live.clone();
    let outcome = pass(&s, &PassSettings::default()).await;
    assert_eq!(outcome.refused.len(), 1, "{:?}", outcome.refused);
    assert!(matches!(result(&outcome, "a"), TenantPass::Refused { .. }));
    assert!(outcome.executed.steps.is_empty());
    assert_eq!(world.state().live, before, "nothing ran");
    assert!(!outcome.hosts[&host()].recorded);
}

/// A lease in the pass's own name (an earlier pass whose release was cut) is taken back at
/// once instead of leaving the host busy for the lease's whole time to live; another
/// holder's lease with the same purpose is not.
#[tokio::test]
async fn a_lease_an_earlier_pass_left_behind_is_taken_back() {
    let world = World::new();
    let repo = git_repo(&[("a", "")]);
    let s = session(&repo, &world).await;
    let settings = PassSettings {
        holder: "daemon@ops pid 42".into(),
        ..PassSettings::default()
    };
    let leftover = berth::driver::LeaseRecord {
        holder: settings.holder.clone(),
        purpose: "daemon pass".into(),
        started: berth::clock::now_unix(),
        expires: berth::clock::now_unix() + 1800,
        token: "an-earlier-pass".into(),
    };
    world.state().leases.insert(host(), leftover.clone());
    let outcome = pass(&s, &settings).await;
    assert_eq!(outcome.hosts[&host()].busy, None);
    assert_eq!(result(&outcome, "a"), TenantPass::Converged);
    assert!(
        world.state().live.hosts.contains_key(&host()),
        "the pass applied"
    );
    assert!(
        !world.state().leases.contains_key(&host()),
        "released at the end of the pass"
    );

    // Another daemon's (or process's) lease is left alone.
    let theirs = berth::driver::LeaseRecord {
        holder: "daemon@ops pid 43".into(),
        ..leftover
    };
    world.state().leases.insert(host(), theirs.clone());
    let outcome = pass(&s, &settings).await;
    assert_eq!(outcome.hosts[&host()].busy.as_ref(), Some(&theirs));
}

#[tokio::test]
async fn a_busy_host_waits_for_the_next_pass_and_held_tenants_are_left_alone() {
    let world = World::new();
    let repo = git_repo(&[("a", ""), ("b", "")]);
    let s = session(&repo, &world).await;
    let other = berth::driver::LeaseRecord {
        holder: "ci@runner pid 1".into(),
        purpose: "apply".into(),
        started: berth::clock::now_unix(),
        expires: berth::clock::now_unix() + 600,
        token: "theirs".into(),
    };
    world.state().leases.insert(host(), other.clone());
    let busy = pass(&s, &PassSettings::default()).await;
    assert_eq!(busy.hosts[&host()].busy.as_ref(), Some(&other));
    assert!(matches!(
        result(&busy, "a"),
        TenantPass::HostBusy { ref holder, .. } if holder == "ci@runner pid 1"
    ));
    assert!(busy.executed.steps.is_empty());
    assert_eq!(
        world.state().leases[&host()],
        other,
        "their lease is untouched"
    );
    assert!(!world.state().live.hosts.contains_key(&host()));

    world.state().leases.clear();
    let held = pass(
        &s,
        &PassSettings {
            hold: BTreeSet::from(["a".to_string()]),
            ..PassSettings::default()
        },
    )
    .await;
    assert_eq!(result(&held, "a"), TenantPass::Held);
    assert_eq!(result(&held, "b"), TenantPass::Converged);
    assert!(!held.hosts[&host()].recorded);
    let counted: BTreeMap<_, _> = held
        .steps
        .iter()
        .filter(|((_, r), _)| *r == "succeeded")
        .collect();
    assert!(!counted.is_empty(), "{:?}", held.steps);

    // `apply` (CI) on the same session machinery converges the rest and records the commit.
    let outcome = s
        .apply(
            &ApplySettings::default(),
            &Unattended,
            &StopSignal::default(),
        )
        .await
        .unwrap();
    assert!(outcome.success());
    assert_eq!(world.state().applied[&host()], head(repo.path()));
}
