//! Where each byte of a torrent's payload lives on disk: the multi-file mapping.
//!
//! The payload is the concatenation of the torrent's files in metainfo order; a piece may
//! straddle several files (and empty files occupy no bytes). [`FileLayout::segments`] cuts a
//! payload range into per-file pieces. Invariant: every path is relative and made only of
//! normal components (no root, no `..`, no `.`), so joining it under the output directory can
//! never escape it; the metainfo parser sanitizes names and this module checks again, because
//! a path escape is the one bug storage must not have.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use super::{Error, Result};

/// One file of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the output directory (normal components only).
    pub path: PathBuf,
    /// Length in bytes.
    pub len: u64,
    /// BEP 47 padding file: its bytes are zeros, never stored (reads give zeros, writes are
    /// dropped), and several pad files may share a path.
    pub pad: bool,
}

/// A part of a payload range that lies in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`FileLayout::files`].
    pub file: usize,
    /// Offset inside that file.
    pub file_offset: u64,
    /// The corresponding range of the caller's buffer.
    pub buf: Range<usize>,
}

/// The files of a torrent and their payload offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    files: Vec<FileEntry>,
    /// Payload offset of each file's first byte; `starts[i] + files[i].len == starts[i + 1]`.
    starts: Vec<u64>,
    total: u64,
}

/// Refuses anything but a non-empty relative path of normal components.
pub fn check_relative(path: &Path) -> Result<()> {
    let mut any = false;
    for c in path.components() {
        match c {
            Component::Normal(_) => any = true,
            _ => {
                return Err(Error::UnsafePath {
                    path: path.display().to_string(),
                });
            }
        }
    }
    if !any {
        return Err(Error::UnsafePath {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

impl FileLayout {
    /// A layout of `files` in payload order; refuses unsafe paths, duplicates and overflow.
    pub fn new(files: Vec<FileEntry>) -> Result<Self> {
        let mut starts = Vec::with_capacity(files.len());
        let mut total: u64 = 0;
        let mut seen = std::collections::HashSet::new();
        for f in &files {
            check_relative(&f.path)?;
            if !f.pad && !seen.insert(f.path.clone()) {
                return Err(Error::DuplicatePath {
                    path: f.path.display().to_string(),
                });
            }
            starts.push(total);
            total = total.checked_add(f.len).ok_or(Error::TooLarge)?;
        }
        // A file that is also a directory prefix of another ("a" and "a/b") cannot exist.
        for f in &files {
            let mut p = f.path.parent();
            while let Some(dir) = p {
                if !dir.as_os_str().is_empty() && seen.contains(dir) {
                    return Err(Error::DuplicatePath {
                        path: dir.display().to_string(),
                    });
                }
                p = dir.parent();
            }
        }
        Ok(Self {
            files,
            starts,
            total,
        })
    }

    /// A single-file layout.
    pub fn single(path: impl Into<PathBuf>, len: u64) -> Result<Self> {
        Self::new(vec![FileEntry {
            path: path.into(),
            len,
            pad: false,
        }])
    }

    /// The files, in payload order.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Payload offset of file `i`.
    pub fn file_start(&self, i: usize) -> u64 {
        self.starts[i]
    }

    /// Total payload length.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Splits the payload range `[offset, offset + len)` into per-file segments, in order.
    /// Empty files are skipped. The range must lie inside the payload.
    pub fn segments(&self, offset: u64, len: usize) -> Result<Vec<Segment>> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.total)
            .ok_or(Error::OutOfRange {
                offset,
                len: len as u64,
                total: self.total,
            })?;
        let mut out = Vec::with_capacity(2);
        if len == 0 {
            return Ok(out);
        }
        // First file whose range contains `offset`: the last start <= offset, skipping empty
        // files that share the same start.
        let mut i = self.starts.partition_point(|&s| s <= offset) - 1;
        let mut pos = offset;
        while pos < end {
            let f_start = self.starts[i];
            let f_end = f_start + self.files[i].len;
            if f_end > pos {
                let take_end = f_end.min(end);
                let b0 = (pos - offset) as usize;
                let b1 = (take_end - offset) as usize;
                out.push(Segment {
                    file: i,
                    file_offset: pos - f_start,
                    buf: b0..b1,
                });
                pos = take_end;
            }
            i += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(lens: &[u64]) -> FileLayout {
        FileLayout::new(
            lens.iter()
                .enumerate()
                .map(|(i, &len)| FileEntry {
                    path: PathBuf::from(format!("d/f{i}")),
                    len,
                    pad: false,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn range_across_three_files_is_cut_at_boundaries() {
        let l = layout(&[10, 5, 0, 20]);
        let s = l.segments(8, 10).unwrap();
        assert_eq!(
            s,
            vec![
                Segment {
                    file: 0,
                    file_offset: 8,
                    buf: 0..2
                },
                Segment {
                    file: 1,
                    file_offset: 0,
                    buf: 2..7
                },
                Segment {
                    file: 3,
                    file_offset: 0,
                    buf: 7..10
                },
            ]
        );
    }

    #[test]
    fn range_starting_exactly_at_a_boundary_after_empty_files() {
        let l = layout(&[4, 0, 0, 4]);
        let s = l.segments(4, 4).unwrap();
        assert_eq!(
            s,
            vec![Segment {
                file: 3,
                file_offset: 0,
                buf: 0..4
            }]
        );
    }

    #[test]
    fn segments_cover_every_byte_once() {
        let l = layout(&[3, 0, 7, 1, 0, 9]);
        for off in 0..=l.total_len() {
            for len in 0..=(l.total_len() - off) as usize {
                let s = l.segments(off, len).unwrap();
                let covered: usize = s.iter().map(|x| x.buf.len()).sum();
                assert_eq!(covered, len, "off {off} len {len}");
                let mut expect = 0;
                for seg in &s {
                    assert_eq!(seg.buf.start, expect);
                    assert!(!seg.buf.is_empty());
                    assert_eq!(
                        l.file_start(seg.file) + seg.file_offset,
                        off + seg.buf.start as u64
                    );
                    assert!(seg.file_offset + seg.buf.len() as u64 <= l.files()[seg.file].len);
                    expect = seg.buf.end;
                }
            }
        }
    }

    #[test]
    fn range_past_the_end_is_refused() {
        let l = layout(&[10]);
        assert!(matches!(
            l.segments(5, 6),
            Err(Error::OutOfRange { offset: 5, .. })
        ));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["/etc/passwd", "../x", "a/../../x", "./a", "", "a/.."] {
            assert!(FileLayout::single(p, 1).is_err(), "{p:?} should be refused");
        }
        assert!(FileLayout::single("a/b/c", 1).is_ok());
    }

    #[test]
    fn file_that_is_also_a_directory_is_refused() {
        let r = FileLayout::new(vec![
            FileEntry {
                path: "a".into(),
                len: 1,
                pad: false,
            },
            FileEntry {
                path: "a/b".into(),
                len: 1,
                pad: false,
            },
        ]);
        assert!(matches!(r, Err(Error::DuplicatePath { .. })));
    }
}
