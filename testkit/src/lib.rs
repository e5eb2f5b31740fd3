//! What the test suites share (a dev-dependency of every crate with integration tests).
//!
//! The rules every suite relies on, kept here once:
//! - every process is spawned in its own process group, and the whole group is SIGKILLed
//!   and reaped when its [`Proc`] drops, so a failing test leaves nothing running;
//! - nothing sleeps to synchronise: [`wait_for`] polls a condition with a deadline and
//!   fails with a message naming what was awaited, always `(timeout, what, condition)`;
//! - ports come from the kernel (port 0) or are probed free just before use ([`free_port`]);
//! - payloads are deterministic ([`payload_bytes`]), and compared byte for byte.

mod payload;
mod ports;
mod process;
mod tools;
mod wait;

pub use payload::{
    assert_same_file, assert_same_tree, list_tree, payload_bytes, pieces_matching, write_payload,
    write_tree,
};
pub use ports::{distinct_addrs, free_addr, free_port, is_listening, listening_in};
pub use process::{Proc, describe};
pub use tools::{mktorrent, run_ok};
pub use wait::{Ready, wait_for};
