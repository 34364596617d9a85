//! Secret providers: where `{ secret: name }` values come from at apply time.
//!
//! Values exist only here and in the driver call that sends them; they are never logged,
//! never put in a plan and never in an error message (errors name the secret, not its value).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::{SecretProviderKind, Secrets};

/// A source of secret values.
#[derive(Debug, Clone)]
pub enum SecretProvider {
    /// `BERTH_SECRET_<NAME>` variables of this process (`-` becomes `_`, upper-cased).
    Env,
    /// One file per secret in a directory; trailing newlines are removed.
    Files(PathBuf),
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

impl SecretProvider {
    /// The provider an environment declares.
    #[must_use]
    pub fn for_environment(secrets: &Secrets) -> Self {
        match (secrets.provider, &secrets.path) {
            (Some(SecretProviderKind::Env), _) => SecretProvider::Env,
            (Some(SecretProviderKind::File), Some(path)) => {
                SecretProvider::Files(PathBuf::from(path))
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
    pub fn get(&self, name: &str) -> Result<String, MissingSecret> {
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
