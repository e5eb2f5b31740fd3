//! The binaries against each other through the command-line contract (docs/ARCHITECTURE.md):
//! `instream-seed create/serve` -> `instream-peer get` (file and http:// URL sources, a
//! multi-file torrent), the `--json` summary, SIGTERM, and one-line errors.
//!
//! Every process is spawned by PID and killed on drop; every wait is bounded and says what
//! it waited for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

mod support;
use support::{Proc, poll_for, wait_for};

/// `cmd` spawned as a [`Proc`] (its own process group, killed on drop); takes the
/// `&mut Command` a builder chain yields.
fn spawn(label: &str, cmd: &mut Command) -> Proc {
    Proc::spawn(label, std::mem::replace(cmd, Command::new("true")))
}

fn bin(name: &str) -> PathBuf {
    match name {
        "instream-seed" => PathBuf::from(env!("CARGO_BIN_EXE_instream-seed")),
        // instream-agent's binary, built on first use.
        _ => support::peer_bin(),
    }
}

/// Waits for `p` to exit and for its output to be read whole; panics (with its output)
/// after `within`.
fn finish(p: &mut Proc, within: Duration) -> (ExitStatus, String, String) {
    let st = p.wait_exit(within);
    p.wait_output_closed(within);
    (st, p.stdout_lines().join("\n"), p.stderr_lines().join("\n"))
}

/// Starts `instream-seed serve` on port 0 and reads back the address it prints.
fn serve(torrent: &Path, data: &Path) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(bin("instream-seed"));
    cmd.arg("serve")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--no-tracker"])
        .env_remove("RUST_LOG");
    let p = Proc::spawn("instream-seed serve", cmd);
    let addr = wait_for(
        WAIT,
        "instream-seed serve to print its listening address",
        || {
            p.stdout_lines()
                .iter()
                .find_map(|l| l.strip_prefix("listening ")?.parse::<SocketAddr>().ok())
        },
    );
    (p, addr)
}

fn create(path: &Path, out: &Path, extra: &[&str]) {
    let st = Command::new(bin("instream-seed"))
        .arg("create")
        .arg(path)
        .args(extra)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "instream-seed create failed: {st}");
}

fn get(source: &str, out: &Path, peer: SocketAddr) -> (ExitStatus, serde_json::Value, String) {
    let mut p = spawn(
        "instream-peer get",
        Command::new(bin("instream-peer"))
            .args(["get", source, "--out"])
            .arg(out)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--no-tracker",
                "--timeout",
                "80",
            ])
            .args(["--peer", &peer.to_string()])
            .env_remove("RUST_LOG"),
    );
    let (st, stdout, stderr) = finish(&mut p, WAIT);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "--json must print exactly one line: {stdout:?}\n{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    (st, v, stderr)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8 ^ (i >> 11) as u8)
        .collect()
}

#[test]
fn multi_file_torrent_goes_from_seed_to_peer_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("product-1.2");
    let files: &[(&str, usize)] = &[
        ("bin/app", 1_500_000),
        ("etc/app.conf", 77),
        ("empty", 0),
        ("share/data/blob", 2 * 1024 * 1024 + 1),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, pattern(*len, i as u8)).unwrap();
    }
    let torrent = work.path().join("p.torrent");
    create(&tree, &torrent, &["--piece-size", "64KiB"]);
    let (mut seed, addr) = serve(&torrent, &tree);

    let out = work.path().join("out");
    let (st, summary, stderr) = get(torrent.to_str().unwrap(), &out, addr);
    assert!(st.success(), "instream-peer get failed: {st}\n{stderr}");
    for (rel, _) in files {
        let a = std::fs::read(tree.join(rel)).unwrap();
        let b = std::fs::read(out.join("product-1.2").join(rel)).unwrap();
        assert!(a == b, "{rel} differs after the transfer");
    }
    let total: u64 = files.iter().map(|f| f.1 as u64).sum();
    assert_eq!(summary["complete"], true, "{summary}");
    assert!(
        summary["bytes_downloaded"].as_u64().unwrap() >= total,
        "{summary}"
    );
    assert_eq!(summary["pieces"], summary["pieces_total"], "{summary}");
    assert_eq!(summary["peers_seen"], 1, "{summary}");
    for key in ["info_hash", "bytes_uploaded", "wall_secs"] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }

    // SIGTERM ends the seed cleanly.
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(seed.pid() as i32, libc::SIGTERM) };
    let (st, _, stderr) = finish(&mut seed, Duration::from_secs(20));
    assert!(
        st.success(),
        "seed exited with {st} after SIGTERM\n{stderr}"
    );
}

