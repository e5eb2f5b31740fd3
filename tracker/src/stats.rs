//! Counters of the tracker's work, kept as relaxed atomics (each is independent; a
//! snapshot need not be a consistent cut) and read as a plain [`StatsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters, shared by all workers.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) udp_connect: AtomicU64,
    pub(crate) udp_announce: AtomicU64,
    pub(crate) udp_scrape: AtomicU64,
    pub(crate) udp_error_sent: AtomicU64,
    pub(crate) udp_bad_connection_id: AtomicU64,
    pub(crate) udp_dropped: AtomicU64,
    pub(crate) udp_send_failed: AtomicU64,
    pub(crate) http_announce: AtomicU64,
    pub(crate) http_scrape: AtomicU64,
    pub(crate) http_failure: AtomicU64,
    pub(crate) http_bad_request: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A copy of the counters, plus registry sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StatsSnapshot {
    /// UDP connect responses sent.
    pub udp_connect: u64,
    /// UDP announce responses sent.
    pub udp_announce: u64,
    /// UDP scrape responses sent.
    pub udp_scrape: u64,
    /// UDP error responses sent.
    pub udp_error_sent: u64,
    /// UDP requests dropped for a wrong or expired connection id.
    pub udp_bad_connection_id: u64,
    /// UDP packets dropped as unparseable without an answerable header.
    pub udp_dropped: u64,
    /// UDP responses the socket refused (full send buffer or a send error).
    pub udp_send_failed: u64,
    /// HTTP announces answered with peers.
    pub http_announce: u64,
    /// HTTP scrapes answered.
    pub http_scrape: u64,
    /// HTTP announces or scrapes answered with a `failure reason`.
    pub http_failure: u64,
    /// HTTP requests refused with a 4xx status.
    pub http_bad_request: u64,
    /// Torrents with at least one peer.
    pub torrents: u64,
    /// Peers over all torrents.
    pub peers: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            udp_connect: r(&self.udp_connect),
            udp_announce: r(&self.udp_announce),
            udp_scrape: r(&self.udp_scrape),
            udp_error_sent: r(&self.udp_error_sent),
            udp_bad_connection_id: r(&self.udp_bad_connection_id),
            udp_dropped: r(&self.udp_dropped),
            udp_send_failed: r(&self.udp_send_failed),
            http_announce: r(&self.http_announce),
            http_scrape: r(&self.http_scrape),
            http_failure: r(&self.http_failure),
            http_bad_request: r(&self.http_bad_request),
            torrents: 0,
            peers: 0,
        }
    }
}
