//! Stripe webhook signatures, checked exactly as Stripe specifies, on the raw body bytes.
//!
//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`. The signed payload is
//! `"<t>.<raw body>"`, the MAC is HMAC-SHA256 keyed with the endpoint secret (`whsec_…`, its
//! bytes as they are). A request is accepted when **any** `v1` value matches **any** of the
//! configured secrets (Stripe sends one `v1` per live secret while a secret is being rolled,
//! and berth may hold the old and the new secret at once), compared in constant time. Other
//! schemes (`v0`, a test-mode scheme) never count, so a header whose only valid signature is
//! a `v0` is a downgrade attempt and is refused. The timestamp must lie within the tolerance
//! of `now` on either side: stale replays and timestamps from the future are both refused.
//!
//! Pure: `now` is an argument; nothing here reads a clock, the environment or a socket.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's SDK default: five minutes either side.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a request's signature was refused. None of these name a secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no `Stripe-Signature` header (or it is not text).
    #[error("the request carries no `Stripe-Signature` header")]
    Missing,
    /// No `t=` element, more than one, or one that is not an integer.
    #[error("the `Stripe-Signature` header has no single integer timestamp `t=`")]
    BadTimestamp,
    /// The header carries no `v1` signature; `other_schemes` tells whether it carried `v0`
    /// or other schemes instead (a downgrade attempt).
    #[error("the `Stripe-Signature` header carries no `v1` signature{}", if *other_schemes { " (only other schemes such as `v0`, which never count)" } else { "" })]
    NoV1 {
        /// Whether other schemes were present.
        other_schemes: bool,
    },
    /// No `v1` value matches any endpoint secret.
    #[error(
        "no `v1` signature matches an endpoint secret ({signatures} signature(s), {secrets} secret(s) tried)"
    )]
    Mismatch {
        /// How many `v1` values the header carried.
        signatures: usize,
        /// How many secrets were tried.
        secrets: usize,
    },
    /// The signature is valid but the timestamp is older than the tolerance.
    #[error("the signature is {age} s old, beyond the tolerance of {tolerance} s (a replay?)")]
    Stale {
        /// Seconds between the timestamp and now.
        age: u64,
        /// The tolerance.
        tolerance: u64,
    },
    /// The signature is valid but the timestamp lies in the future beyond the tolerance.
    #[error(
        "the signature is dated {ahead} s in the future, beyond the tolerance of {tolerance} s"
    )]
    Future {
        /// Seconds the timestamp is ahead of now.
        ahead: u64,
        /// The tolerance.
        tolerance: u64,
    },
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The `t=` timestamp.
    pub timestamp: i64,
    /// The `v1` signatures, hex-decoded; values that are not hex are dropped (they cannot match).
    pub v1: Vec<Vec<u8>>,
    /// Whether any other scheme (`v0`, …) was present.
    pub other_schemes: bool,
}

/// Parse the header. Unknown elements are ignored, as Stripe's libraries do.
///
/// # Errors
/// [`SignatureError::BadTimestamp`] and [`SignatureError::NoV1`].
pub fn parse_header(header: &str) -> Result<Header, SignatureError> {
    let mut timestamp = None;
    let mut timestamps = 0;
    let mut v1 = Vec::new();
    let mut v1_seen = false;
    let mut other_schemes = false;
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                timestamps += 1;
                timestamp = value.parse::<i64>().ok();
            }
            "v1" => {
                v1_seen = true;
                if let Ok(bytes) = hex::decode(value) {
                    v1.push(bytes);
                }
            }
            scheme if scheme.starts_with('v') => other_schemes = true,
            _ => {}
        }
    }
    let timestamp = match (timestamps, timestamp) {
        (1, Some(t)) => t,
        _ => return Err(SignatureError::BadTimestamp),
    };
    if !v1_seen {
        return Err(SignatureError::NoV1 { other_schemes });
    }
    Ok(Header {
        timestamp,
        v1,
        other_schemes,
    })
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Verify a request: any `v1` against any secret, then the timestamp against `now`.
/// Returns the signed timestamp.
///
/// The signature is checked before the timestamp, so a forged request is reported as forged
/// whatever its date.
///
/// # Errors
/// Every [`SignatureError`] but `Missing`.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&[u8]],
    now: i64,
    tolerance: u64,
) -> Result<i64, SignatureError> {
    let parsed = parse_header(header)?;
    let matches = secrets.iter().any(|secret| {
        let expected = mac(secret, parsed.timestamp, body);
        // `verify_slice` compares in constant time.
        parsed
            .v1
            .iter()
            .any(|sig| expected.clone().verify_slice(sig).is_ok())
    });
    if !matches {
        return Err(SignatureError::Mismatch {
            signatures: parsed.v1.len(),
            secrets: secrets.len(),
        });
    }
    let t = parsed.timestamp;
    if now > t && now.abs_diff(t) > tolerance {
        return Err(SignatureError::Stale {
            age: now.abs_diff(t),
            tolerance,
        });
    }
    if t > now && t.abs_diff(now) > tolerance {
        return Err(SignatureError::Future {
            ahead: t.abs_diff(now),
            tolerance,
        });
    }
    Ok(t)
}

