//! The whole-system benchmark harness: instream and a reference client (python3-libtorrent)
//! doing the same job on this machine, in alternating rounds of one invocation, with output
//! deleted and `sync` between rounds; it prints each round and a table of ratios.
//!
//! - [`swarm`]: one seed and N peers, each host in its own network namespace with its link
//!   shaped by `tc`; fanout time against the lower bound, seed upload, CPU per GiB.
//! - [`datapath`]: one seed -> one peer (or `--peers N`, the loopback fanout) on loopback,
//!   instream once per disk back end; wall time, CPU per GiB, peak memory.
//!
//! Support: [`topology`] builds namespaces, bridges and shaped veths from a spec that already
//! knows about fabrics (K bridges joined by narrower shaped links), with netem-like delay and
//! loss from a userspace [`delay_line`] when asked, which [`path_probe`] measures; [`netns`]
//! wraps `ip`/`tc`;
//! [`process`] spawns children (optionally inside a namespace) and accounts their CPU and
//! memory; [`clients`] knows how to start each client's seed and peer; [`report`] prints tables.
//!
//! Invariant: everything the harness creates (namespaces, processes, scratch dirs) is owned by
//! a value whose `Drop` removes it, and SIGINT/SIGTERM turn into an error that unwinds through
//! those drops.

pub mod clients;
pub mod datapath;
pub mod delay_line;
pub mod netns;
pub mod path_probe;
pub mod process;
pub mod report;
pub mod swarm;
pub mod topology;
pub mod util;
