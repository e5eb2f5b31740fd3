//! Bearer-token authentication of the control API.
//!
//! Every route but `/` (a static page with no data in it) and `/healthz` needs
//! `Authorization: Bearer <token>`; a missing or wrong token gets 401 with a JSON message.
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

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match presented {
        Some(t) if state.token.matches(t.trim()) => Ok(next.run(req).await),
        Some(_) => {
            Metrics::inc(&state.metrics.http_unauthorized, 1);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong bearer token",
            ))
        }
        None => {
            Metrics::inc(&state.metrics.http_unauthorized, 1);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            ))
        }
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
