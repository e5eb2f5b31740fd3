//! Piece and block geometry of a torrent.
//!
//! Validate once, then carry the proof: a [`ValidPieceIndex`] or a [`BlockRef`] can only come
//! from [`Lengths`], so code downstream never re-checks bounds.

use thiserror::Error;

/// The block size every client requests (BEP 3 recommends 2^14; larger ones get refused).
pub const BLOCK_LEN: u32 = 16 * 1024;

/// Largest request we serve: libtorrent and others never ask more than 16 KiB, but a few old
/// clients used 32 KiB; 128 KiB bounds the read buffer either way.
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;

/// Why a geometry could not be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LengthsError {
    /// The piece length was 0.
    #[error("piece length is 0")]
    ZeroPieceLength,
    /// The torrent would have more pieces than a u32 index can count.
    #[error("{pieces} pieces do not fit a 32-bit piece index")]
    TooManyPieces {
        /// How many pieces the geometry would need.
        pieces: u64,
    },
}

/// Total length, piece length and the derived counts of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    total_len: u64,
    piece_len: u32,
    num_pieces: u32,
    last_piece_len: u32,
}

/// A piece index known to be in range for its torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidPieceIndex(u32);

impl ValidPieceIndex {
    /// The raw index.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing per-piece tables.
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// One block of one piece, inside the piece's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// The piece.
    pub piece: ValidPieceIndex,
    /// Byte offset inside the piece.
    pub offset: u32,
    /// Length in bytes (at most [`MAX_REQUEST_LEN`]).
    pub len: u32,
}

impl BlockRef {
    /// The block's index within its piece, for blocks on the [`BLOCK_LEN`] grid.
    pub fn index(&self) -> u32 {
        self.offset / BLOCK_LEN
    }
}

impl Lengths {
    /// Geometry for `total_len` bytes cut into `piece_len`-byte pieces.
    pub fn new(total_len: u64, piece_len: u32) -> Result<Self, LengthsError> {
        if piece_len == 0 {
            return Err(LengthsError::ZeroPieceLength);
        }
        let pieces = total_len.div_ceil(piece_len as u64);
        let num_pieces =
            u32::try_from(pieces).map_err(|_| LengthsError::TooManyPieces { pieces })?;
        let rem = u32::try_from(total_len % u64::from(piece_len)).expect("below piece_len");
        let last_piece_len = if total_len == 0 {
            0
        } else if rem == 0 {
            piece_len
        } else {
            rem
        };
        Ok(Self {
            total_len,
            piece_len,
            num_pieces,
            last_piece_len,
        })
    }

    /// Total payload length in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Nominal piece length (every piece but possibly the last).
    pub fn default_piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Checks a piece index read from the wire or a file.
    pub fn validate_piece(&self, index: u32) -> Option<ValidPieceIndex> {
        (index < self.num_pieces).then_some(ValidPieceIndex(index))
    }

    /// Every piece index, in order.
    pub fn pieces(&self) -> impl Iterator<Item = ValidPieceIndex> + use<> {
        (0..self.num_pieces).map(ValidPieceIndex)
    }

    /// Length of `piece` in bytes.
    pub fn piece_len(&self, piece: ValidPieceIndex) -> u32 {
        if piece.0 + 1 == self.num_pieces {
            self.last_piece_len
        } else {
            self.piece_len
        }
    }

    /// Byte offset of `piece` in the whole payload.
    pub fn piece_offset(&self, piece: ValidPieceIndex) -> u64 {
        piece.0 as u64 * self.piece_len as u64
    }

