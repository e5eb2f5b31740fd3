//! Making a .torrent from a file or a directory (`instream-seed create`).
//!
//! `proto::metainfo::NewTorrent` decides the file order and writes the bencode; this module
//! does the I/O: it walks the directory, reads the files in that order as one stream with
//! large buffers, and hashes the pieces. Reading is sequential (one thread, 8 MiB reads
//! aligned to piece boundaries) while the hashing of each chunk's pieces is spread over
//! `threads` threads, because SHA-1 (about 2 GB/s per core with SHA-NI) is slower than
//! reading from the page cache.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use proto::metainfo::{self, NewTorrent, TorrentOptions, auto_piece_len, sha1_piece};
use thiserror::Error;

/// Bytes read per chunk (rounded to whole pieces).
const CHUNK: usize = 8 * 1024 * 1024;

/// Why a torrent could not be made.
#[derive(Debug, Error)]
pub enum Error {
    /// File system error on a path (the message names the path; the cause is the source).
    #[error("{op} {path}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A name is not UTF-8 (torrent paths are text).
    #[error("{0}: file name is not valid UTF-8")]
    NotUtf8(PathBuf),
    /// Not a regular file or directory (socket, device, ...).
    #[error("{0}: not a regular file or directory")]
    Special(PathBuf),
    /// A file changed size while it was being hashed.
    #[error("{path}: file changed while hashing (expected {expected} bytes)")]
    Changed {
        /// The file.
        path: PathBuf,
        /// Length seen when walking.
        expected: u64,
    },
    /// The metainfo builder refused.
    #[error(transparent)]
    Metainfo(#[from] metainfo::Error),
}

/// What `create` needs besides the path.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Piece length (`None`: automatic, see `proto::metainfo::auto_piece_len`).
    pub piece_len: Option<u32>,
    /// Tracker URLs.
    pub trackers: Vec<String>,
    /// `creation date` (Unix seconds).
    pub creation_date: Option<i64>,
    /// `comment`.
    pub comment: Option<String>,
    /// BEP 27 private flag.
    pub private: bool,
    /// Hashing threads (0 = 2).
    pub threads: usize,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn utf8_name(p: &Path) -> Result<String, Error> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::NotUtf8(p.to_path_buf()))
}

/// Regular files under `dir` (symlinks followed), as components relative to it.
fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<(Vec<String>, u64)>) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err("read directory", dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err("read directory", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let md = std::fs::metadata(&path).map_err(io_err("stat", &path))?;
        rel.push(utf8_name(&path)?);
        if md.is_dir() {
            walk(&path, rel, out)?;
        } else if md.is_file() {
            out.push((rel.clone(), md.len()));
        } else {
            return Err(Error::Special(path));
        }
        rel.pop();
    }
    Ok(())
}

/// Describes what is at `path` (a file or a directory) for the builder.
pub fn scan(path: &Path) -> Result<NewTorrent, Error> {
    let md = std::fs::metadata(path).map_err(io_err("stat", path))?;
    let name = utf8_name(&std::path::absolute(path).map_err(io_err("resolve", path))?)?;
    if md.is_file() {
        Ok(NewTorrent::single_file(&name, md.len())?)
    } else if md.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut Vec::new(), &mut files)?;
        Ok(NewTorrent::directory(&name, files)?)
    } else {
        Err(Error::Special(path.to_path_buf()))
    }
}

