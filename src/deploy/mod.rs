//! Deployments: the vocabulary ([`model`]), the pure rollout planning ([`canary`]) and state
//! machine ([`machine`]), and the I/O edge that drives machines inside `instream serve`
//! ([`driver`]).

pub mod canary;

pub mod machine;
pub mod model;
