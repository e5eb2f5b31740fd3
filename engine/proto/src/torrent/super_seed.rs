//! Origin mode (BEP 16-like super-seeding): a complete origin hides what it has and reveals
//! to each peer a small window of pieces that the swarm has least of, topping the window up
//! as the peer completes them. The origin's uplink is the scarcest link in a rollout, so each
//! piece should leave it about once; peers trade the rest among themselves.
//!
//! A peer always has at least one revealed piece it lacks (so it never idles on us); beyond
//! that, its window holds only pieces that no connected peer has and none is revealed to.
//! With many peers and few pieces, per-peer windows would otherwise reveal each piece to
//! several peers and the origin would send it several times.

use std::collections::VecDeque;

use rand::Rng;
use rand::rngs::SmallRng;

use crate::bitfield::Bitfield;
use crate::lengths::ValidPieceIndex;
use crate::picker::Picker;
use crate::torrent::peer::Peer;
use crate::torrent::{Action, PeerKey};
use crate::wire::Message;

/// Pieces revealed to a peer but not yet announced by it, at least.
const MIN_WINDOW: u32 = 4;
/// ... and at most.
const MAX_WINDOW: u32 = 32;
/// The window covers this long of the peer's measured upload rate from us.
const WINDOW_SECS: f64 = 0.25;

/// Per-piece reveal counts for origin mode.
#[derive(Debug)]
pub(crate) struct SuperSeed {
    /// Peers a piece is revealed to that do not have it yet.
    outstanding: Vec<u16>,
}

impl SuperSeed {
    pub(crate) fn new(num_pieces: u32) -> Self {
        Self {
            outstanding: vec![0; num_pieces as usize],
        }
    }

    /// The peer announced `piece`: if we had revealed it, it no longer counts as outstanding.
    pub(crate) fn peer_has(&mut self, peer: &Peer, piece: ValidPieceIndex) {
        if peer.revealed.as_ref().is_some_and(|r| r.has(piece)) {
            self.outstanding[piece.idx()] = self.outstanding[piece.idx()].saturating_sub(1);
        }
    }

    /// The peer announced a whole new piece set (`new`) in place of `peer.pieces`: revealed
    /// pieces it gained are no longer outstanding, revealed pieces it dropped are again.
    pub(crate) fn pieces_replaced(&mut self, peer: &Peer, new: &Bitfield) {
        let Some(revealed) = &peer.revealed else {
            return;
        };
        for i in revealed.iter_set() {
            let slot = &mut self.outstanding[i as usize];
            match (peer.pieces.get_raw(i), new.get_raw(i)) {
                (false, true) => *slot = slot.saturating_sub(1),
                (true, false) => *slot = slot.saturating_add(1),
                _ => {}
            }
        }
    }

    pub(crate) fn peer_left(&mut self, peer: &Peer) {
        let Some(revealed) = &peer.revealed else {
            return;
        };
        for i in revealed.iter_set() {
            if !peer.pieces.get_raw(i) {
                self.outstanding[i as usize] = self.outstanding[i as usize].saturating_sub(1);
            }
        }
    }

    /// Reveals pieces to `peer` until its window is full. A `lone` peer (the only one
    /// downloading from us) gets the widest window at once: nobody else could use the
    /// pieces, and its measured rate, which sizes the window, would otherwise take several
    /// ticks to grow out of the smallest window's round trips.
    pub(crate) fn top_up(
        &mut self,
        key: PeerKey,
        peer: &mut Peer,
        lone: bool,
        picker: &Picker,
        rng: &mut SmallRng,
        actions: &mut VecDeque<Action>,
    ) {
        let Some(revealed) = peer.revealed.as_mut() else {
            return;
        };
        let lengths = *picker.lengths();
        let piece_len = lengths.default_piece_len().max(1) as f64;
        // A float-to-int `as` saturates, and the clamp bounds it anyway.
        #[allow(clippy::cast_possible_truncation)]
        let window = if lone {
            MAX_WINDOW
        } else {
            ((peer.up.per_sec() * WINDOW_SECS / piece_len) as u32).clamp(MIN_WINDOW, MAX_WINDOW)
        };
        let mut pending = revealed
            .iter_set()
            .filter(|&i| !peer.pieces.get_raw(i))
            .count();
        let n = lengths.num_pieces();
        while pending < window as usize {
            // Least spread first: peers that have it plus peers it is already revealed to.
            let offset = if n > 0 { rng.gen_range(0..n) } else { return };
            let mut best: Option<(u32, u32)> = None;
            for k in 0..n {
                // (offset + k) % n without overflowing u32.
                let i = if k < n - offset {
                    offset + k
                } else {
                    k - (n - offset)
                };
                if peer.pieces.get_raw(i) || revealed.get_raw(i) {
                    continue;
                }
                let p = lengths.validate_piece(i).expect("in range");
                let score =
                    u32::from(picker.availability(p)) + u32::from(self.outstanding[i as usize]);
                if best.is_none_or(|(b, _)| score < b) {
                    best = Some((score, i));
                    if score == 0 {
                        break;
                    }
                }
            }
            let Some((score, i)) = best else { return };
            if score > 0 && pending > 0 {
                return; // the rest is spread already: peers trade it
            }
            revealed.set_raw(i);
            self.outstanding[i as usize] = self.outstanding[i as usize].saturating_add(1);
            actions.push_back(Action::Send {
                peer: key,
                msg: Message::Have(i),
            });
            pending += 1;
        }
    }
}
