//! A real OpenSSH server on loopback with the Dokku simulator as its forced command, set up
//! exactly as Dokku's sshcommand does (reference/dokku.md §1.1, §16): an `authorized_keys`
//! line `command="FINGERPRINT=… NAME=\"admin\" \`cat …/.sshcommand\` $SSH_ORIGINAL_COMMAND",…`.
//!
//! Each host gets a fresh host key and client key. sshd is Debian's `openssh-server`
//! (installed by scripts/test.sh). Locally the tests skip with a printed reason when sshd is
//! absent; under CI (`CI` set) a missing sshd is a failure, never a skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running sshd + simulator.
pub struct DokkuHost {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    /// `ssh-ed25519 AAAA…` of the server.
    pub host_key: String,
    pub client_key: PathBuf,
    pub user: String,
    /// sshd's `MaxSessions` (sessions per connection; sshd's default is 10).
    max_sessions: u32,
}

fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Path of the simulator binary, built on demand (`cargo test --test it` alone does not build
/// examples).
pub fn simulator() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/it-… → target/<profile>/examples/dokku-sim
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            // Always ask cargo (a no-op when fresh) so a stale simulator is never used.
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "--example", "dokku-sim"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "building the Dokku simulator failed");
            profile_dir.join("examples").join("dokku-sim")
        })
        .clone()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

/// A free port below Linux's ephemeral range (32768-60999, where outgoing connections take
/// ports at random) and below the Docker tests' published ranges (21000+): 12000-20999, a
/// block per test process, tried in turn.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = (std::process::id() % 90) * 100;
    for _ in 0..9000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = 12000 + (base + n) % 9000;
        let port = u16::try_from(port).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 12000-20999")
}

impl DokkuHost {
    /// Start a host, or `None` (with the reason printed) when sshd is not installed locally.
    pub fn start() -> Option<DokkuHost> {
        Self::start_with_max_sessions(10)
    }

