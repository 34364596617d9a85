//! Rollouts on the real Docker Engine, through the real binary: generated secrets shared by
//! replicas and kept with their data, berth's own health probe, start-first replacement with
//! automatic rollback, stop-first rollback for published ports, ports that stay taken, and
//! ports held by other processes re-planned.

use std::process::{Command, Output};

use crate::dockerhost::{self, Run};
use crate::support::{Repo, berth_in, text};

fn berth(repo: &Repo, args: &[&str]) -> Output {
    berth_in(repo, args)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn env_of(container: &str, key: &str) -> Option<String> {
    let env = docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        container,
    ]);
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn id_of(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", container])
}

fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container]) == "true"
}

struct Rig {
    run: Run,
    repo: Repo,
}

impl Rig {
    async fn start() -> Option<Rig> {
        let docker = dockerhost::docker().await?;
        dockerhost::images(&docker).await;
        let run = Run::new();
        let repo = Repo::new();
        repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
        Some(Rig { run, repo })
    }

    fn tenant(&self, name: &str, body: &str) -> String {
        let id = self.run.tenant(name);
        self.repo.write(
            &format!("tenants/{id}.yaml"),
            &format!("environment: {}\n{body}", self.run.env),
        );
        id
    }

    fn apply(&self) -> Output {
        berth(&self.repo, &["apply", "--auto-approve", "--attempts", "1"])
    }

    fn assert_converged(&self) {
        let plan = berth(&self.repo, &["plan", "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "not converged:\n{}",
            text(&plan)
        );
    }
}

const STACK: &str = "apps:
  web:
    image: berth-stub:v1
    processes: { web: 2 }
    env: { APP_SECRET: { generate: 24 }, MODE: one }
    uses: [db]
services:
  db:
    kind: postgres
    image: berth-stub:v1
    command: [\"/stub\", \"serve\", \"--port\", \"5432\"]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_generated_secrets_which_outlive_a_removed_tenant_file() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let id = rig.tenant("keep", STACK);
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    rig.assert_converged();
    let one = env_of(&format!("{id}-web-1"), "APP_SECRET").unwrap();
    let two = env_of(&format!("{id}-web-2"), "APP_SECRET").unwrap();
    assert_eq!(one, two, "both replicas get one value");
    let password = env_of(&format!("{id}-db"), "POSTGRES_PASSWORD").unwrap();
    assert!(
        env_of(&format!("{id}-web-1"), "DATABASE_URL")
            .unwrap()
            .contains(&password)
    );
    // Remove the tenant file: containers go, the data volume and the secrets stay.
    let file = rig.repo.path().join(format!("tenants/{id}.yaml"));
    let saved = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let out = berth(
        &rig.repo,
        &[
            "apply",
            "--auto-approve",
            "--allow-empty",
            "--allow-destroys",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={id}-db")]),
        ""
    );
    assert!(
        !docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={id}_db-data")
        ])
        .is_empty()
    );
    // Restore it: the database comes back on its old volume with its old password.
    std::fs::write(&file, saved).unwrap();
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env_of(&format!("{id}-db"), "POSTGRES_PASSWORD").as_deref(),
        Some(password.as_str()),
        "the credential of kept data never changes"
    );
    assert_eq!(
        env_of(&format!("{id}-web-2"), "APP_SECRET").as_deref(),
        Some(one.as_str())
    );
    rig.assert_converged();
}

