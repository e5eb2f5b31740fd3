//! instream control plane: deployments with canaries and rollbacks, dispatch to hosts,
//! status ingest, the SQLite store, the HTTP API and the operator CLI.
//!
//! The state machine in [`deploy::machine`] is sans-IO (time is an argument); the store,
//! the API, the dispatchers and the driver are the edges around it.

pub mod deploy;
pub mod store;