/// The hex `v1` signature Stripe computes for `body` at `timestamp` with `secret`.
#[must_use]
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// A complete `Stripe-Signature` header value, one `v1` per secret (what Stripe sends while a
/// secret is rolled). For tests, benchmarks and replaying events by hand.
#[must_use]
pub fn header(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets {
        out.push_str(",v1=");
        out.push_str(&signature(secret, timestamp, body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn known_vector() {
        // Computed independently: printf '1700000000.{"id":"evt_1","object":"event"}' |
        //   openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            signature(SECRET, 1_700_000_000, BODY),
            "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd"
        );
    }

    #[test]
    fn accepts_a_good_signature() {
        let h = header(&[SECRET], 1000, BODY);
        assert_eq!(verify(&h, BODY, &[SECRET], 1000, 300), Ok(1000));
    }

    #[test]
    fn any_v1_against_any_secret() {
        let old: &[u8] = b"whsec_old";
        let new: &[u8] = b"whsec_new";
        let h = header(&[old, new], 1000, BODY);
        assert!(verify(&h, BODY, &[new], 1000, 300).is_ok());
        assert!(verify(&h, BODY, &[old], 1000, 300).is_ok());
        let only_old = header(&[old], 1000, BODY);
        assert!(verify(&only_old, BODY, &[b"x", old], 1000, 300).is_ok());
    }

    #[test]
    fn v0_never_counts() {
        let v0 = signature(SECRET, 1000, BODY);
        let h = format!("t=1000,v0={v0}");
        assert_eq!(
            verify(&h, BODY, &[SECRET], 1000, 300),
            Err(SignatureError::NoV1 {
                other_schemes: true
            })
        );
        let h = format!("t=1000,v1={},v0={v0}", "00".repeat(32));
        assert!(matches!(
            verify(&h, BODY, &[SECRET], 1000, 300),
            Err(SignatureError::Mismatch { .. })
        ));
    }

    #[test]
    fn tampered_stale_and_future() {
        let h = header(&[SECRET], 1000, BODY);
        assert!(matches!(
            verify(&h, b"{\"id\":\"evt_2\"}", &[SECRET], 1000, 300),
            Err(SignatureError::Mismatch { .. })
        ));
        assert_eq!(
            verify(&h, BODY, &[SECRET], 1301, 300),
            Err(SignatureError::Stale {
                age: 301,
                tolerance: 300
            })
        );
        assert!(verify(&h, BODY, &[SECRET], 1300, 300).is_ok());
        assert_eq!(
            verify(&h, BODY, &[SECRET], 699, 300),
            Err(SignatureError::Future {
                ahead: 301,
                tolerance: 300
            })
        );
    }

    #[test]
    fn malformed_headers() {
        for h in ["", "v1=00", "t=abc,v1=00", "t=1,t=2,v1=00"] {
            assert_eq!(
                verify(h, BODY, &[SECRET], 1, 300),
                Err(SignatureError::BadTimestamp),
                "{h}"
            );
        }
        assert_eq!(
            verify("t=1", BODY, &[SECRET], 1, 300),
            Err(SignatureError::NoV1 {
                other_schemes: false
            })
        );
        assert!(matches!(
            verify("t=1,v1=zz", BODY, &[SECRET], 1, 300),
            Err(SignatureError::Mismatch { signatures: 0, .. })
        ));
    }
}
