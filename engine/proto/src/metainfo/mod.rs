//! BEP 3 metainfo (.torrent files), v1, single- and multi-file: parsing into a
//! [`ValidMetainfo`], and building new ones ([`NewTorrent`], [`PieceHasher`]).
//!
//! Invariants of a [`ValidMetainfo`], which can only come from [`ValidMetainfo::from_bytes`]:
//! - `info_hash` is SHA-1 over the exact bytes of the `info` dictionary as they appear in the
//!   file (unknown keys included), never over a re-encoding;
//! - there is one piece hash per piece of [`Lengths`], and the payload is not empty;
//! - every file path is a list of safe components (see [`path`]), so joining it under an
//!   output directory cannot leave that directory; no path appears twice and no file is also
//!   used as a directory;
//! - files are in payload order and their `offset`s tile the payload without gaps.
//!
//! Everything downstream takes the validated type and does not re-check.

mod build;
pub mod path;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::InfoHash;
use crate::bencode::{self, DecodeError, Node};
use crate::lengths::{Lengths, LengthsError, ValidPieceIndex};

pub use build::{
    CREATED_BY, MAX_AUTO_PIECE_LEN, MIN_AUTO_PIECE_LEN, NewTorrent, PieceHasher, TARGET_PIECES,
    TorrentOptions, auto_piece_len, sha1_piece,
};
pub use path::PathProblem;

/// Largest piece length we read: libtorrent refuses more than 128 MiB too, and the engine
/// holds whole pieces in memory while it verifies them.
pub const MAX_PIECE_LEN: u32 = 128 * 1024 * 1024;

/// Why a torrent was refused, read or built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not bencode.
    #[error("torrent is not valid bencode: {0}")]
    Bencode(DecodeError),
    /// The top level, or `info`, is not a dictionary.
    #[error("{0} is not a dictionary")]
    NotADictionary(&'static str),
    /// A required field is absent.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A field has the wrong bencode type.
    #[error("field {field:?} should be a {expected}, found a {found}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// Type wanted.
        expected: &'static str,
        /// Type found.
        found: &'static str,
    },
    /// A text field is not UTF-8.
    #[error("field {field:?} is not valid UTF-8")]
    NotUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// `piece length` is out of range.
    #[error("piece length {len} is outside 1..={max}")]
    BadPieceLength {
        /// Length found.
        len: i64,
        /// Largest accepted, [`MAX_PIECE_LEN`].
        max: u32,
    },
    /// A file length is negative.
    #[error("file length {len} is negative")]
    NegativeLength {
        /// Length found.
        len: i64,
    },
    /// The file lengths add up to more than 64 bits can count.
    #[error("the total length overflows 64 bits")]
    TotalTooLarge,
    /// The payload has no bytes at all.
    #[error("the torrent holds no data")]
    EmptyPayload,
    /// `info` has both `length` (single-file) and `files` (multi-file).
    #[error("info has both \"length\" and \"files\"")]
    AmbiguousLayout,
    /// A multi-file torrent with an empty `files` list.
    #[error("the file list is empty")]
    NoFiles,
    /// `pieces` is not a whole number of SHA-1 hashes.
    #[error("pieces is {len} bytes long, not a multiple of 20")]
    PiecesNotMultipleOf20 {
        /// Length of `pieces`.
        len: usize,
    },
    /// The number of piece hashes does not match the payload length.
    #[error("{received} piece hashes for {expected} pieces")]
    PieceCountMismatch {
        /// Pieces the lengths call for.
        expected: u32,
        /// Hashes present.
        received: usize,
    },
    /// A file name or path (or the torrent's name) could leave the output directory.
    #[error("file path {path:?} is unsafe: {problem}")]
    PathEscapes {
        /// The path, components joined with `/`.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// Two files have the same path, or a file's path is another file's directory.
    #[error("file path {path:?} appears twice or is also used as a directory")]
    DuplicatePath {
        /// The path, components joined with `/`.
        path: String,
    },
    /// The piece geometry does not fit (too many pieces).
    #[error("{0}")]
    Lengths(LengthsError),
    /// Building: the piece length is not a power of two between 16 KiB and [`MAX_PIECE_LEN`].
    #[error("piece length {len} is not a power of two between 16384 and {max}")]
    PieceLengthNotPowerOfTwo {
        /// Length asked for.
        len: u32,
        /// Largest accepted, [`MAX_PIECE_LEN`].
        max: u32,
    },
}

/// One file of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the download directory, as libtorrent lays files out: `[name]` for a
    /// single-file torrent, `[name, dir…, file]` for a multi-file one. Every component is safe.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Byte offset of the file's first byte in the payload.
    pub offset: u64,
    /// BEP 47 padding file (`attr` contains `p`): its bytes are zeros and need not be written.
    pub pad: bool,
}

impl FileEntry {
    /// The path joined with `/`, for messages.
    pub fn display_path(&self) -> String {
        path::join(&self.path)
    }
}

