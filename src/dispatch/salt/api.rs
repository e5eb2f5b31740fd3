//! The salt-api (rest_cherrypy) client: logs in with an eauth back end (`sharedsecret`,
//! `pam`, ...), keeps the session token, logs in again once when salt-api answers 401 (the
//! token expired or the master restarted), and posts lowstate chunks.
//!
//! Every request is bounded (connect and total timeouts), and every failure names the
//! salt-api URL in one line. The secret is sent only in the login body: it is never logged
//! and [`Credentials`]'s `Debug` hides it.

use super::lowstate;
use serde_json::Value;
use std::time::Duration;

/// Who the dispatcher logs in as.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
    /// eauth back end: `sharedsecret`, `pam`, `ldap`, ...
    pub eauth: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<hidden>")
            .field("eauth", &self.eauth)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    #[error("salt-api at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("salt-api at {url} did not answer within {secs}s")]
    Timeout { url: String, secs: u64 },
    #[error("salt-api at {url} refused the credentials of user {user:?} (eauth {eauth})")]
    Auth {
        url: String,
        user: String,
        eauth: String,
    },
    #[error("salt-api at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("salt-api at {url}: {detail}")]
    BadAnswer { url: String, detail: String },
    #[error("salt matched no minion for target {target:?}")]
    NoMinions { target: String },
    #[error("salt dispatcher: {0}")]
    Config(String),
}

/// How long a login may take; lowstate calls pass their own bound.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SaltApi {
    /// Base URL without a trailing slash.
    base: String,
    creds: Credentials,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<String>>,
}

