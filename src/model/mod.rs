//! Validated domain types: what the files mean once `validate` has accepted them.
//!
//! Unlike `spec`, nothing here is deserialized from input: every value was checked (names are
//! DNS labels, references resolve, defaults are filled in), so the planner can rely on it
//! without re-checking. Collections are `BTreeMap`s so everything built from a [`Fleet`] is
//! deterministic.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod desired;
pub mod live;

pub use crate::spec::{
    ProxyKind, PullPolicy, ReconcileMode, RestartPolicy, SecretProviderKind, ServiceKind,
    TenantState,
};

/// The owner recorded on an environment's shared services (`shared:` in the environment
/// file); no tenant may use this id.
pub const SHARED_STACK_ID: &str = "shared";

/// Largest env value berth accepts, in bytes (64 KiB). Linux refuses any single argument or
/// environment string over `MAX_ARG_STRLEN` (32 pages, 128 KiB) with "Argument list too
/// long"; on Dokku the whole ssh command line arrives as one such string
/// (`SSH_ORIGINAL_COMMAND`, reference/dokku.md §1.1) with values base64-encoded (4/3
/// larger), and inside containers every env entry is one. 64 KiB leaves room for both.
pub const ENV_VALUE_MAX: usize = 64 * 1024;

/// Largest total of one app's env (keys and values), in bytes (1 MiB): Linux's `ARG_MAX`
/// for all arguments and environment strings of one program is a quarter of the stack
/// limit, 2 MiB with the default 8 MiB stack, and Dokku and Docker hand the whole env to
/// the processes they start (builds get it as build arguments).
pub const ENV_TOTAL_MAX: usize = 1024 * 1024;

/// Everything the repo says, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    /// Environments by name (the file stem).
    pub environments: BTreeMap<String, Environment>,
    /// Tenants by id.
    pub tenants: BTreeMap<String, Tenant>,
}

impl Fleet {
    /// What the daemon does with `owner` (a tenant id, or [`SHARED_STACK_ID`] for an
    /// environment's shared services) in `environment`: the tenant's `reconcile:` key, else
    /// the environment's `policy.self-heal`. An owner with no file left (its objects are being
    /// removed) follows the environment.
    #[must_use]
    pub fn reconcile_mode(&self, environment: &str, owner: &str) -> ReconcileMode {
        if let Some(mode) = self.tenants.get(owner).and_then(|t| t.reconcile) {
            return mode;
        }
        let heal = self
            .environments
            .get(environment)
            .is_none_or(|e| e.policy.self_heal);
        if heal {
            ReconcileMode::Heal
        } else {
            ReconcileMode::Report
        }
    }
}

/// One environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// Name (file stem).
    pub name: String,
    /// Base domain.
    pub domain: Option<String>,
    /// Hosts by name.
    pub hosts: BTreeMap<String, Host>,
    /// Tiers by name.
    pub tiers: BTreeMap<String, Tier>,
    /// Dokku app name template with `{tenant}` and `{app}`.
    pub dokku_app_template: String,
    /// Safety policy.
    pub policy: Policy,
    /// Secret provider.
    pub secrets: Secrets,
    /// Stripe price id → tier.
    pub stripe_prices: BTreeMap<String, String>,
    /// Template path for new tenants created by the Stripe bridge.
    pub stripe_new_tenant: Option<String>,
    /// Environment-level shared services.
    pub shared: Option<Stack>,
    /// Registry credentials by server.
    pub registries: BTreeMap<String, Registry>,
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// User name.
    pub username: String,
    /// Secret name holding the password.
    pub password_secret: String,
}

/// The registry server of an image reference (`registry.example.net`, `127.0.0.1:5000`);
/// `None` for Docker Hub images (`postgres:16`, `library/postgres`): the first path
/// component names a server only when it has a dot or a port, or is `localhost` (Docker's
/// rule).
#[must_use]
pub fn registry_of(image: &str) -> Option<&str> {
    let (first, rest) = image.split_once('/')?;
    let looks_like_host = first.contains('.') || first.contains(':') || first == "localhost";
    (looks_like_host && !rest.is_empty()).then_some(first)
}

