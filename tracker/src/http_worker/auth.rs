//! The admin API's bearer token, compared in constant time.

use super::framing::HttpRequest;
use crate::state::Shared;

/// Compares without an early exit, so the token cannot be guessed byte by byte by timing.
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the admin bearer token (false when none is configured).
pub(super) fn authorized(shared: &Shared, req: &HttpRequest) -> bool {
    let Some(token) = &shared.admin_token else {
        return false;
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    same_token(given.trim(), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }
}
