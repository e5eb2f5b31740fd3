//! Deterministic payloads, written as files or trees, compared byte for byte. One generator
//! (xorshift64*) serves the tests (in memory) and the benchmark harness (streamed, GiBs), so
//! a seed means the same bytes everywhere.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The xorshift64* stream behind every payload: eight little-endian bytes per step.
struct Words(u64);

impl Words {
    fn new(seed: u64) -> Words {
        Words(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> [u8; 8] {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }
}

/// Deterministic pseudo-random bytes (xorshift64*): the same `seed` gives the same payload.
pub fn payload_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut words = Words::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&words.next());
    }
    out.truncate(len);
    out
}

/// Streams the bytes of [`payload_bytes`]`(len, seed)` into `w` in 1 MiB chunks, for
/// payloads too big to hold in memory. Does not flush `w`.
pub fn stream_payload(w: &mut impl Write, len: u64, seed: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20; // a multiple of 8: every chunk is whole words
    let mut words = Words::new(seed);
    let mut chunk = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&words.next());
        }
        let n = left.min(CHUNK as u64) as usize;
        w.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Writes a deterministic file of `len` bytes (creating parent dirs) and returns its bytes.
pub fn write_payload(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let bytes = payload_bytes(len, seed);
    fs::write(path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    bytes
}

/// Writes a tree of deterministic files under `root`: (relative path, length).
pub fn write_tree(root: &Path, files: &[(&str, usize)], seed: u64) {
    for (i, (rel, len)) in files.iter().enumerate() {
        write_payload(&root.join(rel), *len, seed + i as u64);
    }
}

/// Asserts two files are byte-for-byte identical, naming the first differing offset.
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let a = fs::read(expected).unwrap_or_else(|e| panic!("read {}: {e}", expected.display()));
    let b = fs::read(actual)
        .unwrap_or_else(|e| panic!("read {} (the download): {e}", actual.display()));
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{} differs from {}: lengths {} vs {}, first difference at byte {first}",
            actual.display(),
            expected.display(),
            a.len(),
            b.len()
        );
    }
}

/// Relative path -> length of every regular file under `root`.
pub fn list_tree(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &e.path(), out);
            } else if ty.is_file() {
                out.insert(
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    e.metadata().unwrap().len(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts `actual` holds exactly the files of `expected` (same names, same bytes).
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert!(
        actual.is_dir(),
        "download dir {} does not exist",
        actual.display()
    );
    let want = list_tree(expected);
    let got = list_tree(actual);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "file lists differ between {} and {}",
        expected.display(),
        actual.display()
    );
    for rel in want.keys() {
        assert_same_file(&expected.join(rel), &actual.join(rel));
    }
}

/// Number of `piece_len` pieces of `actual` equal to those of `expected` (single-file torrent:
/// torrent offsets are file offsets). A missing or short file counts what is there.
pub fn pieces_matching(expected: &[u8], actual: &Path, piece_len: usize) -> usize {
    let got = fs::read(actual).unwrap_or_default();
    expected
        .chunks(piece_len)
        .enumerate()
        .filter(|(i, want)| got.get(i * piece_len..i * piece_len + want.len()) == Some(*want))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_payload_has_the_bytes_of_the_one_in_memory() {
        // Past one chunk and not a whole number of words.
        for len in [0, 1, 7, 8, 9, (1 << 20) + 13] {
            let mut streamed = Vec::new();
            stream_payload(&mut streamed, len as u64, 42).unwrap();
            assert!(streamed == payload_bytes(len, 42), "length {len}");
        }
        assert_ne!(payload_bytes(64, 1), payload_bytes(64, 2));
    }
}