    /// [`DokkuHost::start`] with sshd's `MaxSessions` set to `max_sessions` (10 is sshd's
    /// default): how many sessions one connection may have open before sshd refuses more.
    pub fn start_with_max_sessions(max_sessions: u32) -> Option<DokkuHost> {
        let Some(sshd) = sshd_path() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "sshd is missing in CI: scripts/test.sh must install openssh-server"
            );
            eprintln!(
                "skipping: sshd is not installed (run scripts/test.sh to install openssh-server)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("berth-dokku-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        std::fs::create_dir_all(d.join("state")).unwrap();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let client_pub = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        let fingerprint = String::from_utf8(
            Command::new("ssh-keygen")
                .arg("-lf")
                .arg(d.join("client_key.pub"))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let fingerprint = fingerprint
            .split_whitespace()
            .nth(1)
            .unwrap_or("SHA256:unknown")
            .to_string();
        // A copy of the simulator inside the host's own directory: the `dokku` login user
        // may not be able to reach the build tree (a checkout under a 0700 directory).
        let sim = d.join("dokku-sim");
        std::fs::copy(simulator(), &sim).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&sim, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(d.join(".sshcommand"), format!("{}\n", sim.display())).unwrap();
        // Exactly the shape `sshcommand acl-add` writes (reference/dokku.md §1.1).
        let line = format!(
            "command=\"FINGERPRINT={fingerprint} NAME=\\\"admin\\\" `cat {}` $SSH_ORIGINAL_COMMAND\",no-agent-forwarding,no-user-rc,no-X11-forwarding,no-port-forwarding {}",
            d.join(".sshcommand").display(),
            client_pub.trim()
        );
        std::fs::write(d.join("authorized_keys"), format!("{line}\n")).unwrap();
        let user = dokku_user(d);
        // Global vhost and Let's Encrypt email, as a configured Dokku server has them.
        std::fs::write(
            d.join("state/state.json"),
            r#"{"global_vhosts": ["dokku.test"], "letsencrypt_email": "ops@example.test"}"#,
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut host = DokkuHost {
            dir,
            child: None,
            port: free_port(),
            host_key: host_key.join(" "),
            client_key: d.join("client_key"),
            user,
            max_sessions,
        };
        host.spawn(&sshd);
        Some(host)
    }

    fn spawn(&mut self, sshd: &Path) {
        let d = self.dir.path();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
             StrictModes no\nUsePAM no\nMaxSessions {max_sessions}\nMaxStartups 100:30:200\nSetEnv DOKKU_SIM_ROOT={d}/state\nLogLevel ERROR\n",
            port = self.port,
            d = d.display(),
            max_sessions = self.max_sessions,
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill sshd and every session it serves (a dropped connection). Only this server's
    /// process tree is touched: other tests' servers keep running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let tree = descendants(child.id());
            let _ = child.kill();
            let _ = child.wait();
            for pid in tree {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }

    /// Start sshd again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn(&sshd_path().unwrap());
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The `hosts:` entry for an environment file.
    pub fn env_host(&self, name: &str) -> String {
        format!(
            "  {name}:\n    dokku:\n      ssh: {}@127.0.0.1:{}\n      host-key: \"{}\"\n      identity: {}\n      timeout: 30\n",
            self.user,
            self.port,
            self.host_key,
            self.client_key.display()
        )
    }

    /// Every command the simulator ran, as parsed argv.
    pub fn commands(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state_dir().join("commands.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(self.state_dir().join("commands.log"));
    }

    pub fn set_latency(&self, ms: u64) {
        std::fs::write(self.state_dir().join("latency_ms"), ms.to_string()).unwrap();
    }

    /// The simulator's state file, parsed.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_dir().join("state.json")).unwrap())
            .unwrap()
    }

    pub fn write_state(&self, state: &serde_json::Value) {
        std::fs::write(
            self.state_dir().join("state.json"),
            serde_json::to_string(state).unwrap(),
        )
        .unwrap();
    }

    /// Run a Dokku command with the ssh CLI, as an operator would by hand.
    pub fn ssh(&self, command: &str) -> Output {
        (self.ssh_command(command))()
    }

    /// [`DokkuHost::ssh`] as a closure that owns what it needs (to run on another thread).
    pub fn ssh_command(&self, command: &str) -> impl FnOnce() -> Output + Send + 'static {
        let (dir, port, key, user, host_key) = (
            self.dir.path().to_path_buf(),
            self.port,
            self.client_key.clone(),
            self.user.clone(),
            self.host_key.clone(),
        );
        let command = command.to_string();
        move || ssh_cli(&dir, port, &host_key, &key, &user, &command)
    }
}

fn ssh_cli(
    d: &Path,
    port: u16,
    host_key: &str,
    client_key: &Path,
    user: &str,
    command: &str,
) -> Output {
    {
        let known = d.join("known_hosts_cli");
        std::fs::write(&known, format!("[127.0.0.1]:{port} {host_key}\n")).unwrap();
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg("-i")
            .arg(client_key)
            .args(["-p", &port.to_string()])
            .arg("--")
            .arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The login user for the forced command: a `dokku` user, as on a real Dokku server, created
/// when the tests run as root (CI does); otherwise the current user. A dedicated user also
/// keeps the runner's own shell start-up files (a slow `~/.bashrc`) out of every command.
fn dokku_user(dir: &Path) -> String {
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    if me != "root" {
        return me;
    }
    let exists = Command::new("id")
        .arg("dokku")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let created = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", "dokku"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        // Another test may have created it at the same moment.
        let exists_now = Command::new("id")
            .arg("dokku")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !created && !exists_now {
            return me;
        }
    }
    // A new account is locked (`!` password), which sshd refuses without PAM; `*` means "no
    // password" as Dokku's own `adduser --disabled-password` leaves it.
    let _ = Command::new("usermod").args(["-p", "*", "dokku"]).status();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = Command::new("chown")
        .args(["-R", "dokku"])
        .arg(dir.join("state"))
        .status();
    "dokku".to_string()
}

/// Every process below `root` in the process tree.
fn descendants(root: u32) -> Vec<u32> {
    let out = Command::new("ps")
        .args(["-eo", "pid=,ppid="])
        .output()
        .unwrap();
    let pairs: Vec<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            pairs
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for DokkuHost {
    fn drop(&mut self) {
        self.stop();
    }
}
