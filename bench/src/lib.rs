//! instream benchmarks: criterion micro-benchmarks live in `benches/`; this library holds the
//! whole-system [`harness`] (instream vs reference clients) and, later, the fabric simulator.

pub mod harness;
