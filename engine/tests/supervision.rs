//! Issue 15: a panic in a torrent task or a disk thread of `instream-seed serve` is logged
//! with the component's name, and the seed exits non-zero with one `error:` line instead of
//! serving on half-dead (a dead torrent task answers nobody; a disk job that panicked never
//! sends the answer its torrent waits for). Panics are injected with
//! `INSTREAM_TEST_PANIC=torrent|disk`, read in debug builds only.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn seed_with_panic(component: &str, torrent: &Path, data: &Path) -> (Proc, std::net::SocketAddr) {
    let addr = free_addr();
    let mut cmd = Command::new(bin("instream-seed"));
    cmd.arg("serve")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", "info")
        .env("INSTREAM_TEST_PANIC", component);
    (Proc::spawn("instream-seed", cmd), addr)
}

fn payload_and_torrent(work: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = work.join("src/payload.bin");
    write_payload(&data, 1024 * 1024, 15);
    let torrent = work.join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    (data, torrent)
}

/// The seed's exit status and stderr, once it has exited (bounded).
fn exit_and_stderr(seed: &mut Proc) -> (std::process::ExitStatus, Vec<String>) {
    let status = seed.wait_exit(STARTUP_TIMEOUT);
    (status, seed.stderr_lines())
}

#[test]
fn r15_a_panicking_torrent_task_ends_the_seed_with_an_error() {
    let work = temp_dir();
    let (data, torrent) = payload_and_torrent(work.path());
    let (mut seed, _) = seed_with_panic("torrent", &torrent, &data);
    let (status, stderr) = exit_and_stderr(&mut seed);
    let log = stderr.join("\n");
    assert!(!status.success(), "{}\n{log}", describe(status));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("component panicked") && l.contains("torrent ")),
        "the panic is logged with the component's name:\n{log}"
    );
    let last = stderr.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("error: torrent ")
            && last.ends_with("panicked: INSTREAM_TEST_PANIC=torrent: injected panic"),
        "one error line last:\n{log}"
    );
}

#[test]
fn r15_a_panicking_disk_thread_ends_the_seed_with_an_error() {
    let work = temp_dir();
    let (data, torrent) = payload_and_torrent(work.path());
    let (mut seed, addr) = seed_with_panic("disk", &torrent, &data);
    wait_for(STARTUP_TIMEOUT, "instream-seed to listen", || {
        is_listening(addr.port()) || seed.try_wait().is_some()
    });
    // A real peer asks for blocks: the seed's first disk read panics on its disk thread.
    let out = work.path().join("out");
    let _peer = Proc::spawn(
        "instream-peer",
        instream_get_cmd(&torrent, &out, &peer_args(&[addr])),
    );
    let (status, stderr) = exit_and_stderr(&mut seed);
    let log = stderr.join("\n");
    assert!(!status.success(), "{}\n{log}", describe(status));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("component panicked") && l.contains("disk-0")),
        "the panic is logged with the disk thread's name:\n{log}"
    );
    let last = stderr.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("error: disk-0")
            && last.ends_with("panicked: INSTREAM_TEST_PANIC=disk: injected panic"),
        "one error line last:\n{log}"
    );
}
