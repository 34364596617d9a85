//! Network remotes: credentials and host-key pinning for fetches and pushes, and the
//! daemon's mirror of a remote branch.
//!
//! The Stripe bridge pushes with these callbacks; `berth daemon` fetches with them into a bare
//! repository in its state directory ([`Mirror`]), which it then reads like any other repo
//! (desired state at a commit, no checkout).

use std::path::{Path, PathBuf};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository,
};

/// Credentials for network remotes. Values never appear in logs or errors.
#[derive(Clone, Default)]
pub struct Auth {
    /// Private key file for ssh remotes (else the ssh agent).
    pub ssh_key: Option<PathBuf>,
    /// Pinned host key of the ssh remote, `ssh-ed25519 AAAA…`; without it ssh pushes are refused.
    pub ssh_host_key: Option<String>,
    /// Token for https remotes.
    pub https_token: Option<String>,
    /// User name sent with the token.
    pub https_user: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ssh_key", &self.ssh_key)
            .field("ssh_host_key", &self.ssh_host_key)
            .field("https_token", &self.https_token.as_ref().map(|_| "(set)"))
            .field("https_user", &self.https_user)
            .finish()
    }
}

/// Callbacks for a remote: credentials from `auth` (ssh key or agent, https token) and, for
/// ssh, the server's host key checked against the pinned one.
#[must_use]
pub fn callbacks(auth: &Auth) -> RemoteCallbacks<'static> {
    let pinned = auth.ssh_host_key.clone();
    let auth = auth.clone();
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |_url, user, allowed| {
        // libgit2 asks again after every refused credential: give up instead of looping.
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        let user = user.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            return match &auth.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = &auth.https_token
        {
            return Cred::userpass_plaintext(&auth.https_user, token);
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        Err(git2::Error::from_str("no credentials for this remote"))
    });
    callbacks.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: the system's CA store decides.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let presented = hostkey.hostkey().unwrap_or_default();
        let matches = pinned
            .as_deref()
            .and_then(|p| p.split_whitespace().nth(1))
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            })
            .is_some_and(|key| key == presented);
        if matches {
            Ok(CertificateCheckStatus::CertificateOk)
        } else {
            Err(git2::Error::from_str(&format!(
                "the ssh host key of `{host}` is not the pinned one (--ssh-host-key)"
            )))
        }
    });
    callbacks
}

/// Why a mirror could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The state directory or the bare repository could not be set up.
    #[error("cannot set up the mirror in `{}`", path.display())]
    Setup {
        /// The repository path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: git2::Error,
    },
    /// The fetch failed (network, credentials, host key).
    #[error("cannot fetch `{branch}` from `{url}`: {message}")]
    Fetch {
        /// Remote.
        url: String,
        /// Branch.
        branch: String,
        /// What libgit2 said (no credential is ever part of it).
        message: String,
    },
    /// The remote has no such branch.
    #[error("the remote `{url}` has no branch `{branch}`")]
    NoBranch {
        /// Remote.
        url: String,
        /// Branch.
        branch: String,
    },
}

/// A bare mirror of one branch of a remote, kept in a state directory.
pub struct Mirror {
    repo: Repository,
    path: PathBuf,
    url: String,
    branch: String,
    auth: Auth,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("path", &self.path)
            .field("url", &self.url)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Open (or create) the mirror `<state_dir>/repo.git` of `url`'s `branch`.
    ///
    /// # Errors
    /// The directory or repository cannot be created.
    pub fn open(state_dir: &Path, url: &str, branch: &str, auth: Auth) -> Result<Self, FetchError> {
        let path = state_dir.join("repo.git");
        let setup = |source| FetchError::Setup {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir)
            .map_err(|e| setup(git2::Error::from_str(&e.to_string())))?;
        let repo = if path.exists() {
            Repository::open_bare(&path).map_err(setup)?
        } else {
            Repository::init_bare(&path).map_err(setup)?
        };
        match repo.find_remote("origin") {
            Ok(remote) if remote.url() == Some(url) => {}
            Ok(_) => repo.remote_set_url("origin", url).map_err(setup)?,
            Err(_) => {
                repo.remote("origin", url).map_err(setup)?;
            }
        }
        Ok(Mirror {
            repo,
            path,
            url: url.to_string(),
            branch: branch.to_string(),
            auth,
        })
    }

    /// The bare repository, to read with [`super::GitRepo`].
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// The commit the mirror last fetched, if any (no network).
    #[must_use]
    pub fn tip(&self) -> Option<String> {
        self.repo
            .refname_to_id(&self.tracking_ref())
            .ok()
            .map(|o| o.to_string())
    }

    /// Fetch the branch; returns its tip.
    ///
    /// # Errors
    /// Network, credential or host-key failures, and a missing branch.
    pub fn fetch(&self) -> Result<String, FetchError> {
        let refspec = format!("+refs/heads/{b}:{}", self.tracking_ref(), b = self.branch);
        let failed = |e: &git2::Error| FetchError::Fetch {
            url: self.url.clone(),
            branch: self.branch.clone(),
            message: e.message().to_string(),
        };
        let mut remote = self.repo.find_remote("origin").map_err(|e| failed(&e))?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(&self.auth));
        remote
            .fetch(&[refspec], Some(&mut options), None)
            .map_err(|e| failed(&e))?;
        self.tip().ok_or_else(|| FetchError::NoBranch {
            url: self.url.clone(),
            branch: self.branch.clone(),
        })
    }
}
