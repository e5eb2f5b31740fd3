//! Test-only storage middleware: wraps a real storage and injects the faults a fleet sees,
//! so tests can check that the engine reports them cleanly instead of panicking or
//! claiming pieces it never wrote.
//!
//! - full disk: writes fail with `ENOSPC` once `space` bytes have been written;
//! - slow disk: every call sleeps `delay` first (on the disk thread, as a slow disk would);
//! - torn writes: a write that hits the limit writes a prefix, then fails.
//!
//! It is compiled into the library (integration tests and the fault binaries need it) but
//! nothing outside tests constructs it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Error, FileLayout, Result, Storage};

/// Knobs of [`FaultStorage`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Bytes that may be written before writes fail with ENOSPC (`None` = unlimited).
    pub space: Option<u64>,
    /// Sleep before every read, write and sync.
    pub delay: Duration,
    /// When a write crosses the `space` limit, write the part that fits before failing
    /// (a torn write), instead of writing nothing.
    pub torn_writes: bool,
}

/// A storage that misbehaves on purpose.
#[derive(Debug)]
pub struct FaultStorage<S> {
    inner: S,
    faults: Faults,
    written: AtomicU64,
}

impl<S: Storage> FaultStorage<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, faults: Faults) -> Self {
        Self {
            inner,
            faults,
            written: AtomicU64::new(0),
        }
    }

    /// Bytes written through this wrapper so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn pause(&self) {
        if !self.faults.delay.is_zero() {
            std::thread::sleep(self.faults.delay);
        }
    }

    fn no_space() -> Error {
        Error::Io {
            op: "write",
            path: "<fault injection>".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn layout(&self) -> &FileLayout {
        self.inner.layout()
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.pause();
        let len = data.len() as u64;
        let before = self.written.fetch_add(len, Ordering::Relaxed);
        if let Some(space) = self.faults.space
            && before + len > space
        {
            let fits = space.saturating_sub(before) as usize;
            if self.faults.torn_writes && fits > 0 {
                self.inner.write_at(offset, &data[..fits])?;
            }
            return Err(Self::no_space());
        }
        self.inner.write_at(offset, data)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.pause();
        self.inner.read_at(offset, buf)
    }

    fn sync(&self) -> Result<()> {
        self.pause();
        self.inner.sync()
    }

    fn existing_len(&self, file: usize) -> u64 {
        self.inner.existing_len(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{OpenOptions, available_backends, open_with};

    #[test]
    fn full_disk_fails_with_enospc_after_the_limit() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let inner = open_with(
                dir.path(),
                FileLayout::single("f", 100).unwrap(),
                OpenOptions::default(),
                backend,
            )
            .unwrap();
            let s = FaultStorage::new(
                inner,
                Faults {
                    space: Some(60),
                    torn_writes: true,
                    ..Default::default()
                },
            );
            s.write_at(0, &[1; 50]).unwrap();
            let e = s.write_at(50, &[2; 50]).unwrap_err();
            assert!(e.is_no_space(), "{backend:?}: {e}");
            let disk = std::fs::read(dir.path().join("f")).unwrap();
            assert_eq!(
                &disk[50..60],
                &[2; 10],
                "{backend:?}: torn write keeps its prefix"
            );
            assert_eq!(&disk[60..], &[0; 40], "{backend:?}");
            assert_eq!(s.written(), 100, "{backend:?}");
        }
    }
}
