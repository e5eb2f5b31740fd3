//! instream benchmarks' library: the whole-system [`harness`] (instream against reference
//! clients). The criterion micro-benchmarks are in `benches/`; the binaries (`harness`,
//! `tracker_bench`, `fabric_sim` over `proto::sim`, `fabric_chart`, `reliability_table`) in
//! `src/bin/`.

pub mod harness;
