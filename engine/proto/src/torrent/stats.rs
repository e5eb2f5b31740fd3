//! The torrent machine's counters, for progress displays and summaries.

/// Counters for progress displays and summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pieces verified and written.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Payload bytes verified and written.
    pub bytes_have: u64,
    /// Payload bytes received in `piece` messages (including wasted ones).
    pub bytes_downloaded: u64,
    /// Payload bytes sent in `piece` messages.
    pub bytes_uploaded: u64,
    /// Bytes received for pieces that failed their hash or arrived twice.
    pub bytes_wasted: u64,
    /// Pieces that failed their hash.
    pub hash_failures: u32,
    /// Connected peers now.
    pub peers_connected: usize,
    /// Distinct peers ever connected.
    pub peers_seen: usize,
    /// Peers banned.
    pub peers_banned: usize,
    /// Dials started ([`Action::Connect`](super::Action::Connect) emitted).
    pub dials: u64,
    /// Distinct addresses found to be our own ([`Input::OwnAddress`](super::Input::OwnAddress)).
    pub own_addresses: u32,
}
