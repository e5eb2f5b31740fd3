//! Per-connection protocol state as the torrent machine sees it: choke/interest flags, the
//! peer's pieces, our requests to it, its requests to us, and rates.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::lengths::BlockRef;
use crate::picker::PeerScope;
use crate::torrent::PeerInfo;

/// An exponentially smoothed byte rate, updated on the machine's ticks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rate {
    pending: u64,
    /// Bytes per second.
    per_sec: f64,
}

impl Rate {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.pending += bytes;
    }

    /// Folds the bytes seen over the last `dt` into the estimate.
    pub(crate) fn tick(&mut self, dt: Duration) {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let sample = self.pending as f64 / secs;
        self.pending = 0;
        // Rise fast (a new peer should get a deep queue quickly), fall slower.
        let alpha = if sample > self.per_sec { 0.6 } else { 0.3 };
        self.per_sec += alpha * (sample - self.per_sec);
    }

    pub(crate) fn per_sec(&self) -> f64 {
        self.per_sec
    }
}

/// One connected peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) info: PeerInfo,
    /// Where the peer sits relative to our fabric (Local until its extension handshake says
    /// otherwise). Its pieces are counted in the picker under this scope.
    pub(crate) scope: PeerScope,
    pub(crate) fabric: Option<String>,
    pub(crate) pieces: Bitfield,
    pub(crate) am_choking: bool,
    pub(crate) am_interested: bool,
    pub(crate) peer_choking: bool,
    pub(crate) peer_interested: bool,
    /// Our requests to the peer, oldest first, with when they were sent.
    pub(crate) requests: VecDeque<(BlockRef, Instant)>,
    /// How many requests we keep in flight to it.
    pub(crate) queue_depth: u32,
    /// Its requests to us, waiting for a disk read or in the send queue.
    pub(crate) uploads: Vec<BlockRef>,
    pub(crate) down: Rate,
    pub(crate) up: Rate,
    pub(crate) last_recv: Instant,
    pub(crate) last_sent: Instant,
    /// Super-seed: pieces we have told this peer about.
    pub(crate) revealed: Option<Bitfield>,
    /// It sent its bitfield (or have-all/none); a second one is a protocol violation.
    pub(crate) got_bitfield: bool,
}

impl Peer {
    pub(crate) fn new(info: PeerInfo, num_pieces: u32, queue_depth: u32, now: Instant) -> Self {
        Self {
            info,
            scope: PeerScope::Local,
            fabric: None,
            pieces: Bitfield::new(num_pieces),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            requests: VecDeque::new(),
            queue_depth,
            uploads: Vec::new(),
            down: Rate::default(),
            up: Rate::default(),
            last_recv: now,
            last_sent: now,
            revealed: None,
            got_bitfield: false,
        }
    }

    /// Removes a request of ours; true if it was outstanding.
    pub(crate) fn take_request(&mut self, block: BlockRef) -> bool {
        if let Some(pos) = self.requests.iter().position(|(b, _)| *b == block) {
            self.requests.remove(pos);
            true
        } else {
            false
        }
    }

    /// Removes one of its requests to us; true if it was pending.
    pub(crate) fn take_upload(&mut self, block: BlockRef) -> bool {
        if let Some(pos) = self.uploads.iter().position(|b| *b == block) {
            self.uploads.swap_remove(pos);
            true
        } else {
            false
        }
    }

    pub(crate) fn is_seed(&self) -> bool {
        self.pieces.is_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_follows_the_byte_flow() {
        let mut r = Rate::default();
        for _ in 0..20 {
            r.add(1000);
            r.tick(Duration::from_millis(100));
        }
        assert!((r.per_sec() - 10_000.0).abs() < 100.0, "{}", r.per_sec());
        for _ in 0..40 {
            r.tick(Duration::from_millis(100));
        }
        assert!(r.per_sec() < 100.0);
    }
}
