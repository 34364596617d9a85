//! The repo format: serde + schemars types that mirror `environments/<env>.yaml` and
//! `tenants/<id>.yaml` key for key.
//!
//! These are the only types in berth that are deserialized from user input. They carry no
//! meaning beyond the shape of the files: cross-file rules, name checks and defaults live in
//! `validate`, which turns specs into the validated `model`. Keys are kebab-case and unknown
//! keys are rejected (a silently ignored `replcas:` is an outage), which is why every struct
//! carries `deny_unknown_fields`; the structural check in `schema_check` reports all of them
//! at once with spans before serde ever sees the value.
//!
//! Architecture invariant: pure. No I/O, no clock, no environment.

pub mod schema_check;
pub mod source;
pub mod yaml;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format version this berth reads and writes.
pub const FORMAT_VERSION: u32 = 1;

// === Environment ===

/// `environments/<env>.yaml`: the hosts, tiers, policies and integrations of one environment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(title = "berth environment file")]
pub struct EnvironmentSpec {
    /// Format version of this file. Only `1` exists today.
    #[serde(default, alias = "api-version")]
    pub version: Option<u32>,
    /// Base domain: a tenant `acme` gets `acme.<domain>` unless its apps list domains.
    #[serde(default)]
    pub domain: Option<String>,
    /// The servers berth deploys to, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
    /// Plan tiers: the defaults (processes, memory, cpus) a tenant's tier brings.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierSpec>,
    /// How remote names are built.
    #[serde(default)]
    pub naming: Option<NamingSpec>,
    /// Stripe integration: which price maps to which tier.
    #[serde(default)]
    pub stripe: Option<StripeSpec>,
    /// Safety policy for plans and the daemon.
    #[serde(default)]
    pub policy: Option<PolicySpec>,
    /// Where secret references (`{ secret: name }`) are resolved, and which names exist.
    #[serde(default)]
    pub secrets: Option<SecretsSpec>,
    /// Container registries images are pulled from with credentials, by server
    /// (`registry.example.net`, `127.0.0.1:5000`). Docker hosts pull with them; on Dokku
    /// hosts an app whose image is on one logs in (`registry:login --password-stdin`, per
    /// app) before each deploy. Images of other registries are pulled anonymously, or with
    /// the host's own Docker credentials when it has them.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySpec>,
    /// Environment-level shared services: a platform (API, event bus, shared databases) that
    /// runs beside the tenants on one host of this environment.
    #[serde(default)]
    pub shared: Option<SharedSpec>,
}

/// One server. Exactly one of `dokku` or `docker` says how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostSpec {
    /// A Dokku server reached over SSH. Several environments may share one server: berth
    /// marks its apps (docker-options label `io.berth.environment`) and services (their
    /// record in `berth-state`) with their environment and leaves every other environment's
    /// alone (docs/operations.md).
    #[serde(default)]
    pub dokku: Option<DokkuHostSpec>,
    /// A Docker Engine.
    #[serde(default)]
    pub docker: Option<DockerHostSpec>,
    /// The most tenants this host may carry.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Range of host ports berth may publish container ports on, `20000-29999`.
    #[serde(default)]
    pub ports: Option<String>,
    /// Reverse proxy that routes domains to containers on a Docker host.
    #[serde(default)]
    pub proxy: Option<ProxyKind>,
    /// Docker: an IPv4 block (`10.200.0.0/16`) that tenant networks get a /24 of each, instead
    /// of the engine's default pools (which hold about 30 networks).
    #[serde(default)]
    pub subnets: Option<String>,
    /// Docker: a Caddy server berth routes tenant domains through, managing one route per
    /// app in Caddy's JSON config over its admin API.
    #[serde(default)]
    pub caddy: Option<CaddySpec>,
}

/// A Caddy server whose routes berth manages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CaddySpec {
    /// The admin endpoint, `http://127.0.0.1:2019` (loopback, or https).
    pub admin: String,
    /// The HTTP server (in `apps.http.servers`) holding berth's routes; default `berth`,
    /// created when missing.
    #[serde(default)]
    pub server: Option<String>,
    /// Where that server listens when berth creates it; default `:80`.
    #[serde(default)]
    pub listen: Option<String>,
}

