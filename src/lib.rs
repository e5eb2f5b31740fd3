//! instream control plane: deployments with canaries and rollbacks, dispatch to hosts,
//! status ingest, the SQLite store, the HTTP API and the operator CLI.
//!
//! The state machine in [`deploy::machine`] is sans-IO (time is an argument); the store,
//! the API, the dispatchers, the reporters and the driver are the edges around it, wired
//! together by [`server`].

pub mod api;
pub mod cli;
pub mod deploy;
pub mod dispatch;
pub mod metrics;
pub mod report;
pub mod server;
pub mod source;
pub mod store;
pub mod timefmt;
pub mod tracker_admin;
pub mod up;

/// The one error-chain walker (crate `exit`), under the name this crate's callers use.
pub use exit::error_chain;
