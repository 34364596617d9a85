//! The hostile-input catalogue (issue 16): every entry point fed what an attacker, a broken
//! host or a careless writer could hand it. Each case asserts the same three things: nothing
//! panics, nothing hangs past a bound, and nothing runs on a host for an invalid input (the
//! Dokku simulator's command log stays empty; Docker objects are counted by label).
//!
//! Figures (inputs tried per group) are printed by each test and collected in
//! docs/reliability.md.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth::driver::dokku::parse;

use crate::bridge::harness::{Bridge, Remote, SECRET, now, sub_event};
use crate::daemon::{self, Daemon};
use crate::sshd::DokkuHost;
use crate::support::{Repo, berth_bin};

/// Most seconds any single berth process in this file may run before it counts as hung.
const BOUND: Duration = Duration::from_secs(90);

/// Run berth with a hard bound: a process still running after [`BOUND`] is killed and the
/// test fails (a hang is a finding, not a slow test).
pub fn berth_bounded(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Output {
    let mut child = Command::new(berth_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_OPENAI", "sk-hostile-test")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth {args:?} still running after {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(std::ffi::OsString::from).collect()
}

fn run(args: &[std::ffi::OsString]) -> Output {
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    berth_bounded(&refs, &[])
}

fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The process failed cleanly: exit 1 (error) or 2 (usage), a message, no panic.
fn assert_clean_failure(o: &Output, what: &str) {
    let text = all_text(o);
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "{what}: berth panicked:\n{text}"
    );
    let code = o.status.code();
    assert!(
        matches!(code, Some(1 | 2)),
        "{what}: expected exit 1 or 2, got {code:?}:\n{text}"
    );
    assert!(!text.trim().is_empty(), "{what}: failed without saying why");
}

fn env_for(host: &DokkuHost) -> String {
    format!(
        "version: 1\ndomain: example.app\nhosts:\n{}tiers:\n  starter: {{ processes: {{ web: 1 }}, memory: 512M, cpus: 0.5 }}\npolicy: {{ max-destroys: 10 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
        host.env_host("dokku-1")
    )
}

const GOOD: &str =
    "environment: prod\ntier: starter\napps:\n  web: { image: registry.example.app/app:1.4.2 }\n";

/// A hostile repo: files by path (a `None` text makes a symlink to `target`).
struct Case {
    name: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

fn case(name: &'static str, files: &[(&str, &str)]) -> Case {
    Case {
        name,
        files: files
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect(),
    }
}

fn tenant_cases() -> Vec<Case> {
    let with = |extra: &str| format!("{GOOD}{extra}");
    let mut cases = vec![
        case(
            "shell metacharacters in a file name",
            &[("tenants/acme;touch pwned.yaml", GOOD)],
        ),
        case(
            "command substitution in a file name",
            &[("tenants/$(reboot).yaml", GOOD)],
        ),
        case(
            "backticks in an id",
            &[("tenants/acme.yaml", &format!("id: \"a`id`b\"\n{GOOD}"))],
        ),
        case(
            "newline in an id",
            &[(
                "tenants/acme.yaml",
                &format!("id: \"acme\\nrm -rf /\"\n{GOOD}"),
            )],
        ),
        case(
            "path traversal in an id",
            &[(
                "tenants/acme.yaml",
                &format!("id: ../../etc/passwd\n{GOOD}"),
            )],
        ),
        case(
            "leading dash in an id (an option to dokku)",
            &[("tenants/-rf.yaml", GOOD)],
        ),
        case(
            "unicode confusable id (Cyrillic a)",
            &[("tenants/\u{430}cme.yaml", GOOD)],
        ),
        case("fullwidth id", &[("tenants/\u{ff41}cme.yaml", GOOD)]),
        case(
            "zero-width joiner in an id",
            &[("tenants/ac\u{200d}me.yaml", GOOD)],
        ),
        case(
            "confusable domain",
            &[(
                "tenants/acme.yaml",
                &with("    domains: [\"\u{430}cme.example.app\"]\n").replace(
                    "  web: { image: registry.example.app/app:1.4.2 }\n",
                    "  web:\n    image: registry.example.app/app:1.4.2\n",
                ),
            )],
        ),
        case(
            "shell metacharacters in a domain",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    domains: [\"a.example.app;id\"]\n",
            )],
        ),
        case(
            "shell metacharacters in an image",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web: { image: \"app:1 && curl x|sh\" }\n",
            )],
        ),
        case(
            "option injection in an image",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web: { image: \"--privileged\" }\n",
            )],
        ),
        case(
            "metacharacters in an env key",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    env: { \"A=1 B\": x }\n",
            )],
        ),
        case(
            "path traversal in a storage path",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    storage: [{ volume: data, path: /app/../../etc }]\n",
            )],
        ),
        case(
            "path traversal in a volume name",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    storage: [{ volume: ../../root, path: /data }]\n",
            )],
        ),
        case(
            "metacharacters in a process type",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    processes: { \"web;id\": 1 }\n",
            )],
        ),
        case(
            "metacharacters in a service name",
            &[(
                "tenants/acme.yaml",
                "environment: prod\nservices:\n  \"db$(id)\": { kind: postgres }\n",
            )],
        ),
        case(
            "duplicate ids (.yaml and .yml)",
            &[("tenants/acme.yaml", GOOD), ("tenants/acme.yml", GOOD)],
        ),
        case(
            "duplicate domains across files",
            &[
                (
                    "tenants/acme.yaml",
                    "environment: prod\napps:\n  web: { image: app:1, domains: [shop.example.app] }\n",
                ),
                (
                    "tenants/bolt.yaml",
                    "environment: prod\napps:\n  web: { image: app:1, domains: [SHOP.example.app] }\n",
                ),
            ],
        ),
        case(
            "duplicate app names across files",
            &[
                (
                    "tenants/a-b.yaml",
                    "environment: prod\napps:\n  c: { image: app:1 }\n",
                ),
                (
                    "tenants/a.yaml",
                    "environment: prod\napps:\n  b-c: { image: app:1 }\n",
                ),
            ],
        ),
        case(
            "YAML tag",
            &[(
                "tenants/acme.yaml",
                &format!("{GOOD}name: !!python/object:os.system [id]\n"),
            )],
        ),
        case(
            "local YAML tag",
            &[("tenants/acme.yaml", &format!("{GOOD}name: !Ref evil\n"))],
        ),
        case(
            "merge key bringing an unknown key",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web: &w { image: app:1, replcas: 2 }\n  api:\n    <<: *w\n",
            )],
        ),
        case(
            "alias bomb",
            &[(
                "tenants/acme.yaml",
                "environment: prod\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            )],
        ),
        case(
            "deep nesting",
            &[(
                "tenants/acme.yaml",
                &format!(
                    "environment: prod\nname: {}x{}\n",
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                ),
            )],
        ),
        case(
            "two documents",
            &[("tenants/acme.yaml", &format!("{GOOD}---\n{GOOD}"))],
        ),
        case(
            "unknown key (a typo)",
            &[("tenants/acme.yaml", &format!("{GOOD}replcas: 3\n"))],
        ),
        case(
            "huge number",
            &[(
                "tenants/acme.yaml",
                "environment: prod\napps:\n  web:\n    image: app:1\n    processes: { web: 99999999999999999999999 }\n",
            )],
        ),
        case(
            "NUL byte",
            &[("tenants/acme.yaml", "environment: prod\nname: \"a\0b\"\n")],
        ),
        case(
            "BOM and CRLF with a bad key",
            &[(
                "tenants/acme.yaml",
                "\u{feff}environment: prod\r\nbad key: 1\r\n",
            )],
        ),
        case(
            "hostile ssh target in the environment",
            &[
                (
                    "environments/evil.yaml",
                    "version: 1\ndomain: example.app\nhosts:\n  h1:\n    dokku: { ssh: \"dokku@127.0.0.1 -oProxyCommand=touch${IFS}pwned\", host-key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\" }\n",
                ),
                ("tenants/x.yaml", "environment: evil\n"),
            ],
        ),
        case(
            "host key missing",
            &[
                (
                    "environments/evil.yaml",
                    "version: 1\ndomain: example.app\nhosts:\n  h1:\n    dokku: { ssh: dokku@127.0.0.1 }\n",
                ),
                ("tenants/x.yaml", "environment: evil\n"),
            ],
        ),
    ];
    cases.push(Case {
        name: "not UTF-8",
        files: vec![(
            "tenants/acme.yaml".into(),
            b"environment: prod\nname: \xff\xfe\n".to_vec(),
        )],
    });
    cases.push(Case {
        name: "huge file (2 MiB)",
        files: vec![(
            "tenants/acme.yaml".into(),
            format!("{GOOD}name: \"{}\"\n", "x".repeat(2 << 20)).into_bytes(),
        )],
    });
    cases
}

