//! Helpers for the engine's integration tests that run real processes: our binaries,
//! python3-libtorrent (tests/reference/lt_peer.py), a lying peer (tests/reference/liar_peer.py),
//! mktorrent and opentracker.
//!
//! The process handle, bounded waits, ports, payloads and mktorrent are `testkit`'s (its
//! header lists the rules every suite relies on) and re-exported here, so a test names
//! `support::Proc` as before. Scratch directories are [`tempfile::TempDir`]s, removed on
//! drop.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
pub use testkit::{
    Proc, assert_same_file, assert_same_tree, describe, distinct_addrs, free_addr, free_port,
    free_ports, is_listening, list_tree, listening_in, mktorrent, needs_root, payload_bytes,
    pieces_matching, poll_for, poll_until, run_ok, wait_for, write_payload, write_tree,
};

/// Deadline for a whole transfer in a test. Generous: CI has two cores and runs the dev
/// profile, and tests run in parallel; the tests never assert speed.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);
/// Deadline for a process to come up (listen, print its first line).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Debian's interpreter: python3-libtorrent is built for it, not for any other python3.
pub const PYTHON: &str = "/usr/bin/python3";

/// Records one row of docs/RELIABILITY.md's table once a fault test has passed: what was
/// done, how the run ended, what was lost (the same rows as tests/support/mod.rs writes;
/// `cargo run -p instream-bench --bin reliability_table` puts them into docs/RELIABILITY.md).
pub fn reliability_row(fault: &str, outcome: &str, lost: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    fs::create_dir_all(&dir).expect("create the reliability row directory");
    let slug: String = fault
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    fs::write(
        dir.join(format!("{slug}.md")),
        format!("| {fault} | {outcome} | {lost} |\n"),
    )
    .expect("write a reliability row");
}

/// The repository root (engine/..).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of one of our binaries. Cargo sets `CARGO_BIN_EXE_<name>` for integration tests of the
/// package that owns the binary; `option_env!` keeps this file compiling before the binary
/// exists, and the run-time fallback finds it next to the test executable's profile dir.
/// `instream-peer` belongs to instream-agent, so it is built on first use (see [`peer_bin`]).
pub fn bin(name: &str) -> PathBuf {
    let from_cargo = match name {
        "instream-seed" => option_env!("CARGO_BIN_EXE_instream-seed"),
        _ => None,
    };
    if let Some(p) = from_cargo {
        return PathBuf::from(p);
    }
    if name == "instream-peer" {
        build_peer();
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("find the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let candidate = profile_dir.join(name);
    assert!(
        candidate.is_file(),
        "binary {name} not found at {}: it is built by `cargo test -p instream-engine` \
         (instream-peer by `cargo build -p instream-agent`)",
        candidate.display()
    );
    candidate
}

/// `instream-tracker`, built on first use: it belongs to another package, so cargo does not
/// build it for this one's tests.
pub fn tracker_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run_ok(
            "cargo build -p instream-tracker",
            Command::new(cargo).current_dir(repo_root()).args([
                "build",
                "-p",
                "instream-tracker",
                "--bin",
                "instream-tracker",
            ]),
        );
    });
    bin("instream-tracker")
}

/// `instream-peer`, built on first use: the host agent's program lives in instream-agent
/// (which depends on this crate), so cargo does not build it for this package's tests.
pub fn peer_bin() -> PathBuf {
    bin("instream-peer")
}

fn build_peer() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The profile of this test run (target/<dir>/deps/<test>), so the binary lands
        // where `bin` looks: `debug` is the dev profile's directory.
        let exe = std::env::current_exe().expect("find the test executable");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|d| d.to_str())
            .unwrap_or("debug");
        let profile = if dir == "debug" { "dev" } else { dir };
        run_ok(
            "cargo build -p instream-agent",
            Command::new(cargo).current_dir(repo_root()).args([
                "build",
                "--profile",
                profile,
                "-p",
                "instream-agent",
                "--bin",
                "instream-peer",
            ]),
        );
    });
}

/// Path of a helper script in tests/reference/.
pub fn reference_script(name: &str) -> PathBuf {
    let p = repo_root().join("tests/reference").join(name);
    assert!(p.is_file(), "reference helper {} is missing", p.display());
    p
}

/// A fresh scratch directory, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("instream-test-")
        .tempdir()
        .expect("create a temp dir")
}

// ---------------------------------------------------------------------------------------------
// Reference tools: opentracker, libtorrent, the liar (mktorrent is testkit's)

