//! io_uring storage backend (cargo feature `io-uring`, on by default, Linux only; the default
//! back end wherever [`probe`] says the kernel allows it).
//!
//! Same files and layout as [`PortableStorage`] (which opens, sizes and syncs them); only
//! reads and writes go through io_uring: the segments of one call (a piece straddling files,
//! a piece written in [`WRITE_CHUNK`]s) are submitted together and waited for with one
//! `io_uring_enter`, instead of one `pread`/`pwrite` each. Each disk thread has its own ring
//! (thread-local), so the storage stays `Sync` without a lock.
//!
//! Crate: `io-uring` (the tokio-rs low-level bindings), not `tokio-uring`. Our disk calls are
//! blocking calls on [`crate::disk::DiskPool`] threads with borrowed buffers (`&[u8]` of a
//! piece the session still owns); `io-uring` submits those as they are and waits on the
//! calling thread. `tokio-uring` needs its own current-thread runtime per ring next to the
//! session's runtime, and owned buffers moved into each operation and back, which is an extra
//! hand-off per piece for the same system calls.
//!
//! Measured (`harness datapath`, docs/BENCHMARKS.md): on a page-cache-backed ext4 file the
//! cost is the copy into and out of the page cache, not the system calls (about 4,000 writes
//! per GiB of 256 KiB), so io_uring and pread/pwrite cost about the same CPU per GiB.

#[cfg(not(target_os = "linux"))]
compile_error!("the io-uring feature needs Linux");

use std::cell::RefCell;
use std::io;
use std::os::unix::io::RawFd;
use std::path::Path;
use std::sync::OnceLock;

use io_uring::{IoUring, opcode, squeue, types};

use super::{Error, FileLayout, OpenOptions, PortableStorage, Result, Storage, WRITE_CHUNK};

/// Submission queue entries per ring: a piece rarely spans more than a few files.
const RING_ENTRIES: u32 = 64;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// True if this kernel lets us create a ring and run a no-op through it (probed once).
pub fn supported() -> bool {
    probe().is_ok()
}

/// Why io_uring cannot be used here, if it cannot: `io_uring_setup` refused (ENOSYS: an old
/// kernel or seccomp; EPERM: `kernel.io_uring_disabled` or seccomp), or a no-op through a
/// fresh ring failed. Probed once per process.
pub fn probe() -> std::result::Result<(), &'static str> {
    static PROBE: OnceLock<std::result::Result<(), &'static str>> = OnceLock::new();
    *PROBE.get_or_init(|| {
        if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            && v.trim() == "2"
        {
            return Err("disabled by the kernel.io_uring_disabled sysctl (2)");
        }
        let mut ring = match IoUring::new(4) {
            Ok(r) => r,
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOSYS) => {
                        "io_uring_setup is not implemented (old kernel or seccomp)"
                    }
                    Some(libc::EPERM) => eperm_reason(),
                    Some(libc::ENOMEM) => {
                        "io_uring_setup ran out of locked memory (RLIMIT_MEMLOCK)"
                    }
                    _ => "io_uring_setup failed",
                });
            }
        };
        let nop = opcode::Nop::new().build().user_data(7);
        // SAFETY: a NOP references no memory.
        if unsafe { ring.submission().push(&nop) }.is_err() {
            return Err("cannot queue a no-op");
        }
        if ring.submit_and_wait(1).is_err() {
            return Err("io_uring_enter failed on a no-op");
        }
        if ring
            .completion()
            .next()
            .is_some_and(|c| c.user_data() == 7 && c.result() >= 0)
        {
            Ok(())
        } else {
            Err("a no-op through a fresh ring did not complete")
        }
    })
}

/// Who refused `io_uring_setup` with EPERM: a seccomp filter on this process, or
/// `kernel.io_uring_disabled=1` with this process outside `kernel.io_uring_group`.
fn eperm_reason() -> &'static str {
    let filtered = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"))
    });
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|v| v.trim() == "1");
    match (filtered, sysctl) {
        (true, false) => "io_uring_setup is refused by a seccomp filter on this process",
        (false, true) => {
            "io_uring_setup is not permitted (kernel.io_uring_disabled=1 and this process is not in kernel.io_uring_group)"
        }
        _ => "io_uring_setup is not permitted (kernel.io_uring_disabled or seccomp)",
    }
}

/// One positional transfer.
struct Op {
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: u64,
    file: usize,
}

/// A storage whose reads and writes go through a per-thread io_uring.
#[derive(Debug)]
pub struct UringStorage {
    files: PortableStorage,
    fds: Vec<Option<RawFd>>,
}