/// Every hostile file through `validate`, `plan` and `apply --auto-approve` against a real
/// sshd + simulator: all three refuse, none panics, and the host never sees one command.
#[test]
fn hostile_files_never_reach_a_host() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let cases = tenant_cases();
    let mut tried = 0;
    for c in &cases {
        let repo = Repo::new();
        repo.write("environments/prod.yaml", &env_for(&host));
        for (path, bytes) in &c.files {
            repo.write_bytes(path, bytes);
        }
        let root = repo.path().to_string_lossy().to_string();
        for command in [
            vec!["validate", "--repo", &root],
            vec!["plan", "--repo", &root],
            vec!["apply", "--auto-approve", "--repo", &root],
        ] {
            let o = run(&os(&command));
            assert_clean_failure(&o, &format!("{} ({})", c.name, command[0]));
            tried += 1;
        }
        assert!(
            host.commands().is_empty(),
            "{}: commands reached the host: {:?}",
            c.name,
            host.commands()
        );
        assert!(
            !repo.path().join("pwned").exists() && !Path::new("pwned").exists(),
            "{}: a command ran",
            c.name
        );
    }
    eprintln!(
        "hostile files: {} cases, {tried} runs, 0 host commands",
        cases.len()
    );
}

/// Symlinks out of the repo: a tenant file, and the `tenants/` and `environments/`
/// directories themselves, pointing outside. berth reads regular files inside the repo only.
#[test]
fn symlinks_out_of_the_repo_are_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    let secret_env = "version: 1\ndomain: outside.example\nhosts:\n  h: { docker: { endpoint: unix:///var/run/docker.sock } }\n";
    std::fs::create_dir_all(outside.path().join("tenants")).unwrap();
    std::fs::create_dir_all(outside.path().join("environments")).unwrap();
    std::fs::write(
        outside.path().join("tenants/evil.yaml"),
        "environment: outside\n",
    )
    .unwrap();
    std::fs::write(outside.path().join("environments/outside.yaml"), secret_env).unwrap();

    // A linked file.
    let repo = Repo::new();
    repo.write("environments/prod.yaml", "version: 1\ndomain: example.app\nhosts:\n  h: { docker: { endpoint: unix:///var/run/docker.sock } }\n");
    std::fs::create_dir_all(repo.path().join("tenants")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("tenants/evil.yaml"),
        repo.path().join("tenants/evil.yaml"),
    )
    .unwrap();
    let sources = berth::repo::load_dir(repo.path()).unwrap();
    let evil = sources
        .files
        .iter()
        .find(|f| f.path == "tenants/evil.yaml")
        .unwrap();
    assert!(evil.text.is_err(), "a symlinked file was read");
    let o = run(&os(&["validate", "--repo", &repo.path().to_string_lossy()]));
    assert_clean_failure(&o, "symlinked tenant file");

    // Linked directories.
    for dir in ["tenants", "environments"] {
        let repo = Repo::new();
        repo.write("environments/prod.yaml", "version: 1\ndomain: example.app\nhosts:\n  h: { docker: { endpoint: unix:///var/run/docker.sock } }\n");
        repo.write("tenants/good.yaml", "environment: prod\n");
        let link = repo.path().join(dir);
        std::fs::remove_dir_all(&link).unwrap();
        std::os::unix::fs::symlink(outside.path().join(dir), &link).unwrap();
        assert!(
            matches!(
                berth::repo::load_dir(repo.path()),
                Err(berth::repo::RepoError::SymlinkedDirectory { .. })
            ),
            "{dir}/ is a symlink out of the repo and was read"
        );
        let o = run(&os(&["validate", "--repo", &repo.path().to_string_lossy()]));
        assert_clean_failure(&o, &format!("{dir}/ as a symlink out of the repo"));
        assert!(all_text(&o).contains("symlink"), "{}", all_text(&o));
    }
}

