//! The portable storage backend: one open `File` per torrent file, `pread`/`pwrite` through
//! `std::os::unix::fs::FileExt`.
//!
//! Files are created only at `root.join(sanitized relative path)` (the layout refuses
//! anything else) and opened with `O_NOFOLLOW`, so a symlink planted at a file's place is not
//! followed. Downloads preallocate with `fallocate` so that a full disk fails at start rather
//! than half-way; file systems that cannot get a sparse `set_len` instead.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::{Error, FileLayout, Mode, OpenOptions, Preallocate, Result, Storage, WRITE_CHUNK};

/// Files of one torrent, opened for positional I/O.
#[derive(Debug)]
pub struct PortableStorage {
    layout: FileLayout,
    /// `None` for BEP 47 pad files, which are never stored.
    files: Vec<Option<File>>,
    paths: Vec<PathBuf>,
    existing: Vec<u64>,
    writable: bool,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reserves `len` bytes for `file`: `fallocate` when the file system supports it, else a
/// sparse `set_len`. ENOSPC is returned as is: the caller reports a full disk at start.
pub fn preallocate(file: &File, len: u64, how: Preallocate) -> io::Result<()> {
    if how == Preallocate::Full && len > 0 {
        let Ok(len_off) = libc::off_t::try_from(len) else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        // SAFETY: plain syscall on a valid, owned descriptor.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {}
            _ => return Err(e),
        }
    }
    file.set_len(len)
}

impl PortableStorage {
    /// Opens (and for [`Mode::ReadWrite`], creates and sizes) every file of `layout` under
    /// `root`.
    pub fn open(root: &Path, layout: FileLayout, opts: OpenOptions) -> Result<Self> {
        let mut files = Vec::with_capacity(layout.files().len());
        let mut paths = Vec::with_capacity(layout.files().len());
        let mut existing = Vec::with_capacity(layout.files().len());
        for entry in layout.files() {
            super::layout::check_relative(&entry.path)?;
            let path = root.join(&entry.path);
            if entry.pad {
                files.push(None);
                paths.push(path);
                existing.push(entry.len);
                continue;
            }
            let file = match opts.mode {
                Mode::ReadOnly => {
                    let f = File::open(&path).map_err(io_err("open", &path))?;
                    let actual = f.metadata().map_err(io_err("stat", &path))?.len();
                    if actual != entry.len {
                        return Err(Error::WrongSize {
                            path,
                            actual,
                            expected: entry.len,
                        });
                    }
                    existing.push(actual);
                    f
                }
                Mode::ReadWrite => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(io_err("create directory", parent))?;
                    }
                    let f = FsOpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map_err(io_err("open", &path))?;
                    let actual = f.metadata().map_err(io_err("stat", &path))?.len();
                    existing.push(actual.min(entry.len));
                    if actual > entry.len {
                        // The file belongs to this download; drop a stale tail.
                        f.set_len(entry.len).map_err(io_err("truncate", &path))?;
                    } else if actual < entry.len {
                        preallocate(&f, entry.len, opts.preallocate)
                            .map_err(io_err("preallocate", &path))?;
                    }
                    f
                }
            };
            files.push(Some(file));
            paths.push(path);
        }
        Ok(Self {
            layout,
            files,
            paths,
            existing,
            writable: opts.mode == Mode::ReadWrite,
        })
    }

    /// Absolute paths of the files, in layout order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// True if opened for downloading.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The open descriptors in layout order (`None` for pad files), for backends that
    /// submit their own I/O; valid while `self` lives.
    pub fn raw_fds(&self) -> Vec<Option<std::os::unix::io::RawFd>> {
        self.files
            .iter()
            .map(|f| f.as_ref().map(|f| f.as_raw_fd()))
            .collect()
    }
}

