//! A piece being downloaded: per-block request state, who sent each block, and the buffer
//! the blocks are assembled in.
//!
//! Invariant: `received` equals the number of blocks in state [`BlockState::Received`], and
//! the buffer holds exactly those blocks' bytes at their offsets.
//!
//! The buffer grows as blocks arrive instead of starting zeroed: blocks mostly come in order
//! (we request them in order), so appending skips a memset of every piece; a block that
//! arrives ahead of a gap zero-fills only the gap.

use bytes::{Bytes, BytesMut};

use crate::lengths::{BLOCK_LEN, Lengths, ValidPieceIndex};
use crate::torrent::PeerKey;

/// Most peers one block is requested from at once (1 normally, 2 in end-game).
pub(crate) const MAX_REQUESTERS: usize = 2;

/// Where one block of a partial piece stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockState {
    /// Nobody has been asked for it.
    Missing,
    /// Asked of these peers (more than one only in end-game).
    Requested(smallvec::SmallVec<[PeerKey; MAX_REQUESTERS]>),
    /// Arrived from this peer.
    Received(PeerKey),
}

/// A piece with at least one block requested or received.
#[derive(Debug)]
pub(crate) struct PartialPiece {
    pub(crate) blocks: Vec<BlockState>,
    /// `blocks.len()`.
    pub(crate) blocks_total: u32,
    /// Blocks in state `Received`.
    pub(crate) received: u32,
    /// Blocks in state `Missing`.
    pub(crate) missing: u32,
    buffer: BytesMut,
    /// Blocks' bytes are not kept (a simulation without payload, see `Config::dataless`).
    dataless: bool,
    /// Started from another fabric outside our share, because no same-fabric peer had
    /// anything for us (at most one such piece at a time).
    pub(crate) fallback: bool,
    /// Only this peer may be asked for its blocks: a peer on probation (nothing of it has
    /// verified yet), or one peer re-fetching a piece that failed with blocks from several,
    /// so that the next verdict has a single sender to blame or clear.
    pub(crate) owner: Option<PeerKey>,
}

impl PartialPiece {
    /// `buffer` is empty with room for the piece (see [`super::buffer_pool`]); `None` keeps
    /// no bytes at all (dataless simulation).
    pub(crate) fn new(lengths: &Lengths, piece: ValidPieceIndex, buffer: Option<BytesMut>) -> Self {
        let dataless = buffer.is_none();
        let buffer = buffer.unwrap_or_default();
        debug_assert!(
            buffer.is_empty()
                && (dataless || buffer.capacity() >= lengths.piece_len(piece) as usize)
        );
        let n = lengths.blocks_in_piece(piece);
        Self {
            blocks: vec![BlockState::Missing; n as usize],
            blocks_total: n,
            received: 0,
            missing: n,
            buffer,
            dataless,
            fallback: false,
            owner: None,
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }

    /// Copies a block's bytes into the buffer and marks it received.
    pub(crate) fn store(&mut self, block_index: u32, from: PeerKey, data: &[u8]) {
        let start = (block_index * BLOCK_LEN) as usize;
        let end = start + data.len();
        if self.dataless {
            // Nothing to assemble.
        } else if start >= self.buffer.len() {
            self.buffer.resize(start, 0);
            self.buffer.extend_from_slice(data);
        } else {
            if end > self.buffer.len() {
                self.buffer.resize(end, 0);
            }
            self.buffer[start..end].copy_from_slice(data);
        }
        let state = &mut self.blocks[block_index as usize];
        if matches!(state, BlockState::Missing) {
            self.missing -= 1;
        }
        *state = BlockState::Received(from);
        self.received += 1;
    }

    /// True while some block is requested from someone.
    pub(crate) fn in_flight(&self) -> bool {
        self.received + self.missing < self.blocks_total
    }

    /// Forgets every block received: all blocks `Missing` again, the buffer empty.
    pub(crate) fn restart(&mut self) {
        self.blocks.fill(BlockState::Missing);
        self.received = 0;
        self.missing = self.blocks_total;
        self.buffer.clear();
    }

    /// Takes the assembled bytes out, leaving the piece empty.
    pub(crate) fn take_data(&mut self) -> Bytes {
        std::mem::take(&mut self.buffer).freeze()
    }

    /// Which peer sent each block (for attributing a hash failure).
    pub(crate) fn senders(&self) -> Vec<Option<PeerKey>> {
        self.blocks
            .iter()
            .map(|b| match b {
                BlockState::Received(p) => Some(*p),
                _ => None,
            })
            .collect()
    }
}