/// YAML merge keys and anchors are YAML, not an attack: a merge that only brings known keys
/// validates to the same fleet as the file written out.
#[test]
fn merge_keys_resolve_like_the_written_out_file() {
    let fleet = |tenant: &str| {
        let repo = Repo::new();
        repo.write("environments/prod.yaml", "version: 1\ndomain: example.app\nhosts:\n  d1: { docker: { endpoint: unix:///var/run/docker.sock }, ports: 20000-20099 }\n");
        repo.write("tenants/acme.yaml", tenant);
        let sources = berth::repo::load_dir(repo.path()).unwrap();
        let (fleet, diagnostics) = berth::validate::validate(&sources);
        fleet.unwrap_or_else(|| panic!("{diagnostics:?}"))
    };
    let merged = fleet(
        "environment: prod\napps:\n  web: &w { image: app:1, env: { A: b } }\n  api:\n    <<: *w\n",
    );
    let written = fleet(
        "environment: prod\napps:\n  web: { image: app:1, env: { A: b } }\n  api: { image: app:1, env: { A: b } }\n",
    );
    assert_eq!(merged.tenants, written.tenants);
}

/// Many files: 3,000 tenants validate (and an over-large file beside them is one diagnostic,
/// not a failure of the whole run), within the bound.
#[test]
fn many_files_validate_within_the_bound() {
    let repo = Repo::new();
    repo.write("environments/prod.yaml", "version: 1\ndomain: example.app\nhosts:\n  d1: { docker: { endpoint: unix:///var/run/docker.sock }, ports: 20000-29999 }\n");
    for i in 0..3000 {
        repo.write(
            &format!("tenants/t{i:04}.yaml"),
            "environment: prod\napps:\n  web: { image: app:1 }\n",
        );
    }
    let o = run(&os(&["validate", "--repo", &repo.path().to_string_lossy()]));
    assert!(o.status.success(), "{}", all_text(&o));
    repo.write_bytes(
        "tenants/huge.yaml",
        &vec![b'#'; (berth::spec::source::MAX_FILE_BYTES + 1) as usize],
    );
    let o = run(&os(&["validate", "--repo", &repo.path().to_string_lossy()]));
    assert_clean_failure(&o, "3,000 tenants and one huge file");
    assert!(all_text(&o).contains("tenants/huge.yaml"));
}

/// Hostile CLI arguments: each fails with a message (exit 1 or 2), never a panic, and never
/// reaches the host.
#[test]
fn hostile_cli_arguments() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = Repo::new();
    repo.write("environments/prod.yaml", &env_for(&host));
    repo.write("tenants/acme.yaml", GOOD);
    let root = repo.path().to_string_lossy().to_string();
    let garbage_plan = repo.path().join("garbage.json");
    std::fs::write(&garbage_plan, "{\"format\": 999, \"steps\": \"no\"}").unwrap();
    let huge_plan = repo.path().join("huge.json");
    std::fs::write(&huge_plan, "[".repeat(1 << 20)).unwrap();
    let binary_plan = repo.path().join("binary.json");
    std::fs::write(&binary_plan, b"\xff\xfe\x00\x01").unwrap();
    let long = "a".repeat(100 * 1024);
    // The bridge's clone goes to a temporary directory, never the working directory.
    let bridge_state = repo
        .path()
        .join("bridge-state")
        .to_string_lossy()
        .to_string();
    let mut cases: Vec<Vec<std::ffi::OsString>> = [
        vec!["plan", "--repo", &root, "--tenant", "../../etc/passwd"],
        vec!["plan", "--repo", &root, "--tenant", "acme;touch pwned"],
        vec!["plan", "--repo", &root, "--tenant", "$(id)"],
        vec!["plan", "--repo", &root, "--tenant", ""],
        vec!["plan", "--repo", &root, "--tenant", &long],
        vec!["plan", "--repo", &root, "--since", "HEAD;touch pwned"],
        vec![
            "plan",
            "--repo",
            &root,
            "--since",
            "--upload-pack=touch pwned",
        ],
        vec!["plan", "--repo", &root, "--format", "yaml"],
        vec!["plan", "--repo", "/nonexistent/berth/repo"],
        vec!["plan", "--repo", "/etc/passwd"],
        vec![
            "plan",
            "--repo",
            &root,
            "--out",
            "/nonexistent/dir/plan.json",
        ],
        vec!["validate", "--repo", &root, "--no-such-flag"],
        vec!["apply", "--repo", &root, &garbage_plan.to_string_lossy()],
        vec!["apply", "--repo", &root, &huge_plan.to_string_lossy()],
        vec!["apply", "--repo", &root, &binary_plan.to_string_lossy()],
        vec!["apply", "--repo", &root, "/dev/zero"],
        vec!["apply", "--repo", &root, "/nonexistent/plan.json"],
        vec![
            "apply",
            "--repo",
            &root,
            "--tenant",
            "-rf",
            "--auto-approve",
        ],
        vec![
            "apply",
            "--repo",
            &root,
            "--rev",
            "refs/heads/$(id)",
            "--auto-approve",
        ],
        vec!["show", "--repo", &root, "../../../etc/passwd"],
        vec!["lock", "--repo", &root, "--host", "x;id"],
        vec![
            "bridge",
            "--remote",
            "/nonexistent/remote.git",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &bridge_state,
        ],
        vec![
            "bridge",
            "--remote",
            "ext::sh -c touch% pwned",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &bridge_state,
        ],
        vec!["no-such-command"],
    ]
    .iter()
    .map(|a| os(a))
    .collect();
    // Not UTF-8.
    use std::os::unix::ffi::OsStringExt;
    cases.push(vec![
        "plan".into(),
        "--repo".into(),
        root.clone().into(),
        "--tenant".into(),
        std::ffi::OsString::from_vec(b"\xff\xfeacme".to_vec()),
    ]);
    cases.push(vec![
        "validate".into(),
        "--repo".into(),
        std::ffi::OsString::from_vec(b"/tmp/\xff\xfe".to_vec()),
    ]);
    for args in &cases {
        let o = run(args);
        assert_clean_failure(&o, &format!("{args:?}"));
    }
    assert!(
        host.commands().iter().all(|argv| !argv
            .iter()
            .any(|a| a.contains("pwned") || a.contains("$(id)"))),
        "a hostile argument reached the host: {:?}",
        host.commands()
    );
    assert!(!repo.path().join("pwned").exists() && !Path::new("pwned").exists());
    eprintln!("hostile CLI arguments: {} cases", cases.len());
}