/// Reads the payload of `nt` (rooted at `path`) as one stream and hashes it piece by piece.
pub fn hash_pieces(
    path: &Path,
    nt: &NewTorrent,
    piece_len: u32,
    threads: usize,
) -> Result<Vec<[u8; 20]>, Error> {
    let plen = piece_len as usize;
    let chunk = (CHUNK / plen).max(1) * plen;
    let files: Vec<(PathBuf, u64)> = nt
        .files()
        .iter()
        .map(|(rel, len)| {
            let p = if rel.is_empty() {
                path.to_path_buf()
            } else {
                rel.iter().fold(path.to_path_buf(), |p, c| p.join(c))
            };
            (p, *len)
        })
        .collect();
    let threads = if threads == 0 { 2 } else { threads };
    // Chunks go out to hashers and come back tagged with their sequence number; two chunks
    // per thread in flight bounds memory to a few tens of MiB.
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, Vec<u8>)>(threads * 2);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, Vec<[u8; 20]>)>();
    std::thread::scope(|scope| -> Result<Vec<[u8; 20]>, Error> {
        for t in 0..threads {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("hash-{t:02}"))
                .spawn_scoped(scope, move || {
                    for (seq, buf) in work_rx {
                        let hashes = buf.chunks(plen).map(sha1_piece).collect();
                        if done_tx.send((seq, hashes)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(io_err("spawn hashing thread", path))?;
        }
        drop(done_tx);
        drop(work_rx);
        let mut seq = 0;
        let mut buf = Vec::with_capacity(chunk);
        for (p, expected) in &files {
            let mut f = File::open(p).map_err(io_err("open", p))?;
            let mut left = *expected;
            while left > 0 {
                let room = chunk - buf.len();
                let want = room.min(usize::try_from(left).unwrap_or(usize::MAX));
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = read_full(&mut f, &mut buf[start..]).map_err(io_err("read", p))?;
                if n < want {
                    return Err(Error::Changed {
                        path: p.clone(),
                        expected: *expected,
                    });
                }
                left -= n as u64;
                if buf.len() == chunk {
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(chunk));
                    // Send fails only if every hasher died, which scope will report.
                    let _ = work_tx.send((seq, full));
                    seq += 1;
                }
            }
        }
        if !buf.is_empty() {
            let _ = work_tx.send((seq, buf));
            seq += 1;
        }
        drop(work_tx);
        let mut parts: Vec<Option<Vec<[u8; 20]>>> = vec![None; seq];
        for (i, h) in done_rx {
            parts[i] = Some(h);
        }
        Ok(parts.into_iter().flatten().flatten().collect())
    })
}

fn read_full(f: &mut File, mut buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match f.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Makes the bytes of a .torrent for the file or directory at `path`.
pub fn create_torrent(path: &Path, opts: &CreateOptions) -> Result<Vec<u8>, Error> {
    let nt = scan(path)?;
    let piece_len = opts
        .piece_len
        .unwrap_or_else(|| auto_piece_len(nt.total_len()));
    // Validate the piece length before reading gigabytes.
    nt.lengths(piece_len)?;
    let hashes = hash_pieces(path, &nt, piece_len, opts.threads)?;
    Ok(nt.build(
        piece_len,
        &hashes,
        &TorrentOptions {
            trackers: opts.trackers.clone(),
            creation_date: opts.creation_date,
            private: opts.private,
            comment: opts.comment.clone(),
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metainfo::{PieceHasher, ValidMetainfo};

    #[test]
    fn directory_torrent_hashes_match_the_streaming_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let b: Vec<u8> = (0..40_001u32).map(|i| (i % 7) as u8).collect();
        std::fs::write(root.join("a.bin"), &a).unwrap();
        std::fs::write(root.join("sub/b.bin"), &b).unwrap();
        std::fs::write(root.join("sub/empty"), b"").unwrap();
        let bytes = create_torrent(
            &root,
            &CreateOptions {
                piece_len: Some(16384),
                trackers: vec!["udp://t.example:6969/announce".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let m = ValidMetainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.name(), "tree");
        assert!(m.is_multi_file());
        let mut h = PieceHasher::new(m.lengths());
        for f in m.files() {
            let p = f.path.iter().skip(1).fold(root.clone(), |p, c| p.join(c));
            h.feed(&std::fs::read(p).unwrap());
        }
        assert_eq!(m.piece_hashes(), &h.finish()[..]);
        assert_eq!(m.trackers(), vec!["udp://t.example:6969/announce"]);
    }

    #[test]
    fn single_file_torrent_is_named_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("payload.bin");
        std::fs::write(&f, vec![1u8; 50_000]).unwrap();
        let m = ValidMetainfo::from_bytes(&create_torrent(&f, &CreateOptions::default()).unwrap())
            .unwrap();
        assert_eq!(m.name(), "payload.bin");
        assert!(!m.is_multi_file());
        assert_eq!(m.lengths().total_len(), 50_000);
    }
}
