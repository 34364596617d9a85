//! `berth import` against a real sshd + the Dokku simulator: apps made by hand (as a
//! provisioning script makes them) become tenant files whose plan is empty once adopted.

use std::os::unix::fs::PermissionsExt as _;

use crate::dokku::is_read;
use crate::sshd::DokkuHost;
use crate::support::{Repo, berth_in, text};

const SECRET: &str = "s3cr3t-Imported-Value-7f2e";
/// A value berth's generator could have made: imported as `{ generate: 32 }`, kept on the
/// host, written nowhere.
const GENERATED: &str = "Zx8Kq2Lm5Nw7Pr3Ts6Vy9Bc4Df1Gh0Jk";

fn env_file(host: &DokkuHost, names: &str) -> String {
    format!(
        "version: 1\ndomain: example.app\nhosts:\n{}tiers:\n  starter: {{ processes: {{ web: 1 }}, memory: 512M, cpus: 0.5 }}\n  pro: {{ processes: {{ web: 2, worker: 1 }}, memory: 1G, cpus: 1 }}\npolicy: {{ max-destroys: 10 }}\nsecrets: {{ provider: env, names: [{names}] }}\n",
        host.env_host("dokku-1")
    )
}

/// Run a Dokku command by hand over ssh, as a provisioning script would.
fn script(host: &DokkuHost, command: &str) {
    let out = host.ssh(command);
    assert!(out.status.success(), "`{command}`: {}", text(&out));
}

fn provision(host: &DokkuHost) {
    for command in [
        "apps:create acme-web",
        "postgres:create acme-db",
        "postgres:link acme-db acme-web",
        "redis:create acme-cache",
        "redis:link acme-cache acme-web",
        "domains:add acme-web acme.example.app",
        &format!(
            "config:set acme-web SECRET_KEY={SECRET} SESSION_SECRET={GENERATED} LOG_LEVEL=info"
        ),
        "resource:limit --memory 512m --cpu 0.5 acme-web",
        "git:from-image acme-web registry.example.app/app:1.4.2",
        "ps:scale acme-web web=1",
    ] {
        script(host, command);
    }
}

fn import(repo: &Repo, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", "--host", "prod/dokku-1"];
    args.extend_from_slice(extra);
    berth_in(repo, &args)
}

