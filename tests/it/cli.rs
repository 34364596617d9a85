//! Running the binary: exit codes, formats, `schema`.

use crate::support::{Repo, berth, crate_root};

#[test]
fn validate_exits_zero_on_the_samples() {
    let out = berth(&["validate", "--repo", crate_root().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid: "));
}

#[test]
fn validate_exits_one_and_reports_json() {
    let repo = Repo::new();
    repo.write(
        "tenants/acme.yaml",
        "environment: local\ntier: gold\nhostt: x\n",
    );
    let out = berth(&[
        "validate",
        "--repo",
        repo.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["valid"], false);
    let codes: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    // Every problem at once: the unknown key does not hide the unknown reference.
    assert!(
        codes.contains(&"berth::unknown-key") && codes.contains(&"berth::unknown-reference"),
        "{codes:?}"
    );
    let d = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "berth::unknown-key")
        .unwrap();
    assert_eq!(d["location"]["file"], "tenants/acme.yaml");
    assert_eq!(d["location"]["line"], 3);
    assert_eq!(d["location"]["column"], 1);
    assert_eq!(d["hint"], "did you mean `host`?");
}

#[test]
fn validate_missing_repo_is_an_error() {
    let out = berth(&["validate", "--repo", "/nonexistent/berth"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: `/nonexistent/berth` is not a directory"),
        "{err}"
    );
}

#[test]
fn schema_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth(&["schema", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    for name in ["tenant.schema.json", "environment.schema.json"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["$defs"].is_object());
    }
}

#[test]
fn plan_offline_on_the_samples() {
    let root = crate_root();
    let out = berth(&["plan", "--offline", "--repo", root.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tenant acme"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("plan: "), "{text}");
    let detailed = berth(&[
        "plan",
        "--offline",
        "--detailed-exitcode",
        "--repo",
        root.to_str().unwrap(),
    ]);
    assert_eq!(detailed.status.code(), Some(2), "changes pending");
}

#[test]
fn plan_detailed_exitcode_is_zero_without_changes() {
    let repo = Repo::new();
    repo.write(
        "environments/local.yaml",
        "hosts:\n  h:\n    docker: { endpoint: unix:///var/run/docker.sock }\n",
    );
    let out = berth(&[
        "plan",
        "--offline",
        "--detailed-exitcode",
        "--repo",
        repo.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // An offline plan says so before anything else.
    assert!(
        stdout.starts_with("offline: hosts not observed"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim()
            .ends_with("no changes: the hosts match the files"),
        "{stdout}"
    );
}

#[test]
fn plan_against_an_unreachable_host_names_it_and_hints_offline() {
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        "hosts:\n  gone:\n    docker: { endpoint: \"tcp://127.0.0.1:1\" }\n",
    );
    repo.write(
        "tenants/acme.yaml",
        "environment: prod\napps:\n  web: { image: app:1 }\n",
    );
    let out = berth(&["plan", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prod/gone") && err.contains("tcp://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("`berth plan --offline`"), "{err}");

    // Several hosts down: one report names every one of them, each with its cause.
    repo.write(
        "environments/prod.yaml",
        "hosts:\n  gone:\n    docker: { endpoint: \"tcp://127.0.0.1:1\" }\n  \
         also-gone:\n    docker: { endpoint: \"tcp://127.0.0.1:2\" }\n",
    );
    repo.write(
        "tenants/globex.yaml",
        "environment: prod\nhost: also-gone\napps:\n  web: { image: app:1 }\n",
    );
    let out = berth(&["plan", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach 2 hosts"), "{err}");
    assert!(
        err.contains("prod/gone") && err.contains("tcp://127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("prod/also-gone") && err.contains("tcp://127.0.0.1:2"),
        "{err}"
    );
}

#[test]
fn plan_on_invalid_files_reports_diagnostics() {
    let repo = Repo::new();
    repo.write("tenants/acme.yaml", "environment: nowhere\n");
    let out = berth(&["plan", "--offline", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown environment `nowhere`"), "{err}");
}

#[test]
fn plan_file_round_trips_through_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    let root = crate_root();
    // Terraform's spelling `-out` works too.
    let out = berth(&[
        "plan",
        "--offline",
        "--repo",
        root.to_str().unwrap(),
        "-out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["version"], berth::plan::PLAN_FORMAT_VERSION);
    assert!(
        saved["fingerprints"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "unobserved")
    );
    let shown = berth(&["show", file.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(0));
    assert_eq!(
        shown.stdout, out.stdout,
        "show renders the saved plan exactly as plan did"
    );
    let md = berth(&["show", file.to_str().unwrap(), "--format", "markdown"]);
    assert!(String::from_utf8_lossy(&md.stdout).starts_with("<!-- berth-plan -->\n"));
}

#[test]
fn show_refuses_other_versions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, "{\"version\": 99, \"steps\": []}").unwrap();
    let out = berth(&["show", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plan format 99"));
}

/// Issue 12.8: the small things users hit — `--version` names the commit, Terraform's
/// single-dash flags are accepted, markdown is refused where it means nothing.
#[test]
fn version_names_the_commit_single_dash_flags_work_and_markdown_is_refused_outside_plans() {
    let out = berth(&["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with("berth ") && version.contains("(commit "),
        "{version}"
    );
    assert!(!version.contains("(commit )"), "{version}");

    let root = crate_root();
    let repo = root.to_str().unwrap();
    let plan = berth(&["plan", "--offline", "-detailed-exitcode", "--repo", repo]);
    // The samples plan changes against empty hosts: 2 with the detailed exit code.
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );

    for command in [
        &["validate", "--repo", repo][..],
        &["status", "--repo", repo][..],
    ] {
        let mut args = command.to_vec();
        args.extend(["--format", "markdown"]);
        let out = berth(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?} accepted markdown");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no markdown output"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed text anyway");
    }
}

#[test]
fn the_embedded_default_environment_is_used_only_by_repos_without_one() {
    let tenant = |env: &str| {
        format!(
            "version: 1\nname: T\nenvironment: {env}\ntier: starter\napps:\n  web: {{ image: \"app:1\" }}\n"
        )
    };
    // A repo with an environment of its own: its files, and only its files, are checked.
    let repo = Repo::new();
    repo.write(
        "environments/prod.yaml",
        &std::fs::read_to_string(crate_root().join("environments/local.yaml")).unwrap(),
    );
    for id in ["acme", "bolt", "cogs"] {
        repo.write(&format!("tenants/{id}.yaml"), &tenant("prod"));
    }
    let dir = repo.path().to_str().unwrap();
    let out = berth(&["validate", "--repo", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("valid: 4 files checked"), "{stdout}");
    // A tenant of that repo may not name the embedded environment: it is not there.
    repo.write("tenants/dflt.yaml", &tenant("local"));
    let out = berth(&["validate", "--repo", dir, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "berth::unknown-reference"
                && d["location"]["file"] == "tenants/dflt.yaml"),
        "{doc}"
    );

    // A repo with tenants and no environment gets the embedded default, counted once.
    let bare = Repo::new();
    bare.write("tenants/acme.yaml", &tenant("local"));
    let out = berth(&["validate", "--repo", bare.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("valid: 2 files checked"), "{stdout}");
}

#[test]
fn a_port_range_in_the_ephemeral_range_is_a_warning_with_its_location() {
    let repo = Repo::new();
    let env = std::fs::read_to_string(crate_root().join("environments/local.yaml")).unwrap();
    assert!(env.contains("ports: 20000-20999"));
    repo.write(
        "environments/local.yaml",
        &env.replace("ports: 20000-20999", "ports: 32000-33999"),
    );
    let line = env
        .lines()
        .position(|l| l.contains("ports: 20000-20999"))
        .unwrap()
        + 1;
    let dir = repo.path().to_str().unwrap();
    // A warning does not fail validation, but it is shown with file:line:col and a hint.
    let out = berth(&["validate", "--repo", dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("overlaps Linux's ephemeral ports (32768-60999)"),
        "{said}"
    );
    assert!(
        said.contains(&format!("environments/local.yaml:{line}:")),
        "{said}"
    );
    assert!(said.contains("use a range below 32768"), "{said}");
    let out = berth(&["validate", "--repo", dir, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    let d = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "berth::ephemeral-ports")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["location"]["line"], line);
    // Below the range: no warning.
    repo.write("environments/local.yaml", &env);
    let out = berth(&["validate", "--repo", dir, "--format", "json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ephemeral"));
}
