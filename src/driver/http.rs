//! A small HTTP(S) client for the parts of berth that speak HTTP to a host-side service: the
//! Vault provider and Caddy's admin API. One request at a time, a timeout per request, bodies
//! capped on reading, TLS through the system's trust store (native-tls).
//!
//! Error messages name the method and URL, never a header or a body (a Vault token travels in
//! a header; a secret in a body).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The most bytes read from one answer.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// HTTP failures.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Not a URL berth can send to.
    #[error("`{url}` is not a usable URL")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The request failed before an answer (connection refused, TLS, timeout).
    #[error("{method} {url} failed: {reason}")]
    Transport {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body (at most 4 MiB).
    pub body: Vec<u8>,
}

/// A client with a timeout per request.
#[derive(Clone)]
pub struct Http {
    client: Client<
        hyper_tls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    timeout: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Http {
    /// A client (plain HTTP and HTTPS).
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        let connector = hyper_tls::HttpsConnector::new();
        Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// Send one request.
    ///
    /// # Errors
    /// Bad URLs, transport failures and timeouts (a non-2xx status is an `Answer`).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, HttpError> {
        let transport = |reason: String| HttpError::Transport {
            method: method.to_string(),
            url: url.to_string(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|_| HttpError::BadUrl {
            url: url.to_string(),
        })?;
        let mut request = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| HttpError::BadUrl {
                url: url.to_string(),
            })?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport(crate::driver::error_chain(&e)))?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            let mut stream = response.into_body();
            while let Some(frame) = stream.frame().await {
                let frame = frame.map_err(|e| transport(e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    if body.len() + data.len() > MAX_BODY {
                        return Err(transport("the answer is larger than 4 MiB".into()));
                    }
                    body.extend_from_slice(data);
                }
            }
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| transport(format!("no answer within {} s", self.timeout.as_secs())))?
    }
}
