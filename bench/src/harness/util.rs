//! Small shared pieces of the harness: size parsing, the interrupt flag, scratch directories,
//! deterministic payloads, torrent creation with mktorrent, and bounded waiting.
//!
//! The polling, the payload generator and the free-port probe are `testkit`'s
//! (`poll_until`, `stream_payload`, `try_free_ports`), so a seed means the same bytes in a
//! test and in a benchmark; these wrappers add what a measurement needs: `anyhow` errors with
//! context, the interrupt check, a 10 ms poll. `mktorrent` stays here rather than calling
//! testkit's: it errors instead of panicking, removes a stale output first, and takes a piece
//! size rather than its log2.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Sizes parse by the one rule in `proto::size` (`10MB` is 10,000,000 bytes, `10MiB` is
/// 10,485,760), the same as the programs the harness drives.
pub use proto::size::parse_size;

/// `64 MiB`-style rendering.
pub fn fmt_size(n: u64) -> String {
    match n {
        n if n >= GIB && n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} B"),
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT/SIGTERM into a flag that [`check_interrupt`] reports as an error, so that
/// cleanup runs through `Drop` instead of the process dying with namespaces left behind.
pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Polls `cond` every few milliseconds until it returns true; errors after `timeout`
/// naming `what`, or at once when interrupted or when `cond` errors.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    // A poll interval, short against the seconds-long runs it measures.
    let done = testkit::poll_until(timeout, Duration::from_millis(10), || {
        check_interrupt()?;
        Ok::<_, anyhow::Error>(cond()?.then_some(()))
    })?;
    match done {
        Some(()) => Ok(()),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Flushes dirty pages so one round's writeback does not slow the next.
pub fn sync_disks() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

/// A scratch directory removed on drop unless kept.
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    pub fn new(parent: Option<&Path>, keep: bool) -> Result<ScratchDir> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let path = parent.join(format!("instream-bench-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("clear {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(ScratchDir { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept work dir {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes `len` deterministic pseudo-random bytes (testkit's xorshift64* payload, seeded) to
/// `path`, streamed: payloads are GiBs.
pub fn write_payload(path: &Path, len: u64, seed: u64) -> Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    let f = fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    testkit::stream_payload(&mut w, len, seed)
        .and_then(|()| w.flush())
        .with_context(|| format!("write {}", path.display()))
}

/// `mktorrent -l log2(piece) -o out path`, no tracker: one torrent file used by every client,
/// so both sides of a comparison read the same metainfo.
pub fn mktorrent(path: &Path, piece_size: u64, out: &Path) -> Result<()> {
    ensure!(
        piece_size.is_power_of_two(),
        "piece size {piece_size} is not a power of two"
    );
    let log2 = piece_size.trailing_zeros();
    let _ = fs::remove_file(out);
    let o = Command::new("mktorrent")
        .arg("-l")
        .arg(log2.to_string())
        .arg("-o")
        .arg(out)
        .arg(path)
        .output()
        .context("run mktorrent (apt-get install mktorrent)")?;
    ensure!(
        o.status.success(),
        "mktorrent failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(())
}

/// Empties (or creates) `dir`.
pub fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

/// True when the files hold the same bytes (read in 8 MiB chunks).
pub fn same_file(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let mut fa = fs::File::open(a).with_context(|| format!("open {}", a.display()))?;
    let mut fb = match fs::File::open(b) {
        Ok(f) => f,
        Err(_) => return Ok(false),
    };
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// A port free on 127.0.0.1 right now (TCP and UDP), for programs told where to listen.
pub fn free_local_port() -> Result<u16> {
    Ok(testkit::try_free_ports(1).context("find a free port")?[0])
}

/// Whether the harness runs as root. Not `testkit::needs_root`: a benchmark that cannot run
/// is an error for its caller, never a skip or a panic.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_render_in_the_largest_exact_unit() {
        assert_eq!(fmt_size(64 * MIB), "64 MiB");
        assert_eq!(fmt_size(GIB + 1), "1073741825 B");
    }
}
