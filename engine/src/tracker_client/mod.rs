//! The announce client of one torrent: our announces to every tracker it lists (BEP 15 UDP
//! with BEP 41 URL data, BEP 3 HTTP), the peers they return handed to the session.
//!
//! One tokio task per tracker URL (announce-list tiers are flattened: every tracker is used
//! at once, since in a fleet each one may know a different part of the swarm). Each task
//! owns its socket and connection id and nothing else; the session talks to the tasks
//! through [`TrackerClient`] (stats, `completed`, `stop`) and hears back through a channel
//! of [`DiscoveredPeers`].
//!
//! Timing: a UDP request is retransmitted after `udp_initial_timeout · 2^n` for
//! n = 0..=`udp_max_retries` (BEP 15 uses 15 s and 8; both are configurable so tests run
//! in milliseconds). A failed announce is retried after an exponential back-off between
//! `min_backoff` and `max_backoff`; an event (`started`, `completed`) that failed is sent
//! again with the retry rather than lost. Codecs come from `proto::tracker`.
//!
//! Files: `config` (timeouts, retries, shared counters), `error`, `url` (tracker URLs),
//! `conn` (one announce to one tracker), `udp` / `http` (that announce over each transport),
//! `client` (the per-tracker tasks: schedule, back-off, events).

mod client;
mod config;
mod conn;
mod error;
mod http;
mod udp;
mod url;

pub use client::{DiscoveredPeers, TrackerClient};
pub use config::{AnnounceCounters, ClientConfig};
pub use conn::{AnnounceOutcome, Identity, TrackerConn, TransferStats};
pub use error::ClientError;
pub use url::TrackerUrl;
