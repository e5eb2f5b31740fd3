//! The whole-payload BLAKE3 built piece by piece, from each verified piece's bytes while they
//! are in memory, so a host does not read its payload back after the download.
//!
//! BLAKE3 is a binary tree over 1 KiB chunks whose left subtree always holds the largest
//! power of two of chunks that leaves the right one non-empty. A piece of 2^k chunks that
//! starts at a multiple of its own length is therefore a whole subtree of the payload's tree
//! (the last piece, if shorter, is the subtree on the right edge), and its chaining value
//! (CV) can be computed alone (`hazmat::HasherExt::set_input_offset`); over pieces the same
//! split rule holds (the left subtree of n pieces holds the largest power of two below n),
//! so the root follows from the CVs alone: 32 bytes per piece, merged at the end.
//!
//! The payload digest is BLAKE3 of the files concatenated in order, which is the torrent's
//! payload as long as it has no pad files; torrents with pad files, or with a piece length
//! that is not a power of two of at least 1 KiB, are not folded.
//!
//! Invariant: [`FoldedDigest::root`] is `Some` only when every piece was seen, each with one
//! content, and then it equals [`super::payload_digest`] of those bytes (property test
//! below). Anything else (a piece never seen, a piece seen twice with different bytes, a
//! piece of the wrong length) gives `None`, and the caller reads the payload back instead.

use std::sync::Mutex;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use engine::meta::TorrentMeta;
use engine::verify::PieceObserver;
use proto::lengths::{Lengths, ValidPieceIndex};

/// Per-piece BLAKE3 chaining values of one payload, filled in from disk or check threads.
#[derive(Debug)]
pub struct FoldedDigest {
    lengths: Lengths,
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// Piece CVs; for a one-piece payload, the root hash itself.
    cvs: Vec<Option<ChainingValue>>,
    /// A piece was seen with two contents (or a wrong length): the fold cannot be trusted.
    spoiled: bool,
}

impl FoldedDigest {
    /// A fold for `meta`'s payload, if its geometry allows one (see the module header).
    pub fn for_torrent(meta: &TorrentMeta) -> Option<Self> {
        if meta.files.iter().any(|f| f.pad) {
            return None;
        }
        Self::new(meta.lengths)
    }

    /// A fold for a payload of these lengths without pad files; `None` if pieces are not
    /// whole BLAKE3 subtrees or the payload is empty.
    pub fn new(lengths: Lengths) -> Option<Self> {
        let p = u64::from(lengths.default_piece_len());
        if !p.is_power_of_two() || p < blake3::CHUNK_LEN as u64 || lengths.num_pieces() == 0 {
            return None;
        }
        Some(Self {
            lengths,
            slots: Mutex::new(Slots {
                cvs: vec![None; lengths.num_pieces() as usize],
                spoiled: false,
            }),
        })
    }

    /// Records piece `piece`, whose bytes are `data`.
    pub fn record(&self, piece: ValidPieceIndex, data: &[u8]) {
        let cv = if data.len() as u64 != u64::from(self.lengths.piece_len(piece)) {
            None
        } else if self.lengths.num_pieces() == 1 {
            Some(*blake3::hash(data).as_bytes())
        } else {
            Some(
                blake3::Hasher::new()
                    .set_input_offset(self.lengths.piece_offset(piece))
                    .update(data)
                    .finalize_non_root(),
            )
        };
        let mut s = self.slots.lock().expect("folded digest lock");
        match (cv, s.cvs[piece.idx()]) {
            (Some(new), None) => s.cvs[piece.idx()] = Some(new),
            (Some(new), Some(old)) if new == old => {}
            _ => s.spoiled = true,
        }
    }

    /// The payload's BLAKE3 if every piece was recorded, each with one content.
    pub fn root(&self) -> Option<[u8; 32]> {
        let s = self.slots.lock().expect("folded digest lock");
        if s.spoiled {
            return None;
        }
        let cvs: Vec<ChainingValue> = s.cvs.iter().copied().collect::<Option<_>>()?;
        if cvs.len() == 1 {
            return Some(cvs[0]);
        }
        let (l, r) = cvs.split_at(left_pieces(cvs.len()));
        Some(*merge_subtrees_root(&subtree(l), &subtree(r), Mode::Hash).as_bytes())
    }
}

impl PieceObserver for FoldedDigest {
    fn piece_stored(&self, piece: ValidPieceIndex, data: &[u8]) {
        self.record(piece, data);
    }
}

