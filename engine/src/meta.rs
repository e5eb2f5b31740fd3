//! What the engine needs to know about a torrent, independent of how it was parsed: the
//! info-hash, the piece geometry and hashes, and the file list.
//!
//! Built from a `proto::metainfo` value (whose paths are already sanitized) or, in tests,
//! by hand. Storage paths are derived here: a multi-file torrent lives in a directory named
//! after the torrent, a single-file torrent is one file named after it.

use std::path::PathBuf;
use std::sync::Arc;

use proto::InfoHash;
use proto::lengths::Lengths;

use crate::storage::{self, FileEntry, FileLayout};

/// One torrent's identity and geometry.
#[derive(Debug, Clone)]
pub struct TorrentMeta {
    /// SHA-1 over the raw `info` dictionary.
    pub info_hash: InfoHash,
    /// The torrent's `name` (sanitized): file name, or top directory of a multi-file torrent.
    pub name: String,
    /// Piece geometry.
    pub lengths: Lengths,
    /// One SHA-1 per piece.
    pub piece_hashes: Arc<[[u8; 20]]>,
    /// Files relative to the torrent's directory, for a multi-file torrent; `None` for a
    /// single-file torrent.
    pub files: Option<Vec<FileEntry>>,
    /// Announce URLs, tiers flattened in order.
    pub trackers: Vec<String>,
}

impl TorrentMeta {
    /// The layout under the directory that contains the torrent (`<name>` or
    /// `<name>/<path>...`).
    pub fn layout(&self) -> storage::Result<FileLayout> {
        match &self.files {
            None => FileLayout::single(&self.name, self.lengths.total_len()),
            Some(files) => FileLayout::new(
                files
                    .iter()
                    .map(|f| FileEntry {
                        path: PathBuf::from(&self.name).join(&f.path),
                        len: f.len,
                    })
                    .collect(),
            ),
        }
    }

    /// The layout relative to the torrent's own directory (multi-file only): for seeding
    /// straight from the directory `create` was pointed at, whatever its name.
    pub fn layout_inside(&self) -> Option<storage::Result<FileLayout>> {
        self.files.as_ref().map(|f| FileLayout::new(f.clone()))
    }

    /// True for a single-file torrent.
    pub fn is_single_file(&self) -> bool {
        self.files.is_none()
    }
}
