//! The contract between instream's control server and its host agents, written once and
//! imported by both (docs/ARCHITECTURE.md, "the agent contract"):
//!
//! - [`status`]: where a host stands ([`HostState`]) and the event that says so
//!   ([`HostEvent`]), as posted to `POST /api/v1/events` or produced to Kafka under
//!   [`record_key`];
//! - [`args`]: the agent's command line ([`AgentArgs`]), rendered by the dispatchers and
//!   parsed by `instream-peer deploy`;
//! - [`service`]: the service commands ([`ServiceAction`]) a deployment may ask for;
//! - [`share`]: each host's fabric share ([`fabric_shares`]), the same for every dispatcher.
//!
//! Data and pure functions only, so that neither side links the other's dependencies.

pub mod args;
pub mod service;
pub mod share;
pub mod status;

pub use args::AgentArgs;
pub use service::ServiceAction;
pub use share::fabric_shares;
pub use status::{HostEvent, HostState, Millis, SERVER_SEQ, record_key};
