//! `kernel.io_uring_disabled=2` for real: with the sysctl set (root; restored by a guard,
//! also on panic), `instream-peer get --io-backend uring` fails in one line naming the
//! sysctl, and `--io-backend auto` completes with one log line naming the fallback.
//!
//! The sysctl is machine-wide, so this is its own test binary (cargo runs test binaries one
//! at a time) and the window is kept short: the seed is started before it opens, and only
//! two small peer runs happen inside it. Skipped where the file does not exist (kernels
//! before 6.6) or cannot be written even as root (a container's read-only /proc/sys); not
//! root is a skip only outside CI (`testkit::needs_root`).

mod support;

use std::path::Path;

use support::*;

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Sets the sysctl to 2 and puts the old value back on drop.
struct Disabled(String);

impl Disabled {
    fn set() -> Option<Disabled> {
        let old = std::fs::read_to_string(SYSCTL).ok()?;
        std::fs::write(SYSCTL, "2").ok()?;
        Some(Disabled(old.trim().to_string()))
    }
}

impl Drop for Disabled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.0) {
            eprintln!("could not restore {SYSCTL} to {}: {e}", self.0);
        }
    }
}

fn get(torrent: &Path, out: &Path, seed: std::net::SocketAddr, backend: &str) -> Proc {
    let cmd = direct_get_cmd(torrent, out, seed, backend);
    Proc::spawn(&format!("instream-peer get --io-backend {backend}"), cmd)
}

#[test]
fn with_io_uring_disabled_forced_uring_fails_in_one_line_and_auto_falls_back() {
    if !Path::new(SYSCTL).exists() {
        eprintln!("skipped: {SYSCTL} does not exist on this kernel");
        return;
    }
    if !testkit::needs_root(&format!("writing {SYSCTL}")) {
        return;
    }
    let dir = temp_dir();
    let data = dir.path().join("payload.bin");
    write_payload(&data, 300_000, 5);
    let torrent = dir.path().join("payload.torrent");
    instream_create(&data, "32KiB", &[], &torrent);
    let (_seed, addr) = instream_serve_with(
        &torrent,
        &data,
        &["--no-tracker", "--io-backend", "portable"],
        "warn",
    );

    let Some(guard) = Disabled::set() else {
        // Root, and still read-only: a container's /proc/sys, not a regression of ours.
        eprintln!("skipped: cannot write {SYSCTL} even as root (a read-only /proc/sys)");
        return;
    };
    let mut forced = get(&torrent, &dir.path().join("forced"), addr, "uring");
    let mut auto = get(&torrent, &dir.path().join("auto"), addr, "auto");
    let forced_status = forced.wait_exit(TRANSFER_TIMEOUT);
    auto.wait_success(TRANSFER_TIMEOUT);
    drop(guard);

    let err = forced.stderr_lines();
    assert!(!forced_status.success(), "forced uring must fail: {err:?}");
    assert_eq!(err.len(), 1, "one error line: {err:?}");
    assert!(
        err[0].starts_with("error: ")
            && err[0].contains(
                "io_uring is not available: disabled by the kernel.io_uring_disabled sysctl (2)"
            ),
        "{err:?}"
    );
    assert_same_file(&data, &dir.path().join("auto/payload.bin"));
    let log = auto.stderr_lines();
    assert_eq!(log.len(), 1, "one log line: {log:?}");
    assert!(
        log[0].contains("io_uring unavailable (disabled by the kernel.io_uring_disabled sysctl")
            && log[0].contains("falling back to portable disk I/O"),
        "{log:?}"
    );
}
