//! The fuzz harnesses (fuzz/src/lib.rs) run over their committed corpora on every `cargo test`,
//! without AFL: a harness that no longer compiles, or an input that once crashed berth (each
//! fixed crash is kept in `fuzz/corpus/<target>/` as a regression), fails here.
//! `scripts/fuzz.sh` runs the same functions under AFL; docs/reliability.md has the figures.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = crate::support::crate_root()
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Run one harness on one input (the hostile catalogue reuses the harnesses' invariants).
pub fn run_target(target: &str, data: &[u8]) {
    let (_, run) = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    run(data);
}

fn replay(target: &str) {
    let (_, run) = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "the {target} corpus has {} inputs",
        files.len()
    );
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
    }
}

#[test]
fn every_target_has_a_corpus() {
    let root = crate::support::crate_root().join("fuzz/corpus");
    for (name, _) in targets::TARGETS {
        assert!(root.join(name).is_dir(), "fuzz/corpus/{name} is missing");
    }
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            targets::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
}

#[test]
fn loader_corpus() {
    replay("loader");
}

#[test]
fn dokku_parse_corpus() {
    replay("dokku_parse");
}

#[test]
fn webhook_corpus() {
    replay("webhook");
}

#[test]
fn push_webhook_corpus() {
    replay("push_webhook");
}

#[test]
fn yaml_edit_corpus() {
    replay("yaml_edit");
}

/// The loader's input format (one `==> path <==` section per file) reaches the validator as
/// the repo it spells, symlink sections included.
#[test]
fn loader_sections_become_files() {
    let input = b"==> environments/e.yaml <==\ndomain: x.example\n==> tenants/a.yaml <==\nname: A\n==> tenants/l.yaml <== link\n";
    let found = targets::split_repo(input);
    let names: Vec<String> = found
        .iter()
        .map(|f| format!("{}/{}", f.dir, f.name))
        .collect();
    assert_eq!(
        names,
        ["environments/e.yaml", "tenants/a.yaml", "tenants/l.yaml"]
    );
    assert!(matches!(
        found[2].entry,
        berth::spec::source::FoundEntry::Other
    ));
    match &found[1].entry {
        berth::spec::source::FoundEntry::File { bytes, .. } => assert_eq!(bytes, b"name: A\n"),
        other => panic!("{other:?}"),
    }
}
