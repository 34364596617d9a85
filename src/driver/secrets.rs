//! Secret providers: where `{ secret: name }` values come from at apply time.
//!
//! Values exist only here and in the driver call that sends them; they are never logged,
//! never put in a plan and never in an error message (errors name the secret, not its value).
//!
//! - `env`: `BERTH_SECRET_<NAME>` variables of the berth process.
//! - `file`: one file per secret in a directory.
//! - `vault`: a Vault or OpenBao KV v2 store over HTTP(S): the value of `name` is the field
//!   `value` of `<mount>/<path>/<name>`. berth logs in with a token from an environment
//!   variable, or with AppRole (role id and secret id from environment variables, exchanged
//!   for a token once per process). Values are cached for a few seconds, so one apply reads
//!   each secret once and a daemon pass sees a rotated value within that time.
//!
//! [`digest`] is how a plan notices a rotated value without ever holding it: the session
//! digests every declared secret before planning (`LiveHost::secret_digests`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::Http;
use crate::model::{SecretProviderKind, Secrets, Vault, VaultAuth};

/// How long a value read from Vault is reused.
const VAULT_CACHE: Duration = Duration::from_secs(5);

/// A source of secret values.
#[derive(Debug, Clone)]
pub enum SecretProvider {
    /// `BERTH_SECRET_<NAME>` variables of this process (`-` becomes `_`, upper-cased).
    Env,
    /// One file per secret in a directory; trailing newlines are removed.
    Files(PathBuf),
    /// A Vault KV v2 store.
    Vault(Arc<VaultClient>),
    /// Fixed values (tests, the in-memory driver).
    Map(BTreeMap<String, String>),
    /// The environment declares no secrets.
    None,
}

/// A secret that has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret `{name}` has no value ({source_hint})")]
pub struct MissingSecret {
    /// Secret name.
    pub name: String,
    /// Where it was looked for.
    pub source_hint: String,
}

/// A connection to a Vault store, with its token and a short cache of values.
pub struct VaultClient {
    vault: Vault,
    http: Http,
    token: tokio::sync::Mutex<Option<String>>,
    cache: std::sync::Mutex<BTreeMap<String, (Instant, String)>>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.vault.address)
            .field("mount", &self.vault.mount)
            .field("path", &self.vault.path)
            .finish_non_exhaustive()
    }
}

impl VaultClient {
    fn new(vault: Vault) -> Self {
        VaultClient {
            vault,
            http: Http::new(Duration::from_secs(10)),
            token: tokio::sync::Mutex::new(None),
            cache: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn missing(&self, name: &str, why: impl Into<String>) -> MissingSecret {
        MissingSecret {
            name: name.to_string(),
            source_hint: why.into(),
        }
    }

    async fn token(&self, name: &str) -> Result<String, MissingSecret> {
        let mut held = self.token.lock().await;
        if let Some(token) = held.as_ref() {
            return Ok(token.clone());
        }
        let var = |v: &str| {
            std::env::var(v)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| self.missing(name, format!("set `{v}` for Vault")))
        };
        let token = match &self.vault.auth {
            VaultAuth::Token { env } => var(env)?,
            VaultAuth::Approle {
                role_id_env,
                secret_id_env,
                mount,
            } => {
                let body = serde_json::json!({
                    "role_id": var(role_id_env)?,
                    "secret_id": var(secret_id_env)?,
                });
                let url = format!("{}/v1/auth/{mount}/login", self.vault.address);
                let answer = self
                    .http
                    .send("POST", &url, &[], Some(body.to_string().into_bytes()))
                    .await
                    .map_err(|e| self.missing(name, e.to_string()))?;
                if answer.status != 200 {
                    return Err(self.missing(
                        name,
                        format!("the AppRole login at {url} answered {}", answer.status),
                    ));
                }
                let doc: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or_default();
                doc["auth"]["client_token"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.missing(name, "the AppRole login gave no token"))?
            }
        };
        *held = Some(token.clone());
        Ok(token)
    }

    async fn get(&self, name: &str) -> Result<String, MissingSecret> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, value)) = cache.get(name)
            && at.elapsed() < VAULT_CACHE
        {
            return Ok(value.clone());
        }
        let token = self.token(name).await?;
        let url = format!(
            "{}/v1/{}/data/{}/{name}",
            self.vault.address, self.vault.mount, self.vault.path
        );
        let answer = self
            .http
            .send("GET", &url, &[("x-vault-token", &token)], None)
            .await
            .map_err(|e| self.missing(name, e.to_string()))?;
        let place = format!(
            "`{}/{}/{name}` in Vault at {}",
            self.vault.mount, self.vault.path, self.vault.address
        );
        match answer.status {
            200 => {}
            404 => return Err(self.missing(name, format!("no secret {place}"))),
            403 => {
                return Err(self.missing(name, format!("the token may not read {place}")));
            }
            other => return Err(self.missing(name, format!("{place} answered {other}"))),
        }
        let doc: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let value = doc["data"]["data"]["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.missing(name, format!("{place} has no field `value`")))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }
}

impl SecretProvider {
    /// The provider an environment declares.
    #[must_use]
    pub fn for_environment(secrets: &Secrets) -> Self {
        match (secrets.provider, &secrets.path, &secrets.vault) {
            (Some(SecretProviderKind::Env), _, _) => SecretProvider::Env,
            (Some(SecretProviderKind::File), Some(path), _) => {
                SecretProvider::Files(PathBuf::from(path))
            }
            (Some(SecretProviderKind::Vault), _, Some(vault)) => {
                SecretProvider::Vault(Arc::new(VaultClient::new(vault.clone())))
            }
            _ => SecretProvider::None,
        }
    }

    /// The variable name the `env` provider reads for `name`.
    #[must_use]
    pub fn env_var(name: &str) -> String {
        format!("BERTH_SECRET_{}", name.to_uppercase().replace('-', "_"))
    }

    /// Look a secret up.
    ///
    /// # Errors
    /// When the provider has no value for it.
    pub async fn get(&self, name: &str) -> Result<String, MissingSecret> {
        let missing = |hint: String| MissingSecret {
            name: name.to_string(),
            source_hint: hint,
        };
        match self {
            SecretProvider::Env => std::env::var(Self::env_var(name))
                .map_err(|_| missing(format!("set `{}`", Self::env_var(name)))),
            SecretProvider::Files(dir) => std::fs::read_to_string(dir.join(name))
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|_| missing(format!("no readable file `{}`", dir.join(name).display()))),
            SecretProvider::Vault(client) => client.get(name).await,
            SecretProvider::Map(map) => map
                .get(name)
                .cloned()
                .ok_or_else(|| missing("not in the map".into())),
            SecretProvider::None => Err(missing(
                "the environment declares no secret provider".into(),
            )),
        }
    }
}

pub use crate::model::secret_digest as digest;

/// A fresh random secret of `length` alphanumeric characters (OS randomness).
#[must_use]
pub fn generate(length: u32) -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length as usize)
        .map(char::from)
        .collect()
}
