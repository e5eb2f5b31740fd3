//! Sizes on the command line: the rule lives in the protocol crate (`proto::size`), shared
//! with the benchmark harness; re-exported here for the engine's programs.

pub use proto::size::parse_size;
