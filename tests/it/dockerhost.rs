//! The real Docker Engine for tests: offline test images and per-run cleanup.
//!
//! No registry is reachable, so images are made here: tests/docker-stub/stub.c compiled with
//! `gcc -static`, packed into a tar (with a version file so every tag has its own image id)
//! and imported (`docker import` = `POST /images/create?fromSrc=-`). Everything berth creates
//! in a test carries the label `io.berth.environment=<per-run environment>`; a guard removes
//! it all when the test ends, even when it fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

/// Image tags the tests use; each has a distinct image id.
pub const TAGS: &[&str] = &["v1", "v2", "v3"];

fn build_stub() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/berth-stub");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("stub");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/docker-stub/stub.c");
    let tmp = dir.join(format!("stub.{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(
        status.success(),
        "building the stub failed (gcc -static needs libc6-dev)"
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// A minimal ustar archive: enough for `docker import`.
fn tar(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data, mode) in entries {
        let mut header = [0u8; 512];
        let is_dir = name.ends_with('/');
        header[..name.len()].copy_from_slice(name.as_bytes());
        let octal =
            |value: u64, width: usize| format!("{value:0w$o}\0", w = width - 1).into_bytes();
        header[100..108].copy_from_slice(&octal(u64::from(*mode), 8));
        header[108..116].copy_from_slice(&octal(0, 8));
        header[116..124].copy_from_slice(&octal(0, 8));
        header[124..136].copy_from_slice(&octal(if is_dir { 0 } else { data.len() as u64 }, 12));
        header[136..148].copy_from_slice(&octal(1_700_000_000, 12));
        header[156] = if is_dir { b'5' } else { b'0' };
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        if !is_dir {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Connect to the local engine, or `None` (reason printed) when there is none locally.
/// Under CI a missing engine is a failure, never a skip.
pub async fn docker() -> Option<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .ok()?
        .negotiate_version()
        .await;
    match docker {
        Ok(d) if d.ping().await.is_ok() => Some(d),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Docker Engine is not reachable in CI"
            );
            eprintln!("skipping: no Docker Engine at the default socket");
            None
        }
    }
}

static IMAGES: OnceLock<()> = OnceLock::new();
static IMPORT: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Import `berth-stub:v1..v3` once per test process.
pub async fn images(docker: &Docker) {
    if IMAGES.get().is_some() {
        return;
    }
    let mut done = IMPORT.lock().await;
    if *done {
        return;
    }
    for tag in TAGS {
        import_stub(
            docker,
            "berth-stub",
            tag,
            8080,
            &format!("berth-stub {tag}\n"),
            &[],
            false,
        )
        .await;
    }
    *done = true;
    let _ = IMAGES.set(());
}

/// Import the stub under an example's image name, serving on `port` (what the example's
/// app listens on). Done again only when the stub changed.
/// The stub is also installed at each of `also` (`bin/worker`, `usr/bin/pg_isready`: it acts
/// by the name it is called under). An image of that name that is not a stub (a real one
/// on a developer's engine) is used as it is.
pub async fn stub_image_as(docker: &Docker, reference: &str, port: u16, also: &[&str]) {
    stub_image(docker, reference, port, also, false).await;
}

/// As [`stub_image_as`], the stub being the image's entrypoint (a tenant's `command` is then
/// its arguments, as with `nats -js`).
pub async fn stub_entrypoint_image_as(docker: &Docker, reference: &str, port: u16) {
    stub_image(docker, reference, port, &[], true).await;
}

async fn stub_image(docker: &Docker, reference: &str, port: u16, also: &[&str], entrypoint: bool) {
    let foreign = docker.inspect_image(reference).await.ok().is_some_and(|i| {
        i.config
            .and_then(|c| c.labels)
            .is_none_or(|l| !l.contains_key("berth.stub"))
    });
    if foreign {
        return;
    }
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    import_stub(
        docker,
        repo,
        tag,
        port,
        &format!("{reference}\n"),
        also,
        entrypoint,
    )
    .await;
}

/// Import the stub as `repo:tag` (CMD serve on `port`, `/etc/stub-version` = `version`)
/// unless an image of this very stub is there already.
async fn import_stub(
    docker: &Docker,
    repo: &str,
    tag: &str,
    port: u16,
    version: &str,
    also: &[&str],
    entrypoint: bool,
) {
    let stub = std::fs::read(build_stub()).unwrap();
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        stub.hash(&mut h);
        (port, version, also, entrypoint).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    // Importing again would move the tag to a new image id under containers of a run in
    // another process; an image built from the same stub is left alone.
    let same = docker
        .inspect_image(&format!("{repo}:{tag}"))
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .and_then(|l| l.get("berth.stub").cloned())
        .is_some_and(|d| d == digest);
    if same {
        return;
    }
    let mut entries: Vec<(String, &[u8], u32)> = vec![
        ("stub".into(), &stub, 0o755),
        ("etc/".into(), b"", 0o755),
        ("etc/stub-version".into(), version.as_bytes(), 0o644),
        ("tmp/".into(), b"", 0o1777),
    ];
    for path in also {
        let mut dir = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir.push_str(part);
            dir.push('/');
            if !entries.iter().any(|(p, _, _)| *p == dir) {
                entries.push((dir.clone(), b"", 0o755));
            }
        }
        entries.push(((*path).to_string(), &stub, 0o755));
    }
    let entries: Vec<(&str, &[u8], u32)> = entries
        .iter()
        .map(|(p, d, m)| (p.as_str(), *d, *m))
        .collect();
    let archive = tar(&entries);
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            format!(
                "{} [\"/stub\",\"serve\",\"--port\",\"{port}\"]",
                if entrypoint { "ENTRYPOINT" } else { "CMD" }
            ),
            format!("EXPOSE {port}/tcp"),
            format!("LABEL berth.stub={digest}"),
        ])
        .build();
    let mut stream = docker.create_image(
        Some(options),
        Some(bollard::body_full(archive.into())),
        None,
    );
    while let Some(item) = stream.next().await {
        item.expect("image import");
    }
}