/// A host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Name in the environment file.
    pub name: String,
    /// How to reach it.
    pub target: HostTarget,
    /// Most tenants it may carry.
    pub capacity: Option<u32>,
    /// Range of publishable host ports (inclusive).
    pub ports: Option<(u16, u16)>,
    /// Proxy flavour for Docker hosts.
    pub proxy: ProxyKind,
    /// Docker: the /24 blocks tenant networks are allocated from (base address, prefix length).
    pub subnets: Option<(u32, u8)>,
    /// Docker: the Caddy whose routes berth manages.
    pub caddy: Option<Caddy>,
}

/// A Caddy server whose routes berth manages through its admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caddy {
    /// Admin endpoint, no trailing `/`.
    pub admin: String,
    /// The server in `apps.http.servers` holding berth's routes.
    pub server: String,
    /// Where that server listens when berth creates it.
    pub listen: String,
}

/// Host kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// A Dokku server over SSH.
    Dokku(DokkuTarget),
    /// A Docker Engine.
    Docker {
        /// `unix://…`, `tcp://…`, `ssh://…`.
        endpoint: String,
        /// Seconds before one Engine API call is abandoned.
        timeout_secs: u32,
    },
}

impl HostTarget {
    /// `dokku` or `docker`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            HostTarget::Dokku(_) => "dokku",
            HostTarget::Docker { .. } => "docker",
        }
    }
}

/// SSH coordinates of a Dokku server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DokkuTarget {
    /// SSH user (normally `dokku`).
    pub user: String,
    /// Host name or address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Pinned host key, `ssh-ed25519 AAAA…`.
    pub host_key: String,
    /// Private key path; agent when absent.
    pub identity: Option<String>,
    /// Per-command timeout in seconds.
    pub timeout_secs: u32,
}

/// Tier defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tier {
    /// Process counts for the tenant's primary app.
    pub processes: BTreeMap<String, u32>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
}

/// Safety policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Most destroys a plan may carry without an override.
    pub max_destroys: u32,
    /// Whether the daemon heals drift.
    pub self_heal: bool,
    /// Days data of a cancelled tenant is retained.
    pub retain_data_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_destroys: 3,
            self_heal: true,
            retain_data_days: 30,
        }
    }
}

/// Secret provider settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Secrets {
    /// Provider; `None` when the environment declares no secrets.
    pub provider: Option<SecretProviderKind>,
    /// Directory for the `file` provider.
    pub path: Option<String>,
    /// Names that may be referenced.
    pub names: Vec<String>,
    /// The Vault store, for provider `vault`.
    pub vault: Option<Vault>,
}

/// A validated Vault KV v2 store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// Base address, no trailing `/`.
    pub address: String,
    /// KV v2 mount.
    pub mount: String,
    /// Folder of this environment's secrets.
    pub path: String,
    /// How to log in.
    pub auth: VaultAuth,
}

/// How berth logs in to Vault: where the credentials are (environment variable names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token.
    Token {
        /// Variable holding it.
        env: String,
    },
    /// AppRole.
    Approle {
        /// Variable holding the role id.
        role_id_env: String,
        /// Variable holding the secret id.
        secret_id_env: String,
        /// Mount of the method.
        mount: String,
    },
}

/// One tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Id (file stem), a DNS label.
    pub id: String,
    /// Path of the tenant file, for messages.
    pub file: String,
    /// Display name.
    pub name: Option<String>,
    /// Environment name.
    pub environment: String,
    /// Tier name.
    pub tier: Option<String>,
    /// Lifecycle state.
    pub state: TenantState,
    /// Pinned host, if any.
    pub host: Option<String>,
    /// Apps and services.
    pub stack: Stack,
    /// Stripe bridge data.
    pub billing: Option<crate::spec::BillingSpec>,
    /// `reconcile:` from the file; `None` = the environment's `policy.self-heal`.
    pub reconcile: Option<ReconcileMode>,
}