impl Storage for PortableStorage {
    fn layout(&self) -> &FileLayout {
        &self.layout
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::Io {
                op: "write",
                path: self.paths.first().cloned().unwrap_or_default(),
                source: io::Error::from_raw_os_error(libc::EROFS),
            });
        }
        for seg in self.layout.segments(offset, data.len())? {
            let Some(file) = &self.files[seg.file] else {
                continue; // pad file: zeros by definition
            };
            let mut at = seg.file_offset;
            for chunk in data[seg.buf].chunks(WRITE_CHUNK) {
                file.write_all_at(chunk, at)
                    .map_err(io_err("write", &self.paths[seg.file]))?;
                at += chunk.len() as u64;
            }
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        for seg in self.layout.segments(offset, buf.len())? {
            let dst = &mut buf[seg.buf];
            match &self.files[seg.file] {
                Some(file) => file
                    .read_exact_at(dst, seg.file_offset)
                    .map_err(io_err("read", &self.paths[seg.file]))?,
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        if self.writable {
            for (f, path) in self.files.iter().zip(&self.paths) {
                if let Some(f) = f {
                    f.sync_data().map_err(io_err("sync", path))?;
                }
            }
        }
        Ok(())
    }

    fn existing_len(&self, file: usize) -> u64 {
        self.existing[file]
    }
}

#[cfg(test)]
mod tests {
    //! Each case runs once per back end: io_uring opens files through this module too, and
    //! must read and write them the same way.
    use super::*;
    use crate::storage::{FileEntry, IoBackend, available_backends, open_with};

    fn layout(lens: &[u64]) -> FileLayout {
        FileLayout::new(
            lens.iter()
                .enumerate()
                .map(|(i, &len)| FileEntry {
                    path: PathBuf::from(format!("t/sub{}/f{i}", i % 2)),
                    len,
                    pad: false,
                })
                .collect(),
        )
        .unwrap()
    }

    fn open(
        root: &Path,
        lens: &[u64],
        opts: OpenOptions,
        backend: IoBackend,
    ) -> Result<std::sync::Arc<dyn Storage>> {
        open_with(root, layout(lens), opts, backend)
    }

    #[test]
    fn write_across_files_lands_in_each_file() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path(), &[5, 0, 3, 8], OpenOptions::default(), backend).unwrap();
            let data: Vec<u8> = (0u8..16).collect();
            s.write_at(0, &data).unwrap();
            let file = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
            assert_eq!(file("t/sub0/f0"), &data[..5], "{backend:?}");
            assert_eq!(file("t/sub1/f1"), b"", "{backend:?}");
            assert_eq!(file("t/sub0/f2"), &data[5..8], "{backend:?}");
            assert_eq!(file("t/sub1/f3"), &data[8..], "{backend:?}");
            let mut back = vec![0u8; 10];
            s.read_at(3, &mut back).unwrap();
            assert_eq!(back, &data[3..13], "{backend:?}");
        }
    }

    #[test]
    fn download_preallocates_full_lengths_and_reports_fresh_files() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let lens = [4096, 100];
            let s = open(dir.path(), &lens, OpenOptions::default(), backend).unwrap();
            for (i, f) in s.layout().files().iter().enumerate() {
                let on_disk = std::fs::metadata(dir.path().join(&f.path)).unwrap().len();
                assert_eq!(on_disk, lens[i], "{backend:?}");
                assert_eq!(s.existing_len(i), 0, "{backend:?}");
            }
            drop(s);
            let s = open(dir.path(), &lens, OpenOptions::default(), backend).unwrap();
            assert_eq!(s.existing_len(0), 4096, "{backend:?}");
        }
    }

    #[test]
    fn read_only_refuses_wrong_size_and_writes() {
        let ro = OpenOptions {
            mode: Mode::ReadOnly,
            ..Default::default()
        };
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("t/sub0")).unwrap();
            std::fs::write(dir.path().join("t/sub0/f0"), b"abc").unwrap();
            let Err(err) = open(dir.path(), &[4], ro, backend) else {
                panic!("{backend:?}: a file of the wrong size must be refused");
            };
            assert!(
                matches!(
                    err,
                    Error::WrongSize {
                        actual: 3,
                        expected: 4,
                        ..
                    }
                ),
                "{backend:?}: {err}"
            );
            let s = open(dir.path(), &[3], ro, backend).unwrap();
            assert!(s.write_at(0, b"x").is_err(), "{backend:?}");
            let mut b = [0u8; 3];
            s.read_at(0, &mut b).unwrap();
            assert_eq!(&b, b"abc", "{backend:?}");
        }
    }

    #[test]
    fn symlink_at_a_file_path_is_not_followed() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let outside = dir.path().join("outside");
            std::fs::write(&outside, b"secret").unwrap();
            std::fs::create_dir_all(dir.path().join("out/t/sub0")).unwrap();
            std::os::unix::fs::symlink(&outside, dir.path().join("out/t/sub0/f0")).unwrap();
            let r = open(
                &dir.path().join("out"),
                &[6],
                OpenOptions::default(),
                backend,
            );
            assert!(r.is_err(), "{backend:?}");
            assert_eq!(std::fs::read(&outside).unwrap(), b"secret", "{backend:?}");
        }
    }

    #[test]
    fn pad_files_read_as_zeros_and_are_never_created() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let layout = FileLayout::new(vec![
                FileEntry {
                    path: "t/a".into(),
                    len: 5,
                    pad: false,
                },
                FileEntry {
                    path: "t/.pad/3".into(),
                    len: 3,
                    pad: true,
                },
                FileEntry {
                    path: "t/b".into(),
                    len: 4,
                    pad: false,
                },
            ])
            .unwrap();
            let s = open_with(dir.path(), layout, OpenOptions::default(), backend).unwrap();
            s.write_at(0, b"hello\0\0\0ring").unwrap();
            let mut back = [0xffu8; 12];
            s.read_at(0, &mut back).unwrap();
            assert_eq!(&back, b"hello\0\0\0ring", "{backend:?}");
            assert!(!dir.path().join("t/.pad").exists(), "{backend:?}");
        }
    }
}