/// How to reach a Dokku server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DokkuHostSpec {
    /// `user@host[:port]`; the user is normally `dokku`.
    pub ssh: String,
    /// The server's public host key, as in `known_hosts` (`ssh-ed25519 AAAA…`). Pinned:
    /// berth refuses to talk to a server that presents any other key.
    pub host_key: String,
    /// Path to the private key; the SSH agent is used when absent.
    #[serde(default)]
    pub identity: Option<String>,
    /// Seconds before one remote command is abandoned.
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// How to reach a Docker Engine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DockerHostSpec {
    /// `unix:///var/run/docker.sock`, `tcp://host:2375` or `ssh://user@host`.
    pub endpoint: String,
    /// Seconds berth waits for the Engine to answer one API call before it calls the engine
    /// hung and fails the step (default 120). A container stop is given its 10 s grace on
    /// top; an image pull may take as long as it needs while progress keeps arriving.
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// Reverse proxy flavour for domain routing on Docker hosts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyKind {
    /// Traefik router labels (the default).
    Traefik,
    /// caddy-docker-proxy labels.
    Caddy,
}

/// A plan tier: defaults for every tenant on it. Tenants may override each value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TierSpec {
    /// Process counts per process type, e.g. `{ web: 2, worker: 1 }`.
    #[serde(default)]
    pub processes: BTreeMap<String, u32>,
    /// Memory limit per container, `512M`, `2G`.
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU limit per container, in cores.
    #[serde(default)]
    pub cpus: Option<f64>,
}

/// Naming templates. `{tenant}` and `{app}` are replaced.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NamingSpec {
    /// Dokku app name template; default `{tenant}-{app}`. Environments sharing a Dokku
    /// server need distinct app names (a name another environment holds is refused);
    /// services are named `<tenant>-<service>`, so their tenant ids must differ too.
    #[serde(default)]
    pub dokku_app: Option<String>,
}

/// Stripe: price ids to tiers, and the template for tenants created at checkout.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StripeSpec {
    /// `price_…` → tier name.
    #[serde(default)]
    pub prices: BTreeMap<String, String>,
    /// Path (in the repo) of the tenant file template used for a new checkout.
    #[serde(default)]
    pub new_tenant: Option<String>,
}

/// Safety policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicySpec {
    /// A plan destroying more objects than this is refused without an override. Default 3.
    #[serde(default)]
    pub max_destroys: Option<u32>,
    /// Whether the daemon repairs drift by itself (otherwise it only reports it).
    #[serde(default)]
    pub self_heal: Option<bool>,
    /// How long data of a cancelled tenant is kept before `state: purge` may remove it, `30d`.
    #[serde(default)]
    pub retain_data: Option<String>,
}

/// The secret provider and the secret names it offers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecretsSpec {
    /// Where values come from at apply time.
    pub provider: SecretProviderKind,
    /// Directory holding one file per secret (provider `file`).
    #[serde(default)]
    pub path: Option<String>,
    /// The secret names tenant files may reference. Values never appear in git.
    #[serde(default)]
    pub names: Vec<String>,
    /// Provider `vault`: where the KV v2 secrets are and how berth logs in.
    #[serde(default)]
    pub vault: Option<VaultSpec>,
}

/// A Vault (or OpenBao) KV version 2 store. The value of secret `name` is the field `value` of
/// the secret `<mount>/<path>/<name>` (read at `/v1/<mount>/data/<path>/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VaultSpec {
    /// `https://vault.example.net:8200` (`http://` for a server on loopback only).
    pub address: String,
    /// The KV v2 mount; default `secret`.
    #[serde(default)]
    pub mount: Option<String>,
    /// The folder under the mount holding this environment's secrets (`berth/prod`).
    pub path: String,
    /// How berth logs in; default `token`.
    #[serde(default)]
    pub auth: Option<VaultAuthKind>,
    /// `auth: token`: the environment variable holding the token; default `VAULT_TOKEN`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// `auth: approle`: the environment variable holding the role id.
    #[serde(default)]
    pub role_id_env: Option<String>,
    /// `auth: approle`: the environment variable holding the secret id.
    #[serde(default)]
    pub secret_id_env: Option<String>,
    /// `auth: approle`: the mount of the AppRole method; default `approle`.
    #[serde(default)]
    pub approle_mount: Option<String>,
}

/// How berth logs in to Vault.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VaultAuthKind {
    /// A token from an environment variable.
    Token,
    /// AppRole: a role id and a secret id from environment variables, exchanged for a token.
    Approle,
}

/// Secret providers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SecretProviderKind {
    /// `BERTH_SECRET_<NAME>` environment variables of the berth process.
    Env,
    /// One file per secret in `path`.
    File,
    /// A Vault or OpenBao KV v2 store (`vault:`).
    Vault,
}

