//! The operator commands' HTTP client of the control API: bearer token on every request, and
//! any non-2xx answer turned into an error carrying the server's one-line message.

use crate::api::views::ErrorBody;
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The CA file an https server is checked with, for error messages.
    ca: Option<std::path::PathBuf>,
}

impl Client {
    /// A client of `base`; an https `base` needs `ca`, the only root it trusts.
    pub fn new(base: &str, token: &str, ca: Option<&engine::https::Ca>) -> Result<Self> {
        let http = engine::https::client_builder(base, ca)?
            .timeout(Duration::from_secs(60))
            .build()
            .context("build HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            ca: ca.map(|c| c.path().to_path_buf()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req, path).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req, path).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            // The whole chain: reqwest's own line does not say that a certificate was
            // refused, nor which CA it was checked against.
            let chain = exit::error_chain(&e);
            match &self.ca {
                Some(ca) if engine::https::is_https(&self.base) => anyhow!(
                    "reach control server {} (certificate checked against CA {}): {chain}",
                    self.base,
                    ca.display()
                ),
                _ => anyhow!("reach control server {}: {chain}", self.base),
            }
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("read answer of {path}"))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(anyhow!("{msg} (HTTP {})", status.as_u16()));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("decode answer of {path}"))
    }
}

/// Percent-encodes a path segment or query value (names are plain already; this is a guard).
pub fn enc(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
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
