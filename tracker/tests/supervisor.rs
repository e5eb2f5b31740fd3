//! The supervisor: `Tracker::run` returns an error naming the worker as soon as one ends on
//! its own, instead of serving on with part of the port unanswered; the binary then exits
//! non-zero. Panics are injected into the real binary with `INSTREAM_TEST_PANIC` (read in
//! debug builds only).

mod support;

use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use proto::InfoHash;
use support::*;

use instream_tracker::{Config, Error, Listeners, Tracker};

#[test]
fn run_fails_when_a_udp_worker_dies() {
    // A "socket" that epoll refuses (/dev/null): the worker fails at start-up and ends.
    let fd = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    // SAFETY: `fd` is an open descriptor we own; the socket takes ownership of it.
    let bogus = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    let mut config = Config::default();
    config.udp.workers = 1;
    config.access.open = true;
    let tracker = Tracker::new(config, None).unwrap();
    let listeners = Listeners {
        udp: vec![vec![bogus]],
        http: vec![],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            tracker.run(listeners, std::future::pending()),
        )
        .await
        .expect("run returns once the worker is gone")
    });
    match result {
        Err(Error::WorkerDied { name }) => assert_eq!(name, "udp-01"),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn a_panicking_udp_worker_ends_the_binary_with_an_error_naming_it() {
    let mut t = BinTracker::start(
        &["--open", "--http", "none", "--workers", "1"],
        &[("INSTREAM_TEST_PANIC", "udp-worker")],
    );
    let mut cl = UdpClient::new(t.udp.unwrap());
    let cid = cl.connect();
    let tid = cl.tid();
    cl.send(&announce(cid, tid, InfoHash([1; 20]), 1, 6881, 0, None));
    let status = t.wait_exit(Duration::from_secs(10));
    let log = t.drain_log().join("\n");
    assert!(!status.success(), "exit status {status:?}; stderr:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("thread 'udp-01'") && l.contains("panicked"))
            && log.contains("injected panic"),
        "the panic names its thread:\n{log}"
    );
    assert!(
        log.contains("worker panicked") && log.contains("component=udp-01"),
        "the supervisor logs the component:\n{log}"
    );
    let last = log.lines().last().unwrap_or_default();
    assert_eq!(
        last, "error: run the tracker: worker udp-01 stopped unexpectedly",
        "one error line last:\n{log}"
    );
}

#[test]
fn a_panicking_http_listener_ends_the_binary_too() {
    let mut t = BinTracker::start(
        &["--open", "--udp", "none"],
        &[("INSTREAM_TEST_PANIC", "http-listener")],
    );
    // The accept loop panics on the first connection, before it answers anything.
    let _ = std::net::TcpStream::connect(t.http.unwrap());
    let status = t.wait_exit(Duration::from_secs(10));
    let log = t.drain_log().join("\n");
    assert!(!status.success(), "exit status {status:?}; stderr:\n{log}");
    assert!(log.contains("component=http-01"), "{log}");
    assert_eq!(
        log.lines().last().unwrap_or_default(),
        "error: run the tracker: worker http-01 stopped unexpectedly"
    );
}

#[test]
fn a_panicking_http_connection_ends_alone() {
    let t = BinTracker::start(
        &["--open", "--udp", "none"],
        &[("INSTREAM_TEST_PANIC", "http-connection")],
    );
    let http = t.http.unwrap();
    // Every request panics its connection's task: the client sees the connection close
    // without an answer, and the listener goes on accepting.
    for _ in 0..3 {
        let reply = http_raw(http, b"GET /stats HTTP/1.0\r\n\r\n");
        assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    }
    let mut t = t;
    assert!(t.proc.try_wait().is_none(), "the tracker still runs");
    let line = t.wait_for_line(Duration::from_secs(10), "task panicked");
    assert!(line.contains("http-connection"), "{line}");
}