/// Environment-level shared services (a platform beside its tenants).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SharedSpec {
    /// The host that runs them.
    pub host: String,
    /// Long-running app containers / Dokku apps.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSpec>,
    /// Databases, caches and other backing services.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
}

// === Tenant ===

/// `tenants/<id>.yaml`: one customer deployment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(title = "berth tenant file")]
pub struct TenantSpec {
    /// Format version of this file. Only `1` exists today.
    #[serde(default, alias = "api-version")]
    pub version: Option<u32>,
    /// The tenant id; when given it must equal the file stem.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name of the customer.
    #[serde(default)]
    pub name: Option<String>,
    /// The environment file (`environments/<name>.yaml`) this tenant lives in.
    pub environment: String,
    /// Plan tier from the environment.
    #[serde(default)]
    pub tier: Option<String>,
    /// Lifecycle state. Default `active`.
    #[serde(default)]
    pub state: Option<TenantState>,
    /// Pin the tenant to one host; otherwise placement chooses.
    #[serde(default)]
    pub host: Option<String>,
    /// Apps (Dokku apps or app containers), by name.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSpec>,
    /// Backing services (Postgres, Redis, any image), by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    /// Owned by the Stripe bridge.
    #[serde(default)]
    pub billing: Option<BillingSpec>,
    /// What `berth daemon` does with this tenant: `heal` repairs drift, `report` only reports
    /// it (file changes are still applied), `paused` leaves the tenant untouched. Default: the
    /// environment's `policy.self-heal` (`heal` when true, `report` when false). `berth apply`
    /// is an explicit instruction and ignores it.
    #[serde(default)]
    pub reconcile: Option<ReconcileMode>,
}

/// What the daemon does with a tenant (`reconcile:` in a tenant file).
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcileMode {
    /// Apply file changes and repair drift.
    Heal,
    /// Apply file changes; report drift, never repair it.
    Report,
    /// Touch nothing: neither file changes nor drift are applied (both are reported).
    Paused,
}

/// Tenant lifecycle.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum TenantState {
    /// Running.
    Active,
    /// Processes at zero, everything kept (e.g. payment failed).
    Suspended,
    /// Processes at zero, data kept for the retention period.
    Cancelled,
    /// Explicit instruction to destroy everything, data included.
    Purge,
}

/// An app: a Dokku app, or a set of containers from one image on a Docker host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AppSpec {
    /// Image reference to deploy, `registry.example.app/app:1.4.2` (a digest is best).
    pub image: String,
    /// Process counts per type; default from the tier, else `{ web: 1 }`.
    #[serde(default)]
    pub processes: Option<BTreeMap<String, u32>>,
    /// Docker only: command for every process type unless `commands` says otherwise (on
    /// Dokku the image's CMD or Procfile runs; refused there).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Docker only: command per process type (on Dokku: the image's Procfile; refused there).
    #[serde(default)]
    pub commands: BTreeMap<String, Vec<String>>,
    /// Domains routed to this app; default `<tenant>.<domain>` for the `web` app.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    /// Let's Encrypt certificate for the domains.
    #[serde(default)]
    pub tls: Option<bool>,
    /// Docker only: health check berth probes during rollouts (on Dokku health checks come
    /// from the image's `app.json`; refused there).
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Environment: literals, generated secrets or secret references. A value is at most
    /// 64 KiB and one app's whole env at most 1 MiB (Linux's per-argument and per-program
    /// limits, docs/operations.md).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValueSpec>,
    /// Services of this tenant linked to the app (`DATABASE_URL`, `REDIS_URL`).
    #[serde(default)]
    pub uses: Vec<String>,
    /// Docker: container ports published on the host.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Port the app listens on. Dokku: `ports:set` routes `http:80` (and `https:443` with
    /// `tls`) to it; unset, Dokku's detected map applies (5000 or the image's `EXPOSE`).
    /// Docker: routing and health-probe target, default 8080.
    #[serde(default)]
    pub port: Option<u16>,
    /// Memory limit per container; overrides the tier.
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU limit per container; overrides the tier.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Persistent storage mounted into the app.
    #[serde(default)]
    pub storage: Vec<StorageSpec>,
    /// Restart policy. Docker: default `unless-stopped`. Dokku: `ps:set restart-policy`;
    /// unset, Dokku's default `on-failure:10`.
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    /// When to pull the image; default `missing`. Docker only for `always` and `never`
    /// (Dokku's `git:from-image` pulls missing images only).
    #[serde(default)]
    pub pull: Option<PullPolicy>,
}

