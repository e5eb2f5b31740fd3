//! What the engine needs to know about a torrent, taken from a validated metainfo: the
//! info-hash, the piece geometry and hashes, the file list and the trackers.
//!
//! Paths come from `proto::metainfo`, which sanitized them (no root, no `..`); they are laid
//! out as libtorrent does, relative to the directory that *contains* the torrent: `name` for
//! a single file, `name/dir/.../file` for a multi-file torrent.

use std::path::PathBuf;
use std::sync::Arc;

use proto::InfoHash;
use proto::lengths::Lengths;
use proto::metainfo::ValidMetainfo;

use crate::storage::{self, FileEntry, FileLayout};

/// One torrent's identity and geometry, cheap to clone.
#[derive(Debug, Clone)]
pub struct TorrentMeta {
    /// SHA-1 over the raw `info` dictionary.
    pub info_hash: InfoHash,
    /// The torrent's `name`: file name, or top directory of a multi-file torrent.
    pub name: String,
    /// Piece geometry.
    pub lengths: Lengths,
    /// One SHA-1 per piece.
    pub piece_hashes: Arc<[[u8; 20]]>,
    /// Files in payload order, paths relative to the directory containing the torrent.
    pub files: Vec<FileEntry>,
    /// A directory torrent (as opposed to a single file).
    pub multi_file: bool,
    /// Announce URLs, each once, `announce` first.
    pub trackers: Vec<String>,
}

impl TorrentMeta {
    /// Takes what the engine needs from a validated metainfo.
    pub fn from_metainfo(m: &ValidMetainfo) -> Self {
        Self {
            info_hash: m.info_hash(),
            name: m.name().to_owned(),
            lengths: *m.lengths(),
            piece_hashes: m.piece_hashes().into(),
            files: m
                .files()
                .iter()
                .map(|f| FileEntry {
                    path: f.path.iter().collect::<PathBuf>(),
                    len: f.length,
                    pad: f.pad,
                })
                .collect(),
            multi_file: m.is_multi_file(),
            trackers: m.trackers().into_iter().map(str::to_owned).collect(),
        }
    }

    /// Parses the bytes of a .torrent file.
    pub fn from_torrent_bytes(bytes: &[u8]) -> Result<Self, proto::metainfo::Error> {
        ValidMetainfo::from_bytes(bytes).map(|m| Self::from_metainfo(&m))
    }

    /// The layout under the directory that contains the torrent (`<name>` or
    /// `<name>/<path>...`): where `get --out DIR` puts it.
    pub fn layout(&self) -> storage::Result<FileLayout> {
        FileLayout::new(self.files.clone())
    }

    /// The layout relative to a multi-file torrent's own directory, whatever that
    /// directory is called (for seeding straight from the directory `create` was pointed
    /// at); `None` for a single-file torrent.
    pub fn layout_inside(&self) -> Option<storage::Result<FileLayout>> {
        if !self.multi_file {
            return None;
        }
        let inner = self
            .files
            .iter()
            .map(|f| FileEntry {
                path: f.path.iter().skip(1).collect(),
                len: f.len,
                pad: f.pad,
            })
            .collect();
        Some(FileLayout::new(inner))
    }
}
