//! The committed JSON Schemas match the spec types.

use crate::support::crate_root;

#[test]
fn committed_schemas_are_fresh() {
    for (name, text) in berth::cli::schema::schema_files() {
        let path = crate_root().join("schema").join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "schema/{name} is stale; run `cargo run -- schema --out schema` and commit it"
        );
    }
}

#[test]
fn every_sample_points_at_its_schema() {
    let mut files = Vec::new();
    for dir in ["environments", "tenants"] {
        collect(&crate_root().join(dir), &mut files);
    }
    collect(&crate_root().join("examples"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        // Tenant templates (`stripe.new-tenant`) are tenant files too.
        let path = file.to_string_lossy();
        let kind = if path.contains("/tenants/") || path.contains("/templates/") {
            "tenant"
        } else {
            "environment"
        };
        assert!(
            first.starts_with("# yaml-language-server: $schema=")
                && first.ends_with(&format!("schema/{kind}.schema.json")),
            "{} must begin with the schema comment, found `{first}`",
            file.display()
        );
    }
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let s = path.to_string_lossy();
            if s.contains("/tenants/") || s.contains("/environments/") {
                out.push(path);
            }
        }
    }
}

#[test]
fn reference_doc_is_fresh() {
    let committed =
        std::fs::read_to_string(crate_root().join("docs/reference.md")).unwrap_or_default();
    assert!(
        committed == berth::cli::schema::reference_markdown(),
        "docs/reference.md is stale; run `cargo run -- schema --reference docs/reference.md`"
    );
}
