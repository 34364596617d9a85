//! A real container registry on loopback (Debian's `docker-registry`, the reference
//! `registry` server) with htpasswd auth, and berth pulling from it: credentials from the
//! environment's `registries` block through the secret provider, a wrong password and an
//! unknown tag refused by preflight before any container of the tenant is touched, and a
//! preflight that reports every problem at once.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::dockerhost::{self, Run};
use crate::support::{Repo, berth_bin};

/// A registry process started for one test; killed on drop.
pub struct Registry {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
    docker_config: PathBuf,
}

pub const USER: &str = "deploy";
pub const PASSWORD: &str = "s3cret-registry-pass";

fn registry_binary() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/docker-registry");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "docker-registry is not installed in CI (scripts/test.sh installs it)"
    );
    eprintln!("skipping: docker-registry is not installed (apt-get install docker-registry)");
    None
}

impl Registry {
    /// Start a registry on a free loopback port below the ephemeral range.
    pub fn start() -> Option<Registry> {
        let binary = registry_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd (apache2-utils) runs");
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = (0..200)
            .map(|i| 24000 + (std::process::id() as u16 % 400) * 5 + i)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port");
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog: {{ level: error }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\nhttp: {{ addr: \"{address}\" }}\nauth:\n  htpasswd: {{ realm: berth-test, path: {} }}\n",
            dir.path().join("data").display(),
            dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        Some(Registry {
            child,
            address,
            docker_config,
            _dir: dir,
        })
    }

    fn docker(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("docker")
            .env("DOCKER_CONFIG", &self.docker_config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Push local image `local` as `<registry>/<name>` and remove the local tag, so a
    /// later use must pull it.
    pub fn push(&self, local: &str, name: &str) -> String {
        let login = self.docker(
            &["login", &self.address, "-u", USER, "--password-stdin"],
            Some(PASSWORD),
        );
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
        let remote = format!("{}/{name}", self.address);
        assert!(self.docker(&["tag", local, &remote], None).status.success());
        let push = self.docker(&["push", &remote], None);
        assert!(
            push.status.success(),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        assert!(self.docker(&["rmi", &remote], None).status.success());
        remote
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_file(run: &Run, registry: &str) -> String {
    run.env_file().replace(
        "secrets: { provider: env, names: [openai] }\n",
        &format!(
            "secrets: {{ provider: env, names: [openai, registry] }}\nregistries:\n  \"{registry}\": {{ username: {USER}, password-secret: registry }}\n"
        ),
    )
}

fn apply(repo: &Repo, password: &str) -> Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--repo"])
        .arg(repo.path())
        .env("NO_COLOR", "1")
        .env("BERTH_SECRET_REGISTRY", password)
        // No client credentials: berth must use the environment's.
        .env("DOCKER_CONFIG", empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn containers_of(run: &Run) -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.berth.environment={}", run.env))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_with_the_environments_credentials_and_bad_ones_fail_first() {
    let Some(docker) = dockerhost::docker().await else {
        return;
    };
    dockerhost::images(&docker).await;
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = registry.push(
        "berth-stub:v2",
        &format!("berth/app-{}:v2", std::process::id()),
    );
    let run = Run::new();
    let repo = Repo::new();
    repo.write(
        &format!("environments/{}.yaml", run.env),
        &env_file(&run, &registry.address),
    );
    let id = run.tenant("pulled");
    let tenant = |image: &str| {
        format!(
            "environment: {}\napps:\n  web:\n    image: {image}\n    env: {{ TOKEN: {{ secret: openai }} }}\n",
            run.env
        )
    };
    repo.write(&format!("tenants/{id}.yaml"), &tenant(&image));
    // A wrong password: preflight refuses, naming the registry; nothing is created.
    let out = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--repo"])
        .arg(repo.path())
        .env("BERTH_SECRET_REGISTRY", "wrong")
        .env("BERTH_SECRET_OPENAI", "sk-x")
        .env("DOCKER_CONFIG", tempfile::tempdir().unwrap().path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("preflight found 1 problem"), "{said}");
    assert!(
        said.contains(&registry.address) && said.contains(&image),
        "{said}"
    );
    assert!(
        !said.contains("wrong"),
        "the password is never printed: {said}"
    );
    assert_eq!(containers_of(&run), "", "nothing was created");
    // The right one: pulled and running.
    let out = Command::new(berth_bin())
        .args(["apply", "--auto-approve", "--repo"])
        .arg(repo.path())
        .env("BERTH_SECRET_REGISTRY", PASSWORD)
        .env("BERTH_SECRET_OPENAI", "sk-x")
        .env("DOCKER_CONFIG", tempfile::tempdir().unwrap().path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    let running = Command::new("docker")
        .args(["inspect", "-f", "{{.Config.Image}} {{.State.Running}}"])
        .arg(format!("{id}-web-1"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&running.stdout).trim(),
        format!("{image} true")
    );
    // An unknown tag, and a missing secret: one report with both, and the running container
    // is untouched.
    let before = containers_of(&run);
    repo.write(
        &format!("tenants/{id}.yaml"),
        &tenant(&image.replace(":v2", ":nope")),
    );
    let out = apply(&repo, PASSWORD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("preflight found 2 problems"), "{said}");
    assert!(said.contains("BERTH_SECRET_OPENAI"), "{said}");
    assert!(said.contains(":nope"), "{said}");
    assert_eq!(containers_of(&run), before, "no container was touched");

    // `pull: missing` (the default) with the image on the host never asks the registry: a
    // changed env recreates the container although the registry password is wrong.
    let with = |image: &str, pull: &str, level: &str| {
        format!(
            "environment: {}\napps:\n  web:\n    image: {image}\n    pull: {pull}\n    env: {{ TOKEN: {{ secret: openai }}, LEVEL: {level} }}\n",
            run.env
        )
    };
    let apply_with = |password: &str| {
        Command::new(berth_bin())
            .args(["apply", "--auto-approve", "--repo"])
            .arg(repo.path())
            .env("NO_COLOR", "1")
            .env("BERTH_SECRET_REGISTRY", password)
            .env("BERTH_SECRET_OPENAI", "sk-x")
            .env("DOCKER_CONFIG", tempfile::tempdir().unwrap().path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    repo.write(&format!("tenants/{id}.yaml"), &with(&image, "missing", "a"));
    let out = apply_with("wrong");
    assert!(out.status.success(), "{}", text(&out));
    // `pull: always` asks the registry even for an image the host has: with the wrong
    // password preflight refuses before the container is touched; with the right one it
    // pulls and recreates.
    let before = containers_of(&run);
    repo.write(&format!("tenants/{id}.yaml"), &with(&image, "always", "b"));
    let out = apply_with("wrong");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("preflight found 1 problem"), "{said}");
    assert!(said.contains(&registry.address), "{said}");
    assert_eq!(containers_of(&run), before, "no container was touched");
    let out = apply_with(PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(containers_of(&run), before, "recreated with the new env");
    // `pull: never` refuses an image the host does not have, naming it, and creates nothing.
    let other = registry.push(
        "berth-stub:v1",
        &format!("berth/never-{}:v1", std::process::id()),
    );
    let never = run.tenant("never");
    repo.write(
        &format!("tenants/{never}.yaml"),
        &with(&other, "never", "c"),
    );
    let out = apply_with(PASSWORD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("image `{other}` is not on"))
            && said.contains("`pull: never` forbids pulling it"),
        "{said}"
    );
    let created = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("name={never}-"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&created.stdout).trim().is_empty());
}
