//! Resume: find which pieces are already on disk and correct, so a restarted download fetches
//! only the missing ones, and a seed knows what it can serve.
//!
//! Every piece whose bytes all existed before the storage was opened is read and hashed;
//! pieces touching bytes the storage had to create are known missing without reading (a fresh
//! download does not hash gigabytes of zeros). Work is spread over `threads` threads that
//! take pieces from a shared counter; a read error counts the piece as missing (it will be
//! downloaded again, and a real disk fault then surfaces as a write error).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use proto::bitfield::Bitfield;
use proto::lengths::Lengths;

use super::Storage;
use crate::verify::{PieceObserver, sha1_digest};

/// True if every byte of the payload range was present before the storage opened its files.
fn range_preexisting(storage: &dyn Storage, offset: u64, len: u32) -> bool {
    let Ok(segs) = storage.layout().segments(offset, len as usize) else {
        return false;
    };
    segs.iter()
        .all(|s| s.file_offset + s.buf.len() as u64 <= storage.existing_len(s.file))
}

/// Hashes the pieces present in `storage` against `hashes` on `threads` threads and returns
/// the verified ones. `progress`, if given, is advanced by the bytes examined (read or
/// skipped), for a progress bar; `observer`, if given, sees each verified piece's bytes
/// while they are in memory.
pub fn check_existing(
    lengths: &Lengths,
    hashes: &[[u8; 20]],
    storage: &dyn Storage,
    threads: usize,
    progress: Option<&AtomicU64>,
    observer: Option<&dyn PieceObserver>,
) -> Bitfield {
    let n = lengths.num_pieces();
    let mut have = Bitfield::new(n);
    if n == 0 || hashes.len() != n as usize {
        return have;
    }
    let next = AtomicU32::new(0);
    let found: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let next = &next;
                std::thread::Builder::new()
                    .name(format!("check-{t:02}"))
                    .spawn_scoped(scope, move || {
                        let mut buf = vec![0u8; lengths.default_piece_len() as usize];
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(piece) = lengths.validate_piece(i) else {
                                break;
                            };
                            let len = lengths.piece_len(piece);
                            let off = lengths.piece_offset(piece);
                            if range_preexisting(storage, off, len) {
                                let b = &mut buf[..len as usize];
                                if storage.read_at(off, b).is_ok()
                                    && sha1_digest(b) == hashes[piece.idx()]
                                {
                                    if let Some(o) = observer {
                                        o.piece_stored(piece, b);
                                    }
                                    mine.push(i);
                                }
                            }
                            if let Some(p) = progress {
                                p.fetch_add(len as u64, Ordering::Relaxed);
                            }
                        }
                        mine
                    })
                    .expect("spawn check thread")
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("check thread panicked"))
            .collect()
    });
    for i in found.into_iter().flatten() {
        have.set_raw(i);
    }
    have
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FileEntry, FileLayout, OpenOptions, available_backends, open_with};
    use proto::lengths::ValidPieceIndex;

    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<(u32, Vec<u8>)>>);

    impl PieceObserver for Seen {
        fn piece_stored(&self, piece: ValidPieceIndex, data: &[u8]) {
            self.0.lock().unwrap().push((piece.get(), data.to_vec()));
        }
    }

    #[test]
    fn only_intact_pieces_are_reported() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            // 3 files, 10 pieces of 1000 bytes; pieces straddle files.
            let lens = [3500u64, 1500, 5000];
            let layout = FileLayout::new(
                lens.iter()
                    .enumerate()
                    .map(|(i, &len)| FileEntry {
                        path: format!("t/f{i}").into(),
                        len,
                        pad: false,
                    })
                    .collect(),
            )
            .unwrap();
            let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let lengths = Lengths::new(10_000, 1000).unwrap();
            let hashes: Vec<[u8; 20]> = payload.chunks(1000).map(sha1_digest).collect();
            let open = || open_with(dir.path(), layout.clone(), OpenOptions::default(), backend);

            let s = open().unwrap();
            // Fresh files: nothing is read, nothing is had.
            let fresh = check_existing(&lengths, &hashes, &*s, 2, None, None);
            assert_eq!(fresh.count(), 0, "{backend:?}");
            s.write_at(0, &payload).unwrap();
            // Corrupt one byte in piece 4 (which lies in f1).
            s.write_at(4321, &[payload[4321] ^ 1]).unwrap();
            drop(s);

            let s = open().unwrap();
            let progress = AtomicU64::new(0);
            let seen = Seen::default();
            let have = check_existing(&lengths, &hashes, &*s, 2, Some(&progress), Some(&seen));
            let got: Vec<u32> = have.iter_set().collect();
            assert_eq!(got, vec![0, 1, 2, 3, 5, 6, 7, 8, 9], "{backend:?}");
            // The observer saw exactly the intact pieces, with their bytes.
            let mut seen = std::mem::take(&mut *seen.0.lock().unwrap());
            seen.sort();
            let want: Vec<(u32, Vec<u8>)> = got
                .iter()
                .map(|&i| (i, payload[i as usize * 1000..][..1000].to_vec()))
                .collect();
            assert_eq!(seen, want, "{backend:?}");
            assert_eq!(progress.load(Ordering::Relaxed), 10_000, "{backend:?}");
        }
    }
}