/// Dokku outputs at parser level: truncated, coloured, with unknown keys, huge, not UTF-8.
/// Every parser returns a value or a typed error; none panics.
#[test]
fn hostile_dokku_outputs_at_parser_level() {
    let report = r#"{"app-deployed":"true","deployed":"true","app-dir":"/home/dokku/acme"}"#;
    let json_list = r#"["acme-web","bolt-web"]"#;
    let export = r#"{"BERTH_TENANT":"acme","LOG_LEVEL":"info"}"#;
    let scale = r#"[{"process_type":"web","quantity":2}]"#;
    let mut inputs: Vec<String> = Vec::new();
    for good in [report, json_list, export, scale] {
        for cut in [1, good.len() / 3, good.len() / 2, good.len() - 1] {
            inputs.push(good[..cut].to_string());
        }
        inputs.push(format!("\x1b[1G\x1b[K\x1b[1;32m{good}\x1b[0m\n"));
        inputs.push(format!("\x1b[{good}"));
        inputs.push(format!("=====> header\n{good}\n !     warning on stdout\n"));
        inputs.push(good.replace('{', "{\"zz-unknown\":{\"nested\":[1,{\"x\":null}]},"));
        inputs.push(format!("{good}\n{good}\n"));
    }
    inputs.push("{".repeat(100_000));
    inputs.push("[".repeat(100_000));
    inputs.push(format!("{}\n", "x".repeat(16 << 20)));
    inputs.push("web: 1\n".repeat(200_000));
    inputs.push("web: 99999999999999999999\n".into());
    inputs.push("web: -1\n".into());
    inputs.push("[{\"process_type\":\"web\",\"quantity\":-1}]".into());
    inputs.push("{\"A\":1}".into());
    inputs.push("-v\n-v=\n--volume=".into());
    inputs.push("\u{0}\u{1}\u{7f}\u{fffd}".into());
    for text in &inputs {
        // The targets' invariants (fuzz/src/lib.rs) hold on every catalogue input too.
        crate::fuzz_corpus::run_target("dokku_parse", text.as_bytes());
        // Truncated JSON is an error, never a partial value taken as the whole.
        if text.starts_with('{') && !text.trim_end().ends_with('}') && text.len() < 1000 {
            assert!(parse::config_export(text).is_err(), "{text:?}");
            assert!(parse::json_report_lines(text).is_err(), "{text:?}");
        }
    }
    // Colour never changes what is read.
    let coloured = format!("\x1b[1G\x1b[1;32m{export}\x1b[0m\n");
    assert_eq!(
        parse::config_export(&coloured).unwrap(),
        parse::config_export(export).unwrap()
    );
    eprintln!("hostile Dokku outputs (parsers): {} inputs", inputs.len());
}

/// Dokku outputs through the simulator: a host whose every answer is coloured, truncated,
/// padded with unknown keys, huge, or not UTF-8. Reading it either works (colour, unknown
/// keys: the plan is as for a clean host) or fails with an error naming the host; it never
/// panics or hangs, and a failed read never leads to a mutating command.
#[test]
fn hostile_dokku_outputs_through_the_simulator() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let repo = Repo::new();
    repo.write("environments/prod.yaml", &env_for(&host));
    repo.write("tenants/acme.yaml", GOOD);
    let root = repo.path().to_string_lossy().to_string();
    let apply = run(&os(&["apply", "--auto-approve", "--repo", &root]));
    assert!(apply.status.success(), "{}", all_text(&apply));
    let clean = run(&os(&["plan", "--repo", &root, "--detailed-exitcode"]));
    assert_eq!(clean.status.code(), Some(0), "{}", all_text(&clean));
    let before = host.state();
    for mode in ["ansi", "extra-keys", "truncate", "huge", "binary"] {
        std::fs::write(host.state_dir().join("mangle"), mode).unwrap();
        host.clear_log();
        let o = run(&os(&["plan", "--repo", &root, "--detailed-exitcode"]));
        let text = all_text(&o);
        assert!(!text.contains("panicked"), "{mode}: {text}");
        match mode {
            // Noise a real host prints: the plan stays empty.
            "ansi" | "extra-keys" => {
                assert_eq!(o.status.code(), Some(0), "{mode}: {text}");
            }
            _ => {
                if o.status.code() != Some(0) {
                    assert_clean_failure(&o, mode);
                    assert!(
                        text.contains("dokku-1"),
                        "{mode}: the error names no host: {text}"
                    );
                }
            }
        }
        // An apply over a broken reading must not mutate anything either.
        let o = run(&os(&["apply", "--auto-approve", "--repo", &root]));
        assert!(
            !all_text(&o).contains("panicked"),
            "{mode}: {}",
            all_text(&o)
        );
        if mode == "ansi" || mode == "extra-keys" {
            assert!(o.status.success(), "{mode}: {}", all_text(&o));
        }
        eprintln!(
            "mangle {mode}: plan/apply exit {:?}, {} commands",
            o.status.code(),
            host.commands().len()
        );
    }
    std::fs::remove_file(host.state_dir().join("mangle")).unwrap();
    // A lease taken while the host's answers were unreadable may stay until its TTL (it
    // expires by itself; berth could not read back whether it held it). Nothing else moved.
    let apps = |state: &serde_json::Value| -> serde_json::Value {
        let mut apps = state["apps"].as_object().unwrap().clone();
        apps.retain(|name, _| !name.starts_with("berth-lease") && name != "berth-state");
        serde_json::Value::Object(apps)
    };
    let after = host.state();
    assert_eq!(
        apps(&before),
        apps(&after),
        "hostile outputs changed the apps"
    );
    assert_eq!(before["services"], after["services"]);
    // Once the host answers cleanly again, the plan is still empty.
    let o = run(&os(&["plan", "--repo", &root, "--detailed-exitcode"]));
    assert_eq!(o.status.code(), Some(0), "{}", all_text(&o));
    let o = run(&os(&["apply", "--auto-approve", "--repo", &root]));
    eprintln!(
        "apply after the hostile outputs: exit {:?}: {}",
        o.status.code(),
        all_text(&o).lines().last().unwrap_or_default()
    );
}

// ---- webhooks against a running bridge -----------------------------------------------