const PROBED: &str = "apps:
  web:
    image: berth-stub:v1
    health: { path: /health, interval: 1, timeout: 1, retries: 2 }
    env: { MODE: MODE_VALUE }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_release_is_removed_and_the_old_container_keeps_serving() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    // berth's own HTTP probe: the stub image has no shell and no wget.
    let id = rig.tenant("probe", &PROBED.replace("MODE_VALUE", "good"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    let web = format!("{id}-web-1");
    let before = id_of(&web);
    // A release whose health endpoint answers 500.
    rig.tenant(
        "probe",
        &PROBED.replace(
            "env: { MODE: MODE_VALUE }",
            "env: { MODE: bad, STUB_UNHEALTHY: \"1\" }",
        ),
    );
    let out = rig.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("tenant {id}: failed")) && said.contains("500"),
        "{said}"
    );
    assert_eq!(id_of(&web), before, "the old container was not replaced");
    assert!(running(&web), "and it still runs");
    assert_eq!(env_of(&web, "MODE").as_deref(), Some("good"));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={web}-berth-next")]),
        "",
        "the failed replacement is gone"
    );
    // The change is still pending; a fixed release rolls out.
    let plan = berth(&rig.repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    rig.tenant("probe", &PROBED.replace("MODE_VALUE", "fixed"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env_of(&web, "MODE").as_deref(), Some("fixed"));
    rig.assert_converged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_is_replaced_stop_first_and_rolled_back_when_unhealthy() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let body = "apps:\n  web:\n    image: berth-stub:v1\n    ports: [{ container: 8080 }]\n    health: { path: /health, interval: 1, timeout: 1, retries: 2 }\n    command: COMMAND\n";
    let id = rig.tenant(
        "fixed",
        &body.replace("COMMAND", "[\"/stub\", \"serve\", \"--port\", \"8080\"]"),
    );
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    let web = format!("{id}-web-1");
    let port = docker(&["port", &web, "8080/tcp"]);
    let before = id_of(&web);
    rig.tenant("fixed", &body.replace("COMMAND", "[\"/stub\", \"fail\"]"));
    let plan = berth(&rig.repo, &["plan"]);
    assert!(text(&plan).contains("stop-first"), "{}", text(&plan));
    let out = rig.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("exited with code"), "{}", text(&out));
    assert_eq!(id_of(&web), before);
    assert!(running(&web), "rolled back: the old container runs again");
    assert_eq!(docker(&["port", &web, "8080/tcp"]), port, "on its port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_of_stopped_containers_stay_taken_and_held_ports_are_replanned() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let published = "apps:\n  web:\n    image: berth-stub:v1\n    ports: [{ container: 8080 }]\n";
    // Something that is not a container listens on the first port of the range.
    let listener = std::net::TcpListener::bind(("0.0.0.0", rig.run.ports.0)).unwrap();
    let a = rig.tenant("porta", published);
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("held by another process"),
        "{}",
        text(&out)
    );
    let a_port = docker(&["port", &format!("{a}-web-1"), "8080/tcp"]);
    assert!(
        !a_port.ends_with(&format!(":{}", rig.run.ports.0)),
        "re-planned away from the held port: {a_port}"
    );
    rig.assert_converged();
    drop(listener);
    // Cancel A (its container stops), then add B: B must not get A's port.
    rig.tenant("porta", &format!("state: cancelled\n{published}"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!running(&format!("{a}-web-1")));
    let b = rig.tenant("portb", published);
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    let b_port = docker(&["port", &format!("{b}-web-1"), "8080/tcp"]);
    let a_port_number = a_port.rsplit(':').next().unwrap().to_string();
    assert!(
        !b_port.ends_with(&format!(":{a_port_number}")),
        "B took the cancelled tenant's port {a_port_number}: {b_port}"
    );
    rig.assert_converged();
}

/// A healthy rollout under load: a client on the tenant's network requests `web` (the
/// network alias) in a loop while the image changes; the old container serves until the new
/// one is healthy, so no request fails for lack of a container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_fails_no_request() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let body = "apps:\n  web:\n    image: IMAGE\n    domains: [roll.it.test]\n    health: { path: /health, interval: 1, timeout: 1, retries: 5 }\n";
    let id = rig.tenant("roll", &body.replace("IMAGE", "berth-stub:v1"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    let client = format!("{id}-client");
    let started = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &client,
            "--network",
            &format!("{id}_net"),
        ])
        .arg("--label")
        .arg(format!("berth-test-run={}", rig.run.env))
        .args(["berth-stub:v1", "/stub", "client", "web", "8080", "12"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    std::thread::sleep(std::time::Duration::from_secs(1));
    rig.tenant("roll", &body.replace("IMAGE", "berth-stub:v2"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    let _ = Command::new("docker").args(["wait", &client]).output();
    let counts = docker(&["logs", &client]);
    let field = |name: &str| -> u64 {
        counts
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in `{counts}`"))
    };
    let (ok, failed) = (field("ok"), field("failed"));
    println!("rollout under load: {ok} requests succeeded, {failed} failed");
    assert!(ok > 100, "the client ran: {counts}");
    // The alias moves with Docker's DNS: a request that resolved the old address an instant
    // before the switch can still go there and fail — at most one per switch for this
    // sequential client. (Routes berth manages in a proxy switch without that gap.)
    assert!(
        failed <= 1,
        "requests failed during a healthy rollout: {counts}"
    );
    rig.assert_converged();
}

/// `state: purge` waits for `policy.retain-data` after the cancellation berth recorded on
/// the host; `--allow-destroys` does not override it, `--purge-now <tenant>` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_waits_for_retention_unless_purge_now_names_the_tenant() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let body = "apps:\n  web:\n    image: berth-stub:v1\nservices:\n  db: { kind: postgres, image: berth-stub:v1, command: [\"/stub\", \"serve\", \"--port\", \"5432\"] }\n";
    let id = rig.tenant("gone", body);
    assert!(rig.apply().status.success());
    rig.tenant("gone", &format!("state: cancelled\n{body}"));
    let out = rig.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("record: {id} cancelled")),
        "{}",
        text(&out)
    );
    let record = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name=berth-cancelled.{}.{id}", rig.run.env),
    ]);
    assert!(
        !record.is_empty(),
        "the cancellation is recorded on the host"
    );
    rig.assert_converged();
    rig.tenant("gone", &format!("state: purge\n{body}"));
    let out = berth(&rig.repo, &["apply", "--auto-approve", "--allow-destroys"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("keeps its data for 30 days"),
        "{}",
        text(&out)
    );
    assert!(
        !docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={id}_db-data")
        ])
        .is_empty(),
        "the data is still there"
    );
    let out = berth(&rig.repo, &["apply", "--auto-approve", "--purge-now", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(docker(&["volume", "ls", "-q", "--filter", &format!("name={id}_")]).is_empty());
    assert!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=berth-cancelled.{}.{id}", rig.run.env)
        ])
        .is_empty(),
        "the record went with the data"
    );
    rig.assert_converged();
}

