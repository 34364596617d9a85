//! Verifying git push webhooks: GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256
//! of the raw body), Gitea's `X-Gitea-Signature` (the same HMAC, bare hex) and GitLab's
//! `X-Gitlab-Token` (the secret itself). Every comparison runs in constant time: HMACs through
//! `hmac`'s `verify_slice`, tokens by comparing their SHA-256 digests with a fold that never
//! stops early (equal lengths, so the length of the secret does not leak either).
//!
//! A verified push is only a trigger: the daemon fetches and runs a pass, whatever the body
//! says (a pass is level-triggered), so nothing in the body is trusted or even parsed here.
//!
//! Architecture invariant: pure. Headers and body in, verdict out.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The shared secrets of each forge (several while one is rolled).
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// GitHub (and Gitea, which sends `X-Hub-Signature-256` too).
    pub github: Vec<Vec<u8>>,
    /// GitLab's secret token.
    pub gitlab: Vec<Vec<u8>>,
    /// Gitea / Forgejo.
    pub gitea: Vec<Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("github", &self.github.len())
            .field("gitlab", &self.gitlab.len())
            .field("gitea", &self.gitea.len())
            .finish()
    }
}

impl WebhookSecrets {
    /// Whether any forge is configured (otherwise `/hooks/git` answers 404).
    #[must_use]
    pub fn any(&self) -> bool {
        !(self.github.is_empty() && self.gitlab.is_empty() && self.gitea.is_empty())
    }
}

/// Which forge a verified request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// GitHub.
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea / Forgejo.
    Gitea,
}

impl Forge {
    /// Lowercase name (metric label, log field).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
        }
    }
}

/// Why a webhook was refused. Messages never quote a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No header of a configured forge.
    #[error("no signature or token header of a configured forge")]
    Unsigned,
    /// A header that is not well-formed.
    #[error("the {0} signature header is malformed")]
    Malformed(&'static str),
    /// Signature or token does not match any secret.
    #[error("the {0} signature does not match")]
    Mismatch(&'static str),
}

/// Verify a push webhook from its headers (looked up case-insensitively by `header`) and
/// raw body.
///
/// # Errors
/// Unsigned, malformed or forged requests.
pub fn verify(
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Forge, Refused> {
    if !secrets.gitea.is_empty()
        && let Some(sig) = header("x-gitea-signature")
    {
        let mac = hex::decode(sig.trim()).map_err(|_| Refused::Malformed("gitea"))?;
        return any_hmac(&secrets.gitea, body, &mac)
            .then_some(Forge::Gitea)
            .ok_or(Refused::Mismatch("gitea"));
    }
    if !secrets.github.is_empty()
        && let Some(sig) = header("x-hub-signature-256")
    {
        let hex_part = sig
            .trim()
            .strip_prefix("sha256=")
            .ok_or(Refused::Malformed("github"))?;
        let mac = hex::decode(hex_part).map_err(|_| Refused::Malformed("github"))?;
        return any_hmac(&secrets.github, body, &mac)
            .then_some(Forge::GitHub)
            .ok_or(Refused::Mismatch("github"));
    }
    if !secrets.gitlab.is_empty()
        && let Some(token) = header("x-gitlab-token")
    {
        let given = Sha256::digest(token.as_bytes());
        let ok = secrets
            .gitlab
            .iter()
            .fold(false, |ok, s| ok | same(&given, &Sha256::digest(s)));
        return ok
            .then_some(Forge::GitLab)
            .ok_or(Refused::Mismatch("gitlab"));
    }
    Err(Refused::Unsigned)
}

/// Whether `mac` is the HMAC-SHA256 of `body` under any of `secrets` (every secret is tried,
/// so the time does not say which one matched).
fn any_hmac(secrets: &[Vec<u8>], body: &[u8], mac: &[u8]) -> bool {
    secrets.iter().fold(false, |ok, secret| {
        let Ok(mut h) = Hmac::<Sha256>::new_from_slice(secret) else {
            return ok;
        };
        h.update(body);
        ok | h.verify_slice(mac).is_ok()
    })
}

/// Constant-time equality of two equal-length digests.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signature header value GitHub would send for `body` (tests, examples).
#[must_use]
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_of(secret, body)))
}

/// The signature header value Gitea would send for `body` (tests, examples).
#[must_use]
pub fn gitea_signature(secret: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_of(secret, body))
}

fn hmac_of(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut h = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    h.update(body);
    h.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> WebhookSecrets {
        WebhookSecrets {
            github: vec![b"old".to_vec(), b"gh-secret".to_vec()],
            gitlab: vec![b"gl-token".to_vec()],
            gitea: vec![b"gt-secret".to_vec()],
        }
    }

    fn headers<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn each_forge_verifies_and_forgeries_are_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let s = secrets();
        let gh = [("X-Hub-Signature-256", github_signature(b"gh-secret", body))];
        assert_eq!(verify(headers(&gh), body, &s), Ok(Forge::GitHub));
        let gl = [("X-Gitlab-Token", "gl-token".to_string())];
        assert_eq!(verify(headers(&gl), body, &s), Ok(Forge::GitLab));
        let gt = [("X-Gitea-Signature", gitea_signature(b"gt-secret", body))];
        assert_eq!(verify(headers(&gt), body, &s), Ok(Forge::Gitea));

        let forged = [("X-Hub-Signature-256", github_signature(b"guess", body))];
        assert_eq!(
            verify(headers(&forged), body, &s),
            Err(Refused::Mismatch("github"))
        );
        let tampered = [(
            "X-Hub-Signature-256",
            github_signature(b"gh-secret", b"other body"),
        )];
        assert!(verify(headers(&tampered), body, &s).is_err());
        let wrong = [("X-Gitlab-Token", "gl-token2".to_string())];
        assert!(verify(headers(&wrong), body, &s).is_err());
        let bare = [("X-Hub-Signature-256", "deadbeef".to_string())];
        assert_eq!(
            verify(headers(&bare), body, &s),
            Err(Refused::Malformed("github"))
        );
        assert_eq!(verify(headers(&[]), body, &s), Err(Refused::Unsigned));
        // A forge that is not configured is not accepted.
        let only_gitlab = WebhookSecrets {
            gitlab: vec![b"gl-token".to_vec()],
            ..WebhookSecrets::default()
        };
        assert_eq!(
            verify(headers(&gh), body, &only_gitlab),
            Err(Refused::Unsigned)
        );
    }
}
