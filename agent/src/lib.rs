//! instream-agent: the host agent, `instream-peer` (docs/ARCHITECTURE.md, "crates").
//!
//! It brings one host to one product version: fetch the signed manifest and the torrent from
//! the control server ([`control`]), download through the engine's session ([`swarm`]),
//! verify, install and activate with the product's hooks ([`install`]), and report every
//! state change ([`report`], over HTTP or Kafka). [`deploy`] is one run; [`program`] is the
//! `instream-peer` command line (`get` and `deploy`).
//!
//! The BitTorrent engine (`instream-engine`) knows nothing of this crate: Kafka, manifest
//! signatures and the install layout are compiled only here and in the control plane.

pub mod control;
pub mod deploy;
pub mod install;
pub mod program;
pub mod report;
pub mod splay;
pub mod swarm;

pub use deploy::{
    AgentConfig, AgentError, DeployArgs, Outcome, deploy, read_token_env, read_token_file,
};