impl UringStorage {
    /// Opens the files like [`PortableStorage::open`]; fails if io_uring is unavailable.
    pub fn open(root: &Path, layout: FileLayout, opts: OpenOptions) -> Result<Self> {
        if let Err(why) = probe() {
            return Err(Error::UringUnavailable { why: why.into() });
        }
        let files = PortableStorage::open(root, layout, opts)?;
        let fds = files.raw_fds();
        Ok(Self { files, fds })
    }

    /// Runs `ops` to completion (resubmitting short transfers); `write` picks the opcode.
    ///
    /// Never returns while the kernel may still touch a buffer: on an error, every operation
    /// already submitted is reaped before the first error is returned, so the caller's
    /// buffers can be freed and the ring reused (its completion queue is empty again).
    fn run(&self, mut ops: Vec<Op>, write: bool) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        RING.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(IoUring::new(RING_ENTRIES).map_err(|e| self.err(0, e))?);
            }
            let mut broken = false;
            let ring = slot.as_mut().expect("ring just created");
            let r = self.run_on(ring, &mut ops, write, &mut broken);
            if broken {
                *slot = None;
            }
            r
        })
    }

    fn run_on(
        &self,
        ring: &mut IoUring,
        ops: &mut Vec<Op>,
        write: bool,
        broken: &mut bool,
    ) -> Result<()> {
        {
            while !ops.is_empty() {
                let batch = ops.len().min(RING_ENTRIES as usize);
                for (i, op) in ops[..batch].iter().enumerate() {
                    let len = u32::try_from(op.len).unwrap_or(u32::MAX);
                    let sqe = if write {
                        let sqe = opcode::Write::new(types::Fd(op.fd), op.ptr, len)
                            .offset(op.offset)
                            .build();
                        // Buffered writes to ext4 cannot complete without blocking, so the
                        // kernel hands each to an io-wq worker; unlinked, the chunks of one
                        // piece run on as many workers at once and contend for the file's
                        // lock. Linked, they run one after another on one worker. A short
                        // write breaks the chain: the rest complete with ECANCELED and are
                        // submitted again below.
                        if i + 1 < batch {
                            sqe.flags(squeue::Flags::IO_LINK)
                        } else {
                            sqe
                        }
                    } else {
                        opcode::Read::new(types::Fd(op.fd), op.ptr, len)
                            .offset(op.offset)
                            .build()
                    };
                    // SAFETY: the buffers outlive the wait below (they belong to the caller,
                    // who is blocked in this call, and every submitted entry is reaped before
                    // we return), and the queue has room for `batch`.
                    unsafe { ring.submission().push(&sqe.user_data(i as u64)) }
                        .expect("submission queue has room for the batch");
                }
                let mut first_err: Option<Error> = None;
                let mut done = vec![0usize; batch];
                let mut seen = 0;
                let mut submitted = false;
                while seen < batch {
                    if let Some(cqe) = ring.completion().next() {
                        seen += 1;
                        let i = cqe.user_data() as usize;
                        let r = cqe.result();
                        if i >= batch {
                            // Cannot happen (the queue was empty before this batch); keep
                            // counting so that no entry of ours is left in flight.
                            continue;
                        }
                        if write && r == -libc::ECANCELED {
                            // Cancelled by a broken link (a short or failed write before
                            // it): nothing was done; submitted again or superseded by the
                            // error that broke the chain.
                        } else if r < 0 {
                            first_err.get_or_insert_with(|| {
                                self.err(ops[i].file, io::Error::from_raw_os_error(-r))
                            });
                        } else if r == 0 && !write {
                            first_err.get_or_insert_with(|| {
                                self.err(ops[i].file, io::ErrorKind::UnexpectedEof.into())
                            });
                        } else {
                            done[i] = r as usize;
                        }
                        continue;
                    }
                    let want = if submitted { 1 } else { batch };
                    match ring.submit_and_wait(want) {
                        Ok(_) => submitted = true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                            // Out of kernel resources for a moment: wait and try again.
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        Err(e) if !submitted => {
                            // Nothing went to the kernel. The entries are still queued: the
                            // ring must go (closing it never submits them), never be reused.
                            *broken = true;
                            return Err(self.err(ops[0].file, e));
                        }
                        Err(e) => {
                            // Entries are in flight and we cannot wait for them: returning
                            // would let the kernel write into freed memory.
                            tracing::error!(error = %e, "io_uring: cannot reap in-flight I/O; aborting");
                            std::process::abort();
                        }
                    }
                }
                if let Some(e) = first_err {
                    return Err(e);
                }
                // Keep the unfinished remainders (short transfers) and the unsubmitted rest.
                let mut next = Vec::new();
                for (i, mut op) in ops.drain(..).enumerate() {
                    if i < batch {
                        if done[i] >= op.len {
                            continue;
                        }
                        // SAFETY: advancing within the caller's buffer.
                        op.ptr = unsafe { op.ptr.add(done[i]) };
                        op.len -= done[i];
                        op.offset += done[i] as u64;
                    }
                    next.push(op);
                }
                *ops = next;
            }
            Ok(())
        }
    }

    fn err(&self, file: usize, source: io::Error) -> Error {
        Error::Io {
            op: "io_uring",
            path: self.files.paths().get(file).cloned().unwrap_or_default(),
            source,
        }
    }
}