/// Serves `body` once per connection at any path, until the test ends.
fn http_server(body: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    addr
}

#[test]
fn peer_fetches_the_torrent_over_http() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("payload.bin");
    let bytes = pattern(3 * 1024 * 1024 + 999, 9);
    std::fs::write(&data, &bytes).unwrap();
    let torrent = work.path().join("t.torrent");
    create(&data, &torrent, &[]);
    let (_seed, addr) = serve(&torrent, &data);
    let http = http_server(std::fs::read(&torrent).unwrap());

    let out = work.path().join("out");
    let url = format!("http://{http}/t.torrent");
    let (st, summary, stderr) = get(&url, &out, addr);
    assert!(
        st.success(),
        "instream-peer get {url} failed: {st}\n{stderr}"
    );
    assert!(
        std::fs::read(out.join("payload.bin")).unwrap() == bytes,
        "payload differs"
    );
    assert_eq!(summary["complete"], true, "{summary}");
}

#[test]
fn errors_are_one_line_with_a_non_zero_exit() {
    let work = tempfile::tempdir().unwrap();
    let mut p = spawn(
        "instream-peer get (missing torrent)",
        Command::new(bin("instream-peer"))
            .args(["get", "/nonexistent/x.torrent", "--out"])
            .arg(work.path())
            .env_remove("RUST_LOG"),
    );
    let (st, _, stderr) = finish(&mut p, WAIT);
    assert!(!st.success(), "a missing torrent must fail");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    assert!(lines[0].contains("/nonexistent/x.torrent"), "{stderr:?}");

    let data = work.path().join("f");
    std::fs::write(&data, b"x").unwrap();
    let mut p = spawn(
        "instream-seed create (bad piece size)",
        Command::new(bin("instream-seed"))
            .arg("create")
            .arg(&data)
            .args(["--piece-size", "3KiB", "-o"])
            .arg(work.path().join("t.torrent"))
            .env_remove("RUST_LOG"),
    );
    let (st, _, stderr) = finish(&mut p, WAIT);
    assert!(!st.success(), "a bad piece size must fail");
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() == 1,
        "{stderr:?}"
    );

    // Data that does not match the torrent is refused by serve.
    let torrent = work.path().join("t.torrent");
    create(&data, &torrent, &[]);
    std::fs::write(&data, b"y").unwrap();
    let mut p = spawn(
        "instream-seed serve (wrong data)",
        Command::new(bin("instream-seed"))
            .arg("serve")
            .arg(&torrent)
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--no-tracker"])
            .env_remove("RUST_LOG"),
    );
    let (st, _, stderr) = finish(&mut p, WAIT);
    assert!(!st.success(), "serving wrong data must fail");
    assert!(stderr.contains("0 of 1 pieces verified"), "{stderr:?}");
}

/// A full disk under the log (here /dev/full as stderr) leaves an error an exit status of 1,
/// not a panic's 101: dispatchers and scripts tell a failure from a crash by it.
#[test]
fn a_full_stderr_is_a_failure_not_a_crash() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full");
    if full().is_err() {
        panic!("/dev/full is needed to simulate a full disk under stderr");
    }
    let work = tempfile::tempdir().unwrap();
    for (what, mut cmd) in [
        ("instream-peer get", Command::new(bin("instream-peer"))),
        ("instream-seed create", Command::new(bin("instream-seed"))),
    ] {
        if what.ends_with("get") {
            cmd.args(["get", "/nonexistent/x.torrent", "--out"])
                .arg(work.path());
        } else {
            cmd.args(["create", "/nonexistent/dir", "-o"])
                .arg(work.path().join("t.torrent"));
        }
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(full().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let st = poll_for(WAIT, Duration::from_millis(10), || {
            child.try_wait().unwrap()
        })
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{what} did not exit within {WAIT:?}");
        });
        assert_eq!(st.code(), Some(1), "{what} with a full stderr: {st}");
    }
}
