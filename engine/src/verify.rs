//! SHA-1 piece verification, run on disk threads (never on the reactor), followed by the
//! write of a piece that matched.
//!
//! The `sha1` crate detects SHA-NI at run time (cpufeatures) and uses it when the CPU has
//! it; `cargo test -p instream-engine --release -- --ignored sha1_throughput --nocapture`
//! prints the rate on this machine. The order hash-then-write is the invariant that keeps
//! storage clean: a piece that fails its hash is never written, so a resume check never
//! needs to distinguish "ours and wrong" from "never written".
//!
//! A [`PieceObserver`] sees each piece's bytes once they are verified and in storage, while
//! they are still in memory: the agent folds its whole-payload BLAKE3 into this pass instead
//! of reading the payload back afterwards. The engine knows nothing of what it computes.

use proto::lengths::ValidPieceIndex;
use proto::torrent::Input;
use sha1::{Digest, Sha1};

use crate::storage::Storage;

/// Sees the bytes of every piece that passed its SHA-1 and is in storage: after its write
/// succeeded, or when the resume check found it intact on disk. Called on a disk or check
/// thread (so it may hash, but must not block for long), once per piece in the usual case;
/// a piece can be seen again (re-added torrent), and an observer that keeps per-piece
/// results must treat a second, different sighting as "unknown".
pub trait PieceObserver: Send + Sync + std::fmt::Debug {
    /// `data` is piece `piece`, exactly as it is now in storage.
    fn piece_stored(&self, piece: ValidPieceIndex, data: &[u8]);
}

/// SHA-1 of `data`.
pub fn sha1_digest(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// What happened to a completed piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceOutcome {
    /// Hash matched and the piece is written.
    Written,
    /// Hash did not match; nothing was written.
    HashMismatch,
    /// Hash matched but the write failed (the cause, for the operator).
    WriteFailed {
        /// Human-readable cause.
        error: String,
        /// The disk is full (or over quota).
        no_space: bool,
    },
}

impl PieceOutcome {
    /// The machine's input for this outcome.
    pub fn into_input(self, piece: ValidPieceIndex) -> Input {
        match self {
            PieceOutcome::Written => Input::PieceVerified { piece, ok: true },
            PieceOutcome::HashMismatch => Input::PieceVerified { piece, ok: false },
            PieceOutcome::WriteFailed { error, .. } => Input::PieceWriteFailed { piece, error },
        }
    }
}

/// Hashes `data`, and writes it at payload offset `offset` only if it matches `expected`;
/// `observer` sees the piece once it is written.
pub fn verify_and_write(
    storage: &dyn Storage,
    piece: ValidPieceIndex,
    offset: u64,
    expected: &[u8; 20],
    data: &[u8],
    observer: Option<&dyn PieceObserver>,
) -> PieceOutcome {
    if sha1_digest(data) != *expected {
        return PieceOutcome::HashMismatch;
    }
    match storage.write_at(offset, data) {
        Ok(()) => {
            if let Some(o) = observer {
                o.piece_stored(piece, data);
            }
            PieceOutcome::Written
        }
        Err(e) => PieceOutcome::WriteFailed {
            no_space: e.is_no_space(),
            error: exit::error_chain(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fault::{FaultStorage, Faults};
    use crate::storage::{FileLayout, OpenOptions, PortableStorage};

    #[test]
    fn sha1_matches_a_known_vector() {
        // FIPS 180-2 appendix A.1.
        assert_eq!(
            hex::encode(sha1_digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<(u32, Vec<u8>)>>);

    impl PieceObserver for Seen {
        fn piece_stored(&self, piece: ValidPieceIndex, data: &[u8]) {
            self.0.lock().unwrap().push((piece.get(), data.to_vec()));
        }
    }

    #[test]
    fn mismatching_piece_is_not_written_and_full_disk_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let inner = PortableStorage::open(
            dir.path(),
            FileLayout::single("f", 8).unwrap(),
            OpenOptions::default(),
        )
        .unwrap();
        let s = FaultStorage::new(
            inner,
            Faults {
                space: Some(4),
                ..Default::default()
            },
        );
        let lengths = proto::lengths::Lengths::new(8, 4).unwrap();
        let (p0, p1) = (
            lengths.validate_piece(0).unwrap(),
            lengths.validate_piece(1).unwrap(),
        );
        let seen = Seen::default();
        let good = sha1_digest(b"abcd");
        assert_eq!(
            verify_and_write(&s, p0, 0, &good, b"abce", Some(&seen)),
            PieceOutcome::HashMismatch
        );
        assert_eq!(s.written(), 0);
        assert_eq!(
            verify_and_write(&s, p0, 0, &good, b"abcd", Some(&seen)),
            PieceOutcome::Written
        );
        let out = verify_and_write(&s, p1, 4, &good, b"abcd", Some(&seen));
        assert!(
            matches!(out, PieceOutcome::WriteFailed { no_space: true, .. }),
            "{out:?}"
        );
        // Only the piece that is in storage was seen.
        assert_eq!(*seen.0.lock().unwrap(), vec![(0, b"abcd".to_vec())]);
    }

    /// Throughput of the SHA-1 used for pieces; run with `--release --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a test"]
    fn sha1_throughput() {
        let data = vec![0x5au8; 256 << 20];
        let t = std::time::Instant::now();
        let mut acc = 0u8;
        for chunk in data.chunks(1 << 20) {
            acc ^= sha1_digest(chunk)[0];
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "sha1: {:.0} MB/s (one thread, 1 MiB pieces) [{acc}]",
            data.len() as f64 / secs / 1e6
        );
    }
}
