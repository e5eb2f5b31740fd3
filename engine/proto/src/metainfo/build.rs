//! Building a new .torrent (for `instream-seed create`), without touching a file.
//!
//! The edge walks the directory, makes a [`NewTorrent`] from the names and sizes it found,
//! reads the files in the order [`NewTorrent::files`] gives and feeds every byte to a
//! [`PieceHasher`], then calls [`NewTorrent::build`] with the hashes. The creation date is an
//! argument: there is no clock here.
//!
//! File order is mktorrent's: sorted by the `/`-joined path as raw bytes (`strcmp`), so that
//! for the same directory, name and piece length, mktorrent and instream produce the same
//! `info` dictionary byte for byte, hence the same info-hash (checked in the tests against a
//! mktorrent fixture). libtorrent orders files differently (directory walk order, with pad
//! files in v2/hybrid torrents), so its info-hash generally differs.

use sha1::{Digest, Sha1};

use super::{Error, MAX_PIECE_LEN, first_path_conflict, path};
use crate::bencode::OwnedValue;
use crate::lengths::{BLOCK_LEN, Lengths};

/// `created by` of the torrents we write.
pub const CREATED_BY: &str = "instream/0.1";

/// Smallest automatic piece length: one block.
pub const MIN_AUTO_PIECE_LEN: u32 = BLOCK_LEN;

/// Largest automatic piece length: above it a single bad block costs too much to refetch.
pub const MAX_AUTO_PIECE_LEN: u32 = 16 * 1024 * 1024;

/// Most pieces [`auto_piece_len`] aims for (libtorrent's rule: 40 KiB of hashes = 2048).
pub const TARGET_PIECES: u64 = 2048;

/// A piece length for `total_len` bytes: the smallest power of two from
/// [`MIN_AUTO_PIECE_LEN`] to [`MAX_AUTO_PIECE_LEN`] that gives at most [`TARGET_PIECES`]
/// pieces, so a torrent has between 1025 and 2048 pieces unless a bound is hit: 64 MiB gets
/// 32 KiB pieces, 256 MiB 128 KiB, 1 GiB 512 KiB, 8 GiB 4 MiB, 32 GiB and more 16 MiB.
/// Many small pieces let a fleet re-share data sooner; the bounds keep per-piece overhead
/// (hashes, `have` messages, picker state) and refetch cost in check.
pub fn auto_piece_len(total_len: u64) -> u32 {
    let mut piece_len = MIN_AUTO_PIECE_LEN;
    while piece_len < MAX_AUTO_PIECE_LEN && total_len.div_ceil(u64::from(piece_len)) > TARGET_PIECES
    {
        piece_len *= 2;
    }
    piece_len
}

/// SHA-1 of one piece's bytes, as stored in `pieces`.
pub fn sha1_piece(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// Hashes a payload fed in order, in chunks of any size, into piece hashes.
#[derive(Clone)]
pub struct PieceHasher {
    piece_len: u64,
    in_piece: u64,
    fed: u64,
    state: Sha1,
    hashes: Vec<[u8; 20]>,
}

impl PieceHasher {
    /// A hasher for pieces of `lengths.default_piece_len()` bytes.
    pub fn new(lengths: &Lengths) -> Self {
        Self {
            piece_len: u64::from(lengths.default_piece_len()),
            in_piece: 0,
            fed: 0,
            state: Sha1::new(),
            // Capped: the count comes from a caller-given total and may be absurd.
            hashes: Vec::with_capacity((lengths.num_pieces() as usize).min(1 << 16)),
        }
    }

    /// Feeds the next bytes of the payload.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.piece_len - self.in_piece;
            let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.state.update(&data[..take]);
            self.in_piece += take as u64;
            self.fed += take as u64;
            if self.in_piece == self.piece_len {
                self.hashes.push(self.state.finalize_reset().into());
                self.in_piece = 0;
            }
            data = &data[take..];
        }
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Whole pieces hashed so far.
    pub fn pieces_done(&self) -> usize {
        self.hashes.len()
    }

    /// Hashes the last, partial piece if any and returns every piece hash.
    pub fn finish(mut self) -> Vec<[u8; 20]> {
        if self.in_piece > 0 {
            self.hashes.push(self.state.finalize().into());
        }
        self.hashes
    }
}

/// What goes outside `info`: it does not change the info-hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorrentOptions {
    /// Tracker URLs: `announce` is the first, `announce-list` has one tier per URL.
    pub trackers: Vec<String>,
    /// `creation date`, Unix seconds (the caller's clock; none here).
    pub creation_date: Option<i64>,
    /// BEP 27 `private` flag (this one is inside `info`, so it does change the info-hash).
    pub private: bool,
    /// `comment`.
    pub comment: Option<String>,
}

/// The file list of a torrent to build, checked and in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTorrent {
    name: String,
    files: Vec<(Vec<String>, u64)>,
    single_file: bool,
    total_len: u64,
}

