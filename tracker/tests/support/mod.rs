//! Shared helpers of the tracker's integration tests: an in-process tracker on
//! `127.0.0.1:0` stopped on drop, the binary as a [`BinTracker`], a blocking BEP 15 client.
//! Bounded waits and the process handle are `testkit`'s.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use instream_tracker::{Config, Handle, Tracker, bind};
use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{
    AnnounceKey, AnnounceRequest, ConnectRequest, ConnectionId, NumWant, Request, Response,
    TransactionId,
};
use proto::{InfoHash, PeerId};
pub use testkit::{Proc, wait_for};

/// A tracker running on its own thread and runtime; stopped (and checked) on drop.
pub struct TestTracker {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), instream_tracker::Error>>>,
}

/// A config on loopback, port 0, two UDP workers.
pub fn loopback_config() -> Config {
    let mut c = Config::default();
    c.udp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.http.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.udp.workers = 2;
    c
}

impl TestTracker {
    pub fn start(config: Config, token: Option<&str>) -> Self {
        let tracker =
            Tracker::new(config.clone(), token.map(str::to_owned)).expect("tracker state");
        let listeners = bind(&config).expect("bind loopback");
        let udp = listeners
            .udp_addrs()
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into());
        let http = listeners
            .http_addrs()
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into());
        let handle = tracker.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-tracker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(tracker.run(listeners, async {
                    let _ = rx.await;
                }))
            })
            .unwrap();
        Self {
            udp,
            http,
            handle,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the tracker and returns how `run` ended.
    pub fn stop(mut self) -> Result<(), instream_tracker::Error> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), instream_tracker::Error> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("tracker thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestTracker {
    fn drop(&mut self) {
        let r = self.stop_inner();
        if !std::thread::panicking() {
            r.expect("tracker ended with an error");
        }
    }
}

/// A blocking BEP 15 client on its own loopback socket.
pub struct UdpClient {
    pub sock: UdpSocket,
    next_tid: u32,
    ipv6: bool,
}

impl UdpClient {
    pub fn new(tracker: SocketAddr) -> Self {
        let local: SocketAddr = if tracker.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()
        .unwrap();
        let sock = UdpSocket::bind(local).unwrap();
        sock.connect(tracker).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            sock,
            next_tid: 1,
            ipv6: tracker.is_ipv6(),
        }
    }

    pub fn tid(&mut self) -> TransactionId {
        self.next_tid += 1;
        TransactionId(self.next_tid)
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock.send(bytes).unwrap();
    }

    /// Next datagram as bytes; panics after 5 s of silence.
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn recv_raw(&self) -> Vec<u8> {
        let mut buf = [0u8; 8192];
        let n = self.sock.recv(&mut buf).expect("a reply within 5 s");
        buf[..n].to_vec()
    }

    /// Next datagram, parsed; panics after 5 s of silence.
    pub fn recv(&self) -> Response {
        let mut buf = [0u8; 8192];
        let n = self.sock.recv(&mut buf).expect("a reply within 5 s");
        Response::parse(&buf[..n], self.ipv6).expect("a well-formed reply")
    }

    pub fn send(&mut self, req: &Request) {
        let mut b = Vec::new();
        req.encode(&mut b);
        self.send_raw(&b);
    }

    pub fn connect(&mut self) -> ConnectionId {
        let tid = self.tid();
        self.send(&Request::Connect(ConnectRequest {
            transaction_id: tid,
        }));
        match self.recv() {
            Response::Connect(c) => {
                assert_eq!(c.transaction_id, tid, "reply to this connect");
                c.connection_id
            }
            other => panic!("expected a connect reply, got {other:?}"),
        }
    }

    /// Proves that nothing was answered to what was sent before: the next reply must be
    /// the one to a fresh connect (replies on one socket pair arrive in order).
    pub fn assert_silent_so_far(&mut self) {
        let tid = self.tid();
        self.send(&Request::Connect(ConnectRequest {
            transaction_id: tid,
        }));
        match self.recv() {
            Response::Connect(c) if c.transaction_id == tid => {}
            other => panic!("expected silence, then the connect reply; got {other:?}"),
        }
    }
}

