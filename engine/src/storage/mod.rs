//! Storage: positional reads and writes of one torrent's payload, whatever its file layout.
//!
//! Every call is blocking and runs on a disk thread ([`crate::disk::DiskPool`]), never on the
//! tokio reactor. Positional I/O (`pread`/`pwrite`) is what lets several disk threads share
//! the same files without seeking or locking: a [`Storage`] is `Sync` and its methods take
//! `&self`. Offsets are payload offsets (the concatenation of the files in metainfo order);
//! [`layout::FileLayout`] maps them to files.
//!
//! Backends: [`portable::PortableStorage`] (std `FileExt`, works everywhere),
//! `uring::UringStorage` (feature `io-uring`, on by default, probed at run time: see
//! [`IoBackend`] and [`resolve_backend`]; its header says which io_uring crate and why) and
//! the test-only [`fault::FaultStorage`] middleware that injects full disks, slow disks and
//! torn writes. Every storage test runs once per back end ([`available_backends`]).

pub mod backends;
pub mod check;
pub mod fault;
pub mod layout;
pub mod portable;
#[cfg(feature = "io-uring")]
pub mod uring;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use backends::available_backends;
pub use check::check_existing;
pub use layout::{FileEntry, FileLayout, Segment};
pub use portable::PortableStorage;

/// Largest single write handed to the kernel. ext4 sizes page-cache folios by the write's
/// length, and a 1 MiB write takes high-order folios from the free lists that VMs with free
/// page reporting have handed back to their host: filling those costs a host fault per
/// page (measured: a 1 GiB file written 1 MiB at a time took 1.2 s of system time, written
/// 256 KiB at a time 0.23 s). At 256 KiB the syscall count is still small.
pub const WRITE_CHUNK: usize = 256 * 1024;

/// Storage failures. I/O errors carry the file and the operation.
#[derive(Debug, Error)]
pub enum Error {
    /// A torrent path is absolute, empty or climbs out with `..`.
    #[error("unsafe path in torrent: {path:?}")]
    UnsafePath {
        /// The path as given.
        path: String,
    },
    /// Two files share a path (or one file's path is another's directory).
    #[error("path occurs twice in torrent: {path}")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// The file lengths add up to more than 2^64 bytes.
    #[error("payload is larger than 2^64 bytes")]
    TooLarge,
    /// A read or write outside the payload (a bug in the caller: offsets come from
    /// validated piece indices).
    #[error("range {offset}+{len} is outside the payload of {total} bytes")]
    OutOfRange {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// Payload length.
        total: u64,
    },
    /// A data file of a read-only (seeding) storage has the wrong length.
    #[error("{path}: file is {actual} bytes, the torrent says {expected}")]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Length on disk.
        actual: u64,
        /// Length in the torrent.
        expected: u64,
    },
    /// `--io-backend uring` where io_uring cannot work (the probe's reason).
    #[error("io_uring is not available: {why}")]
    UringUnavailable {
        /// Why: kernel, `kernel.io_uring_disabled`, seccomp, or the build.
        why: String,
    },
    /// An operating-system error on one file (the cause is the source, printed once by
    /// whoever walks the chain).
    #[error("{op} {path}")]
    Io {
        /// What we were doing ("open", "write", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True for "no space left on device" (and quota exhaustion), which operators must see
    /// as such.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            _ => false,
        }
    }
}

/// Result of storage calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How files are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Seeding existing data: every file must exist with its exact length; nothing is
    /// created or written.
    ReadOnly,
    /// Downloading: missing files and directories are created, lengths are fixed up.
    ReadWrite,
}

/// How space is reserved for files being downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocate {
    /// `fallocate` the full length, so a full disk shows up at start, not half-way
    /// (falls back to `Sparse` on file systems that cannot).
    Full,
    /// Set the length only (a sparse file).
    Sparse,
}