/// A torrent that passed every check (see the module header for what holds).
#[derive(Clone, PartialEq, Eq)]
pub struct ValidMetainfo {
    info_hash: InfoHash,
    info_bytes: Vec<u8>,
    name: String,
    lengths: Lengths,
    piece_hashes: Vec<[u8; 20]>,
    files: Vec<FileEntry>,
    multi_file: bool,
    announce: Option<String>,
    announce_list: Vec<String>,
    private: bool,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
}

impl std::fmt::Debug for ValidMetainfo {
    // The piece hashes would drown everything else.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidMetainfo")
            .field("info_hash", &self.info_hash)
            .field("name", &self.name)
            .field("lengths", &self.lengths)
            .field("files", &self.files.len())
            .field("announce", &self.announce)
            .finish_non_exhaustive()
    }
}

fn field<'n, 'a>(dict: &'n Node<'a>, key: &'static str) -> Result<&'n Node<'a>, Error> {
    dict.get(key.as_bytes()).ok_or(Error::MissingField(key))
}

fn wrong(field: &'static str, expected: &'static str, node: &Node<'_>) -> Error {
    Error::WrongType {
        field,
        expected,
        found: node.kind_name(),
    }
}

fn int(node: &Node<'_>, name: &'static str) -> Result<i64, Error> {
    node.as_int().ok_or_else(|| wrong(name, "integer", node))
}

fn text<'a>(node: &Node<'a>, name: &'static str) -> Result<&'a str, Error> {
    let b = node.as_bytes().ok_or_else(|| wrong(name, "string", node))?;
    std::str::from_utf8(b).map_err(|_| Error::NotUtf8 { field: name })
}

/// The UTF-8 variant of a field (`name.utf-8`, `path.utf-8`) when present and well-formed,
/// as libtorrent prefers it; otherwise the plain field.
fn prefer_utf8<'n, 'a>(
    dict: &'n Node<'a>,
    key: &'static str,
    utf8_key: &str,
) -> Option<&'n Node<'a>> {
    dict.get(utf8_key.as_bytes())
        .filter(|n| n.as_bytes().is_some() || n.as_list().is_some())
        .or_else(|| dict.get(key.as_bytes()))
}

fn length(node: &Node<'_>) -> Result<u64, Error> {
    let len = int(node, "length")?;
    u64::try_from(len).map_err(|_| Error::NegativeLength { len })
}

fn unsafe_path(components: &[impl AsRef<str>], problem: PathProblem) -> Error {
    Error::PathEscapes {
        path: path::join(components),
        problem,
    }
}

impl ValidMetainfo {
    /// Parses and validates the bytes of a .torrent file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let root = bencode::decode(bytes).map_err(Error::Bencode)?;
        if root.as_dict().is_none() {
            return Err(Error::NotADictionary("the torrent"));
        }
        let info = field(&root, "info")?;
        if info.as_dict().is_none() {
            return Err(Error::NotADictionary("info"));
        }
        let info_hash = InfoHash(Sha1::digest(info.raw()).into());

        let name_node =
            prefer_utf8(info, "name", "name.utf-8").ok_or(Error::MissingField("name"))?;
        let name = text(name_node, "name")?.to_owned();
        path::check_component(&name).map_err(|p| unsafe_path(&[&name], p))?;

        let piece_len_raw = int(field(info, "piece length")?, "piece length")?;
        let piece_len = u32::try_from(piece_len_raw)
            .ok()
            .filter(|l| (1..=MAX_PIECE_LEN).contains(l))
            .ok_or(Error::BadPieceLength {
                len: piece_len_raw,
                max: MAX_PIECE_LEN,
            })?;

        let pieces_node = field(info, "pieces")?;
        let pieces = pieces_node
            .as_bytes()
            .ok_or_else(|| wrong("pieces", "string", pieces_node))?;
        if pieces.len() % 20 != 0 {
            return Err(Error::PiecesNotMultipleOf20 { len: pieces.len() });
        }

