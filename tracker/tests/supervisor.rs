//! The supervisor: `Tracker::run` returns an error naming the worker as soon as one ends on
//! its own, instead of serving on with part of the port unanswered.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

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
