//! Bearer-token authentication of the control API.
//!
//! Every route but `/` (a static page with no data in it) and `/healthz` needs
//! `Authorization: Bearer <token>`; a missing or wrong token gets 401 with a JSON message.
//! Two kinds of token are accepted, each a [`Principal`]: the operator's token (every
//! route) and a host's agent credential ([`super::credential`]: manifests, torrents and that
//! host's own events for one deployment; anything else, or a revoked one, gets 403). The
//! tracker's registration token is none of these: the API never accepts it.
//! The comparison hashes both sides with BLAKE3 and compares the digests without an early
//! exit, so its time reveals neither the token's bytes nor its length.
//!
//! The status page gets the token from the URL *fragment* (`/#token=...`), which browsers
//! never send to the server (so it does not land in access logs or proxies); its script keeps
//! it in `sessionStorage` and sends it as a bearer header on each API call.

use super::{ApiError, AppState};
use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The shared secret, kept as its digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    pub fn new(secret: &str) -> Self {
        Self {
            digest: *blake3::hash(secret.trim().as_bytes()).as_bytes(),
        }
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let d = blake3::hash(presented.as_bytes());
        let diff = d
            .as_bytes()
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // black_box keeps the optimiser from turning the fold into an early-exit compare.
        std::hint::black_box(diff) == 0
    }
}

/// A fresh random token: 32 bytes, hex.
pub fn generate_token() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

/// Who made a request, as its bearer token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator's token: everything.
    Operator,
    /// A host's agent credential: its own events for one deployment, manifests, torrents.
    Agent { host: String, deployment: String },
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn unauthorized(state: &AppState, msg: &str) -> ApiError {
    Metrics::inc(&state.metrics.http_unauthorized, 1);
    ApiError::new(StatusCode::UNAUTHORIZED, msg)
}

/// Who `presented` is: 401 for no or a wrong token, 403 for a revoked agent credential.
pub fn authenticate(state: &AppState, presented: Option<&str>) -> Result<Principal, ApiError> {
    let Some(t) = presented else {
        return Err(unauthorized(
            state,
            "missing bearer token (Authorization: Bearer <token>)",
        ));
    };
    if state.token.matches(t) {
        return Ok(Principal::Operator);
    }
    match state.agent_key.verify(t) {
        Some(c) if state.revocations.is_revoked(&c) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the agent credential of host {} for deployment {} is revoked",
                c.host, c.deployment
            ),
        )),
        Some(c) => Ok(Principal::Agent {
            host: c.host,
            deployment: c.deployment,
        }),
        None => Err(unauthorized(state, "wrong bearer token")),
    }
}

/// Routes any principal may use (agents' reads and events): the [`Principal`] is put into
/// the request's extensions for the handler.
pub async fn require_principal(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let p = authenticate(&state, bearer(&req))?;
    req.extensions_mut().insert(p);
    Ok(next.run(req).await)
}

/// Routes only the operator may use: an agent credential gets 403.
pub async fn require_operator(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match authenticate(&state, bearer(&req))? {
        Principal::Operator => Ok(next.run(req).await),
        Principal::Agent { host, .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the agent credential of host {host} may not do this: it needs the operator token"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let t = Token::new("s3cret\n");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cret2"));
        assert!(!t.matches(""));
        let g = generate_token();
        assert_eq!(g.len(), 64);
        assert_ne!(g, generate_token());
    }
}