/// An env value: a literal, a generated secret, or a reference to a secret provider.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum EnvValueSpec {
    /// A literal value, kept in git: never put a secret here.
    Literal(String),
    /// Generated once on first deploy, kept across redeploys, never in git.
    Generate(GenerateSpec),
    /// Resolved through the environment's secret provider at apply time.
    Secret(SecretRefSpec),
}

/// `{ generate: 32 }`: a random value of that many characters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GenerateSpec {
    /// Length in characters (alphanumeric).
    pub generate: u32,
}

/// `{ secret: name }`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecretRefSpec {
    /// A name listed in the environment's `secrets.names`.
    pub secret: String,
}

/// Health check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthSpec {
    /// HTTP path berth probes itself (Docker: on the container's address; no tool in the
    /// image needed).
    #[serde(default)]
    pub path: Option<String>,
    /// Port of the HTTP probe (default: the app's `port`, else 8080).
    #[serde(default)]
    pub port: Option<u16>,
    /// Docker: exec-form command instead of an HTTP probe.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Seconds between probes.
    #[serde(default)]
    pub interval: Option<u32>,
    /// Seconds before one probe fails.
    #[serde(default)]
    pub timeout: Option<u32>,
    /// Failed probes before unhealthy.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// A published port: container port → host port (`auto` allocates from the host's range).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PortSpec {
    /// Port inside the container.
    pub container: u16,
    /// Host port; omit to allocate one from the host's `ports` range.
    #[serde(default)]
    pub host: Option<u16>,
}

/// Persistent storage: a named volume (Docker) or storage directory (Dokku) at a path.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageSpec {
    /// Volume name, unique within the tenant.
    pub volume: String,
    /// Mount path inside the container.
    pub path: String,
}

/// When berth pulls an image on a Docker host.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    JsonSchema,
    PartialEq,
    Eq,
    Default,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull when the host does not have the image (default).
    #[default]
    Missing,
    /// Pull before every create or replacement, even when the image is there.
    Always,
    /// Never pull: the image must be on the host already.
    Never,
}

/// Credentials for one container registry: a user name, and the name of a secret (in the
/// environment's `secrets.names`) holding its password or token.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistrySpec {
    /// User name.
    pub username: String,
    /// Secret holding the password or token (never the value itself).
    pub password_secret: String,
}

/// Docker restart policies.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    No,
    /// Always restart.
    Always,
    /// Restart unless stopped by hand (default).
    UnlessStopped,
    /// Restart on non-zero exit.
    OnFailure,
}

/// A backing service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceSpec {
    /// What it is.
    pub kind: ServiceKind,
    /// Image; defaults per kind (`postgres:16`, `redis:7`); required for `container`.
    #[serde(default)]
    pub image: Option<String>,
    /// Docker only: command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Docker only: environment.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValueSpec>,
    /// Docker only: memory limit.
    #[serde(default)]
    pub memory: Option<String>,
    /// Docker only: CPU limit.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Docker only: health check.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Docker only: published ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Docker only: named volumes. Postgres and Redis get a data volume by default.
    #[serde(default)]
    pub storage: Vec<StorageSpec>,
    /// Docker only: when to pull the image; default `missing`.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
}

/// Service kinds.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// PostgreSQL (Dokku: dokku-postgres plugin).
    Postgres,
    /// Redis (Dokku: dokku-redis plugin).
    Redis,
    /// Any other image (Docker hosts only).
    Container,
}

/// The billing block, written by the Stripe bridge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BillingSpec {
    /// `cus_…`
    #[serde(default)]
    pub customer: Option<String>,
    /// `sub_…`
    #[serde(default)]
    pub subscription: Option<String>,
    /// Stripe subscription status (`active`, `past_due`, `canceled`, …).
    #[serde(default)]
    pub status: Option<String>,
    /// The Stripe price the tier came from.
    #[serde(default)]
    pub price: Option<String>,
    /// Unix time of the newest Stripe event reflected in this file.
    #[serde(default)]
    pub updated: Option<u64>,
}

/// JSON Schema of the tenant file, as committed under `schema/`.
#[must_use]
pub fn tenant_schema() -> serde_json::Value {
    schema_value(schemars::schema_for!(TenantSpec))
}

/// JSON Schema of the environment file, as committed under `schema/`.
#[must_use]
pub fn environment_schema() -> serde_json::Value {
    schema_value(schemars::schema_for!(EnvironmentSpec))
}

fn schema_value(schema: schemars::Schema) -> serde_json::Value {
    schema.to_value()
}