/// Send `request` as it is over a fresh connection; the status the server answered (0 for
/// none). The server may answer and close before reading everything: a broken pipe is fine.
fn raw_status(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A slow-loris client's thread: how long until it was cut off (`None`: never) and the answer.
type SlowClient = std::thread::JoinHandle<(Option<Duration>, Vec<u8>)>;

/// A slow-loris client on a thread: sends `head`, then `then` a byte every 200 ms (cycled)
/// until the server answers or closes. Returns how long until the server cut it off (`None`:
/// still connected after 60 s) and what it answered.
fn dribble(port: u16, head: String, then: &'static [u8]) -> SlowClient {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(head.as_bytes());
        let mut buf = [0u8; 4096];
        let mut answer = Vec::new();
        for b in then.iter().cycle() {
            if started.elapsed() > Duration::from_secs(60) {
                return (None, answer);
            }
            if s.write_all(&[*b]).is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        let _ = s.read_to_end(&mut answer);
        (Some(started.elapsed()), answer)
    })
}

/// Two slow-loris clients of `POST path`: one dribbles its headers, one (after
/// `body_headers`, which declare a length) its body.
fn slow_loris(port: u16, path: &str, body_headers: &str) -> Vec<(&'static str, SlowClient)> {
    vec![
        (
            "headers",
            dribble(
                port,
                format!("POST {path} HTTP/1.1\r\n"),
                b"X-Slow: aaaaaaaa\r\n",
            ),
        ),
        (
            "body",
            dribble(
                port,
                format!("POST {path} HTTP/1.1\r\nHost: x\r\n{body_headers}\r\n"),
                b"{",
            ),
        ),
    ]
}

/// Join slow-loris clients started with [`dribble`]: each was cut off within `bound`, the
/// slow body with a 408. Returns the longest time one was held.
fn assert_cut_off(clients: Vec<(&str, SlowClient)>, bound: Duration) -> Duration {
    let mut longest = Duration::ZERO;
    for (what, handle) in clients {
        let (took, answer) = handle.join().unwrap();
        let took = took.unwrap_or_else(|| panic!("slow {what}: still connected after 60 s"));
        assert!(took < bound, "slow {what}: cut off only after {took:?}");
        let answer = String::from_utf8_lossy(&answer);
        if what == "body" {
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "slow body answered {answer:?}"
            );
        }
        eprintln!("slow {what}: cut off after {took:?}");
        longest = longest.max(took);
    }
    longest
}

/// Open up to `n` connections that send nothing.
fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    let idle: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(
        idle.len() >= n * 5 / 6,
        "only {} of {n} connections opened",
        idle.len()
    );
    idle
}

/// Every idle connection is closed by the server (EOF or a 408), none left open after 30 s
/// (45 s for all of them). Returns how long until the last one was closed.
fn assert_idle_closed(idle: Vec<TcpStream>) -> Duration {
    let started = Instant::now();
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf);
        assert!(
            !matches!(&n, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "an idle connection is still open after 30 s"
        );
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "idle connections stay open"
        );
    }
    started.elapsed()
}