/// Engine events about this run (`docker events` between two times, read after the fact):
/// every event whose JSON names the run's environment or `extra`.
fn events_between(since: f64, until: f64, run: &Run, extra: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &format!("{until:.3}"),
            "--format",
            "{{json .}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&run.env) || l.contains(extra))
        .map(str::to_string)
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Issue 11.2 on the engine's own record: an apply whose preflight finds a missing secret
/// and an image no registry has, and then one with a host that cannot be reached, exit 1
/// with every problem in one report — and the Docker Engine logs no event for the run but
/// the lease volume's (no container, volume or network created, started, stopped or
/// removed, no image pulled) while a pending rollout of a running tenant waits; the tenant
/// keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_preflight_makes_no_engine_event() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let web = |image: &str| {
        format!("apps:\n  web:\n    image: {image}\n    ports: [{{ container: 8080 }}]\n")
    };
    let keep = rig.tenant("pfk", &web("berth-stub:v1"));
    let o = berth(&rig.repo, &["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    let kept = id_of(&format!("{keep}-web-1"));
    let apply = || {
        Command::new(crate::support::berth_bin())
            .args(["apply", "--auto-approve", "--repo"])
            .arg(rig.repo.path())
            .env("NO_COLOR", "1")
            .env_remove("BERTH_SECRET_OPENAI")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    // A rollout waits (v1 → v2) while one tenant lacks its secret and another's image exists
    // nowhere.
    rig.tenant("pfk", &web("berth-stub:v2"));
    rig.tenant(
        "pfs",
        "apps:\n  web:\n    image: berth-stub:v1\n    env: { KEY: { secret: openai } }\n",
    );
    rig.tenant("pfi", "apps:\n  web:\n    image: berth-stub:nope\n");
    let since = unix_now();
    let o = apply();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("preflight found 2 problems"), "{said}");
    assert!(
        said.contains("BERTH_SECRET_OPENAI") && said.contains("berth-stub:nope"),
        "{said}"
    );

    // A host that cannot be reached: refused before any host is touched, naming it.
    let env_path = format!("environments/{}.yaml", rig.run.env);
    let env = std::fs::read_to_string(rig.repo.path().join(&env_path)).unwrap();
    rig.repo.write(
        &env_path,
        &env.replacen(
            "hosts:\n",
            "hosts:\n  gone:\n    docker: { endpoint: \"tcp://127.0.0.1:9\", timeout: 5 }\n",
            1,
        ),
    );
    std::fs::remove_file(
        rig.repo
            .path()
            .join(format!("tenants/{}.yaml", rig.run.tenant("pfs"))),
    )
    .unwrap();
    std::fs::remove_file(
        rig.repo
            .path()
            .join(format!("tenants/{}.yaml", rig.run.tenant("pfi"))),
    )
    .unwrap();
    rig.tenant(
        "pfg",
        "host: gone\napps:\n  web:\n    image: berth-stub:v1\n",
    );
    let o = apply();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("{}/gone", rig.run.env)),
        "the unreachable host is named: {said}"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    // The host's lease is taken and released around preflight (a volume of its own); not
    // one other object of the run is touched.
    let events: Vec<String> = events_between(since, unix_now(), &rig.run, "berth-stub:nope")
        .into_iter()
        .filter(|e| !e.contains(&format!("\"berth-lease-{}\"", rig.run.env)))
        .collect();
    assert!(events.is_empty(), "the engine saw: {events:#?}");
    assert_eq!(
        id_of(&format!("{keep}-web-1")),
        kept,
        "the running tenant is untouched"
    );
    assert!(running(&format!("{keep}-web-1")));

    // The control: with the problems gone the rollout runs, and the engine logs it.
    rig.repo.write(&env_path, &env);
    std::fs::remove_file(
        rig.repo
            .path()
            .join(format!("tenants/{}.yaml", rig.run.tenant("pfg"))),
    )
    .unwrap();
    let since = unix_now();
    let o = berth(&rig.repo, &["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let events = events_between(since, unix_now(), &rig.run, "berth-stub:nope");
    assert!(
        events.iter().any(|e| e.contains("\"create\"")),
        "the watch sees a real rollout: {events:#?}"
    );
}