impl NewTorrent {
    /// A single-file torrent: the file is `name`.
    pub fn single_file(name: &str, len: u64) -> Result<Self, Error> {
        check_name(name)?;
        check_total(len)?;
        Ok(Self {
            name: name.to_owned(),
            files: vec![(Vec::new(), len)],
            single_file: true,
            total_len: len,
        })
    }

    /// A multi-file torrent of the directory `name`; `files` are paths relative to that
    /// directory (components) and lengths, in any order: they are sorted here.
    pub fn directory(name: &str, mut files: Vec<(Vec<String>, u64)>) -> Result<Self, Error> {
        check_name(name)?;
        if files.is_empty() {
            return Err(Error::NoFiles);
        }
        for (p, _) in &files {
            path::check_components(p).map_err(|problem| Error::PathEscapes {
                path: path::join(p),
                problem,
            })?;
        }
        if let Some(path) = first_path_conflict(files.iter().map(|(p, _)| p.as_slice())) {
            return Err(Error::DuplicatePath { path });
        }
        let total_len = files
            .iter()
            .try_fold(0u64, |acc, (_, len)| acc.checked_add(*len))
            .ok_or(Error::TotalTooLarge)?;
        check_total(total_len)?;
        // mktorrent's order (strcmp on the joined path), see the module header.
        files.sort_by_cached_key(|(p, _)| path::join(p));
        Ok(Self {
            name: name.to_owned(),
            files,
            single_file: false,
            total_len,
        })
    }

    /// The torrent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files in payload order: feed their bytes to the [`PieceHasher`] in this order.
    /// Paths are relative to the directory (empty for a single-file torrent).
    pub fn files(&self) -> &[(Vec<String>, u64)] {
        &self.files
    }

    /// Total payload length.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The geometry for `piece_len`, which must be a power of two from 16 KiB to
    /// [`MAX_PIECE_LEN`].
    pub fn lengths(&self, piece_len: u32) -> Result<Lengths, Error> {
        if !piece_len.is_power_of_two() || !(BLOCK_LEN..=MAX_PIECE_LEN).contains(&piece_len) {
            return Err(Error::PieceLengthNotPowerOfTwo {
                len: piece_len,
                max: MAX_PIECE_LEN,
            });
        }
        Lengths::new(self.total_len, piece_len).map_err(Error::Lengths)
    }

    /// The bytes of the .torrent file.
    pub fn build(
        &self,
        piece_len: u32,
        piece_hashes: &[[u8; 20]],
        options: &TorrentOptions,
    ) -> Result<Vec<u8>, Error> {
        let lengths = self.lengths(piece_len)?;
        if piece_hashes.len() != lengths.num_pieces() as usize {
            return Err(Error::PieceCountMismatch {
                expected: lengths.num_pieces(),
                received: piece_hashes.len(),
            });
        }
        let mut info = vec![
            ("name", OwnedValue::string(&self.name)),
            ("piece length", OwnedValue::Int(i64::from(piece_len))),
            ("pieces", OwnedValue::Bytes(piece_hashes.concat())),
        ];
        if self.single_file {
            info.push(("length", int(self.total_len)));
        } else {
            let files = self.files.iter().map(|(p, len)| {
                OwnedValue::dict([
                    ("length", int(*len)),
                    (
                        "path",
                        OwnedValue::List(p.iter().map(OwnedValue::string).collect()),
                    ),
                ])
            });
            info.push(("files", OwnedValue::List(files.collect())));
        }
        if options.private {
            info.push(("private", OwnedValue::Int(1)));
        }

        let mut trackers: Vec<&str> = Vec::new();
        for t in options.trackers.iter().map(|t| t.trim()) {
            if !t.is_empty() && !trackers.contains(&t) {
                trackers.push(t);
            }
        }
        let mut root = vec![
            ("info", OwnedValue::dict(info)),
            ("created by", OwnedValue::string(CREATED_BY)),
        ];
        if let Some(first) = trackers.first() {
            root.push(("announce", OwnedValue::string(first)));
            let tiers = trackers
                .iter()
                .map(|t| OwnedValue::List(vec![OwnedValue::string(t)]));
            root.push(("announce-list", OwnedValue::List(tiers.collect())));
        }
        if let Some(date) = options.creation_date {
            root.push(("creation date", OwnedValue::Int(date)));
        }
        if let Some(comment) = &options.comment {
            root.push(("comment", OwnedValue::string(comment)));
        }
        Ok(OwnedValue::dict(root).encode())
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    path::check_component(name).map_err(|problem| Error::PathEscapes {
        path: name.to_owned(),
        problem,
    })
}

/// Bencode integers are `i64` in every client, so the total must fit one.
fn check_total(total_len: u64) -> Result<(), Error> {
    match total_len {
        0 => Err(Error::EmptyPayload),
        t if i64::try_from(t).is_err() => Err(Error::TotalTooLarge),
        _ => Ok(()),
    }
}

fn int(len: u64) -> OwnedValue {
    // Every length is at most the total, which `check_total` bounded to i64::MAX.
    OwnedValue::Int(i64::try_from(len).unwrap_or(i64::MAX))
}