/// Every refusal the bridge makes, over real HTTP: each answered with its status, nothing
/// committed.
#[test]
fn webhook_refusals() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let commits = remote.commits();
    let body = sub_event(
        "evt_h1",
        "customer.subscription.created",
        now(),
        Some("acme"),
        "active",
        "price_1Starter",
    );
    let sign = |t: i64, b: &str, s: &str| {
        berth::billing::signature::header(&[s.as_bytes()], t, b.as_bytes())
    };
    let good = sign(now(), &body, SECRET);
    let raw = |request: String| raw_status(bridge.port, request.as_bytes());
    let hostile_ids = [
        "../../etc/passwd",
        "ACME",
        "a;b",
        "$(id)",
        "a\nb",
        "",
        "-rf",
        "\u{430}cme",
    ];
    let mut cases: Vec<(String, u16, u16)> = vec![
        (
            "no signature".into(),
            bridge.post(body.as_bytes(), None).0,
            400,
        ),
        (
            "forged".into(),
            bridge
                .post(body.as_bytes(), Some(&sign(now(), &body, "whsec_wrong")))
                .0,
            400,
        ),
        (
            "stale".into(),
            bridge
                .post(body.as_bytes(), Some(&sign(now() - 3600, &body, SECRET)))
                .0,
            400,
        ),
        (
            "future".into(),
            bridge
                .post(body.as_bytes(), Some(&sign(now() + 3600, &body, SECRET)))
                .0,
            400,
        ),
        (
            "v0 only".into(),
            bridge
                .post(body.as_bytes(), Some(&good.replace("v1=", "v0=")))
                .0,
            400,
        ),
        (
            "two timestamps".into(),
            bridge.post(body.as_bytes(), Some(&format!("t=1,{good}"))).0,
            400,
        ),
        (
            "signature of another body".into(),
            bridge.post(format!("{body} ").as_bytes(), Some(&good)).0,
            400,
        ),
        (
            "header not ASCII".into(),
            bridge.post(body.as_bytes(), Some("t=\u{430},v1=00")).0,
            400,
        ),
        (
            "huge header".into(),
            bridge
                .post(
                    body.as_bytes(),
                    Some(&format!("{good},{}", "v1=00,".repeat(2000))),
                )
                .0,
            200,
        ),
        (
            "declared too large".into(),
            crate::bridge::harness::http_declared_only(bridge.port, 10 << 20, &good).0,
            413,
        ),
        (
            "GET on the webhook".into(),
            raw("GET /stripe/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string()),
            405,
        ),
        (
            "unknown path".into(),
            raw("POST /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_string()),
            404,
        ),
        (
            "not HTTP".into(),
            raw("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03 TLS hello\r\n\r\n".into()),
            400,
        ),
        (
            "chunked too large".into(),
            {
                let chunk = "x".repeat(64 * 1024);
                let mut req = format!(
                    "POST /stripe/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nStripe-Signature: {good}\r\n\r\n"
                );
                for _ in 0..12 {
                    req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
                }
                req.push_str("0\r\n\r\n");
                raw(req)
            },
            413,
        ),
    ];
    for (name, bytes) in [
        ("not JSON", "not json".to_string()),
        ("JSON array", "[]".to_string()),
        (
            "no id",
            "{\"type\":\"customer.subscription.created\",\"created\":1}".to_string(),
        ),
        ("hostile event id", body.replace("evt_h1", "evt_../../x")),
        (
            "nested bomb",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
    ] {
        let (status, _) = bridge.post(bytes.as_bytes(), Some(&sign(now(), &bytes, SECRET)));
        cases.push((name.to_string(), status, 400));
    }
    for (i, id) in hostile_ids.iter().enumerate() {
        let b = sub_event(
            &format!("evt_hid{i}"),
            "customer.subscription.created",
            now(),
            Some(id),
            "active",
            "price_1Starter",
        );
        let (status, _) = bridge.post(b.as_bytes(), Some(&sign(now(), &b, SECRET)));
        cases.push((format!("tenant id {id:?}"), status, 422));
    }
    for (name, got, want) in &cases {
        // The huge header carries the genuine signature among junk: it is accepted.
        assert_eq!(got, want, "{name}");
    }
    // Only the genuine event (huge header) committed; every refusal left the remote alone.
    assert_eq!(remote.commits(), commits + 1, "{}", bridge.log());
    assert!(!bridge.log().contains("panicked"));
    eprintln!("webhook refusals: {} cases", cases.len());
}

/// Slow-loris clients (headers or body dribbled a byte at a time) are cut off after the
/// bridge's read timeout, and the bridge keeps answering others meanwhile.
#[test]
fn webhook_slow_loris_is_cut_off() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let bound = berth::billing::server::READ_TIMEOUT + Duration::from_secs(10);
    let clients = slow_loris(
        bridge.port,
        "/stripe/webhook",
        "Content-Length: 100000\r\nStripe-Signature: t=1,v1=00\r\n",
    );
    // Meanwhile a genuine event is answered.
    let event = sub_event(
        "evt_loris",
        "customer.subscription.created",
        now(),
        Some("loris"),
        "active",
        "price_1Starter",
    );
    assert_eq!(bridge.send(&event).0, 200, "{}", bridge.log());
    assert_cut_off(clients, bound);
    assert!(!bridge.log().contains("panicked"));
}

/// A connection flood: 300 idle connections and 200 junk requests at once (bounded counts);
/// the bridge answers a genuine event during the flood, closes the idle ones after its read
/// timeout, and is healthy afterwards.
#[test]
fn webhook_connection_flood() {
    let remote = Remote::new(&[]);
    let bridge = Bridge::start(&remote, &[]);
    let port = bridge.port;
    let commits = remote.commits();
    let idle = open_idle(port, 300);
    let junk: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!("{{\"id\":\"evt_junk{i}\"}}");
                crate::bridge::harness::http(
                    port,
                    "POST",
                    "/stripe/webhook",
                    &[("Stripe-Signature", "t=1,v1=00".to_string())],
                    body.as_bytes(),
                )
                .0
            })
        })
        .collect();
    let event = sub_event(
        "evt_flood",
        "customer.subscription.created",
        now(),
        Some("flood"),
        "active",
        "price_1Starter",
    );
    assert_eq!(bridge.send(&event).0, 200, "{}", bridge.log());
    let statuses: Vec<u16> = junk.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 400), "{statuses:?}");
    // The idle connections are closed by the server (EOF), not left open.
    assert_idle_closed(idle);
    let (status, _) = crate::bridge::harness::http(port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(remote.commits(), commits + 1, "{}", bridge.log());
    eprintln!("connection flood: 300 idle + 200 junk + 1 genuine, all answered");
}

// ---- the daemon's HTTP listener ------------------------------------------------------

/// The daemon's bearer token and push-webhook secrets in the tests below: canaries its log
/// is scanned for.
const DAEMON_TOKEN: &str = "hostile-daemon-token/Qa1+z=x&c v";
const DAEMON_GITHUB: &str = "hostile-daemon-github/Wb2+y=u&i o";
const DAEMON_GITLAB: &str = "hostile-daemon-gitlab/Ec3+t=r&e w";
const DAEMON_GITEA: &str = "hostile-daemon-gitea/Qz7+k=v&s m";

/// A `berth daemon` following a remote (one tenant on a Dokku host), with a bearer token,
/// GitHub, GitLab and Gitea push secrets and a 4 KiB body limit. Polls, full passes and drift scans
/// are an hour apart, so after its start pass only a verified webhook wakes it.
fn hostile_daemon(host: &DokkuHost) -> (crate::daemon::Remote, Daemon) {
    let remote = crate::daemon::Remote::new();
    remote.write("environments/prod.yaml", &daemon::dokku_env(host, true));
    remote.write(
        "tenants/acme.yaml",
        &daemon::DOKKU_TENANT.replace("THE_LEVEL", "info"),
    );
    remote.push("acme");
    let bare = remote.bare();
    let args = [
        &daemon::following(&bare, "3600", "3600")[..],
        &daemon::GUARDED,
        &["--gitea-secret", "gt", "--max-body", "4096"],
    ]
    .concat();
    let d = Daemon::start(
        &args,
        &[
            ("BERTH_DAEMON_TOKEN", DAEMON_TOKEN),
            ("BERTH_SECRET_GH", DAEMON_GITHUB),
            ("BERTH_SECRET_GL", DAEMON_GITLAB),
            ("BERTH_SECRET_GT", DAEMON_GITEA),
            ("BERTH_LOG", "debug"),
        ],
    )
    .with_token(DAEMON_TOKEN);
    d.wait_for("acme synced and recorded", |s| {
        daemon::state_of(s, "acme") == "synced"
            && s["hosts"]["prod/dokku-1"]["applied"]["id"].is_string()
    });
    (remote, d)
}