/// Pieces in the left subtree of `n > 1` pieces: the largest power of two below `n`.
fn left_pieces(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The CV of the (non-root) subtree made of `cvs`' pieces.
fn subtree(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let (l, r) = cvs.split_at(left_pieces(cvs.len()));
    merge_subtrees_non_root(&subtree(l), &subtree(r), Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{RecordFile, payload_digest};
    use proptest::prelude::*;

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    fn pieces(lengths: &Lengths) -> Vec<ValidPieceIndex> {
        (0..lengths.num_pieces())
            .map(|i| lengths.validate_piece(i).unwrap())
            .collect()
    }

    fn slice<'a>(lengths: &Lengths, data: &'a [u8], p: ValidPieceIndex) -> &'a [u8] {
        let off = lengths.piece_offset(p) as usize;
        &data[off..off + lengths.piece_len(p) as usize]
    }

    #[test]
    fn left_subtree_is_the_largest_power_of_two_below() {
        let got: Vec<usize> = (2..=9).map(left_pieces).collect();
        assert_eq!(got, vec![1, 2, 2, 4, 4, 4, 4, 8]);
    }

    #[test]
    fn only_power_of_two_pieces_of_a_chunk_or_more_fold() {
        assert!(FoldedDigest::new(Lengths::new(10_000, 1024).unwrap()).is_some());
        assert!(FoldedDigest::new(Lengths::new(10_000, 1000).unwrap()).is_none());
        assert!(FoldedDigest::new(Lengths::new(10_000, 512).unwrap()).is_none());
        assert!(FoldedDigest::new(Lengths::new(10_000, 3 << 10).unwrap()).is_none());
    }

    #[test]
    fn a_missing_piece_or_one_seen_with_two_contents_gives_no_root() {
        let data = payload(5 * 1024 + 7, 1);
        let lengths = Lengths::new(data.len() as u64, 1024).unwrap();
        let f = FoldedDigest::new(lengths).unwrap();
        let ps = pieces(&lengths);
        for &p in &ps[1..] {
            f.record(p, slice(&lengths, &data, p));
        }
        assert_eq!(f.root(), None, "piece 0 never seen");
        f.record(ps[0], slice(&lengths, &data, ps[0]));
        assert_eq!(f.root(), Some(*blake3::hash(&data).as_bytes()));
        // The same bytes again change nothing; other bytes spoil the fold.
        f.record(ps[2], slice(&lengths, &data, ps[2]));
        assert!(f.root().is_some());
        f.record(ps[2], &vec![0u8; 1024]);
        assert_eq!(f.root(), None);
        // A piece of the wrong length spoils it too.
        let g = FoldedDigest::new(lengths).unwrap();
        g.record(ps[0], &data[..100]);
        assert_eq!(g.root(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any payload length (one piece, whole pieces, a short last piece), any power-of-two
        /// piece length, split into several files (some empty), pieces seen in any order: the
        /// fold equals `payload_digest` over the files.
        #[test]
        fn fold_equals_the_digest_of_the_files(
            len in 1usize..200_000,
            log_piece in 10u32..16,
            cuts in proptest::collection::vec(0.0f64..1.0, 0..4),
            order_seed in any::<u64>(),
            seed in any::<u8>(),
        ) {
            let data = payload(len, seed);
            let lengths = Lengths::new(len as u64, 1 << log_piece).unwrap();
            let f = FoldedDigest::new(lengths).unwrap();
            let mut ps = pieces(&lengths);
            // A cheap deterministic shuffle: pieces arrive in any order.
            let mut x = order_seed | 1;
            for i in (1..ps.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ps.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for &p in &ps {
                f.record(p, slice(&lengths, &data, p));
            }

            let dir = tempfile::tempdir().unwrap();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| (c * len as f64) as usize).collect();
            bounds.push(0);
            bounds.push(len);
            bounds.sort();
            let mut files = Vec::new();
            for (i, w) in bounds.windows(2).enumerate() {
                let path = format!("d/f{i}");
                let full = dir.path().join(&path);
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, &data[w[0]..w[1]]).unwrap();
                files.push(RecordFile { path, size: (w[1] - w[0]) as u64 });
            }
            let want = payload_digest(dir.path(), &files).unwrap();
            prop_assert_eq!(want, *blake3::hash(&data).as_bytes());
            prop_assert_eq!(f.root(), Some(want));
        }
    }
}
