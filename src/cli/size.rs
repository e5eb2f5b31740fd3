//! Sizes on the command line: the same parser as the engine's programs.

pub use engine::size::parse_size;