/// Passes a trigger started, whatever their result.
fn passes_by(metrics: &str, trigger: &str) -> f64 {
    let prefix = format!("berth_daemon_passes_total{{trigger=\"{trigger}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The end of every daemon case: still running, `/healthz` 200, no panic and no form of a
/// secret in its log.
fn assert_daemon_unharmed(d: &mut Daemon) {
    assert!(d.alive(), "the daemon died:\n{}", d.log());
    assert_eq!(d.get("/healthz").0, 200);
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    for secret in [DAEMON_TOKEN, DAEMON_GITHUB, DAEMON_GITLAB, DAEMON_GITEA] {
        for form in crate::secrets_scan::forms(secret) {
            assert!(!log.contains(&form), "the log holds {form:?}:\n{log}");
        }
    }
}

/// `POST /hooks/git` and the token-guarded routes of a running daemon fed forged, missing,
/// oversized, malformed and hostile requests: each answered with its status, no refused
/// request wakes a pass (`berth_daemon_passes_total{trigger="webhook"}` stays 0 until the
/// genuine one), a 401 says nothing but that a token is needed.
#[test]
fn daemon_http_refusals() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let (remote, mut d) = hostile_daemon(&host);
    let port = d.port;
    let github = berth::daemon::webhook::github_signature;
    let body = br#"{"ref":"refs/heads/main","after":"0000"}"#;
    let hook = |headers: &[(&str, String)], body: &[u8]| {
        crate::bridge::harness::http(port, "POST", "/hooks/git", headers, body).0
    };
    let sig = |secret: &str, b: &[u8]| vec![("X-Hub-Signature-256", github(secret.as_bytes(), b))];
    let gitlab = |token: &str| vec![("X-Gitlab-Token", token.to_string())];
    let gitea = |secret: &str, b: &[u8]| {
        vec![(
            "X-Gitea-Signature",
            berth::daemon::webhook::gitea_signature(secret.as_bytes(), b),
        )]
    };
    // Each case: name, status, expected status, whether it reaches verification (counted
    // as refused).
    let mut cases: Vec<(String, u16, u16, bool)> = vec![
        ("forged github signature".into(), hook(&sig("guessed", body), body), 401, true),
        ("no signature".into(), hook(&[], body), 401, true),
        (
            "github signature without sha256=".into(),
            hook(&[("X-Hub-Signature-256", hex::encode([0u8; 32]))], body),
            401,
            true,
        ),
        (
            "github signature not hex".into(),
            hook(&[("X-Hub-Signature-256", "sha256=zz".into())], body),
            401,
            true,
        ),
        (
            "signature of another body".into(),
            hook(&sig(DAEMON_GITHUB, b"{}"), body),
            401,
            true,
        ),
        ("wrong gitlab token".into(), hook(&gitlab("guessed"), body), 401, true),
        (
            "gitlab token, a prefix of the secret".into(),
            hook(&gitlab(&DAEMON_GITLAB[..10]), body),
            401,
            true,
        ),
        (
            "gitlab token, the secret and one more byte".into(),
            hook(&gitlab(&format!("{DAEMON_GITLAB}x")), body),
            401,
            true,
        ),
        ("forged gitea signature".into(), hook(&gitea("guessed", body), body), 401, true),
        (
            "gitea signature of another body".into(),
            hook(&gitea(DAEMON_GITEA, b"{}"), body),
            401,
            true,
        ),
        (
            "gitea signature made with the github secret".into(),
            hook(&gitea(DAEMON_GITHUB, body), body),
            401,
            true,
        ),
        (
            "gitea signature in github's sha256= form".into(),
            hook(
                &[(
                    "X-Gitea-Signature",
                    format!("sha256={}", berth::daemon::webhook::gitea_signature(DAEMON_GITEA.as_bytes(), body)),
                )],
                body,
            ),
            401,
            true,
        ),
        (
            "gitea signature, empty".into(),
            hook(&[("X-Gitea-Signature", String::new())], body),
            401,
            true,
        ),
        (
            "gitea signature truncated by one byte".into(),
            hook(
                &[(
                    "X-Gitea-Signature",
                    berth::daemon::webhook::gitea_signature(DAEMON_GITEA.as_bytes(), body)[..62].to_string(),
                )],
                body,
            ),
            401,
            true,
        ),
        (
            "gitlab token as a github signature".into(),
            hook(&[("X-Hub-Signature-256", format!("sha256={DAEMON_GITLAB}"))], body),
            401,
            true,
        ),
        (
            "declared 10 MiB, never sent".into(),
            crate::bridge::harness::post_declared_only(port, "/hooks/git", 10 << 20, &sig(DAEMON_GITHUB, body)).0,
            413,
            false,
        ),
        (
            "4097 bytes, genuinely signed".into(),
            {
                let big = vec![b' '; 4097];
                hook(&sig(DAEMON_GITHUB, &big), &big)
            },
            413,
            false,
        ),
        (
            "chunked, 8 KiB".into(),
            raw_status(port, {
                let chunk = "x".repeat(1024);
                let mut req = "POST /hooks/git HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Gitlab-Token: guessed\r\n\r\n".to_string();
                for _ in 0..8 {
                    req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
                }
                req.push_str("0\r\n\r\n");
                req
            }.as_bytes()),
            413,
            false,
        ),
        ("GET on the webhook".into(), d.get("/hooks/git").0, 405, false),
    ];
    // Raw requests: name, bytes, expected status, whether verification refuses it.
    let post = |headers: &str| {
        format!("POST /hooks/git HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: 0\r\n\r\n").into_bytes()
    };
    let raw: [(&str, Vec<u8>, u16, bool); 6] = [
        ("a 1 MiB header", post(&format!("X-Junk: {}\r\n", "a".repeat(1 << 20))), 431, false),
        (
            "a 1 MiB signature header",
            post(&format!("X-Hub-Signature-256: sha256={}\r\n", "0".repeat(1 << 20))),
            431,
            false,
        ),
        (
            "a signature header that is not UTF-8",
            [&b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Hub-Signature-256: sha256=\xff\xfe\r\n"[..], b"Content-Length: 0\r\n\r\n"].concat(),
            401,
            true,
        ),
        (
            "a path that is not UTF-8",
            b"POST /hooks/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
            400,
            false,
        ),
        (
            "GET a path that is not UTF-8",
            b"GET /\xc3\x28/api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            false,
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03 TLS hello\r\n\r\n".to_vec(),
            400,
            false,
        ),
    ];
    for (name, bytes, want, refused) in raw {
        cases.push((name.into(), raw_status(port, &bytes), want, refused));
    }
    for path in [
        "/nope",
        "/../../etc/passwd",
        "/api",
        "/api/status/x",
        "/hooks",
        "/%2e%2e/metrics",
    ] {
        cases.push((format!("GET {path}"), d.get(path).0, 404, false));
    }
    // The token: every guarded route, without it, with a wrong one, with near misses, as a
    // request from beyond loopback would arrive through a proxy.
    let wrong = [
        None,
        Some("Bearer guessed".to_string()),
        Some(format!("Bearer {}", &DAEMON_TOKEN[..12])),
        Some(format!("Bearer {DAEMON_TOKEN}x")),
        Some(format!("bearer {DAEMON_TOKEN}")),
        Some(format!("Basic {DAEMON_TOKEN}")),
        Some(DAEMON_TOKEN.to_string()),
    ];
    let mut unauthorized = 0;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/metrics"),
        ("GET", "/api/status"),
        ("GET", "/?state=synced"),
        ("POST", "/api/pause"),
        ("POST", "/api/resume"),
    ] {
        for auth in &wrong {
            let mut headers = vec![
                ("Host", "berth.example.net".to_string()),
                ("X-Forwarded-For", "203.0.113.9".to_string()),
            ];
            if let Some(a) = auth {
                headers.push(("Authorization", a.clone()));
            }
            let (code, response) =
                crate::bridge::harness::request(port, method, path, &headers, b"");
            let answer = crate::bridge::harness::body_of(&response);
            assert_eq!(code, 401, "{method} {path} with {auth:?}: {response}");
            assert_eq!(
                answer, r#"{"error":"a bearer token is required"}"#,
                "{method} {path}: no detail"
            );
            assert!(
                response.contains("www-authenticate: Bearer realm=\"berth daemon\""),
                "{response}"
            );
            unauthorized += 1;
        }
    }
    for path in ["/healthz", "/readyz"] {
        let (code, _) = crate::bridge::harness::http(port, "GET", path, &[], b"");
        cases.push((format!("{path} without a token"), code, 200, false));
    }
    for (name, got, want, _) in &cases {
        assert_eq!(got, want, "{name}");
    }
    let status = d.status();
    assert_eq!(
        status["daemon"]["paused"], false,
        "pause without the token refused"
    );
    let m = d.metrics();
    let refused = cases.iter().filter(|c| c.3).count();
    assert_eq!(
        daemon::metric(&m, "berth_daemon_webhooks_total{forge=\"refused\"}"),
        refused as f64,
        "{m}"
    );
    assert_eq!(
        passes_by(&m, "webhook"),
        0.0,
        "a refused hook woke a pass:\n{m}"
    );

    // The control: a new commit, then malformed JSON with a genuine signature — accepted
    // (the body is never parsed: a push only wakes the daemon), and the commit is applied.
    remote.write(
        "tenants/acme.yaml",
        &daemon::DOKKU_TENANT.replace("THE_LEVEL", "warn"),
    );
    let pushed = remote.push("acme logs less");
    let junk = b"{not json\x00\xff";
    assert_eq!(hook(&sig(DAEMON_GITHUB, junk), junk), 202);
    assert_eq!(hook(&gitlab(DAEMON_GITLAB), b"[[["), 202);
    assert_eq!(hook(&gitea(DAEMON_GITEA, b"\xff"), b"\xff"), 202);
    d.wait_for("the push applied", |s| {
        s["hosts"]["prod/dokku-1"]["applied"]["id"] == pushed.as_str()
    });
    assert_eq!(daemon::config_get(&host, "acme-web", "LOG_LEVEL"), "warn");
    assert!(passes_by(&d.metrics(), "webhook") >= 1.0);
    assert_daemon_unharmed(&mut d);
    eprintln!(
        "daemon refusals: {} cases ({refused} refused by verification), {unauthorized} unauthorized requests",
        cases.len()
    );
}

/// Slow-loris clients on `/hooks/git` (headers or body dribbled a byte every 200 ms) are cut
/// off within the read timeout + 10 s; `/healthz` answers meanwhile; no pass is woken.
#[test]
fn daemon_slow_loris_is_cut_off() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let (_remote, mut d) = hostile_daemon(&host);
    let bound = berth::billing::server::READ_TIMEOUT + Duration::from_secs(10);
    let clients = slow_loris(
        d.port,
        "/hooks/git",
        &format!(
            "Content-Length: 4000\r\nX-Hub-Signature-256: {}\r\n",
            berth::daemon::webhook::github_signature(DAEMON_GITHUB.as_bytes(), b"{}")
        ),
    );
    let started = Instant::now();
    assert_eq!(d.get("/healthz").0, 200);
    let healthz = started.elapsed();
    assert!(
        healthz < Duration::from_secs(5),
        "/healthz took {healthz:?}"
    );
    let longest = assert_cut_off(clients, bound);
    assert_eq!(passes_by(&d.metrics(), "webhook"), 0.0);
    assert_daemon_unharmed(&mut d);
    eprintln!("daemon slow loris: cut off within {longest:?}, /healthz meanwhile in {healthz:?}");
}

