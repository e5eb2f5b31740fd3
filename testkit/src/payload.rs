//! Deterministic payloads, written as files or trees, compared byte for byte.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (xorshift64*): the same `seed` gives the same payload.
pub fn payload_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
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