// SAFETY: the raw pointers in `Op` live only inside `run`, on the calling thread.
unsafe impl Send for Op {}

impl Storage for UringStorage {
    fn layout(&self) -> &FileLayout {
        self.files.layout()
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.files.is_writable() {
            return self.files.write_at(offset, data); // the portable error
        }
        let ops = self
            .layout()
            .segments(offset, data.len())?
            .into_iter()
            .filter_map(|s| self.fds[s.file].map(|fd| (fd, s)))
            .flat_map(|(fd, s)| {
                data[s.buf]
                    .chunks(WRITE_CHUNK)
                    .enumerate()
                    .map(move |(i, chunk)| Op {
                        fd,
                        // The kernel only reads through this pointer for a write.
                        ptr: chunk.as_ptr() as *mut u8,
                        len: chunk.len(),
                        offset: s.file_offset + (i * WRITE_CHUNK) as u64,
                        file: s.file,
                    })
            })
            .collect();
        self.run(ops, true)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut ops = Vec::new();
        for s in self.layout().segments(offset, buf.len())? {
            match self.fds[s.file] {
                Some(fd) => ops.push(Op {
                    fd,
                    ptr: buf[s.buf.clone()].as_mut_ptr(),
                    len: s.buf.len(),
                    offset: s.file_offset,
                    file: s.file,
                }),
                None => buf[s.buf].fill(0), // pad file
            }
        }
        self.run(ops, false)
    }

    fn sync(&self) -> Result<()> {
        self.files.sync()
    }

    fn existing_len(&self, file: usize) -> u64 {
        self.files.existing_len(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FileEntry, available_backends, open_with};

    fn files(lens: &[u64]) -> FileLayout {
        FileLayout::new(
            lens.iter()
                .enumerate()
                .map(|(i, &len)| FileEntry {
                    path: format!("t/f{i}").into(),
                    len,
                    pad: false,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn reads_back_what_it_wrote_across_files() {
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let s = open_with(
                dir.path(),
                files(&[7, 0, 100_000, 3]),
                OpenOptions::default(),
                backend,
            )
            .unwrap();
            let data: Vec<u8> = (0..100_010u32).map(|i| (i % 241) as u8).collect();
            s.write_at(0, &data).unwrap();
            let mut back = vec![0u8; data.len() - 5];
            s.read_at(5, &mut back).unwrap();
            assert_eq!(back, &data[5..], "{backend:?}");
            assert_eq!(
                std::fs::read(dir.path().join("t/f3")).unwrap(),
                &data[100_007..],
                "{backend:?}"
            );
        }
    }

    #[test]
    fn a_call_with_more_segments_than_ring_entries_completes() {
        // 150 files of 10 bytes: one read or write is 150 operations, more than one ring's
        // worth (RING_ENTRIES), so it runs in several batches on the same ring.
        let n = RING_ENTRIES as usize * 2 + 22;
        for backend in available_backends() {
            let dir = tempfile::tempdir().unwrap();
            let s = open_with(
                dir.path(),
                files(&vec![10; n]),
                OpenOptions::default(),
                backend,
            )
            .unwrap();
            let data: Vec<u8> = (0..n * 10).map(|i| (i * 13 % 251) as u8).collect();
            s.write_at(0, &data).unwrap();
            let mut back = vec![0u8; data.len() - 3];
            s.read_at(3, &mut back).unwrap();
            assert_eq!(back, &data[3..], "{backend:?}");
            assert_eq!(
                std::fs::read(dir.path().join(format!("t/f{}", n - 1))).unwrap(),
                &data[(n - 1) * 10..],
                "{backend:?}"
            );
        }
    }

    #[test]
    fn forcing_io_uring_opens_an_io_uring_storage_or_says_why() {
        let dir = tempfile::tempdir().unwrap();
        match UringStorage::open(dir.path(), files(&[4]), OpenOptions::default()) {
            Ok(s) => {
                assert!(supported());
                s.write_at(0, b"ring").unwrap();
            }
            Err(e) => {
                assert!(!supported());
                assert!(matches!(e, Error::UringUnavailable { .. }), "{e}");
            }
        }
    }
}
