//! A have-set of pieces, with the BEP 3 wire layout (high bit of byte 0 is piece 0) and its
//! spare-bits rule: bits past the last piece must be zero.
//!
//! The bytes of a set of up to [`INLINE_PIECES`] pieces sit inside the value, not behind a
//! pointer: a peer's have-set is read or written on almost every message, and in a swarm of
//! thousands of simulated hosts that pointer was one more cache miss each time.

use bytes::Bytes;
use smallvec::SmallVec;
use thiserror::Error;

use crate::lengths::ValidPieceIndex;

/// Why a received bitfield was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BitfieldError {
    /// The bitfield's byte length does not match the torrent's piece count.
    #[error("bitfield is {received} bytes, expected {expected} for the torrent's pieces")]
    WrongLength {
        /// Bytes the piece count needs.
        expected: usize,
        /// Bytes received.
        received: usize,
    },
    /// A bit past the last piece was set (BEP 3: clients drop such peers).
    #[error("bitfield sets spare bits past the last piece")]
    SpareBitsSet,
}

/// Pieces a [`Bitfield`] holds without a heap allocation: 32 bytes, the 256 pieces that
/// torrents of large payloads are cut into (`fabric_sim`'s default geometry).
pub const INLINE_PIECES: u32 = 32 * 8;

/// A fixed-size set of pieces, with a cached count of members.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: SmallVec<[u8; (INLINE_PIECES / 8) as usize]>,
    len: u32,
    count: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count, self.len)
    }
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: smallvec::smallvec![0; (len as usize).div_ceil(8)],
            len,
            count: 0,
        }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set_raw(i);
        }
        b
    }

    /// Parses a wire bitfield for a torrent of `len` pieces.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                expected,
                received: bytes.len(),
            });
        }
        // Fewer than eight spare bits; computed on `len`, which is a u32.
        let spare = (8 - len % 8) % 8;
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bytes[expected - 1] & mask != 0 {
                return Err(BitfieldError::SpareBitsSet);
            }
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self {
            bytes: SmallVec::from_slice(bytes),
            len,
            count,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> Bytes {
        Bytes::copy_from_slice(&self.bytes)
    }

    /// The raw bytes in wire layout.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set ranges over zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of members.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True when every piece is a member.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Membership of a raw index; out-of-range indices are not members.
    pub fn get_raw(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Membership of a piece.
    pub fn has(&self, piece: ValidPieceIndex) -> bool {
        self.get_raw(piece.get())
    }

    /// Adds a raw index; returns true if it was not a member. Out-of-range is ignored.
    pub fn set_raw(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let bit = 0x80 >> (i % 8);
        if *byte & bit != 0 {
            return false;
        }
        *byte |= bit;
        self.count += 1;
        true
    }

    /// Adds a piece; returns true if it was not a member.
    pub fn set(&mut self, piece: ValidPieceIndex) -> bool {
        self.set_raw(piece.get())
    }

    /// Removes a piece; returns true if it was a member.
    pub fn clear(&mut self, piece: ValidPieceIndex) -> bool {
        let i = piece.get();
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let bit = 0x80 >> (i % 8);
        if *byte & bit == 0 {
            return false;
        }
        *byte &= !bit;
        self.count -= 1;
        true
    }

    /// Members, in increasing order.
    pub fn iter_set(&self) -> impl Iterator<Item = u32> + '_ {
        // A bitfield of `len: u32` bits has fewer than 2^29 bytes: the byte index fits u32.
        (0u32..).zip(self.bytes.iter()).flat_map(|(bi, &b)| {
            (0..8u32)
                .filter(move |k| b & (0x80 >> k) != 0)
                .map(move |k| bi * 8 + k)
        })
    }

    /// True if `other` has a piece this set lacks (i.e. we'd be interested in `other`).
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .any(|(mine, theirs)| theirs & !mine != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_layout_is_msb_first() {
        let mut b = Bitfield::new(10);
        b.set_raw(0);
        b.set_raw(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter_set().collect::<Vec<_>>(), vec![0, 9]);
    }

    #[test]
    fn spare_bits_are_refused() {
        assert_eq!(
            Bitfield::from_wire(&[0xff, 0x7f], 10),
            Err(BitfieldError::SpareBitsSet)
        );
        assert!(Bitfield::from_wire(&[0xff, 0xc0], 10).unwrap().is_full());
        assert!(matches!(
            Bitfield::from_wire(&[0xff], 10),
            Err(BitfieldError::WrongLength {
                expected: 2,
                received: 1
            })
        ));
    }

    #[test]
    fn set_and_clear_keep_the_count() {
        let mut b = Bitfield::new(17);
        assert!(b.set_raw(16));
        assert!(!b.set_raw(16));
        assert!(!b.set_raw(17));
        assert_eq!(b.count(), 1);
        assert!(b.clear(ValidPieceIndexForTest::make(16)));
        assert_eq!(b.count(), 0);
    }

    #[test]
    fn interest_is_set_difference() {
        let mut mine = Bitfield::new(9);
        let mut theirs = Bitfield::new(9);
        assert!(!mine.lacks_any_of(&theirs));
        theirs.set_raw(8);
        assert!(mine.lacks_any_of(&theirs));
        mine.set_raw(8);
        assert!(!mine.lacks_any_of(&theirs));
    }

    struct ValidPieceIndexForTest;
    impl ValidPieceIndexForTest {
        fn make(i: u32) -> ValidPieceIndex {
            crate::lengths::Lengths::new(1 << 20, 1)
                .unwrap()
                .validate_piece(i)
                .unwrap()
        }
    }

    proptest! {
        #[test]
        fn wire_round_trip(len in 0u32..200, seed in any::<u64>()) {
            let mut b = Bitfield::new(len);
            let mut x = seed;
            for i in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if x >> 63 == 1 { b.set_raw(i); }
            }
            let back = Bitfield::from_wire(&b.to_wire(), len).unwrap();
            prop_assert_eq!(back, b);
        }
    }
}