/// Options for opening a storage.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Read-only seeding or read-write downloading.
    pub mode: Mode,
    /// Space reservation for `ReadWrite`.
    pub preallocate: Preallocate,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            mode: Mode::ReadWrite,
            preallocate: Preallocate::Full,
        }
    }
}

/// Which disk back end to use (`--io-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring where the kernel allows it (probed once), else portable.
    #[default]
    Auto,
    /// io_uring, or an error that says why it cannot be had.
    Uring,
    /// `pread`/`pwrite`.
    Portable,
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io-uring" | "io_uring" => Ok(IoBackend::Uring),
            "portable" => Ok(IoBackend::Portable),
            other => Err(format!(
                "unknown I/O backend {other:?} (expected uring, portable or auto)"
            )),
        }
    }
}

/// Whether io_uring works here, and if not, why (kernel, `kernel.io_uring_disabled`,
/// seccomp, or a build without the feature). Probed once per process.
pub fn uring_status() -> std::result::Result<(), String> {
    #[cfg(feature = "io-uring")]
    {
        uring::probe().map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "io-uring"))]
    {
        Err("this build has no io_uring support (cargo feature io-uring)".into())
    }
}

/// Resolves `backend` to the one that will run: `Auto` becomes `Uring` or (with one log
/// line saying why) `Portable`; a forced `Uring` that cannot work is
/// [`Error::UringUnavailable`].
pub fn resolve_backend(backend: IoBackend) -> Result<IoBackend> {
    match backend {
        IoBackend::Portable => Ok(IoBackend::Portable),
        IoBackend::Uring => uring_status()
            .map(|()| IoBackend::Uring)
            .map_err(|why| Error::UringUnavailable { why }),
        IoBackend::Auto => match uring_status() {
            Ok(()) => Ok(IoBackend::Uring),
            Err(why) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                // warn, not info: the default filter shows it, once per process.
                SAID.call_once(|| {
                    tracing::warn!(
                        "io_uring unavailable ({why}); falling back to portable disk I/O"
                    )
                });
                Ok(IoBackend::Portable)
            }
        },
    }
}

/// Opens the files of `layout` under `root` with `backend` (see [`resolve_backend`]).
pub fn open_with(
    root: &std::path::Path,
    layout: FileLayout,
    opts: OpenOptions,
    backend: IoBackend,
) -> Result<std::sync::Arc<dyn Storage>> {
    let chosen = resolve_backend(backend)?;
    #[cfg(feature = "io-uring")]
    if chosen == IoBackend::Uring {
        return Ok(std::sync::Arc::new(uring::UringStorage::open(
            root, layout, opts,
        )?));
    }
    let _ = chosen;
    Ok(std::sync::Arc::new(PortableStorage::open(
        root, layout, opts,
    )?))
}

/// [`open_with`] `Auto` when `prefer_uring`, else `Portable`.
pub fn open(
    root: &std::path::Path,
    layout: FileLayout,
    opts: OpenOptions,
    prefer_uring: bool,
) -> Result<std::sync::Arc<dyn Storage>> {
    let backend = if prefer_uring {
        IoBackend::Auto
    } else {
        IoBackend::Portable
    };
    open_with(root, layout, opts, backend)
}

/// Positional access to one torrent's payload. Implementations are blocking and `Sync`.
pub trait Storage: Send + Sync + 'static {
    /// The file layout.
    fn layout(&self) -> &FileLayout;

    /// Writes `data` at payload offset `offset` (a whole piece, usually), across files.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// Fills `buf` from payload offset `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Flushes written data to stable storage (called on completion and shutdown).
    fn sync(&self) -> Result<()>;

    /// How many leading bytes of file `file` existed before this storage opened it: bytes
    /// past that are known not to hold verified data, so a resume check skips them.
    fn existing_len(&self, file: usize) -> u64 {
        self.layout().files()[file].len
    }
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn layout(&self) -> &FileLayout {
        (**self).layout()
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn existing_len(&self, file: usize) -> u64 {
        (**self).existing_len(file)
    }
}
