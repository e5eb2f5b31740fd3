//! What the test suites share (a dev-dependency of every crate with integration tests), and
//! the benchmark harness too (a normal dependency of `bench`, which no shipped program uses).
//!
//! The rules every suite relies on, kept here once:
//! - every process is spawned in its own process group, and the whole group is SIGKILLed
//!   and reaped when its [`Proc`] drops, so a failing test leaves nothing running;
//! - nothing sleeps to synchronise: [`wait_for`] polls a condition with a deadline and
//!   fails with a message naming what was awaited, always `(timeout, what, condition)`;
//! - ports come from the kernel (port 0) or are probed free just before use ([`free_port`]);
//! - payloads are deterministic ([`payload_bytes`]), and compared byte for byte;
//! - a test that needs root says so with [`needs_root`]: a skip outside CI, a failure in it.
//!
//! The benchmark harness uses the non-panicking cores of these ([`ProcGroup`],
//! [`poll_until`], [`try_free_ports`], [`stream_payload`]); the tests use the panicking
//! wrappers.

mod group;
mod payload;
mod ports;
mod process;
mod root;
mod tools;
mod wait;

pub use group::{Ended, ProcGroup, kill_group};

pub use payload::{
    assert_same_file, assert_same_tree, list_tree, payload_bytes, pieces_matching, stream_payload,
    write_payload, write_tree,
};
pub use ports::{
    distinct_addrs, free_addr, free_port, free_ports, is_listening, listening_in, try_free_ports,
};
pub use process::{Proc, describe};
pub use root::needs_root;
pub use tools::{mktorrent, run_ok};
pub use wait::{Ready, poll_for, poll_until, wait_for};
