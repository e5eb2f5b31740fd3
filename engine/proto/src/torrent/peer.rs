//! Per-connection protocol state as the torrent machine sees it: choke/interest flags, the
//! peer's pieces, our requests to it, its requests to us, and rates.
//!
//! Its requests to us move `queued -> reading -> sending -> written`: `queued` costs a few
//! bytes each (bounded by count), `reading` and `sending` hold block data and are bounded
//! together by bytes (see `uploads.rs`).

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
    /// Its requests to us not read yet, oldest first.
    pub(crate) upload_queue: VecDeque<BlockRef>,
    /// Its requests being read from disk, and whether they are still wanted (a cancel or a
    /// choke meanwhile clears the flag; the read's bytes stay counted until it returns).
    pub(crate) reading: Vec<(BlockRef, bool)>,
    /// Bytes in `reading`.
    pub(crate) reading_bytes: u64,
    /// Payload bytes handed out in `piece` messages and not yet reported written.
    pub(crate) sending_bytes: u64,
    /// BEP 6 allowed-fast pieces it granted us (we may request them while choked).
    pub(crate) allowed_fast: Vec<u32>,
    /// BEP 6 suggestions, newest first (recorded; rarest-first still decides).
    pub(crate) suggested: VecDeque<u32>,
    /// One of the pieces it sent verified; until then it is on probation: at most one
    /// piece's worth of requests, and only for pieces nobody else sends blocks of.
    pub(crate) trusted: bool,
    /// On probation: its complete pieces waiting for their hash verdict (no new requests
    /// to it meanwhile).
    pub(crate) awaiting_verdict: Vec<u32>,
    pub(crate) down: Rate,
    pub(crate) up: Rate,
    pub(crate) last_recv: Instant,
    pub(crate) last_sent: Instant,
    /// Super-seed: pieces we have told this peer about.
    pub(crate) revealed: Option<Bitfield>,
    /// Extension handshakes accepted from it (see `leniency.rs`: only a few are decoded).
    pub(crate) ext_handshakes: u32,
    pub(crate) connected_at: Instant,
    /// We asked the edge to close it (evicted); it no longer counts against `max_peers`.
    pub(crate) closing: bool,
}

/// Most allowed-fast pieces recorded per peer (BEP 6 suggests 10).
pub(crate) const MAX_ALLOWED_FAST: usize = 64;
/// Most suggestions recorded per peer.
pub(crate) const MAX_SUGGESTED: usize = 16;

impl Peer {
    /// A peer our origin reveals pieces to and that still misses some.
    pub(crate) fn downloads_revealed(&self) -> bool {
        self.revealed.is_some() && !self.closing && !self.pieces.is_full()
    }

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
            upload_queue: VecDeque::new(),
            reading: Vec::new(),
            reading_bytes: 0,
            sending_bytes: 0,
            allowed_fast: Vec::new(),
            suggested: VecDeque::new(),
            trusted: false,
            awaiting_verdict: Vec::new(),
            down: Rate::default(),
            up: Rate::default(),
            last_recv: now,
            last_sent: now,
            revealed: None,
            ext_handshakes: 0,
            connected_at: now,
            closing: false,
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

    /// A read for `block` returned: forgets it; true if it is still wanted.
    pub(crate) fn finish_read(&mut self, block: BlockRef) -> bool {
        let Some(pos) = self.reading.iter().position(|(b, _)| *b == block) else {
            return false;
        };
        let (_, wanted) = self.reading.swap_remove(pos);
        self.reading_bytes -= u64::from(block.len);
        wanted
    }

    /// Drops one of its requests (a cancel): from the queue, or marks its read unwanted.
    pub(crate) fn cancel_upload(&mut self, block: BlockRef) {
        if let Some(pos) = self.upload_queue.iter().position(|b| *b == block) {
            self.upload_queue.remove(pos);
        } else if let Some(r) = self.reading.iter_mut().find(|(b, w)| *b == block && *w) {
            r.1 = false;
        }
    }

    /// True if `block` is already queued or being read for it.
    pub(crate) fn has_upload(&self, block: BlockRef) -> bool {
        self.upload_queue.contains(&block) || self.reading.iter().any(|(b, w)| *b == block && *w)
    }

    /// Its requests we still mean to serve (queued or being read).
    pub(crate) fn pending_uploads(&self) -> usize {
        self.upload_queue.len() + self.reading.iter().filter(|(_, w)| *w).count()
    }

    /// Drops every request it has with us (we choked it); returns them, for rejects.
    pub(crate) fn drop_uploads(&mut self) -> Vec<BlockRef> {
        let mut dropped: Vec<BlockRef> = self.upload_queue.drain(..).collect();
        for (b, wanted) in &mut self.reading {
            if *wanted {
                *wanted = false;
                dropped.push(*b);
            }
        }
        dropped
    }

    /// Block bytes it holds with us: being read plus queued to its socket.
    pub(crate) fn upload_bytes_held(&self) -> u64 {
        self.reading_bytes + self.sending_bytes
    }

    pub(crate) fn is_seed(&self) -> bool {
        self.pieces.is_full()
    }

    /// Nothing going on: no interest either way, nothing requested or being sent.
    pub(crate) fn is_idle(&self) -> bool {
        !self.am_interested
            && !self.peer_interested
            && self.requests.is_empty()
            && self.upload_queue.is_empty()
            && self.reading.is_empty()
            && self.sending_bytes == 0
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
