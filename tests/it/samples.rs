//! The repo's own samples and every example repo validate.

use crate::support::crate_root;

fn assert_valid(dir: &std::path::Path) -> usize {
    let sources = berth::repo::load_dir(dir).unwrap();
    let (fleet, diags) = berth::validate::validate(&sources);
    let text = berth::output::diagnostics::render_text(&sources, &diags, false);
    assert!(
        fleet.is_some() && diags.is_empty(),
        "{} does not validate:\n{text}",
        dir.display()
    );
    fleet.unwrap().tenants.len()
}

#[test]
fn samples_validate() {
    let tenants = assert_valid(&crate_root());
    assert!(tenants >= 3, "the samples hold a few tenants");
}

#[test]
fn examples_validate() {
    let mut n = 0;
    for entry in std::fs::read_dir(crate_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.join("tenants").is_dir() {
            assert_valid(&path);
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "one example repo per platform of design.md §1, found {n}"
    );
}
