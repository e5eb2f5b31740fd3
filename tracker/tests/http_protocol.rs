//! The HTTP tracker on loopback: announce and scrape (BEP 3/23), the admin API, and garbage
//! requests (4xx or a failure reason, never a crash; the tracker keeps serving).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proto::InfoHash;
use proto::tracker::AnnounceEvent;
use proto::tracker::http::{AnnounceReply, AnnounceRequest, ScrapeResponse, scrape_query};
use rand::{Rng, SeedableRng};
use support::*;

const H: InfoHash = InfoHash([0x5a; 20]);

fn query(n: u32, port: u16, left: u64, fabric: Option<&str>) -> String {
    AnnounceRequest {
        info_hash: H,
        peer_id: peer_id(n),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: AnnounceEvent::Started,
        compact: true,
        numwant: None,
        ip: None,
        fabric: fabric.map(str::to_owned),
    }
    .to_query()
}

fn announce_reply(t: &TestTracker, q: &str) -> AnnounceReply {
    let (status, body) = get(t.http, &format!("/announce?{q}"));
    assert_eq!(status, 200);
    AnnounceReply::parse(&body).expect("bencoded reply")
}

#[test]
fn announce_and_scrape() {
    let mut c = loopback_config();
    c.access.open = true;
    let t = TestTracker::start(c, None);
    let AnnounceReply::Ok(r) = announce_reply(&t, &query(1, 6001, 10, Some("f1"))) else {
        panic!("ok reply")
    };
    assert!(r.peers.is_empty());
    let AnnounceReply::Ok(r) = announce_reply(&t, &query(2, 6002, 0, Some("f1"))) else {
        panic!("ok reply")
    };
    assert_eq!(r.peers, vec!["127.0.0.1:6001".parse().unwrap()]);
    assert_eq!((r.complete, r.incomplete, r.interval), (1, 1, 300));

    let (status, body) = get(t.http, &format!("/scrape?{}", scrape_query(&[H])));
    assert_eq!(status, 200);
    let s = ScrapeResponse::parse(&body).unwrap();
    assert_eq!(s.files.len(), 1);
    assert_eq!((s.files[0].1.complete, s.files[0].1.incomplete), (1, 1));

    // The same work as Prometheus metrics.
    let (status, body) = get(t.http, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "instream_tracker_announces_total{protocol=\"http\"} 2",
        "instream_tracker_announces_total{protocol=\"udp\"} 0",
        "instream_tracker_scrapes_total{protocol=\"http\"} 1",
        "instream_tracker_torrents 1",
        "instream_tracker_peers 2",
        "# TYPE instream_tracker_errors_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let mut c = loopback_config();
    c.access.open = true;
    let t = TestTracker::start(c, None);
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET /announce?{} HTTP/1.1\r\nHost: t\r\n\r\n",
        query(1, 1, 1, None)
    );
    s.write_all(format!("{req}{req}").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(8).filter(|w| w == b"HTTP/1.1").count() < 2 || !got.ends_with(b"e") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed a keep-alive connection early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(),
        2
    );
}

#[test]
fn garbage_requests_get_4xx_or_failure_and_serving_goes_on() {
    let mut c = loopback_config();
    c.access.open = true;
    c.http.max_request_bytes = 2048;
    let t = TestTracker::start(c, None);

    let status = |raw: &[u8]| split_reply(&http_raw(t.http, raw)).0;
    assert_eq!(status(b"HELLO\r\n\r\n"), 400);
    assert_eq!(status(b"GET /announce HTTP/9.9\r\n\r\n"), 400);
    assert_eq!(status(b"GET /nope HTTP/1.0\r\n\r\n"), 404);
    assert_eq!(status(b"DELETE /announce HTTP/1.0\r\n\r\n"), 405);
    assert_eq!(
        status(b"POST /register HTTP/1.0\r\nContent-Length: 999999\r\n\r\n"),
        413
    );
    let huge = format!("GET /announce?{} HTTP/1.0\r\n\r\n", "a".repeat(4000));
    assert_eq!(status(huge.as_bytes()), 413);

    // Bad queries: a BEP 3 failure reason, naming what is wrong.
    for (q, expect) in [
        ("", "missing parameter info_hash"),
        ("info_hash=abc&peer_id=x&port=1", "info_hash is 3 bytes"),
        (
            &*format!("{}&port=99999", query(1, 1, 1, None)),
            "port is not a valid number",
        ),
        (
            &*format!("{}&event=bogus", query(1, 1, 1, None)),
            "unknown event",
        ),
        (
            &*format!("{}&fabric=%00", query(1, 1, 1, None)),
            "invalid fabric",
        ),
    ] {
        match announce_reply(&t, q) {
            AnnounceReply::Failure(r) => assert!(r.contains(expect), "{q}: {r}"),
            other => panic!("{q}: expected failure, got {other:?}"),
        }
    }
    let (_, body) = get(t.http, "/scrape");
    assert!(String::from_utf8_lossy(&body).contains("full scrape"));

    // Random bytes, then a half-closed connection.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    for _ in 0..50 {
        let len = rng.gen_range(1..600);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        junk.extend_from_slice(b"\r\n\r\n");
        let reply = http_raw(t.http, &junk);
        assert!(reply.is_empty() || split_reply(&reply).0 >= 400);
    }
    // A request cut short by the client's close: no reply, no crash.
    let mut s = TcpStream::connect(t.http).unwrap();
    s.write_all(b"GET /announce?x HTT").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty() || split_reply(&rest).0 == 400);

    // Still serving.
    assert!(matches!(
        announce_reply(&t, &query(9, 9, 9, None)),
        AnnounceReply::Ok(_)
    ));
    assert!(t.handle.stats().http_bad_request >= 6);
}

