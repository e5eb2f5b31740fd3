//! What the control server knows about the distribution side, and how it uses it: the
//! tracker URLs published torrents carry, the origin's watched directory publishers hand
//! new versions to, and the tracker's admin API (`POST /register`, bearer token) through
//! which every registered version's info-hash is allowed on the tracker.
//!
//! Registration happens when a version is registered (so a version the tracker refuses is
//! not registered either) and again for every known version when the server starts, since
//! a restarted tracker forgets run-time registrations.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `GET /api/v1/publish-info`: where `instream publish` gets its defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishInfo {
    /// Announce URLs to put in new torrents.
    pub trackers: Vec<String>,
    /// Directory an `instream-seed serve --watch DIR` origin picks new versions up from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerAdminError {
    #[error("register info-hashes with tracker {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("tracker {url} refused the registration: {body} (HTTP {status})")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// The tracker's admin API.
#[derive(Clone, Debug)]
pub struct TrackerAdmin {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `http://host:port` of an `http://host:port/announce` URL (the admin API shares the
/// tracker's HTTP listener); `None` for other schemes.
pub fn admin_base_of(announce: &str) -> Option<String> {
    let rest = announce.strip_prefix("http://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("http://{authority}"))
}

impl TrackerAdmin {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client without TLS builds"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Allows `hashes` (hex) on the tracker; registering a known hash again is harmless.
    pub async fn register(&self, hashes: &[String]) -> Result<(), TrackerAdminError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let url = format!("{}/register", self.base);
        let mut body = hashes.join("\n");
        body.push('\n');
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .map_err(|source| TrackerAdminError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(TrackerAdminError::Refused {
            url,
            status: status.as_u16(),
            body: body.trim().to_string(),
        })
    }

    /// Registers `hashes`, retrying with back-off until it works or `within` passes.
    pub async fn register_retrying(&self, hashes: &[String], within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.register(hashes).await {
                Ok(()) => return true,
                Err(e) => {
                    if tokio::time::Instant::now() + backoff > deadline {
                        tracing::warn!(error = %crate::error_chain(&e), "gave up registering info-hashes with the tracker");
                        return false;
                    }
                    tracing::debug!(error = %crate::error_chain(&e), "tracker registration failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_base_is_the_announce_authority() {
        assert_eq!(
            admin_base_of("http://127.0.0.1:6969/announce").as_deref(),
            Some("http://127.0.0.1:6969")
        );
        assert_eq!(
            admin_base_of("http://t.example/announce?fabric=x").as_deref(),
            Some("http://t.example")
        );
        assert_eq!(admin_base_of("udp://127.0.0.1:6969"), None);
    }
}
