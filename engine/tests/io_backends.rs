//! `--io-backend` end to end, with the real binaries: a seed -> peer download with both
//! sides forced to each disk back end, byte for byte; and, under a seccomp filter that makes
//! `io_uring_setup` fail with EPERM (this process's children only, so tests running in
//! parallel are unaffected), a forced `uring` is a one-line error naming the cause while
//! `auto` completes with one log line naming the fallback.
//! (`kernel.io_uring_disabled=2`, which is machine-wide, has its own binary:
//! tests/uring_sysctl.rs.)

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use instream_engine::storage::{IoBackend, available_backends};
use support::*;

fn flag(b: IoBackend) -> &'static str {
    match b {
        IoBackend::Uring => "uring",
        IoBackend::Portable => "portable",
        IoBackend::Auto => "auto",
    }
}

/// A small multi-piece payload and its torrent in `dir`.
fn fixture(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("payload.bin");
    write_payload(&data, 600_000, 21);
    let torrent = dir.join("payload.torrent");
    instream_create(&data, "32KiB", &[], &torrent);
    (data, torrent)
}

#[test]
fn a_download_completes_with_each_back_end_forced_on_both_sides() {
    for backend in available_backends() {
        let dir = temp_dir();
        let (data, torrent) = fixture(dir.path());
        let (_seed, addr) = instream_serve_with(
            &torrent,
            &data,
            &["--no-tracker", "--io-backend", flag(backend)],
            "warn",
        );
        let out = dir.path().join("out");
        let mut peer = Proc::spawn(
            &format!("instream-peer get --io-backend {}", flag(backend)),
            direct_get_cmd(&torrent, &out, addr, flag(backend)),
        );
        peer.wait_success(TRANSFER_TIMEOUT);
        assert_same_file(&data, &out.join("payload.bin"));
        assert_eq!(PeerSummary::of(&peer).0["complete"], true, "{backend:?}");
        assert!(
            peer.stderr_lines().is_empty(),
            "{backend:?}: a forced back end that works logs nothing: {:?}",
            peer.stderr_lines()
        );
    }
}

/// Makes `cmd`'s process (after fork, before exec) unable to create an io_uring: a seccomp
/// filter answers `io_uring_setup` with EPERM, as container runtimes' default profiles do.
fn without_io_uring(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure only makes two prctl calls on data it owns (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            deny_io_uring_setup()?;
            Ok(())
        })
    }
}

fn deny_io_uring_setup() -> std::io::Result<()> {
    // Classic BPF over struct seccomp_data { int nr; u32 arch; ... } (linux/seccomp.h).
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
    const JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K (0)
    const RET_ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        op(LD_W_ABS, 0, 0, 4),                            // A = arch
        op(JEQ_K, 0, 3, ARCH),                            // other ABI: allow
        op(LD_W_ABS, 0, 0, 0),                            // A = syscall number
        op(JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32), // io_uring_setup?
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),  //   -> EPERM
        op(RET_K, 0, 0, RET_ALLOW),                       // everything else
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls; `fprog` points at `prog`, alive for the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn under_seccomp_a_forced_uring_fails_in_one_line_and_auto_falls_back() {
    let dir = temp_dir();
    let (data, torrent) = fixture(dir.path());
    const WHY: &str = "io_uring is not available: io_uring_setup is refused by a seccomp filter";

    // A seed forced to io_uring refuses to start, in one line.
    let mut cmd = Command::new(bin("instream-seed"));
    cmd.arg("serve")
        .arg(&torrent)
        .arg("--data")
        .arg(&data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-tracker",
            "--io-backend",
            "uring",
        ])
        .env_remove("RUST_LOG");
    let mut seed = Proc::spawn("instream-seed serve --io-backend uring", {
        without_io_uring(&mut cmd);
        cmd
    });
    let st = seed.wait_exit(STARTUP_TIMEOUT);
    let err = seed.stderr_lines();
    assert!(!st.success(), "a forced uring seed must fail: {err:?}");
    assert_eq!(err.len(), 1, "one error line: {err:?}");
    assert!(
        err[0].starts_with("error: ") && err[0].contains(WHY),
        "{err:?}"
    );

    // The same peer forced to io_uring fails before any download, in one line.
    let (_seed, addr) = instream_serve_with(
        &torrent,
        &data,
        &["--no-tracker", "--io-backend", "portable"],
        "warn",
    );
    let out = dir.path().join("forced");
    let mut cmd = direct_get_cmd(&torrent, &out, addr, "uring");
    without_io_uring(&mut cmd);
    let mut peer = Proc::spawn("instream-peer get --io-backend uring (seccomp)", cmd);
    let st = peer.wait_exit(TRANSFER_TIMEOUT);
    let err = peer.stderr_lines();
    assert!(!st.success(), "a forced uring peer must fail: {err:?}");
    assert_eq!(err.len(), 1, "one error line: {err:?}");
    assert!(
        err[0].starts_with("error: ") && err[0].contains(WHY),
        "{err:?}"
    );
    assert!(
        !out.join("payload.bin").exists(),
        "nothing is created before the back end is settled"
    );

    // auto: one line naming the fallback, then a complete, correct download.
    let out = dir.path().join("auto");
    let mut cmd = direct_get_cmd(&torrent, &out, addr, "auto");
    without_io_uring(&mut cmd);
    let mut peer = Proc::spawn("instream-peer get --io-backend auto (seccomp)", cmd);
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join("payload.bin"));
    let log = peer.stderr_lines();
    assert_eq!(log.len(), 1, "one log line: {log:?}");
    assert!(
        log[0].contains("io_uring unavailable (io_uring_setup is refused by a seccomp filter")
            && log[0].contains("falling back to portable disk I/O"),
        "{log:?}"
    );
}