#[test]
fn a_silent_client_is_disconnected_after_the_timeout() {
    let mut c = loopback_config();
    c.http.request_timeout_ms = 200;
    let t = TestTracker::start(c, None);
    let mut s = TcpStream::connect(t.http).unwrap();
    s.write_all(b"GET /announce?").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = s
        .read(&mut buf)
        .expect("closed by the server, not by our 5 s timeout");
    assert_eq!(n, 0, "closed without a reply");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn admin_api_registers_with_the_token_only() {
    let t = TestTracker::start(loopback_config(), Some("s3cret"));
    let hex = H.to_hex();
    match announce_reply(&t, &query(1, 1, 1, None)) {
        AnnounceReply::Failure(r) => assert!(r.contains("not registered"), "{r}"),
        other => panic!("expected failure, got {other:?}"),
    }
    let post = |auth: &str, path: &str, body: &str| {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        split_reply(&http_raw(t.http, req.as_bytes()))
    };
    assert_eq!(post("", "/register", &hex).0, 401);
    assert_eq!(
        post("Authorization: Bearer wrong\r\n", "/register", &hex).0,
        401
    );
    assert_eq!(
        post("Authorization: Bearer s3cret\r\n", "/register", "zz").0,
        400
    );
    let (status, body) = post(
        "Authorization: Bearer s3cret\r\n",
        "/register",
        &format!("{hex}\n"),
    );
    assert_eq!(
        (status, String::from_utf8_lossy(&body).trim()),
        (200, "ok 1")
    );
    assert!(t.handle.is_served(&H));
    assert!(matches!(
        announce_reply(&t, &query(1, 1, 1, None)),
        AnnounceReply::Ok(_)
    ));
    let (status, _) = post("Authorization: Bearer s3cret\r\n", "/unregister", &hex);
    assert_eq!(status, 200);
    assert!(!t.handle.is_served(&H));
}

#[test]
fn admin_api_is_off_without_a_token() {
    let t = TestTracker::start(loopback_config(), None);
    let req = format!(
        "POST /register HTTP/1.0\r\nAuthorization: Bearer x\r\nContent-Length: 40\r\n\r\n{}",
        H.to_hex()
    );
    assert_eq!(split_reply(&http_raw(t.http, req.as_bytes())).0, 403);
}

#[test]
fn fabric_map_places_peers_that_do_not_say() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("fabrics.txt");
    std::fs::write(
        &map,
        "# two data centers\n10.1.0.0/16 east\n10.2.0.0/16 west\n",
    )
    .unwrap();
    let mut c = loopback_config();
    c.access.open = true;
    c.fabric.map = Some(map);
    c.fabric.bridges = 1;
    // Peers announce their address with ip=, so the map (not loopback) decides.
    c.http.trust_ip_param = true;
    let t = TestTracker::start(c, None);
    let q = |n: u32, ip: &str| {
        let mut r =
            AnnounceRequest::parse_query(query(n, 6000 + n as u16, 1, None).as_bytes()).unwrap();
        r.ip = Some(ip.parse().unwrap());
        r.to_query()
    };
    for n in 0..4 {
        announce_reply(&t, &q(n, &format!("10.1.0.{}", n + 1)));
        announce_reply(&t, &q(10 + n, &format!("10.2.0.{}", n + 1)));
    }
    let AnnounceReply::Ok(r) = announce_reply(&t, &q(99, "10.1.9.9")) else {
        panic!("ok reply")
    };
    let east = r.peers.iter().filter(|p| p.ip().octets()[1] == 1).count();
    let west = r.peers.iter().filter(|p| p.ip().octets()[1] == 2).count();
    assert_eq!(
        (east, west),
        (4, 1),
        "all of east, one bridge from west: {:?}",
        r.peers
    );
}

#[test]
fn admin_api_takes_large_batches_but_only_with_the_token() {
    let mut c = loopback_config();
    c.http.max_request_bytes = 2048;
    let t = TestTracker::start(c, Some("tok"));
    // 1,000 hashes: 41 KB, twenty times max_request_bytes.
    let hashes: Vec<InfoHash> = (0..1000u32)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            InfoHash(h)
        })
        .collect();
    let body: String = hashes.iter().map(|h| format!("{}\n", h.to_hex())).collect();
    let post = |auth: &str| {
        let req = format!(
            "POST /register HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        split_reply(&http_raw(t.http, req.as_bytes()))
    };
    assert_eq!(
        post("Authorization: Bearer nope\r\n").0,
        413,
        "no big body without the token"
    );
    let (status, reply) = post("Authorization: Bearer tok\r\n");
    assert_eq!(
        (status, String::from_utf8_lossy(&reply).trim()),
        (200, "ok 1000")
    );
    assert!(hashes.iter().all(|h| t.handle.is_served(h)));
}
