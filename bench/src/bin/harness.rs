//! Whole-system benchmarks, instream side by side with python3-libtorrent (see
//! `instream_bench::harness`). Run with `cargo run --release -p instream-bench --bin harness --
//! swarm|datapath [options]`; `swarm` needs root (network namespaces and tc).

use clap::{Parser, Subcommand};
use instream_bench::harness::{datapath, swarm};

#[derive(Parser)]
#[command(about = "instream vs libtorrent whole-system benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One seed and N peers in network namespaces with tc-shaped links: fanout vs lower bound.
    Swarm(swarm::SwarmArgs),
    /// One seed -> one peer (or N peers: the loopback fanout) on loopback, instream once per
    /// disk back end: wall time, CPU-seconds per GiB, peak memory.
    Datapath(datapath::DatapathArgs),
}

fn main() -> std::process::ExitCode {
    let cli = exit::parse_args::<Cli>();
    exit::exit(match cli.cmd {
        Cmd::Swarm(a) => swarm::run(a),
        Cmd::Datapath(a) => datapath::run(a),
    })
}
