//! Helpers for the engine's integration tests that run real processes: our binaries,
//! python3-libtorrent (tests/reference/lt_peer.py), a lying peer (tests/reference/liar_peer.py),
//! mktorrent and opentracker.
//!
//! Invariants the tests rely on:
//! - every process is spawned in its own process group and the whole group is SIGKILLed and
//!   reaped when its [`Proc`] drops, so a failing test leaves nothing running;
//! - nothing sleeps to synchronise: waits poll a condition with a deadline and fail with a
//!   message naming what was awaited ([`wait_for`]);
//! - every port is picked by the kernel (port 0) or probed free just before use;
//! - scratch directories are [`tempfile::TempDir`]s, removed on drop.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Deadline for a whole transfer in a test. Generous: CI has two cores and runs the dev
/// profile, and tests run in parallel; the tests never assert speed.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);
/// Deadline for a process to come up (listen, print its first line).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Debian's interpreter: python3-libtorrent is built for it, not for any other python3.
pub const PYTHON: &str = "/usr/bin/python3";

/// Polls `cond` until it holds; panics after `timeout` naming `what` was awaited.
pub fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration, what: &str) {
    wait_for_some(|| cond().then_some(()), timeout, what)
}

/// Polls `f` until it returns `Some`; panics after `timeout` naming `what` was awaited.
pub fn wait_for_some<T>(mut f: impl FnMut() -> Option<T>, timeout: Duration, what: &str) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        // Back off to 100 ms: a poll interval, not a synchronisation point.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Records one row of the README's reliability table once a fault test has passed: what was
/// done, how the run ended, what was lost (the same rows as tests/support/mod.rs writes;
/// `cargo run -p instream-bench --bin reliability_table` puts them into README.md).
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

/// One child process in its own process group, with its output collected line by line.
pub struct Proc {
    label: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

fn collect_lines(
    src: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    echo: Option<String>,
) {
    thread::spawn(move || {
        // A line ends at '\n' or at '\r': a progress line that a program rewrites in place
        // (transmission-cli) arrives as one line per update instead of one line at exit.
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        let flush = |line: &mut Vec<u8>| {
            if line.is_empty() {
                return;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            line.clear();
            if let Some(label) = &echo {
                eprintln!("[{label}] {text}");
            }
            sink.lock().unwrap().push(text);
        };
        loop {
            let buf = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buf) => buf,
            };
            let n = buf.len();
            for &b in buf {
                if b == b'\n' || b == b'\r' {
                    flush(&mut line);
                } else {
                    line.push(b);
                }
            }
            reader.consume(n);
        }
        flush(&mut line);
    });
}

impl Proc {
    /// Spawns `cmd` with piped stdin/stdout/stderr in a new process group. Set
    /// `INSTREAM_TEST_ECHO=1` to see every line as it arrives.
    pub fn spawn(label: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label} ({cmd:?}): {e}"));
        let echo = std::env::var_os("INSTREAM_TEST_ECHO").map(|_| label.to_string());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().unwrap(), stdout.clone(), echo.clone());
        collect_lines(child.stderr.take().unwrap(), stderr.clone(), echo);
        Proc {
            label: label.to_string(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Every stdout line that parses as a JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The first JSON line whose `event` is `event`, if printed yet.
    pub fn event(&self, event: &str) -> Option<Value> {
        self.json_lines().into_iter().find(|v| v["event"] == event)
    }

    /// Waits for a JSON line with this `event`; fails early if the process exits without it.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        let what = format!("{} to print event {event:?}", self.label);
        wait_for_some(
            || {
                if let Some(v) = self.event(event) {
                    return Some(v);
                }
                if let Some(status) = self.try_wait() {
                    // Output readers may lag the exit by a moment: look once more.
                    thread::sleep(Duration::from_millis(50));
                    if let Some(v) = self.event(event) {
                        return Some(v);
                    }
                    panic!(
                        "{} exited ({status}) before event {event:?}\n{}",
                        self.label,
                        self.output_tail()
                    );
                }
                None
            },
            timeout,
            &what,
        )
    }

    /// Writes one line to the child's stdin (e.g. "go" to lt_peer.py --wait-go).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("write to {} stdin: {e}", self.label));
    }

    /// Non-blocking: the exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {}: {e}", self.label));
        }
        self.status
    }

    /// Waits for the process to exit by itself; panics (with its output) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(s) = self.try_wait() {
                // Let the reader threads drain the pipes (they end at EOF).
                thread::sleep(Duration::from_millis(20));
                return s;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {} to exit\n{}",
                    self.label,
                    self.output_tail()
                );
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Waits for exit and asserts status 0.
    pub fn wait_success(&mut self, timeout: Duration) {
        let s = self.wait_exit(timeout);
        assert!(
            s.success(),
            "{} failed: {s}\n{}",
            self.label,
            self.output_tail()
        );
    }

    /// Sends `sig` to the whole process group.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a negative pid signals a process group we created.
        unsafe {
            libc::kill(-(self.child.id() as i32), sig);
        }
    }

    /// SIGKILLs the process group and reaps the leader.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        self.signal(libc::SIGKILL);
        let s = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("reap {}: {e}", self.label));
        self.status = Some(s);
        s
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn output_tail(&self) -> String {
        let tail = |v: &Arc<Mutex<Vec<String>>>| {
            let v = v.lock().unwrap();
            v[v.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- {} stdout (tail) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.label,
            tail(&self.stdout),
            self.label,
            tail(&self.stderr)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.try_wait().is_none();
        if was_running {
            self.kill();
        }
        if thread::panicking() {
            eprintln!(
                "{} ({}):\n{}",
                self.label,
                if was_running {
                    "killed at test end".to_string()
                } else {
                    format!("{:?}", self.status)
                },
                self.output_tail()
            );
        }
    }
}

/// Describes how a process ended, e.g. "exit 0" or "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A port free for both TCP and UDP on 127.0.0.1 right now (for programs that cannot be
/// told to bind port 0 and report it, such as opentracker).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a TCP probe socket");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP after 50 tries");
}

