//! The CI examples in `examples/ci/` are right: they validate against GitHub's and GitLab's
//! published schemas (check-jsonschema with its vendored SchemaStore copies — it runs
//! offline; actionlint's PyPI package downloads its binary from GitHub at install time, which
//! this machine cannot reach), and every shell that pipes fails when the left side fails.

use std::path::PathBuf;
use std::process::Command;

use berth::spec::yaml::{self, Node, Value};

use crate::support::crate_root;

fn examples() -> (Vec<PathBuf>, PathBuf) {
    let dir = crate_root().join("examples/ci");
    let mut github: Vec<PathBuf> = std::fs::read_dir(dir.join("github"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    github.sort();
    (github, dir.join("gitlab-ci.yml"))
}

fn linter() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("check-jsonschema"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "check-jsonschema is not installed in CI (scripts/test.sh installs it)"
        );
        eprintln!("skipping: check-jsonschema is not installed (pip install check-jsonschema)");
    }
    found
}

#[test]
fn the_ci_examples_validate_against_the_published_schemas() {
    let Some(linter) = linter() else { return };
    let (github, gitlab) = examples();
    assert_eq!(github.len(), 3, "plan, comment, apply: {github:?}");
    let mut checks: Vec<(&str, PathBuf)> = github
        .into_iter()
        .map(|p| ("vendor.github-workflows", p))
        .collect();
    checks.push(("vendor.gitlab-ci", gitlab));
    for (schema, file) in checks {
        let out = Command::new(&linter)
            .args(["--builtin-schema", schema])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The linter really checks: a workflow with a misspelled key fails.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n",
    )
    .unwrap();
    let out = Command::new(&linter)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the linter accepted a broken workflow"
    );
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    node.get(key)
}

fn scripts(node: &Node) -> Vec<String> {
    match &node.value {
        Value::Scalar { text, .. } => vec![text.clone()],
        Value::Seq(items) => items.iter().flat_map(scripts).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn every_piped_shell_fails_when_its_left_side_fails() {
    let (github, gitlab) = examples();
    for file in github {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc = yaml::parse(&text).unwrap();
        let default_bash =
            doc.at(&["defaults", "run", "shell"]).and_then(Node::as_str) == Some("bash");
        let Some(Value::Map(jobs)) = get(&doc, "jobs").map(|j| &j.value) else {
            panic!("{}: no jobs", file.display())
        };
        for (_, job) in jobs {
            let Some(Value::Seq(steps)) = get(job, "steps").map(|s| &s.value) else {
                continue;
            };
            for step in steps {
                let Some(run) = get(step, "run").and_then(Node::as_str) else {
                    continue;
                };
                let bash =
                    default_bash || get(step, "shell").and_then(Node::as_str) == Some("bash");
                // GitHub runs `bash -e` without pipefail unless the shell is named `bash`.
                assert!(
                    !run.contains(" | ") || bash,
                    "{}: a piped `run` without `shell: bash` (pipefail): {run}",
                    file.display()
                );
            }
        }
    }
    let text = std::fs::read_to_string(&gitlab).unwrap();
    let doc = yaml::parse(&text).unwrap();
    let Value::Map(jobs) = &doc.value else {
        panic!("gitlab-ci.yml is not a mapping")
    };
    for (name, job) in jobs {
        let Some(script) = get(job, "script").map(scripts) else {
            continue;
        };
        let job_pipefail = script
            .first()
            .is_some_and(|s| s.contains("set -euo pipefail"));
        for line in &script {
            assert!(
                !line.contains(" | ") || job_pipefail,
                "gitlab-ci.yml job `{}` pipes without `set -o pipefail` first: {line}",
                name.as_str().unwrap_or_default()
            );
        }
    }
}