/// `docker inspect -f <template> <object>`, trimmed ("" when there is no such object).
pub fn inspect(object: &str, template: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", template, object])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One env value of a container.
pub fn env_of(container: &str, key: &str) -> Option<String> {
    inspect(container, "{{range .Config.Env}}{{println .}}{{end}}")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A per-test environment: a unique name (the per-run label) and its own port range.
pub struct Run {
    pub env: String,
    pub id: String,
    pub ports: (u16, u16),
}

impl Run {
    pub fn new() -> Run {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{:x}{n}", std::process::id() % 0xffff);
        // Ranges per test below Linux's ephemeral range (32768-60999), where outgoing
        // connections would take published ports at random.
        let base = 21000 + (std::process::id() % 40) as u16 * 250 + (n % 12) * 20;
        Run {
            env: format!("it{id}"),
            id,
            ports: (base, base + 9),
        }
    }

    /// A tenant id unique to this run.
    pub fn tenant(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }

    /// The environment file.
    pub fn env_file(&self) -> String {
        format!(
            "version: 1\ndomain: it.test\nhosts:\n  local:\n    docker: {{ endpoint: unix:///var/run/docker.sock }}\n    ports: {}-{}\ntiers:\n  team: {{ processes: {{ web: 1 }}, memory: 64M, cpus: 0.5 }}\npolicy: {{ max-destroys: 100 }}\nsecrets: {{ provider: env, names: [openai] }}\n",
            self.ports.0, self.ports.1
        )
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        clean_environment(&self.env);
    }
}

/// Remove every container, network and volume of environment `env` on the local engine
/// (its label), and containers tests started for it (`berth-test-run=<env>`).
pub fn clean_environment(env: &str) {
    let label = format!("label=io.berth.environment={env}");
    let list = |args: &[&str]| -> Vec<String> {
        let out = Command::new("docker").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let containers = list(&["ps", "-aq", "--filter", &label]);
    let foreign = list(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth-test-run={env}"),
    ]);
    let all: Vec<String> = containers.into_iter().chain(foreign).collect();
    for (what, ids) in [
        (vec!["rm", "-f"], all),
        (
            vec!["network", "rm"],
            list(&["network", "ls", "-q", "--filter", &label]),
        ),
        (
            vec!["volume", "rm", "-f"],
            list(&["volume", "ls", "-q", "--filter", &label]),
        ),
    ] {
        if !ids.is_empty() {
            let _ = Command::new("docker").args(what).args(&ids).output();
        }
    }
}