/// What libtorrent reads from a torrent file (lt_peer.py info).
pub struct TorrentInfo {
    pub info_hash: String,
    pub name: String,
    pub piece_length: u64,
    pub num_pieces: u64,
    pub total_size: u64,
}

pub fn torrent_info(torrent: &Path) -> TorrentInfo {
    let out = run_ok(
        "lt_peer.py info",
        Command::new(PYTHON)
            .arg(reference_script("lt_peer.py"))
            .arg("info")
            .arg(torrent),
    );
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("parse lt_peer.py info output {out:?}: {e}"));
    TorrentInfo {
        info_hash: v["info_hash"].as_str().unwrap().to_string(),
        name: v["name"].as_str().unwrap().to_string(),
        piece_length: v["piece_length"].as_u64().unwrap(),
        num_pieces: v["num_pieces"].as_u64().unwrap(),
        total_size: v["total_size"].as_u64().unwrap(),
    }
}

/// opentracker on 127.0.0.1:port (HTTP and UDP), serving only the given info-hashes.
pub struct Opentracker {
    pub proc: Proc,
    pub port: u16,
    _chroot: tempfile::TempDir,
}

impl Opentracker {
    pub fn start(port: u16, info_hashes: &[&str]) -> Opentracker {
        let chroot = temp_dir();
        // opentracker chroots into the dir and drops to `nobody`: both the dir and the
        // whitelist must be world-readable, and the whitelist path is read after the chroot.
        set_mode(chroot.path(), 0o755);
        let wl = chroot.path().join("whitelist.txt");
        fs::write(
            &wl,
            info_hashes
                .iter()
                .map(|h| format!("{h}\n"))
                .collect::<String>(),
        )
        .unwrap();
        set_mode(&wl, 0o644);
        let mut cmd = Command::new("opentracker");
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .arg("-d")
        .arg(chroot.path())
        .args(["-w", "whitelist.txt"]);
        let mut proc = Proc::spawn("opentracker", cmd);
        wait_for(STARTUP_TIMEOUT, "opentracker to listen", || {
            if let Some(s) = proc.try_wait() {
                panic!(
                    "opentracker exited ({}) on port {port}\n{}",
                    describe(s),
                    proc.output_tail()
                );
            }
            is_listening(port)
        });
        Opentracker {
            proc,
            port,
            _chroot: chroot,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Options of one lt_peer.py `run`.
#[derive(Clone, Debug, Default)]
pub struct LtOpts {
    /// We have the data (seed_mode, the seed preset).
    pub seed: bool,
    pub peers: Vec<SocketAddr>,
    /// Announce to the torrent's trackers (otherwise they are dropped).
    pub tracker: bool,
    /// Bytes per second; 0 = unlimited.
    pub upload_limit: u64,
    /// Seconds to seed after finishing (leecher) / after start (seed); None = the helper's default.
    pub seed_for: Option<f64>,
}

/// Starts lt_peer.py and waits until its torrent is added and it listens; returns the process
/// and the address it listens on.
pub fn lt_peer(label: &str, torrent: &Path, data_dir: &Path, opts: &LtOpts) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(reference_script("lt_peer.py"))
        .arg("run")
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        // A seed's progress says nothing; a leecher's every 2 s shows in a failure's tail.
        .args(["--progress-interval", if opts.seed { "0" } else { "2" }])
        .args(["--timeout", &TRANSFER_TIMEOUT.as_secs().to_string()]);
    if opts.seed {
        cmd.arg("--seed");
    }
    if !opts.tracker {
        cmd.arg("--no-tracker");
    }
    for p in &opts.peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    if opts.upload_limit > 0 {
        cmd.arg("--upload-limit").arg(opts.upload_limit.to_string());
    }
    if let Some(s) = opts.seed_for {
        cmd.arg("--seed-for").arg(s.to_string());
    }
    let mut proc = Proc::spawn(label, cmd);
    let ready = proc.wait_event("ready", STARTUP_TIMEOUT);
    let port = ready["listen_port"].as_u64().expect("ready.listen_port") as u16;
    (proc, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Starts the lying peer for `torrent`; returns it and its listen address.
pub fn liar_peer(torrent: &Path) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(reference_script("liar_peer.py"))
        .arg("--torrent")
        .arg(torrent)
        .args(["--listen", "127.0.0.1:0"]);
    let mut proc = Proc::spawn("liar", cmd);
    let ev = proc.wait_event("listening", STARTUP_TIMEOUT);
    let port = ev["port"].as_u64().expect("listening.port") as u16;
    (proc, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

// ---------------------------------------------------------------------------------------------
// Our binaries, driven through the command-line contract of docs/ARCHITECTURE.md

/// `instream-seed create PATH --piece-size SIZE [--tracker URL]... -o OUT`.
pub fn instream_create(path: &Path, piece_size: &str, trackers: &[String], out: &Path) {
    let mut cmd = Command::new(bin("instream-seed"));
    cmd.arg("create")
        .arg(path)
        .args(["--piece-size", piece_size]);
    for t in trackers {
        cmd.arg("--tracker").arg(t);
    }
    cmd.arg("-o").arg(out);
    run_ok("instream-seed create", &mut cmd);
    assert!(
        out.is_file(),
        "instream-seed create succeeded but wrote no {}",
        out.display()
    );
}

/// `instream-seed serve TORRENT --data PATH --listen ADDR`, waited on until it listens.
pub fn instream_serve(torrent: &Path, data: &Path) -> (Proc, SocketAddr) {
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    instream_serve_with(torrent, data, &[], &log)
}

/// [`instream_serve`] with `extra` arguments and the seed's `RUST_LOG` filter.
pub fn instream_serve_with(
    torrent: &Path,
    data: &Path,
    extra: &[&str],
    rust_log: &str,
) -> (Proc, SocketAddr) {
    let addr = free_addr();
    (
        instream_serve_on(torrent, data, addr, extra, rust_log),
        addr,
    )
}

/// [`instream_serve_with`] on a given `addr` (e.g. 127.0.0.2, to sort after 127.0.0.1).
pub fn instream_serve_on(
    torrent: &Path,
    data: &Path,
    addr: SocketAddr,
    extra: &[&str],
    rust_log: &str,
) -> Proc {
    let mut cmd = Command::new(bin("instream-seed"));
    cmd.arg("serve")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(addr.to_string())
        .args(extra)
        .env("RUST_LOG", rust_log);
    let mut proc = Proc::spawn("instream-seed", cmd);
    wait_for(STARTUP_TIMEOUT, "instream-seed to listen", || {
        if let Some(s) = proc.try_wait() {
            panic!(
                "instream-seed serve exited ({}) before listening on {addr}\n{}",
                describe(s),
                proc.output_tail()
            );
        }
        is_listening(addr.port())
    });
    proc
}

/// `instream-peer get` from one seed and no tracker, with the disk back end forced, at the
/// default log filter (what it prints there is what an operator sees).
pub fn direct_get_cmd(
    torrent: &Path,
    out: &Path,
    seed: std::net::SocketAddr,
    backend: &str,
) -> Command {
    let mut cmd = instream_get_cmd(
        torrent,
        out,
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-tracker".into(),
            "--peer".into(),
            seed.to_string(),
            "--io-backend".into(),
            backend.into(),
        ],
    );
    cmd.env_remove("RUST_LOG");
    cmd
}

/// `instream-peer get TORRENT --out DIR --json` plus `extra` arguments; not yet spawned.
pub fn instream_get_cmd(torrent: &Path, out: &Path, extra: &[String]) -> Command {
    let mut cmd = Command::new(bin("instream-peer"));
    cmd.arg("get")
        .arg(torrent)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .args(extra);
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd
}

/// `--peer ADDR` arguments for each address.
pub fn peer_args(addrs: &[SocketAddr]) -> Vec<String> {
    addrs
        .iter()
        .flat_map(|a| ["--peer".to_string(), a.to_string()])
        .collect()
}

/// The one-line `--json` summary of `instream-peer get`.
#[derive(Debug, Clone)]
pub struct PeerSummary(pub Value);

impl PeerSummary {
    /// The last JSON line carrying `bytes_downloaded`.
    pub fn of(proc: &Proc) -> PeerSummary {
        let v = proc
            .json_lines()
            .into_iter()
            .rev()
            .find(|v| v.get("bytes_downloaded").is_some())
            .unwrap_or_else(|| {
                panic!(
                    "{} printed no --json summary line\n{}",
                    proc.label(),
                    proc.output_tail()
                )
            });
        PeerSummary(v)
    }

    /// A numeric field; panics naming the field if it is absent.
    pub fn u64(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .unwrap_or_else(|| panic!("--json summary has no numeric {key:?}: {}", self.0))
    }
}
