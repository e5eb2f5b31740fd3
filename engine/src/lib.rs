//! instream-engine: the I/O edges around the sans-IO core `proto`.
//!
//! Who owns what:
//! - one tokio task per torrent ([`session`]) owns that torrent's `proto::torrent::Torrent`
//!   machine and is the only code that touches it; everything else talks to it through
//!   channels;
//! - one reader task and one writer task per peer connection ([`connection`]) own the two
//!   halves of the socket;
//! - the listener ([`net::listen`]) accepts connections and routes each to a torrent by the
//!   info-hash in its handshake;
//! - the disk pool ([`disk`]) runs every blocking call: storage reads and writes, piece
//!   hashing ([`verify`]) and resume checks ([`storage::check`]).
//!
//! No locks are held across an `.await`, and no task ever waits on another torrent's task.
//! A torrent task or disk thread that panics trips the session's [`supervise::Failure`]:
//! the programs then exit non-zero rather than run on without it.

pub mod allocator;
pub mod announce;
pub mod connection;
pub mod create;
pub mod disk;
pub(crate) mod driver;
pub mod https;
pub mod meta;
pub mod metrics_http;
pub mod net;
pub mod origin;
pub mod programs;
pub mod session;
pub mod session_stats;
pub mod size;
pub mod storage;
pub mod supervise;
pub mod tracker_client;
pub mod verify;
