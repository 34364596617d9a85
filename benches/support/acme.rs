//! The fleet of issue 17's P6 and P7: `examples/dokku-fleet` with its `acme` tenant copied
//! under new ids (`t00000` …), shared by the validate and daemon benchmarks.
//!
//! Every copy is acme's file byte for byte (its `host: dokku-1` pin included); only the
//! example environment's host capacities are raised to the tenant count, since 200 per host
//! would refuse the fleet.

use std::path::Path;

/// Write the example's environments and `n` copies of acme under `root`.
pub(crate) fn write(root: &Path, n: usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dokku-fleet");
    std::fs::create_dir_all(root.join("environments")).unwrap();
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    for entry in std::fs::read_dir(example.join("environments")).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        assert!(
            text.contains("capacity: 200"),
            "the example's capacities moved"
        );
        let text = text.replace("capacity: 200", &format!("capacity: {}", n.max(200)));
        std::fs::write(root.join("environments").join(entry.file_name()), text).unwrap();
    }
    let acme = std::fs::read_to_string(example.join("tenants/acme.yaml")).unwrap();
    for i in 0..n {
        std::fs::write(root.join(format!("tenants/t{i:05}.yaml")), &acme).unwrap();
    }
}
