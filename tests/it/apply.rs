//! `berth apply` end to end, as a process: real sshd + Dokku simulator, real Docker Engine.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::dockerhost::{self, Run};
use crate::sshd::DokkuHost;
use crate::support::{Repo, berth_bin};

fn berth_in(repo: &Repo, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_OPENAI", "sk-apply-test-SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Start `berth apply --auto-approve ARGS` in the background.
fn spawn_apply(repo: &Repo, args: &[&str], stderr: Stdio) -> std::process::Child {
    Command::new(berth_bin())
        .args(["apply", "--auto-approve"])
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .env("BERTH_SECRET_OPENAI", "x")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The hosts match the files: `plan --detailed-exitcode` exits 0.
fn assert_plan_empty(repo: &Repo) {
    let plan = berth_in(repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const DOKKU_TENANT: &str = "environment: prod
apps:
  web:
    image: registry.example.app/app:1.4.2
    env: { LOG_LEVEL: info, SECRET_KEY: { generate: 32 }, OPENAI_KEY: { secret: openai } }
    uses: [db, cache]
    storage: [{ volume: uploads, path: /app/uploads }]
services:
  db: { kind: postgres }
  cache: { kind: redis }
";

fn dokku_repo(host: &DokkuHost, tenants: &[&str]) -> Repo {
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        &format!("version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 50 }}\nsecrets: {{ provider: env, names: [openai] }}\n", host.env_host("dokku-1")),
    );
    for t in tenants {
        repo.write(&format!("tenants/{t}.yaml"), DOKKU_TENANT);
    }
    repo
}

fn docker_repo(run: &Run, tenant: &str) -> (Repo, String) {
    let repo = Repo::new();
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let id = run.tenant(tenant);
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    ports: [{{ container: 8080 }}]\n    env: {{ TOKEN: {{ generate: 16 }} }}\n    uses: [db]\nservices:\n  db: {{ kind: postgres, image: berth-stub:v1, command: [\"/stub\", \"serve\", \"--port\", \"5432\"] }}\n",
            run.env
        ),
    );
    (repo, id)
}

#[test]
fn apply_needs_a_terminal_or_auto_approve() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme"]);
    let out = berth_in(&repo, &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--auto-approve"), "{}", text(&out));
    assert!(
        !host
            .commands()
            .iter()
            .any(|c| c.contains(&"apps:create".to_string()) && c.contains(&"acme-web".to_string()))
    );
}

#[test]
fn apply_then_plan_is_empty_on_dokku_and_apply_twice_changes_nothing() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme", "bolt"]);
    let out = berth_in(&repo, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = berth_in(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    host.clear_log();
    let again = berth_in(&repo, &["apply", "--auto-approve"]);
    assert_eq!(again.status.code(), Some(0));
    let mutations: Vec<_> = host
        .commands()
        .into_iter()
        .filter(|c| !c.iter().any(|w| w.starts_with("berth-lease")))
        .filter(|c| {
            c.iter().any(|w| {
                [
                    "apps:create",
                    "config:set",
                    "git:from-image",
                    "ps:scale",
                    "postgres:create",
                ]
                .contains(&w.as_str())
            })
        })
        .filter(|c| !c.contains(&"json".to_string()))
        .collect();
    assert!(
        mutations.is_empty(),
        "a second apply changed things: {mutations:?}"
    );
    // The lease was released.
    let status = berth_in(&repo, &["lock", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("prod/dokku-1: free"),
        "{}",
        text(&status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_plan_is_empty_on_docker_and_json_lines_stream() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let (repo, _) = docker_repo(&run, "json");
    let out = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--format", "json", "--repo"])
        .arg(repo.path())
        .env("BERTH_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Structured logs on stderr carry tenant, host and step fields.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("step succeeded") && logs.contains("tenant=json-") && logs.contains("step="),
        "{logs}"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "plan");
    assert!(events.iter().any(|e| e["event"] == "step-succeeded"));
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert!(events.iter().all(|e| e["version"] == 1));
    let plan = berth_in(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_is_refused_after_a_hand_change_and_accepted_otherwise() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let (repo, id) = docker_repo(&run, "saved");
    assert_eq!(
        berth_in(&repo, &["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
    // A change in the files, saved as a plan.
    let file = repo.path().join(format!("tenants/{id}.yaml"));
    let tenant = std::fs::read_to_string(&file).unwrap().replace(
        "TOKEN: { generate: 16 }",
        "TOKEN: { generate: 16 }, MODE: two",
    );
    std::fs::write(&file, tenant).unwrap();
    let plan_file = repo.path().join("plan.json");
    let out = berth_in(&repo, &["plan", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Someone stops the database by hand: the saved plan no longer describes the host.
    assert!(
        Command::new("docker")
            .args(["stop", "-t", "1", &format!("{id}-db")])
            .output()
            .unwrap()
            .status
            .success()
    );
    let refused = berth_in(&repo, &["apply", plan_file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("container/{id}-db")),
        "lists what moved: {}",
        text(&refused)
    );
    assert!(text(&refused).contains("the saved plan is stale"));
    // Plan again from the new state: the saved plan applies when nothing moved.
    let out = berth_in(&repo, &["plan", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let applied = berth_in(&repo, &["apply", plan_file.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    assert_plan_empty(&repo);
}

#[test]
fn a_second_apply_is_refused_while_the_first_holds_the_lease() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme", "bolt", "crux"]);
    host.set_latency(150);
    let mut first = spawn_apply(&repo, &[], Stdio::piped());
    // Wait until the first apply holds the lease.
    let started = Instant::now();
    while !host
        .commands()
        .iter()
        .any(|c| c.iter().any(|w| w == "berth-lease-prod") && c.contains(&"config:set".to_string()))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first apply never took the lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = berth_in(&repo, &["apply", "--auto-approve"]);
    assert_eq!(second.status.code(), Some(1));
    let msg = text(&second);
    assert!(
        msg.contains("is locked by") && msg.contains(&format!("pid {}", first.id())),
        "names the holder: {msg}"
    );
    assert!(first.wait().unwrap().success());
    // Once released, the next apply proceeds (and has nothing to do).
    host.set_latency(0);
    assert_eq!(
        berth_in(&repo, &["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
}

#[test]
fn sigterm_mid_apply_releases_the_lease_and_a_crashed_lease_expires() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme", "bolt"]);
    host.set_latency(200);
    let child = spawn_apply(&repo, &[], Stdio::piped());
    std::thread::sleep(Duration::from_millis(2500));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by a signal"));
    host.set_latency(0);
    let status = berth_in(&repo, &["lock", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("prod/dokku-1: free"),
        "{}",
        text(&status)
    );

    // kill -9 leaves the lease behind; with a short time to live the next apply takes over.
    host.set_latency(200);
    // (A TTL long enough that the lease is still held when the checks below are done and
    // the next apply starts, so that apply must wait for it.)
    let mut child = spawn_apply(&repo, &["--lease-ttl", "6"], Stdio::null());
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    host.set_latency(0);
    let held = berth_in(&repo, &["lock", "status"]);
    assert!(
        String::from_utf8_lossy(&held.stdout).contains("held by"),
        "{}",
        text(&held)
    );
    // Only the repo's own environment is listed: the embedded `local` default is not added
    // to a repo that has environments of its own.
    assert!(
        !String::from_utf8_lossy(&held.stdout).contains("local/"),
        "{}",
        text(&held)
    );
    let json = berth_in(&repo, &["lock", "status", "--format", "json"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{doc}");
    assert_eq!(hosts[0]["host"], "prod/dokku-1");
    assert_eq!(hosts[0]["held"], true);
    let holder = hosts[0]["holder"].as_str().unwrap();
    assert!(
        !holder.is_empty() && !holder.contains("unknown"),
        "the holder names its user: {holder}"
    );
    for key in ["started", "expires"] {
        let stamp = hosts[0][key].as_str().unwrap();
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[10] == b'T',
            "{key} is RFC 3339: {stamp}"
        );
    }
    // It expires within its TTL (6 s, rounded up to whole seconds): the next apply waits,
    // and says for whom.
    let out = berth_in(&repo, &["apply", "--auto-approve", "--lock-timeout", "20"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "waiting for the lease on prod/dokku-1 held by {holder}"
        )),
        "{}",
        text(&out)
    );
    let free = berth_in(&repo, &["lock", "status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&free.stdout).unwrap();
    assert_eq!(doc["hosts"][0]["held"], false, "{doc}");
    assert_plan_empty(&repo);
}

/// Ctrl-C in a terminal on `berth apply … 2>&1 | tee log`: the terminal sends SIGINT to the
/// whole foreground process group, so `tee` dies at once and berth's output pipe closes while
/// berth itself is stopping. berth must not panic on the writes, must finish what is in flight,
/// release its lease and leave a fleet the next apply converges.
#[test]
fn ctrl_c_on_apply_piped_into_tee_releases_the_lease() {
    use std::os::unix::process::CommandExt;
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme", "bolt"]);
    host.set_latency(200);
    let (reader, writer) = std::io::pipe().unwrap();
    let mut berth = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--repo"])
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_OPENAI", "x")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .process_group(0)
        .spawn()
        .unwrap();
    let log = repo.path().join("apply.log");
    let mut tee = Command::new("tee")
        .arg(&log)
        .stdin(reader)
        .stdout(Stdio::null())
        .process_group(i32::try_from(berth.id()).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // The terminal's Ctrl-C: SIGINT to the process group.
    Command::new("kill")
        .args(["-INT", "--", &format!("-{}", berth.id())])
        .status()
        .unwrap();
    let tee_status = tee.wait().unwrap();
    assert!(!tee_status.success(), "tee was interrupted too");
    let status = berth.wait().unwrap();
    assert_ne!(
        status.code(),
        Some(101),
        "berth panicked on the closed pipe"
    );
    assert_eq!(status.code(), Some(1), "an interrupted apply exits 1");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "{logged}");
    host.set_latency(0);
    let status = berth_in(&repo, &["lock", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("prod/dokku-1: free"),
        "the lease was released: {}",
        text(&status)
    );
    let out = berth_in(&repo, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_plan_empty(&repo);
}

#[test]
fn a_failing_step_isolates_its_tenant() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme"]);
    repo.write(
        "tenants/bad.yaml",
        &DOKKU_TENANT.replace("app:1.4.2", "app:broken"),
    );
    std::fs::write(
        host.state_dir().join("fail_images"),
        "registry.example.app/app:broken\n",
    )
    .unwrap();
    let out = berth_in(&repo, &["apply", "--auto-approve", "--attempts", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(msg.contains("tenant acme: converged"), "{msg}");
    assert!(msg.contains("tenant bad: failed at step"), "{msg}");
    assert!(
        msg.contains("Failed to pull image"),
        "carries Dokku's message: {msg}"
    );
    let state = host.state();
    assert_eq!(
        state["apps"]["acme-web"]["source_image"],
        "registry.example.app/app:1.4.2"
    );
}

/// Crash safety: kill -9 berth after k mutating commands, for every k of a ~30-command apply,
/// then rerun: it converges every time and no database or Redis is lost or replaced.
#[test]
fn killed_at_every_step_a_rerun_converges_and_keeps_data() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = dokku_repo(&host, &["acme", "bolt"]);
    let mutating = |h: &DokkuHost| {
        h.commands()
            .into_iter()
            .filter(|c| !c.iter().any(|w| w.starts_with("berth-lease")))
            .filter(|c| {
                let word = c
                    .iter()
                    .find(|w| !w.starts_with("--"))
                    .cloned()
                    .unwrap_or_default();
                !(word == "version"
                    || word.ends_with(":report")
                    || word.ends_with(":list")
                    || word.ends_with(":export")
                    || word.ends_with(":links")
                    || (word == "ps:scale" && c.contains(&"json".to_string())))
            })
            .count()
    };
    // Learn how many mutating commands a full apply takes, on a throwaway copy of the state.
    let total = {
        let out = berth_in(&repo, &["apply", "--auto-approve"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let n = mutating(&host);
        let mut state = host.state();
        let records = state["apps"]["berth-state"].clone();
        state["apps"] = serde_json::json!({ "berth-state": records });
        state["services"] = serde_json::json!({});
        host.write_state(&state);
        n
    };
    assert!(total >= 20, "a sizeable apply: {total} commands");
    let mut passwords: std::collections::BTreeMap<String, String> = Default::default();
    for k in 1..total {
        host.clear_log();
        host.set_latency(30);
        let mut child = spawn_apply(
            &repo,
            &["--lease-ttl", "1", "--attempts", "1"],
            Stdio::null(),
        );
        let started = Instant::now();
        while mutating(&host) < k && started.elapsed() < Duration::from_secs(60) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        host.set_latency(0);
        // Databases created so far keep their identity (a recreated service gets a new password).
        for (key, svc) in host.state()["services"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            let pw = svc["password"].as_str().unwrap().to_string();
            if let Some(before) = passwords.get(&key) {
                assert_eq!(before, &pw, "k={k}: {key} was replaced");
            }
            passwords.insert(key, pw);
        }
        // The killed apply's lease outlives it by up to its TTL (1 s, rounded up to whole
        // seconds): the rerun waits it out.
        let out = berth_in(&repo, &["apply", "--auto-approve", "--lock-timeout", "10"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "k={k}: rerun failed: {}",
            text(&out)
        );
        let plan = berth_in(&repo, &["plan", "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "k={k}: not converged: {}",
            text(&plan)
        );
        let state = host.state();
        for svc in [
            "postgres:acme-db",
            "redis:acme-cache",
            "postgres:bolt-db",
            "redis:bolt-cache",
        ] {
            let pw = state["services"][svc]["password"]
                .as_str()
                .unwrap_or_else(|| panic!("k={k}: {svc} lost"))
                .to_string();
            if let Some(before) = passwords.get(svc) {
                assert_eq!(before, &pw, "k={k}: {svc} was replaced");
            }
        }
        // Start the next round from empty apps but keep the data: a crash must never need it gone.
        let mut state = host.state();
        let records = state["apps"]["berth-state"].clone();
        state["apps"] = serde_json::json!({ "berth-state": records });
        for svc in state["services"].as_object_mut().unwrap().values_mut() {
            svc["links"] = serde_json::json!([]);
        }
        host.write_state(&state);
    }
}

/// `berth apply --auto-approve 2>&1 | head -2`: the reader goes away after two lines. Writes
/// to the closed pipe are dropped, the apply finishes, the lease is released, and no
/// container is left created-but-stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_never_panics_an_apply() {
    use std::io::BufRead;
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let run = Run::new();
    let (repo, _) = docker_repo(&run, "pipe");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--repo"])
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    {
        let mut lines = std::io::BufReader::new(reader).lines();
        for _ in 0..2 {
            lines.next();
        }
        // `head -2` exits: the read end closes here.
    }
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "berth panicked on a closed pipe");
    assert_eq!(status.code(), Some(0), "the apply itself succeeded");
    let created = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.berth.environment={}", run.env))
        .args(["--filter", "status=created"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&created.stdout).trim().is_empty(),
        "containers left in Created"
    );
    let locks = berth_in(&repo, &["lock", "status"]);
    assert!(
        String::from_utf8_lossy(&locks.stdout).contains(": free"),
        "{}",
        text(&locks)
    );
    let plan = berth_in(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}
