//! The agent's client of the control API: fetches a version's manifest and torrent, and
//! posts status batches. Every request carries the bearer token; transient failures
//! (connection refused, 5xx, timeouts) are retried with back-off for a bounded time,
//! because hosts outlive control-server restarts; a 4xx is final.

use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use engine::https::{Ca, CaError};

/// Largest body the agent reads from the control API (a torrent or a manifest).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A failed control-API call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The server answered with a client error; retrying will not help.
    #[error("{what}: {message} (HTTP {status})")]
    Refused {
        /// What we asked for.
        what: String,
        /// HTTP status.
        status: u16,
        /// The server's `{"error": ...}` message or body.
        message: String,
    },
    /// No usable answer within the retry budget.
    #[error("{what}: control server unreachable after {attempts} attempts: {last}")]
    Unreachable {
        /// What we asked for.
        what: String,
        /// Requests made.
        attempts: u32,
        /// The last transport error or 5xx.
        last: String,
    },
    /// The server's TLS certificate was refused (not signed by the `--ca`, wrong name,
    /// expired); retrying will not help.
    #[error("{what}: {detail}")]
    Tls {
        /// What we asked for.
        what: String,
        /// The transport error chain, naming the certificate problem.
        detail: String,
    },
    /// The answer is larger than [`MAX_BODY`].
    #[error("{what}: answer exceeds {max} bytes")]
    TooLarge {
        /// What we asked for.
        what: String,
        /// The bound.
        max: usize,
    },
}

/// Control API base URL + token.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    token: String,
    http: reqwest::Client,
    retry_for: Duration,
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

enum Attempt<T> {
    Done(T),
    Final(ControlError),
    Retry(String),
}

impl ControlClient {
    /// `retry_for`: how long transient failures are retried before giving up; `ca`: the
    /// only root an https `base` is checked against (an https `base` without one fails).
    pub fn new(
        base: &str,
        token: &str,
        retry_for: Duration,
        ca: Option<&Ca>,
    ) -> Result<Self, CaError> {
        let http = engine::https::client_builder(base, ca)?
            .timeout(Duration::from_secs(30))
            .build()
            // Only TLS set-up can fail, and `Ca::load` already built a client with it.
            .map_err(|e| CaError::Invalid {
                path: ca
                    .map(|c| c.path().display().to_string())
                    .unwrap_or_default(),
                detail: exit::error_chain(&e),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            retry_for,
        })
    }

    /// The same client (connection pool included) with another retry budget.
    pub fn with_retry_for(&self, retry_for: Duration) -> Self {
        Self {
            retry_for,
            ..self.clone()
        }
    }

    /// GET a binary resource (`path` starts with `/`).
    pub async fn get_bytes(&self, path: &str, what: &str) -> Result<Vec<u8>, ControlError> {
        let url = format!("{}{path}", self.base);
        self.with_retries(what, || async {
            answer(
                self.http.get(&url).bearer_auth(&self.token).send().await,
                what,
            )
            .await
        })
        .await
    }

    /// POST JSON; returns the answer body.
    pub async fn post_json<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<Vec<u8>, ControlError> {
        let url = format!("{}{path}", self.base);
        let payload = serde_json::to_vec(body).expect("request serializes");
        self.with_retries(what, || async {
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(payload.clone())
                .send()
                .await;
            answer(sent, what).await
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ControlError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match f().await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Final(e) => return Err(e),
                Attempt::Retry(last) => {
                    if Instant::now() + backoff > deadline {
                        return Err(ControlError::Unreachable {
                            what: what.to_string(),
                            attempts,
                            last,
                        });
                    }
                    tracing::debug!(%what, attempts, error = %last, "control API call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// A request that got no answer. A refused certificate will not be accepted on a retry:
/// final, with the whole chain (reqwest's own message does not say what failed).
/// One request's outcome: its body read (capped on the bytes read, not only on
/// Content-Length, for chunked bodies) and classified.
async fn answer(sent: Result<reqwest::Response, reqwest::Error>, what: &str) -> Attempt<Vec<u8>> {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return transport_error(&e, what),
    };
    let status = resp.status();
    let body = match engine::net::body::read_capped(resp, MAX_BODY).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Attempt::Final(ControlError::TooLarge {
                what: what.to_string(),
                max: MAX_BODY,
            });
        }
        Err(e) => return Attempt::Retry(e.to_string()),
    };
    classify(status, body, what)
}

fn transport_error<T>(e: &reqwest::Error, what: &str) -> Attempt<T> {
    let chain = exit::error_chain(e);
    if chain.contains("invalid peer certificate") {
        Attempt::Final(ControlError::Tls {
            what: what.to_string(),
            detail: chain,
        })
    } else {
        Attempt::Retry(chain)
    }
}

fn classify(status: reqwest::StatusCode, body: bytes::Bytes, what: &str) -> Attempt<Vec<u8>> {
    if status.is_success() {
        if body.len() > MAX_BODY {
            return Attempt::Final(ControlError::TooLarge {
                what: what.to_string(),
                max: MAX_BODY,
            });
        }
        return Attempt::Done(body.to_vec());
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    // 408 and 429 are the server asking for patience; other 4xx will not change.
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Attempt::Final(ControlError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        })
    } else {
        Attempt::Retry(format!("HTTP {}: {message}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(enc("app-1.2_x~"), "app-1.2_x~");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
