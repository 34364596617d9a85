//! Images on a Docker host: pulled when missing (or always, or never, per app), with
//! credentials for the image's registry from the environment's `registries` block (the
//! password through the secret provider) or, failing that, the host's Docker client config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, plain `auths` entries only —
//! credential helpers are not run). Preflight asks the registry, through the engine, whether
//! an image exists, without pulling it.

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::{DockerDriver, DockerError, not_found};
use crate::model::PullPolicy;

pub use crate::model::registry_of;

/// `(repository, tag or digest)` of an image reference; the tag defaults to `latest`.
#[must_use]
pub fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

impl DockerDriver {
    /// Credentials for the registry of `image`, if berth has any.
    async fn credentials(
        &self,
        tenant: &str,
        image: &str,
    ) -> Result<Option<DockerCredentials>, DockerError> {
        let Some(server) = registry_of(image) else {
            return Ok(None);
        };
        if let Some(registry) = self.registries.get(server) {
            let password = self
                .secrets
                .get(&registry.password_secret)
                .await
                .map_err(|source| DockerError::Secret {
                    host: self.host.clone(),
                    tenant: tenant.to_string(),
                    source,
                })?;
            return Ok(Some(DockerCredentials {
                username: Some(registry.username.clone()),
                password: Some(password),
                serveraddress: Some(server.to_string()),
                ..DockerCredentials::default()
            }));
        }
        Ok(client_config_credentials(server))
    }

    /// Make sure `image` is on the host, pulling it as `policy` says.
    pub(super) async fn ensure_image(
        &self,
        tenant: &str,
        image: &str,
        policy: PullPolicy,
    ) -> Result<(), DockerError> {
        let present = self.has_image(tenant, image).await?;
        match (policy, present) {
            (PullPolicy::Never, false) => Err(DockerError::ImageMissing {
                host: self.host.clone(),
                tenant: tenant.to_string(),
                image: image.to_string(),
            }),
            (PullPolicy::Missing | PullPolicy::Never, true) => Ok(()),
            (PullPolicy::Missing | PullPolicy::Always, _) => self.pull(tenant, image).await,
        }
    }

    async fn has_image(&self, tenant: &str, image: &str) -> Result<bool, DockerError> {
        self.count();
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.api(tenant, format!("inspect image {image}"))(e)),
        }
    }

    async fn pull(&self, tenant: &str, image: &str) -> Result<(), DockerError> {
        let credentials = self.credentials(tenant, image).await?;
        let (repo, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        self.count();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        // A pull may take long, but it reports progress: silence for the host's timeout
        // means a hung engine or registry.
        loop {
            let Ok(next) = tokio::time::timeout(self.timeout, stream.next()).await else {
                return Err(self.pull_timeout(tenant, image));
            };
            let Some(item) = next else { break };
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(self.pull_error(tenant, image, detail));
                    }
                }
                Err(BollardError::RequestTimeoutError) => {
                    return Err(self.pull_timeout(tenant, image));
                }
                Err(e) => return Err(self.pull_error(tenant, image, engine_message(&e))),
            }
        }
        Ok(())
    }

    fn pull_timeout(&self, tenant: &str, image: &str) -> DockerError {
        DockerError::Timeout {
            host: self.host.clone(),
            tenant: tenant.to_string(),
            call: format!("pull image {image}"),
            waited: self.timeout,
        }
    }

    fn pull_error(&self, tenant: &str, image: &str, reason: String) -> DockerError {
        DockerError::Pull {
            host: self.host.clone(),
            tenant: tenant.to_string(),
            image: image.to_string(),
            registry: registry_of(image).unwrap_or("docker.io").to_string(),
            reason,
        }
    }

    /// Preflight: whether `image` is on the host or its registry has it (asked through the
    /// engine with berth's credentials; nothing is pulled).
    pub(crate) async fn image_available(
        &self,
        tenant: &str,
        image: &str,
        policy: PullPolicy,
    ) -> Result<(), DockerError> {
        let present = self.has_image(tenant, image).await?;
        if present && policy != PullPolicy::Always {
            return Ok(());
        }
        if policy == PullPolicy::Never {
            return Err(DockerError::ImageMissing {
                host: self.host.clone(),
                tenant: tenant.to_string(),
                image: image.to_string(),
            });
        }
        let credentials = self.credentials(tenant, image).await?;
        self.count();
        self.docker
            .inspect_registry_image(image, credentials)
            .await
            .map(|_| ())
            .map_err(|e| self.pull_error(tenant, image, engine_message(&e)))
    }
}

/// The engine's own message, without bollard's wrapping.
fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Plain `auths` credentials for `server` from the Docker client config, if any.
fn client_config_credentials(server: &str) -> Option<DockerCredentials> {
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(|d| std::path::PathBuf::from(d).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".docker/config.json"))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auth = config["auths"][server]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(username.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(server.to_string()),
        ..DockerCredentials::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_references() {
        assert_eq!(registry_of("postgres:16"), None);
        assert_eq!(registry_of("library/postgres:16"), None);
        assert_eq!(
            registry_of("registry.example.net/app/web:1.2"),
            Some("registry.example.net")
        );
        assert_eq!(registry_of("127.0.0.1:5000/app:v1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_of("localhost/app"), Some("localhost"));
        assert_eq!(
            split_reference("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app", "v1")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(split_reference("app@sha256:abc"), ("app", "sha256:abc"));
    }
}
