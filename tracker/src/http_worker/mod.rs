//! The HTTP tracker: a small hand-written HTTP/1.1 server on tokio serving
//! `GET /announce`, `GET /scrape`, `GET /stats`, `GET /metrics` (Prometheus) and the admin API
//! (`POST /register`, `POST /unregister`, bearer token).
//!
//! Files: `framing` (where a request starts and ends, how a response is written),
//! `routes` (a parsed request to its response, no I/O, so it is tested directly), `auth`
//! (the admin bearer token), `serving` (accepting, connection limits, timeouts: the
//! robustness rules are in its header).

mod auth;
mod framing;
mod routes;
mod serving;

pub(crate) use serving::serve;
