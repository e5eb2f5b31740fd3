//! Slowloris against the real `instream-tracker` binary's HTTP side.
//!
//! - More slow sockets than the connection cap: each newcomer at the cap evicts the
//!   connection that has waited longest for a request, so an honest announce and scrape
//!   are answered at once (a 5 s client bound against a 30 s request timeout), not after
//!   the slow sockets time out.
//! - Below the cap: sockets that trickle a byte at a time, and one that pipelines requests
//!   and never reads its answers, are cut off once `request_timeout_ms` passes (the
//!   answer's write counts against it too), while honest requests keep being answered.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proto::InfoHash;
use proto::tracker::AnnounceEvent;
use proto::tracker::http::{AnnounceReply, AnnounceRequest, ScrapeResponse, scrape_query};
use support::*;

const H: InfoHash = InfoHash([0x77; 20]);

fn start(request_timeout_ms: u64, max_connections: usize) -> (BinTracker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tracker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nrequest_timeout_ms = {request_timeout_ms}\nmax_connections = {max_connections}\n"
        ),
    )
    .unwrap();
    let t = BinTracker::start(
        &["--udp", "none", "--open", "--config", cfg.to_str().unwrap()],
        &[],
    );
    (t, dir)
}

/// An honest announce then a scrape, each on a fresh connection with a 5 s read bound.
fn honest_requests_are_answered(http: SocketAddr, n: u32) {
    let q = AnnounceRequest {
        info_hash: H,
        peer_id: peer_id(n),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: AnnounceEvent::Started,
        compact: true,
        numwant: None,
        ip: None,
        fabric: None,
    }
    .to_query();
    let (status, body) = get(http, &format!("/announce?{q}"));
    assert_eq!(status, 200);
    match AnnounceReply::parse(&body).expect("bencoded announce reply") {
        AnnounceReply::Ok(r) => assert!(r.complete >= 1, "it counts itself: {r:?}"),
        other => panic!("announce refused: {other:?}"),
    }
    let (status, body) = get(http, &format!("/scrape?{}", scrape_query(&[H])));
    assert_eq!(status, 200);
    let s = ScrapeResponse::parse(&body).expect("bencoded scrape reply");
    assert!(s.files[0].1.complete >= 1, "{s:?}");
}

/// A socket that sent part of a request head.
fn slow_socket(http: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(http).expect("connect a slow socket");
    s.write_all(b"GET /announce?info_hash=").unwrap();
    s
}

/// True once the server has closed `s` (EOF or reset), reading at most 5 s.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // answers written before the cut
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true, // reset: it closed with our input unread
        }
    }
}

fn counter(t: &BinTracker, name: &str) -> u64 {
    t.stats()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats lack {name}"))
}

#[test]
fn more_slow_sockets_than_the_cap_do_not_keep_announces_out() {
    const CAP: usize = 64;
    const SLOW: usize = 300;
    let (t, _dir) = start(30_000, CAP);
    let http = t.http.unwrap();
    let slow: Vec<TcpStream> = (0..SLOW).map(|_| slow_socket(http)).collect();
    honest_requests_are_answered(http, 1);
    // The tracker accepted them all and evicted the longest waiters to stay at the cap.
    // (Each /stats read is an honest request too: it is answered through the same cap.)
    wait_for(
        Duration::from_secs(10),
        "the slow sockets to be evicted down to the cap",
        || {
            let s = t.stats();
            s["http_evicted"].as_u64() >= Some((SLOW - CAP) as u64)
                && s["http_open"].as_u64() <= Some(CAP as u64 + 1)
        },
    );
    assert_eq!(
        counter(&t, "http_timed_out"),
        0,
        "nothing waited for a timeout"
    );
    honest_requests_are_answered(http, 2);
    drop(slow);
}

#[test]
fn slow_senders_and_non_readers_are_cut_off_after_the_request_timeout() {
    const SLOW: usize = 40;
    let (t, _dir) = start(1_500, 1024);
    let http = t.http.unwrap();
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| slow_socket(http)).collect();
    // One byte every 100 ms on every slow socket: never a whole head, never idle.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut socks: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for s in &mut socks {
                    let _ = s.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // A client that pipelines requests into a tiny receive window and never reads: the
    // tracker's writes block, and the request timeout must cover them.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&http.into()).unwrap();
    let mut reader: TcpStream = sock.into();
    let pipeline = {
        let mut w = reader.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        std::thread::spawn(move || {
            let req = b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n";
            for _ in 0..20_000 {
                if w.write_all(req).is_err() {
                    break;
                }
            }
        })
    };
    honest_requests_are_answered(http, 3);
    wait_for(
        Duration::from_secs(15),
        "every slow socket and the non-reader to time out",
        || counter(&t, "http_timed_out") > SLOW as u64,
    );
    honest_requests_are_answered(http, 4);
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(closed_by_server(s), "slow socket {i} is still open");
    }
    assert!(
        closed_by_server(&mut reader),
        "the non-reader is still open"
    );
    pipeline.join().unwrap();
    assert_eq!(
        counter(&t, "http_evicted"),
        0,
        "below the cap nobody is evicted"
    );
}
