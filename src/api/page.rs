//! The read-only live status page at `/`: static HTML (`page.html` beside this file) whose
//! script polls, every second and without reloading, the same JSON API `status --json` and
//! `versions --json` use (deployments; the selected one's per-fabric progress and failed
//! hosts with their reasons; what runs where for its product). Its rows carry `data-*`
//! attributes (`data-fabric`, `data-failed-host`, ...) so tests and scripts can read the
//! rendered page without scraping text.
//!
//! The page itself carries no data, so it needs no auth; the data needs the token, which the
//! page takes from the URL fragment (`/#token=...`, never sent to the server), keeps in
//! `sessionStorage`, and sends as a bearer header. Everything is inserted as
//! text nodes, never as HTML, so host-supplied strings (failure reasons) cannot inject
//! markup.

use axum::http::header;
use axum::response::IntoResponse;

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // No third-party anything; scripts only from this page.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            // Always the current page (a stale cached copy would poll an older API).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

/// The page (HTML, CSS and vanilla JS in one file, no build step): beside this file so it can
/// be read and edited as HTML.
const PAGE: &str = include_str!("page.html");