/// The kinds of the steps of `berth plan --format json`.
fn plan_kinds(repo: &Repo) -> Vec<String> {
    let out = berth_in(repo, &["plan", "--format", "json"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("plan json: {}", text(&out)));
    let mut kinds: Vec<String> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["change"]["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_hand_made_dokku_app_is_imported_adopted_and_plans_empty() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    provision(&host);
    let repo = Repo::new();
    let secrets = repo.path().join("secrets.env");
    let secrets_arg = secrets.to_str().unwrap();

    // Secret names the environment does not declare: refused, nothing written.
    repo.write("environments/prod.yaml", &env_file(&host, ""));
    let out = import(&repo, &["--app", "acme-web", "--secrets-file", secrets_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not declare the secret"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("acme-secret-key"), "{}", text(&out));
    assert!(!repo.path().join("tenants/acme.yaml").exists());
    assert!(!secrets.exists());

    repo.write(
        "environments/prod.yaml",
        &env_file(&host, "acme-secret-key"),
    );
    host.clear_log();
    let out = import(&repo, &["--app", "acme-web", "--secrets-file", secrets_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
    assert!(!text(&out).contains(GENERATED), "{}", text(&out));
    assert!(stdout(&out).contains("tenants/acme.yaml"), "{}", text(&out));

    // Importing changed nothing on the host.
    let mutations: Vec<Vec<String>> = host
        .commands()
        .into_iter()
        .filter(|c| !is_read(c))
        .collect();
    assert!(mutations.is_empty(), "import ran {mutations:?}");

    let file = std::fs::read_to_string(repo.path().join("tenants/acme.yaml")).unwrap();
    assert!(!file.contains(SECRET), "{file}");
    assert!(
        file.contains("SECRET_KEY: { secret: acme-secret-key }"),
        "{file}"
    );
    assert!(file.contains("LOG_LEVEL: \"info\""), "{file}");
    assert!(file.contains("SESSION_SECRET: { generate: 32 }"), "{file}");
    assert!(!file.contains(GENERATED), "{file}");
    assert!(file.contains("tier: starter"), "{file}");
    assert!(file.contains("uses: [cache, db]"), "{file}");
    assert!(
        !file.contains("DATABASE_URL") && !file.contains("REDIS_URL"),
        "{file}"
    );
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let values = std::fs::read_to_string(&secrets).unwrap();
    assert!(
        values.contains(&format!("BERTH_SECRET_ACME_SECRET_KEY='{SECRET}'")),
        "{values}"
    );
    assert!(!values.contains(GENERATED), "{values}");

    let out = berth_in(&repo, &["validate"]);
    assert!(out.status.success(), "{}\n{file}", text(&out));

    // Still foreign: the plan refuses to take the app over.
    let out = berth_in(&repo, &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("`acme-web` on host `prod/dokku-1` exists but berth does not manage it"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET));

    // An edited tenant file is never overwritten (without `--force`).
    repo.write("tenants/acme.yaml", &format!("{file}# reviewed\n"));
    let out = import(&repo, &["--app", "acme-web", "--secrets-file", secrets_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("tenant file `tenants/acme.yaml` exists"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    repo.write("tenants/acme.yaml", &file);

    // Adopt: the files are unchanged, so they are kept; only markers are written.
    host.clear_log();
    let out = import(
        &repo,
        &[
            "--app",
            "acme-web",
            "--secrets-file",
            secrets_arg,
            "--adopt",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
    assert!(stdout(&out).contains("adopted"), "{}", text(&out));
    let restarts: Vec<Vec<String>> = host
        .commands()
        .into_iter()
        .filter(|c| !is_read(c))
        .filter(|c| {
            c.iter().any(|w| {
                matches!(
                    w.as_str(),
                    "ps:restart" | "ps:rebuild" | "git:from-image" | "ps:scale" | "config:unset"
                )
            })
        })
        .collect();
    assert!(restarts.is_empty(), "adoption ran {restarts:?}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("tenants/acme.yaml")).unwrap(),
        file
    );

    let out = berth_in(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A change in the written file plans exactly that change.
    repo.write(
        "tenants/acme.yaml",
        &file.replace("LOG_LEVEL: \"info\"", "LOG_LEVEL: \"debug\""),
    );
    let out = berth_in(&repo, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(plan_kinds(&repo), ["record-spec", "restart", "set-config"]);
    repo.write(
        "tenants/acme.yaml",
        &file.replace("tier: starter", "tier: pro"),
    );
    assert_eq!(
        plan_kinds(&repo),
        ["record-spec", "restart", "scale", "set-limits"]
    );

    // Adopted: importing it again is refused.
    let out = import(&repo, &["--app", "acme-web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("app `acme-web` is already berth's (tenant `acme`)"),
        "{}",
        text(&out)
    );
    // Everything is berth's now: nothing left to import.
    let out = import(&repo, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("has no app berth does not manage"),
        "{}",
        text(&out)
    );
}

#[test]
fn import_refuses_bad_names_unknown_hosts_and_shows_secrets_once_without_a_file() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    provision(&host);
    script(&host, "apps:create legacy");
    script(
        &host,
        "git:from-image legacy registry.example.app/app:1.4.2",
    );
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        &env_file(&host, "acme-secret-key"),
    );

    // An app whose name is not `<tenant>-<app>`: a clear error, no file.
    let out = import(&repo, &["--app", "legacy"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("app `legacy` does not read as `{tenant}-{app}`"),
        "{said}"
    );
    assert!(said.contains("dokku apps:rename legacy"), "{said}");
    assert!(!repo.path().join("tenants").exists());
    // Without `--app` the same app stops the whole import.
    let out = import(&repo, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("legacy"), "{}", text(&out));
    assert!(!repo.path().join("tenants").exists());

    let out = import(&repo, &["--app", "acme-wbe"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("did you mean `acme-web`?"),
        "{}",
        text(&out)
    );

    let out = berth_in(&repo, &["import", "--host", "prod/dokku-9"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no host `prod/dokku-9`"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("prod/dokku-1"), "{}", text(&out));

    // Adoption refuses when the file cannot say what the host has (a limit in gigabytes,
    // which berth writes in megabytes): the file is written, nothing on the host is marked.
    script(&host, "apps:create bolt-web");
    script(&host, "resource:limit --memory 1g bolt-web");
    script(
        &host,
        "git:from-image bolt-web registry.example.app/app:1.4.2",
    );
    host.clear_log();
    let out = import(&repo, &["--app", "bolt-web", "--adopt"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("memory limit `1g` is written as `1024M`"),
        "{said}"
    );
    assert!(said.contains("not adopted"), "{said}");
    assert!(said.contains("set-limits bolt-web"), "{said}");
    let mutations: Vec<Vec<String>> = host
        .commands()
        .into_iter()
        .filter(|c| !is_read(c))
        .collect();
    assert!(mutations.is_empty(), "a refused adoption ran {mutations:?}");
    let bolt = std::fs::read_to_string(repo.path().join("tenants/bolt.yaml")).unwrap();
    assert!(bolt.contains("memory: 1024M"), "{bolt}");

    // No `--secrets-file`: the value is shown once on stderr, never on stdout or in the file.
    let out = import(&repo, &["--app", "acme-web"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains(SECRET), "{}", stdout(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches(SECRET).count(), 1, "{stderr}");
    let file = std::fs::read_to_string(repo.path().join("tenants/acme.yaml")).unwrap();
    assert!(!file.contains(SECRET));
    let out = berth_in(&repo, &["validate"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn container_selection_is_refused_on_a_dokku_host_before_anything_is_read() {
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        "version: 1\nhosts:\n  dokku-1: { dokku: { ssh: dokku@127.0.0.1:1, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" } }\n",
    );
    let out = berth_in(
        &repo,
        &["import", "--host", "dokku-1", "--container", "acme-web-1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("host `prod/dokku-1` is a dokku host: `--container` does not apply"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--app"), "{}", text(&out));
    assert!(!repo.path().join("tenants").exists());
}
