//! Deployments: the vocabulary ([`model`]), the pure rollout planning ([`canary`]) and state
//! machine ([`machine`]); and the edges that run them inside `instream serve`: request
//! validation and storage ([`submit`]) and the task that drives machines ([`driver`]).

pub mod canary;
pub mod driver;
pub mod machine;
pub mod model;
pub mod submit;
