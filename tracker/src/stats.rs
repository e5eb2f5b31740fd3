//! Counters of the tracker's work, kept as relaxed atomics (each is independent; a
//! snapshot need not be a consistent cut) and read as a plain [`StatsSnapshot`].
//! Each UDP worker has its own cache-line-aligned set ([`Padded`]), so counting never
//! bounces a cache line between cores; a snapshot sums the sets.

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
    pub(crate) http_timed_out: AtomicU64,
    pub(crate) http_evicted: AtomicU64,
    pub(crate) http_refused: AtomicU64,
    /// A gauge, not a counter: connections open now.
    pub(crate) http_open: AtomicU64,
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
    /// HTTP connections cut off because a request (or its answer) took longer than
    /// `request_timeout_ms`, idle keep-alive time included.
    pub http_timed_out: u64,
    /// HTTP connections closed at the connection cap to make room for a newcomer (the one
    /// that had waited longest for a request).
    pub http_evicted: u64,
    /// HTTP connections closed on accept: at the cap, with every connection mid-request.
    pub http_refused: u64,
    /// HTTP connections open now.
    pub http_open: u64,
    /// Torrents with at least one peer.
    pub torrents: u64,
    /// Peers over all torrents.
    pub peers: u64,
}

/// One worker's counters on cache lines of their own (128 bytes covers adjacent-line
/// prefetching on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded(pub(crate) Stats);

impl Stats {
    /// Adds these counters to `snap`.
    pub(crate) fn add_to(&self, snap: &mut StatsSnapshot) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        snap.udp_connect += r(&self.udp_connect);
        snap.udp_announce += r(&self.udp_announce);
        snap.udp_scrape += r(&self.udp_scrape);
        snap.udp_error_sent += r(&self.udp_error_sent);
        snap.udp_bad_connection_id += r(&self.udp_bad_connection_id);
        snap.udp_dropped += r(&self.udp_dropped);
        snap.udp_send_failed += r(&self.udp_send_failed);
        snap.http_announce += r(&self.http_announce);
        snap.http_scrape += r(&self.http_scrape);
        snap.http_failure += r(&self.http_failure);
        snap.http_bad_request += r(&self.http_bad_request);
        snap.http_timed_out += r(&self.http_timed_out);
        snap.http_evicted += r(&self.http_evicted);
        snap.http_refused += r(&self.http_refused);
        snap.http_open += r(&self.http_open);
    }
}
