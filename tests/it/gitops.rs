//! GitOps on real repositories on disk: commit ranges, renames, deletions, environment
//! changes, `plan --since` reading only what changed, PR-comment Markdown, `berth status`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth::gitops::GitRepo;

use crate::sshd::DokkuHost;
use crate::support::{Repo, berth_bin, commit, git};

const TENANT: &str = "environment: prod\napps:\n  web:\n    image: registry.example.app/app:1.4.2\n    env: { LOG_LEVEL: info, API_KEY: { secret: openai } }\n";

fn repo_with(env: &str, tenants: &[&str]) -> Repo {
    let repo = Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.write("environments/prod.yaml", env);
    for t in tenants {
        repo.write(&format!("tenants/{t}.yaml"), TENANT);
    }
    commit(repo.path(), "base");
    repo
}

const OFFLINE_ENV: &str = "version: 1\ndomain: example.app\nhosts:\n  d1:\n    docker: { endpoint: unix:///var/run/docker.sock }\nsecrets: { provider: env, names: [openai] }\n";

#[test]
fn changes_cover_additions_edits_renames_deletions_and_environments() {
    let repo = repo_with(OFFLINE_ENV, &["alpha", "bravo", "charlie"]);
    let dir = repo.path();
    repo.write("tenants/alpha.yaml", &TENANT.replace("info", "debug"));
    git(dir, &["mv", "tenants/bravo.yaml", "tenants/bravo2.yaml"]);
    std::fs::remove_file(dir.join("tenants/charlie.yaml")).unwrap();
    repo.write("tenants/delta.yaml", TENANT);
    commit(dir, "tenant changes");
    let g = GitRepo::open(dir).unwrap();
    let c = g.changes("HEAD~1", "HEAD").unwrap();
    let expected: BTreeSet<String> = ["alpha", "bravo", "bravo2", "charlie", "delta"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(c.tenants, expected);
    assert!(c.environments.is_empty());
    repo.write(
        "environments/prod.yaml",
        &OFFLINE_ENV.replace("example.app", "example.org"),
    );
    commit(dir, "env change");
    let c = g.changes("HEAD~1", "HEAD").unwrap();
    assert!(c.tenants.is_empty());
    assert_eq!(c.environments, BTreeSet::from(["prod".to_string()]));
    assert_eq!(g.behind("HEAD~2", "HEAD").unwrap(), 2);
}

#[test]
fn desired_state_is_read_at_a_commit_without_checkout() {
    let repo = repo_with(OFFLINE_ENV, &["alpha"]);
    let dir = repo.path();
    git(dir, &["checkout", "-q", "-b", "feature"]);
    repo.write("tenants/zulu.yaml", TENANT);
    commit(dir, "add zulu");
    let g = GitRepo::open(dir).unwrap();
    let at_main = g.sources_at("main").unwrap();
    let names: Vec<&str> = at_main.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        names.contains(&"tenants/alpha.yaml") && !names.contains(&"tenants/zulu.yaml"),
        "{names:?}"
    );
    let (fleet, diags) = berth::validate::validate(&at_main);
    assert!(diags.is_empty());
    assert_eq!(fleet.unwrap().tenants.len(), 1);
    // The CLI reads a revision the same way, and records it in the plan.
    let out = Command::new(berth_bin())
        .args([
            "plan",
            "--offline",
            "--rev",
            "main",
            "--format",
            "json",
            "--repo",
        ])
        .arg(dir)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["commit"].as_str().unwrap(), g.resolve("main").unwrap());
    assert!(
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tenant"] != "zulu")
    );
}

fn berth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .arg("--repo")
        .arg(dir)
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_OPENAI", "sk-gitops-SECRET-71c3")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn dokku_env(host: &DokkuHost) -> String {
    format!(
        "version: 1\ndomain: example.app\nhosts:\n{}policy: {{ max-destroys: 20 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
        host.env_host("dokku-1")
    )
}