        let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(Error::AmbiguousLayout),
            (Some(len), None) => (
                vec![FileEntry {
                    path: vec![name.clone()],
                    length: length(len)?,
                    offset: 0,
                    pad: false,
                }],
                false,
            ),
            (None, Some(list)) => (parse_files(&name, list)?, true),
            (None, None) => return Err(Error::MissingField("length")),
        };
        let total = files.last().map_or(0, |f| f.offset + f.length);
        if total == 0 {
            return Err(Error::EmptyPayload);
        }
        let lengths = Lengths::new(total, piece_len).map_err(Error::Lengths)?;
        if pieces.len() / 20 != lengths.num_pieces() as usize {
            return Err(Error::PieceCountMismatch {
                expected: lengths.num_pieces(),
                received: pieces.len() / 20,
            });
        }
        let piece_hashes = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunks_exact(20) yields 20 bytes"))
            .collect();

        let announce = root
            .get(b"announce")
            .and_then(Node::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let announce_list = parse_announce_list(&root);
        let private = info.get(b"private").and_then(Node::as_int) == Some(1);
        let optional_text = |key: &[u8]| root.get(key).and_then(Node::as_str).map(str::to_owned);

        Ok(Self {
            info_hash,
            info_bytes: info.raw().to_vec(),
            name,
            lengths,
            piece_hashes,
            files,
            multi_file,
            announce,
            announce_list,
            private,
            comment: optional_text(b"comment"),
            created_by: optional_text(b"created by"),
            creation_date: root.get(b"creation date").and_then(Node::as_int),
        })
    }

    /// SHA-1 of the raw `info` dictionary.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The exact bytes of the `info` dictionary (what BEP 9 `ut_metadata` serves).
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// The torrent's name: the file name (single-file) or the top directory (multi-file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Piece geometry.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// Every piece's SHA-1, in piece order.
    pub fn piece_hashes(&self) -> &[[u8; 20]] {
        &self.piece_hashes
    }

    /// The SHA-1 of one piece.
    pub fn piece_hash(&self, piece: ValidPieceIndex) -> &[u8; 20] {
        &self.piece_hashes[piece.idx()]
    }

    /// The files, in payload order.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// True for a multi-file torrent (a directory), false for a single file.
    pub fn is_multi_file(&self) -> bool {
        self.multi_file
    }

    /// The `announce` URL, if any.
    pub fn announce(&self) -> Option<&str> {
        self.announce.as_deref()
    }

    /// BEP 12 `announce-list`, tiers flattened, duplicates removed, order kept.
    pub fn announce_list(&self) -> &[String] {
        &self.announce_list
    }

    /// Every tracker once: `announce` first, then the `announce-list`.
    pub fn trackers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.announce.as_deref().into_iter().collect();
        for t in &self.announce_list {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }

    /// BEP 27 private flag (`private` = 1 in `info`).
    pub fn private(&self) -> bool {
        self.private
    }

    /// The `comment`, if any.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The `created by` string, if any.
    pub fn created_by(&self) -> Option<&str> {
        self.created_by.as_deref()
    }

    /// The `creation date` (Unix seconds), if any.
    pub fn creation_date(&self) -> Option<i64> {
        self.creation_date
    }
}

fn parse_files(name: &str, list: &Node<'_>) -> Result<Vec<FileEntry>, Error> {
    let items = list.as_list().ok_or_else(|| wrong("files", "list", list))?;
    if items.is_empty() {
        return Err(Error::NoFiles);
    }
    let mut files = Vec::with_capacity(items.len());
    let mut offset: u64 = 0;
    for item in items {
        if item.as_dict().is_none() {
            return Err(wrong("files", "dictionary", item));
        }
        let length = length(field(item, "length")?)?;
        let path_node =
            prefer_utf8(item, "path", "path.utf-8").ok_or(Error::MissingField("path"))?;
        let parts = path_node
            .as_list()
            .ok_or_else(|| wrong("path", "list", path_node))?;
        let mut path = Vec::with_capacity(parts.len() + 1);
        path.push(name.to_owned());
        for part in parts {
            path.push(text(part, "path")?.to_owned());
        }
        if parts.is_empty() {
            return Err(unsafe_path(&path, PathProblem::NoComponents));
        }
        path::check_components(&path[1..]).map_err(|p| unsafe_path(&path, p))?;
        let pad = item
            .get(b"attr")
            .and_then(Node::as_bytes)
            .is_some_and(|a| a.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            offset,
            pad,
        });
        offset = offset.checked_add(length).ok_or(Error::TotalTooLarge)?;
    }
    check_unique(&files)?;
    Ok(files)
}

/// Refuses two files at one path, and a file whose path is a prefix of another's (it would
/// have to be a file and a directory at once).
fn check_unique(files: &[FileEntry]) -> Result<(), Error> {
    match first_path_conflict(files.iter().map(|f| f.path.as_slice())) {
        Some(path) => Err(Error::DuplicatePath { path }),
        None => Ok(()),
    }
}

/// The first path that is repeated or is a directory of another path, joined with `/`.
fn first_path_conflict<'p>(paths: impl Iterator<Item = &'p [String]>) -> Option<String> {
    let mut paths: Vec<&[String]> = paths.collect();
    // Sequences sharing a prefix sort right after it, so comparing neighbours is enough.
    paths.sort_unstable();
    paths
        .windows(2)
        .find(|w| w[1].starts_with(w[0]))
        .map(|w| path::join(w[0]))
}

fn parse_announce_list(root: &Node<'_>) -> Vec<String> {
    // Tolerant: other clients skip malformed tiers and entries instead of refusing the file.
    let mut out: Vec<String> = Vec::new();
    let tiers = root
        .get(b"announce-list")
        .and_then(Node::as_list)
        .unwrap_or(&[]);
    for url in tiers.iter().filter_map(Node::as_list).flatten() {
        if let Some(url) = url.as_str().map(str::trim).filter(|u| !u.is_empty())
            && !out.iter().any(|o| o == url)
        {
            out.push(url.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests;