pub fn peer_id(n: u32) -> PeerId {
    let mut id = *b"-TT0001-000000000000";
    id[8..12].copy_from_slice(&n.to_be_bytes());
    PeerId(id)
}

pub fn announce(
    cid: ConnectionId,
    tid: TransactionId,
    info_hash: InfoHash,
    n: u32,
    port: u16,
    left: u64,
    fabric: Option<&str>,
) -> Request {
    Request::Announce(AnnounceRequest {
        connection_id: cid,
        transaction_id: tid,
        info_hash,
        peer_id: peer_id(n),
        downloaded: 0,
        left,
        uploaded: 0,
        event: AnnounceEvent::Started,
        ip_address: std::net::Ipv4Addr::UNSPECIFIED,
        key: AnnounceKey(n),
        num_want: NumWant::DEFAULT,
        port,
        url_data: fabric
            .map(|f| format!("/announce?fabric={f}").into_bytes())
            .unwrap_or_default(),
    })
}

/// Sends raw bytes over a fresh TCP connection and returns everything read until close
/// (or until 5 s pass, which fails the test).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("server closes within 5 s");
    out
}

/// Status code and body of an HTTP reply.
pub fn split_reply(reply: &[u8]) -> (u16, Vec<u8>) {
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a full head");
    let head = std::str::from_utf8(&reply[..end]).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, reply[end + 4..].to_vec())
}

pub fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    split_reply(&http_raw(
        addr,
        format!("GET {target} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes(),
    ))
}

/// The real `instream-tracker` binary on loopback ports 0, its process group killed on drop
/// (a [`Proc`], which also prints its output if the test fails). Tests wait for its log
/// lines one by one.
pub struct BinTracker {
    pub proc: Proc,
    pub udp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// stderr lines returned by [`BinTracker::next_line`] so far.
    pub log: Vec<String>,
}

impl BinTracker {
    /// Starts the binary with `args` (add `--udp none` or `--http none` to skip one) and
    /// waits up to 10 s for its listening lines.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_instream-tracker"));
        let mut all: Vec<&str> = Vec::new();
        if !args.contains(&"--udp") {
            all.extend(["--udp", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http") {
            all.extend(["--http", "127.0.0.1:0"]);
        }
        all.extend(args);
        cmd.args(&all)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0");
        let want_udp = !all.windows(2).any(|w| w == ["--udp", "none"]);
        let want_http = !all.windows(2).any(|w| w == ["--http", "none"]);
        let mut t = Self {
            proc: Proc::spawn("instream-tracker", cmd),
            udp: None,
            http: None,
            log: Vec::new(),
        };
        while (want_udp && t.udp.is_none()) || (want_http && t.http.is_none()) {
            let line = t.next_line(Duration::from_secs(10), "the listening log lines");
            let addr = || -> SocketAddr {
                let a = line.split("addr=").nth(1).expect("addr= field");
                a.split_whitespace().next().unwrap().parse().unwrap()
            };
            if line.contains("UDP tracker listening") {
                t.udp = Some(addr());
            } else if line.contains("HTTP tracker listening") {
                t.http = Some(addr());
            }
        }
        t
    }

    /// The next stderr line, kept in `log`; panics after `within` (the [`Proc`] then prints
    /// the output).
    pub fn next_line(&mut self, within: Duration, what: &str) -> String {
        let seen = self.log.len();
        let line = wait_for(within, what, || self.proc.stderr_lines().get(seen).cloned());
        self.log.push(line.clone());
        line
    }

    /// Reads stderr until a line contains `needle`, for at most `within`.
    pub fn wait_for_line(&mut self, within: Duration, needle: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left, &format!("a log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits up to `within` for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.proc.wait_exit(within)
    }

    /// Every stderr line up to now (waits up to 5 s for the pipe to close once exited).
    pub fn drain_log(&mut self) -> &[String] {
        if self.proc.try_wait().is_some() {
            self.proc.wait_output_closed(Duration::from_secs(5));
        }
        let all = self.proc.stderr_lines();
        self.log.extend(all.into_iter().skip(self.log.len()));
        &self.log
    }

    /// The stats counters, from `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = get(self.http.expect("an HTTP listener"), "/stats");
        assert_eq!(status, 200);
        serde_json::from_slice(&body).expect("stats JSON")
    }
}