/// Apps plus services: what a tenant (or an environment's shared platform) runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stack {
    /// Pinned host (shared stacks always have one).
    pub host: Option<String>,
    /// Apps by name. Boxed: a `BTreeMap` node holds room for eleven values, and most
    /// tenants have one or two apps, so unboxed every tenant carried ~4 KiB of empty slots.
    pub apps: BTreeMap<String, Box<App>>,
    /// Services by name (boxed for the same reason).
    pub services: BTreeMap<String, Box<Service>>,
}

/// An app with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Name within the tenant.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Process counts by type.
    pub processes: BTreeMap<String, u32>,
    /// Default command (Docker).
    pub command: Option<Vec<String>>,
    /// Command per process type (Docker).
    pub commands: BTreeMap<String, Vec<String>>,
    /// Routed domains.
    pub domains: Vec<String>,
    /// Let's Encrypt.
    pub tls: bool,
    /// Health check.
    pub health: Option<Health>,
    /// Environment.
    pub env: BTreeMap<String, EnvValue>,
    /// Linked services.
    pub uses: Vec<String>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Listening port.
    pub port: Option<u16>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
    /// Storage mounts.
    pub storage: Vec<Storage>,
    /// Restart policy, when the file sets one (Docker default `unless-stopped`; on Dokku
    /// `None` leaves Dokku's default `on-failure:10`).
    pub restart: Option<RestartPolicy>,
    /// When to pull the image.
    pub pull: PullPolicy,
}

/// Env values. The plan never holds a secret: `Generate` and `Secret` are instructions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvValue {
    /// Literal from git.
    Literal(String),
    /// Generate `length` characters once; keep the live value if present.
    Generate {
        /// Length in characters.
        length: u32,
    },
    /// Resolve through the secret provider at apply time.
    Secret {
        /// Secret name.
        name: String,
    },
}

/// Health check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Health {
    /// HTTP path.
    pub path: Option<String>,
    /// HTTP port (default: the app's `port`, else 8080).
    pub port: Option<u16>,
    /// Exec command.
    pub command: Option<Vec<String>>,
    /// Seconds between probes.
    pub interval: u32,
    /// Seconds per probe.
    pub timeout: u32,
    /// Failures before unhealthy.
    pub retries: u32,
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// Container port.
    pub container: u16,
    /// Fixed host port; allocated by the planner when `None`.
    pub host: Option<u16>,
}

/// A storage mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Storage {
    /// Volume name within the tenant.
    pub volume: String,
    /// Mount path.
    pub path: String,
}

/// A backing service with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Name within the tenant.
    pub name: String,
    /// Kind.
    pub kind: ServiceKind,
    /// Image.
    pub image: String,
    /// Command.
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, EnvValue>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
    /// Health check.
    pub health: Option<Health>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Volumes (Postgres and Redis get a `data` volume by default).
    pub storage: Vec<Storage>,
    /// When to pull the image.
    pub pull: PullPolicy,
}

/// A digest of a secret provider's value, for noticing rotation: 16 hex characters of
/// SHA-256 over the name and the value. It identifies a value without revealing it (for a
/// strong secret; only providers' values are digested, never literals from git).
#[must_use]
pub fn secret_digest(name: &str, value: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"berth secret digest\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parse `512M`, `2G`, `1.5G`, `256Mi`, `100k`, or a bare byte count.
#[must_use]
pub fn parse_memory(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim_end_matches(['B', 'b']).trim_end_matches('i');
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (1.0..1e15).contains(&bytes).then_some(bytes as u64)
}

/// Whether `name` is a DNS label: 1–63 of `a-z0-9-`, not starting or ending with `-`.
///
/// Names reach remote shells and container names, so this is deliberately strict.
#[must_use]
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is a hostname: dot-separated DNS labels, at most 253 characters.
#[must_use]
pub fn is_hostname(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512M"), Some(512 << 20));
        assert_eq!(parse_memory("2G"), Some(2 << 30));
        assert_eq!(parse_memory("1.5g"), Some(3 << 29));
        assert_eq!(parse_memory("256Mi"), Some(256 << 20));
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("0"), None);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("acme"));
        assert!(is_dns_label("a-1"));
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a;b",
            "a/b",
            "..",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