    /// Number of [`BLOCK_LEN`] blocks in `piece` (the last one may be shorter).
    pub fn blocks_in_piece(&self, piece: ValidPieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_LEN)
    }

    /// The `index`-th block of `piece` on the [`BLOCK_LEN`] grid, if it exists.
    pub fn block(&self, piece: ValidPieceIndex, index: u32) -> Option<BlockRef> {
        let plen = self.piece_len(piece);
        let offset = index.checked_mul(BLOCK_LEN)?;
        if offset >= plen {
            return None;
        }
        Some(BlockRef {
            piece,
            offset,
            len: (plen - offset).min(BLOCK_LEN),
        })
    }

    /// Every block of `piece`, in order.
    pub fn blocks(&self, piece: ValidPieceIndex) -> impl Iterator<Item = BlockRef> + '_ {
        (0..self.blocks_in_piece(piece)).filter_map(move |i| self.block(piece, i))
    }

    /// Checks a request read from the wire: piece in range, `len` in `1..=MAX_REQUEST_LEN`,
    /// and `begin + len` inside the piece.
    pub fn validate_request(&self, piece: u32, begin: u32, len: u32) -> Option<BlockRef> {
        let piece = self.validate_piece(piece)?;
        if len == 0 || len > MAX_REQUEST_LEN {
            return None;
        }
        let end = begin.checked_add(len)?;
        (end <= self.piece_len(piece)).then_some(BlockRef {
            piece,
            offset: begin,
            len,
        })
    }

    /// Checks that `(piece, begin, len)` is exactly a block of our [`BLOCK_LEN`] grid, which
    /// is all we ever request; anything else arriving in a `piece` message is unsolicited.
    pub fn validate_grid_block(&self, piece: u32, begin: u32, len: u32) -> Option<BlockRef> {
        let piece = self.validate_piece(piece)?;
        if !begin.is_multiple_of(BLOCK_LEN) {
            return None;
        }
        let block = self.block(piece, begin / BLOCK_LEN)?;
        (block.len == len).then_some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_is_the_remainder() {
        let l = Lengths::new(100_000, 32_768).unwrap();
        assert_eq!(l.num_pieces(), 4);
        let last = l.validate_piece(3).unwrap();
        assert_eq!(l.piece_len(last), 100_000 - 3 * 32_768);
        assert_eq!(l.blocks_in_piece(last), 1);
        assert_eq!(l.piece_len(l.validate_piece(0).unwrap()), 32_768);
        assert!(l.validate_piece(4).is_none());
    }

    #[test]
    fn exact_multiple_has_full_last_piece() {
        let l = Lengths::new(4 * 32_768, 32_768).unwrap();
        assert_eq!(l.num_pieces(), 4);
        assert_eq!(l.piece_len(l.validate_piece(3).unwrap()), 32_768);
    }

    #[test]
    fn empty_payload_has_no_pieces() {
        let l = Lengths::new(0, 16384).unwrap();
        assert_eq!(l.num_pieces(), 0);
        assert!(Lengths::new(10, 0).is_err());
    }

    #[test]
    fn blocks_cover_a_piece_exactly() {
        let l = Lengths::new(1_000_000, 262_144).unwrap();
        for p in l.pieces() {
            let sum: u32 = l.blocks(p).map(|b| b.len).sum();
            assert_eq!(sum, l.piece_len(p));
        }
        let last = l.validate_piece(3).unwrap();
        let blocks: Vec<_> = l.blocks(last).collect();
        assert_eq!(
            blocks.last().unwrap().len,
            (1_000_000 - 3 * 262_144) % BLOCK_LEN
        );
    }

    #[test]
    fn requests_are_bounded() {
        let l = Lengths::new(1_000_000, 262_144).unwrap();
        assert!(l.validate_request(0, 0, BLOCK_LEN).is_some());
        assert!(l.validate_request(0, 262_144 - 10, 10).is_some());
        assert!(l.validate_request(0, 262_144 - 10, 11).is_none());
        assert!(l.validate_request(0, u32::MAX, 10).is_none());
        assert!(l.validate_request(0, 0, 0).is_none());
        assert!(l.validate_request(0, 0, MAX_REQUEST_LEN + 1).is_none());
        assert!(l.validate_request(4, 0, 10).is_none());
    }

    #[test]
    fn grid_blocks_must_match_exactly() {
        let l = Lengths::new(40_000, 32_768).unwrap();
        assert!(l.validate_grid_block(0, 16_384, 16_384).is_some());
        assert!(l.validate_grid_block(0, 16_383, 16_384).is_none());
        assert!(l.validate_grid_block(0, 0, 100).is_none());
        assert!(l.validate_grid_block(1, 0, 40_000 - 32_768).is_some());
    }
}
