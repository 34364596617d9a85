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
    assert_eq!(
        codes,
        ["berth::unknown-key"],
        "schema errors stop that file before reference checks"
    );
    let d = &doc["diagnostics"][0];
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
