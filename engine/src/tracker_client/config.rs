//! How the client is configured: timeouts, retries, limits, and where it counts its
//! announces (every client made from clones of one config shares the counters).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Timeouts, retries and limits of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// First UDP retransmission timeout; doubles on every retry. Default 15 s (BEP 15).
    pub udp_initial_timeout: Duration,
    /// UDP retransmissions before giving up on one request. Default 3 (BEP 15 allows 8,
    /// but a fleet has several trackers and a back-off; waiting 64 min helps nobody).
    pub udp_max_retries: u32,
    /// A connection id is reused for this long. Default 60 s (BEP 15).
    pub udp_connection_ttl: Duration,
    /// Whole HTTP announce (connect, send, receive). Default 15 s.
    pub http_timeout: Duration,
    /// Largest HTTP reply read, in bytes. Default 256 KiB.
    pub max_http_reply: usize,
    /// First back-off after a failure; doubles up to `max_backoff`. Default 5 s.
    pub min_backoff: Duration,
    /// Longest back-off. Default 5 min.
    pub max_backoff: Duration,
    /// Shortest interval honoured, whatever a tracker says. Default 10 s.
    pub min_interval: Duration,
    /// Peers asked for per announce. Default 50.
    pub numwant: u32,
    /// Where announce outcomes are counted: every client made from clones of this config
    /// shares it (a session's torrents do, so `/metrics` reads one set). Default: a fresh
    /// set of zeros.
    pub counters: Arc<AnnounceCounters>,
}

/// Announces answered and failed, over every tracker task sharing them.
#[derive(Debug, Default)]
pub struct AnnounceCounters {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl AnnounceCounters {
    /// Announces a tracker answered (a refusal counts as failed).
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Announces that timed out, were refused or could not be sent.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(super) fn count<T, E>(&self, r: &Result<T, E>) {
        let c = if r.is_ok() { &self.ok } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            udp_initial_timeout: Duration::from_secs(15),
            udp_max_retries: 3,
            udp_connection_ttl: Duration::from_secs(60),
            http_timeout: Duration::from_secs(15),
            max_http_reply: 256 * 1024,
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
            numwant: 50,
            counters: Arc::default(),
        }
    }
}