#[test]
fn plan_since_reads_and_plans_only_the_changed_tenants() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = repo_with(&dokku_env(&host), &["alpha", "bravo", "charlie"]);
    let dir = repo.path();
    assert_eq!(
        berth_in(dir, &["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
    repo.write("tenants/bravo.yaml", &TENANT.replace("1.4.2", "1.5.0"));
    std::fs::remove_file(dir.join("tenants/charlie.yaml")).unwrap();
    commit(dir, "bump bravo, remove charlie");
    host.clear_log();
    let out = berth_in(dir, &["plan", "--since", "HEAD~1", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenants: BTreeSet<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, BTreeSet::from(["bravo", "charlie"]));
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["change"]["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"deploy-image") && kinds.contains(&"destroy-app"),
        "{kinds:?}"
    );
    // Unchanged tenants were not read: no per-app command names alpha's app.
    let commands = host.commands();
    assert!(
        commands
            .iter()
            .any(|c| c.contains(&"bravo-web".to_string()))
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.contains(&"alpha-web".to_string())),
        "{commands:?}"
    );
}

#[test]
fn markdown_comment_has_a_stable_marker_and_no_secret() {
    let repo = repo_with(OFFLINE_ENV, &["alpha", "bravo"]);
    let a = berth_in(repo.path(), &["plan", "--offline", "--format", "markdown"]);
    let b = berth_in(repo.path(), &["plan", "--offline", "--format", "markdown"]);
    assert_eq!(a.stdout, b.stdout, "deterministic");
    let md = String::from_utf8_lossy(&a.stdout);
    assert!(
        md.starts_with("<!-- berth-plan -->\n### berth plan\n"),
        "{md}"
    );
    assert!(md.contains("| host | create | change | destroy | drift |"));
    assert!(md.contains("<details><summary><code>alpha</code>"));
    assert!(md.contains("API_KEY=(sensitive)"));
    assert!(!md.contains("sk-gitops-SECRET"));
}

#[test]
fn status_shows_the_applied_commit_and_how_far_behind_it_is() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = repo_with(&dokku_env(&host), &["alpha"]);
    let dir = repo.path();
    assert_eq!(
        berth_in(dir, &["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
    let head = GitRepo::open(dir).unwrap().resolve("HEAD").unwrap();
    let out = berth_in(dir, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "prod/dokku-1: applied {}, 0 commits behind HEAD, 0 drifted, 0 pending",
            &head[..12]
        )),
        "{text}"
    );
    repo.write("tenants/alpha.yaml", &TENANT.replace("info", "warn"));
    commit(dir, "alpha logs less");
    let out = berth_in(dir, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 commits behind HEAD") && text.contains("0 drifted, 3 pending"),
        "{text}"
    );
}

/// The baseline is real: after an apply records its commit, a container removed by hand is
/// drift (the desired state at the applied commit had it), not a new intended object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_by_hand_is_drift_against_the_applied_commit() {
    let Some(docker) = crate::dockerhost::docker().await else {
        return;
    };
    crate::dockerhost::images(&docker).await;
    let run = crate::dockerhost::Run::new();
    let repo = Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let id = run.tenant("base");
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    ports: [{{ container: 8080 }}]\n",
            run.env
        ),
    );
    commit(repo.path(), "base");
    let berth = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .arg("--repo")
            .arg(repo.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = berth(&["apply", "--auto-approve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rm = Command::new("docker")
        .args(["rm", "-f", &format!("{id}-web-1")])
        .output()
        .unwrap();
    assert!(rm.status.success());
    let out = berth(&["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let create = steps
        .iter()
        .find(|s| s["change"]["kind"] == "create-container")
        .expect("the container is planned back");
    assert_eq!(create["cause"], "drift", "{create}");
}

/// Rolling back is applying an earlier commit: `apply --rev HEAD~1` puts the tenant back on
/// the image of that commit (start-first, as every replacement) and records it as applied.
/// (`--tenant ID` narrows a rollback to one tenant; such an apply records no commit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rev_rolls_a_tenant_back_to_an_earlier_commit() {
    let Some(docker) = crate::dockerhost::docker().await else {
        return;
    };
    crate::dockerhost::images(&docker).await;
    let run = crate::dockerhost::Run::new();
    let repo = Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let id = run.tenant("back");
    let tenant = |image: &str| {
        format!(
            "environment: {}\napps:\n  web:\n    image: {image}\n    health: {{ path: /health, interval: 1, timeout: 1, retries: 3 }}\n",
            run.env
        )
    };
    let berth = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .arg("--repo")
            .arg(repo.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let image_of = || {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.Config.Image}}", &format!("{id}-web-1")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    repo.write(&format!("tenants/{id}.yaml"), &tenant("berth-stub:v1"));
    commit(repo.path(), "v1");
    assert!(berth(&["apply", "--auto-approve"]).status.success());
    repo.write(&format!("tenants/{id}.yaml"), &tenant("berth-stub:v2"));
    commit(repo.path(), "v2");
    assert!(berth(&["apply", "--auto-approve"]).status.success());
    assert_eq!(image_of(), "berth-stub:v2");
    let out = berth(&["apply", "--auto-approve", "--rev", "HEAD~1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_of(), "berth-stub:v1");
    let status = berth(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let previous = GitRepo::open(repo.path())
        .unwrap()
        .resolve("HEAD~1")
        .unwrap();
    assert_eq!(doc["hosts"][0]["applied"], previous.as_str(), "{doc}");
    assert_eq!(doc["hosts"][0]["behind"], 1, "{doc}");
}

fn berth_at(repo: &Repo, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_OPENAI", "sk-scoped")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn typos_in_tenant_and_uncommitted_edits_are_never_a_silent_no_change() {
    let repo = repo_with(OFFLINE_ENV, &["alpha", "bravo"]);
    let out = berth_at(&repo, &["plan", "--offline", "--tenant", "alpah"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("no tenant `alpah`"), "{}", said(&out));
    assert!(
        said(&out).contains("did you mean `alpha`"),
        "{}",
        said(&out)
    );
    // An uncommitted edit is part of `--since HEAD`: the plan reads the work tree.
    repo.write("tenants/bravo.yaml", &TENANT.replace("info", "debug"));
    let out = berth_at(
        &repo,
        &["plan", "--offline", "--since", "HEAD", "--format", "json"],
    );
    assert!(out.status.success(), "{}", said(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["scope"]["tenants"],
        serde_json::json!(["bravo"]),
        "{plan}"
    );
    assert!(!plan["steps"].as_array().unwrap().is_empty());
    // An offline plan is marked and never applied.
    let file = repo.path().join("offline.plan");
    let out = berth_at(
        &repo,
        &["plan", "--offline", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("offline: hosts not observed"),
        "{}",
        said(&out)
    );
    let out = berth_at(&repo, &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("made offline"), "{}", said(&out));
}

/// A saved plan scoped with `--tenant` (Docker) or `--since` (Dokku) applies; a hand change
/// outside its scope does not make it stale, one inside does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_saved_plans_apply_and_check_only_their_scope_on_docker() {
    let Some(docker) = crate::dockerhost::docker().await else {
        return;
    };
    crate::dockerhost::images(&docker).await;
    let run = crate::dockerhost::Run::new();
    let repo = Repo::new();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    repo.write(&format!("environments/{}.yaml", run.env), &run.env_file());
    let (a, b) = (run.tenant("scopea"), run.tenant("scopeb"));
    let tenant = |mode: &str| {
        format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    env: {{ MODE: {mode} }}\n",
            run.env
        )
    };
    repo.write(&format!("tenants/{a}.yaml"), &tenant("one"));
    repo.write(&format!("tenants/{b}.yaml"), &tenant("one"));
    commit(repo.path(), "two tenants");
    assert!(
        berth_at(&repo, &["apply", "--auto-approve"])
            .status
            .success()
    );
    // Change A, save a plan scoped to A; then B moves by hand.
    repo.write(&format!("tenants/{a}.yaml"), &tenant("two"));
    let file = repo.path().join("a.plan");
    let out = berth_at(
        &repo,
        &["plan", "--tenant", &a, "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    let stop = Command::new("docker")
        .args(["stop", &format!("{b}-web-1")])
        .output()
        .unwrap();
    assert!(stop.status.success());
    let out = berth_at(&repo, &["apply", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "outside the scope is ignored: {}",
        said(&out)
    );
    // A new scoped plan for A, then A moves by hand: stale.
    repo.write(&format!("tenants/{a}.yaml"), &tenant("three"));
    let out = berth_at(
        &repo,
        &["plan", "--tenant", &a, "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    let stop = Command::new("docker")
        .args(["stop", &format!("{a}-web-1")])
        .output()
        .unwrap();
    assert!(stop.status.success());
    let out = berth_at(&repo, &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("stale"), "{}", said(&out));
    assert!(
        said(&out).contains(&format!("container/{a}-web-1")),
        "{}",
        said(&out)
    );
    assert!(
        !said(&out).contains(&format!("container/{b}-web-1")),
        "{}",
        said(&out)
    );
}

#[test]
fn scoped_saved_plans_apply_and_check_only_their_scope_on_dokku() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = repo_with(
        &format!(
            "version: 1\ndomain: example.app\nhosts:\n{}secrets: {{ provider: env, names: [openai] }}\n",
            host.env_host("dokku-1")
        ),
        &["alpha", "bravo"],
    );
    assert!(
        berth_at(&repo, &["apply", "--auto-approve"])
            .status
            .success()
    );
    repo.write("tenants/alpha.yaml", &TENANT.replace("info", "debug"));
    commit(repo.path(), "alpha logs more");
    let file = repo.path().join("since.plan");
    let out = berth_at(
        &repo,
        &["plan", "--since", "HEAD~1", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    // bravo moves by hand (outside the scope): the saved plan still applies.
    assert!(
        host.ssh("config:set --no-restart bravo-web LOG_LEVEL=warn")
            .status
            .success()
    );
    let out = berth_at(&repo, &["apply", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "outside the scope is ignored: {}",
        said(&out)
    );
    // A new plan for alpha, then alpha moves by hand: stale.
    repo.write("tenants/alpha.yaml", &TENANT.replace("info", "trace"));
    commit(repo.path(), "alpha logs even more");
    let out = berth_at(
        &repo,
        &["plan", "--since", "HEAD~1", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        host.ssh("config:set --no-restart alpha-web EXTRA=1")
            .status
            .success()
    );
    let out = berth_at(&repo, &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("app/alpha-web"), "{}", said(&out));
}