/// A free 127.0.0.1 address for a program's `--listen`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// True when some socket listens on TCP `port` (read from /proc/net/tcp{,6}). Unlike a probe
/// connection, this does not show up as a peer in the program under test.
pub fn is_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // cols[1] = local addr:port (hex), cols[3] = state, 0A = LISTEN
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            })
    })
}

/// True when a TCP socket listens on `port` in the network namespace of process `pid`
/// (its /proc/PID/net/tcp). Unlike a probe connection, this is invisible to the program.
pub fn listening_in(pid: u32, port: u16) -> bool {
    let needle = format!(":{port:04X}");
    fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // cols[1] = local addr:port (hex), cols[3] = state, 0A = LISTEN
            cols.len() > 3 && cols[1].ends_with(&needle) && cols[3] == "0A"
        })
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// Deterministic pseudo-random bytes (xorshift64*): the same `seed` gives the same payload.
pub fn payload_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a deterministic file of `len` bytes (creating parent dirs) and returns its bytes.
pub fn write_payload(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let bytes = payload_bytes(len, seed);
    fs::write(path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    bytes
}

/// Writes a tree of deterministic files under `root`: (relative path, length).
pub fn write_tree(root: &Path, files: &[(&str, usize)], seed: u64) {
    for (i, (rel, len)) in files.iter().enumerate() {
        write_payload(&root.join(rel), *len, seed + i as u64);
    }
}

/// Asserts two files are byte-for-byte identical, naming the first differing offset.
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let a = fs::read(expected).unwrap_or_else(|e| panic!("read {}: {e}", expected.display()));
    let b = fs::read(actual)
        .unwrap_or_else(|e| panic!("read {} (the download): {e}", actual.display()));
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{} differs from {}: lengths {} vs {}, first difference at byte {first}",
            actual.display(),
            expected.display(),
            a.len(),
            b.len()
        );
    }
}

/// Relative path -> length of every regular file under `root`.
pub fn list_tree(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &e.path(), out);
            } else if ty.is_file() {
                out.insert(
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    e.metadata().unwrap().len(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts `actual` holds exactly the files of `expected` (same names, same bytes).
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert!(
        actual.is_dir(),
        "download dir {} does not exist",
        actual.display()
    );
    let want = list_tree(expected);
    let got = list_tree(actual);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "file lists differ between {} and {}",
        expected.display(),
        actual.display()
    );
    for rel in want.keys() {
        assert_same_file(&expected.join(rel), &actual.join(rel));
    }
}

/// Number of `piece_len` pieces of `actual` equal to those of `expected` (single-file torrent:
/// torrent offsets are file offsets). A missing or short file counts what is there.
pub fn pieces_matching(expected: &[u8], actual: &Path, piece_len: usize) -> usize {
    let got = fs::read(actual).unwrap_or_default();
    expected
        .chunks(piece_len)
        .enumerate()
        .filter(|(i, want)| got.get(i * piece_len..i * piece_len + want.len()) == Some(*want))
        .count()
}

// ---------------------------------------------------------------------------------------------
// Reference tools: mktorrent, opentracker, libtorrent, the liar

/// Runs a command to completion and panics with its output unless it succeeds.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout: {}\nstderr: {}",
        describe(out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mktorrent -l piece_log2 [-a announce] -o out path`: a torrent we did not write.
pub fn mktorrent(path: &Path, piece_log2: u32, announce: Option<&str>, out: &Path) {
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-l").arg(piece_log2.to_string());
    if let Some(url) = announce {
        cmd.arg("-a").arg(url);
    }
    cmd.arg("-o").arg(out).arg(path);
    run_ok("mktorrent", &mut cmd);
}

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
        wait_for(
            || {
                if let Some(s) = proc.try_wait() {
                    panic!(
                        "opentracker exited ({}) on port {port}\n{}",
                        describe(s),
                        proc.output_tail()
                    );
                }
                is_listening(port)
            },
            STARTUP_TIMEOUT,
            "opentracker to listen",
        );
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
    wait_for(
        || {
            if let Some(s) = proc.try_wait() {
                panic!(
                    "instream-seed serve exited ({}) before listening on {addr}\n{}",
                    describe(s),
                    proc.output_tail()
                );
            }
            is_listening(addr.port())
        },
        STARTUP_TIMEOUT,
        "instream-seed to listen",
    );
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