impl SaltApi {
    pub fn new(base: &str, creds: Credentials) -> Result<Self, SaltError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SaltError::Config(format!(
                "salt-api URL {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| SaltError::Config(format!("build HTTP client: {e}")))?;
        Ok(Self {
            base,
            creds,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Logs in and keeps the token.
    pub async fn login(&self) -> Result<(), SaltError> {
        let mut token = self.token.lock().await;
        *token = Some(self.fetch_token().await?);
        Ok(())
    }

    async fn fetch_token(&self) -> Result<String, SaltError> {
        let body = lowstate::login_body(&self.creds.user, &self.creds.secret, &self.creds.eauth);
        let req = self
            .http
            .post(format!("{}/login", self.base))
            .header("Accept", "application/json")
            .json(&body)
            .timeout(LOGIN_TIMEOUT);
        let (status, text) = self.send(req, LOGIN_TIMEOUT).await?;
        match status {
            200 => lowstate::parse_login(&text).map_err(|detail| self.bad(detail)),
            401 | 403 => Err(self.auth_error()),
            _ => Err(self.status_error(status, &text)),
        }
    }

    /// Posts lowstate chunks and returns the answer's body, logging in first if needed
    /// and once more if the token was refused.
    pub async fn run(&self, lowstate: &Value, timeout: Duration) -> Result<String, SaltError> {
        let mut retried = false;
        loop {
            let token = {
                let mut t = self.token.lock().await;
                if t.is_none() {
                    *t = Some(self.fetch_token().await?);
                }
                t.clone().expect("token set above")
            };
            let req = self
                .http
                .post(format!("{}/", self.base))
                .header("Accept", "application/json")
                .header("X-Auth-Token", &token)
                .json(lowstate)
                .timeout(timeout);
            let (status, text) = self.send(req, timeout).await?;
            match status {
                200 => return Ok(text),
                401 if !retried => {
                    tracing::info!(url = %self.base, "salt-api token refused: logging in again");
                    let mut t = self.token.lock().await;
                    // Another task may have refreshed it meanwhile; drop only the stale one.
                    if t.as_deref() == Some(token.as_str()) {
                        *t = None;
                    }
                    retried = true;
                }
                401 | 403 => return Err(self.auth_error()),
                _ => return Err(self.status_error(status, &text)),
            }
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(u16, String), SaltError> {
        let resp = req.send().await.map_err(|e| self.transport(e, timeout))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.transport(e, timeout))?;
        Ok((status, text))
    }

    fn transport(&self, e: reqwest::Error, timeout: Duration) -> SaltError {
        if e.is_timeout() {
            return SaltError::Timeout {
                url: self.base.clone(),
                secs: timeout.as_secs(),
            };
        }
        // The innermost cause ("Connection refused (os error 111)") says it all; reqwest's
        // outer layers repeat the URL.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        SaltError::Unreachable {
            url: self.base.clone(),
            detail: cause.to_string(),
        }
    }

    fn auth_error(&self) -> SaltError {
        SaltError::Auth {
            url: self.base.clone(),
            user: self.creds.user.clone(),
            eauth: self.creds.eauth.clone(),
        }
    }

    fn status_error(&self, status: u16, body: &str) -> SaltError {
        SaltError::Status {
            url: self.base.clone(),
            status,
            body: lowstate::excerpt(body),
        }
    }

    pub fn bad(&self, detail: String) -> SaltError {
        SaltError::BadAnswer {
            url: self.base.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials {
            user: "instream".into(),
            secret: "s3cr3t".into(),
            eauth: "sharedsecret".into(),
        };
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("instream"), "{d}");
    }

    #[test]
    fn url_must_be_http() {
        let c = Credentials {
            user: "u".into(),
            secret: "s".into(),
            eauth: "pam".into(),
        };
        assert!(SaltApi::new("salt:8000", c.clone()).is_err());
        assert_eq!(
            SaltApi::new("http://127.0.0.1:8000/", c).unwrap().url(),
            "http://127.0.0.1:8000"
        );
    }

    /// A salt-api stand-in: `/login` hands out tokens t1, t2, ...; `/` accepts tokens
    /// numbered `accept_from` or more. Returns its URL and the login counter.
    async fn fake_salt_api(
        accept_from: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use axum::http::{HeaderMap, StatusCode};
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let logins = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        let app = axum::Router::new()
            .route(
                "/login",
                axum::routing::post(move || {
                    let n = counter.fetch_add(1, SeqCst) + 1;
                    async move { format!(r#"{{"return":[{{"token":"t{n}"}}]}}"#) }
                }),
            )
            .route(
                "/",
                axum::routing::post(move |h: HeaderMap| async move {
                    let n: usize = h
                        .get("x-auth-token")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|t| t.strip_prefix('t'))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    if n >= accept_from {
                        (StatusCode::OK, r#"{"return":[{}]}"#)
                    } else {
                        (StatusCode::UNAUTHORIZED, "")
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, logins)
    }

    fn creds() -> Credentials {
        Credentials {
            user: "u".into(),
            secret: "s".into(),
            eauth: "pam".into(),
        }
    }

    #[tokio::test]
    async fn a_refused_token_is_renewed_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let (url, logins) = fake_salt_api(2).await;
        let api = SaltApi::new(&url, creds()).unwrap();
        api.login().await.unwrap();
        let body = api
            .run(&serde_json::json!([{}]), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(body, r#"{"return":[{}]}"#);
        assert_eq!(
            logins.load(SeqCst),
            2,
            "t1 refused, t2 fetched and accepted"
        );
        // The renewed token is kept.
        api.run(&serde_json::json!([{}]), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(logins.load(SeqCst), 2);

        // A token refused right after a fresh login is a credentials error, not a loop.
        let (url, logins) = fake_salt_api(usize::MAX).await;
        let api = SaltApi::new(&url, creds()).unwrap();
        let e = api
            .run(&serde_json::json!([{}]), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, SaltError::Auth { .. }), "{e}");
        assert_eq!(logins.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn unreachable_salt_api_is_one_line_with_the_url() {
        // A port that was just free: connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = SaltApi::new(
            &format!("http://127.0.0.1:{port}"),
            Credentials {
                user: "u".into(),
                secret: "s".into(),
                eauth: "pam".into(),
            },
        )
        .unwrap();
        let e = api.login().await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "salt-api at http://127.0.0.1:{port} is unreachable: "
            )),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