/// A flood: 300 idle connections and 200 concurrent forged webhooks; `/healthz` answers
/// within 5 s during and after it, every forgery is 401, the idle connections are closed
/// by the daemon, and no pass is woken.
#[test]
fn daemon_connection_flood() {
    let Some(host) = DokkuHost::start() else {
        return;
    };
    let (_remote, mut d) = hostile_daemon(&host);
    let port = d.port;
    let idle = open_idle(port, 300);
    let junk: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!("{{\"ref\":\"refs/heads/junk{i}\"}}");
                let sig = berth::daemon::webhook::github_signature(b"guessed", body.as_bytes());
                crate::bridge::harness::http(
                    port,
                    "POST",
                    "/hooks/git",
                    &[("X-Hub-Signature-256", sig)],
                    body.as_bytes(),
                )
                .0
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut healthz = || {
        let started = Instant::now();
        assert_eq!(
            crate::bridge::harness::http(port, "GET", "/healthz", &[], b"").0,
            200
        );
        slowest = slowest.max(started.elapsed());
    };
    healthz();
    let statuses: Vec<u16> = junk.into_iter().map(|h| h.join().unwrap()).collect();
    healthz();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let closed = assert_idle_closed(idle);
    healthz();
    assert!(
        slowest < Duration::from_secs(5),
        "/healthz took {slowest:?}"
    );
    let m = d.metrics();
    assert_eq!(
        daemon::metric(&m, "berth_daemon_webhooks_total{forge=\"refused\"}"),
        200.0,
        "{m}"
    );
    assert_eq!(passes_by(&m, "webhook"), 0.0, "{m}");
    assert_daemon_unharmed(&mut d);
    eprintln!(
        "daemon flood: 300 idle + 200 forged, /healthz at most {slowest:?}, idle closed within {closed:?}"
    );
}
