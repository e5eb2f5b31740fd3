//! The UDP tracker on loopback: BEP 15 exchanges, BEP 41 fabric, access control, and
//! malformed input (silent drop or error reply, never a crash; the tracker keeps serving).

mod support;

use proto::InfoHash;
use proto::tracker::udp::{ConnectionId, PeerList, Request, Response, ScrapeRequest};
use rand::{Rng, SeedableRng};
use support::*;

const H: InfoHash = InfoHash([0x11; 20]);

fn open_tracker() -> TestTracker {
    let mut c = loopback_config();
    c.access.open = true;
    TestTracker::start(c, None)
}

#[test]
fn connect_announce_scrape() {
    let t = open_tracker();
    let mut a = UdpClient::new(t.udp);
    let cid = a.connect();
    let tid = a.tid();
    a.send(&announce(cid, tid, H, 1, 7001, 100, None));
    let Response::Announce(r) = a.recv() else {
        panic!("announce reply")
    };
    assert_eq!((r.transaction_id, r.leechers, r.seeders), (tid, 1, 0));
    assert!(r.peers.is_empty(), "never the announcer itself");

    let mut b = UdpClient::new(t.udp);
    let cid_b = b.connect();
    let tid = b.tid();
    b.send(&announce(cid_b, tid, H, 2, 7002, 0, None));
    let Response::Announce(r) = b.recv() else {
        panic!("announce reply")
    };
    assert_eq!((r.leechers, r.seeders), (1, 1));
    assert_eq!(
        r.peers,
        PeerList::V4(vec!["127.0.0.1:7001".parse().unwrap()])
    );

    let tid = b.tid();
    b.send(&Request::Scrape(ScrapeRequest {
        connection_id: cid_b,
        transaction_id: tid,
        info_hashes: vec![H, InfoHash([0x22; 20])],
    }));
    let Response::Scrape(s) = b.recv() else {
        panic!("scrape reply")
    };
    assert_eq!(s.stats.len(), 2);
    assert_eq!((s.stats[0].seeders, s.stats[0].leechers), (1, 1));
    assert_eq!((s.stats[1].seeders, s.stats[1].leechers), (0, 0));
    assert_eq!(t.handle.stats().peers, 2);
}

/// Issue 13: a peer that asks with `fabric_share=1` in its URL data gets its rank among its
/// fabric's downloading hosts as a trailer after the peers; one that does not ask (any other
/// client) gets a plain BEP 15 answer.
#[test]
fn fabric_share_trailer_only_for_those_who_ask() {
    use proto::picker::FabricShare;
    use proto::tracker::udp::split_fabric_share;
    let t = open_tracker();
    let mut cl = UdpClient::new(t.udp);
    let cid = cl.connect();
    for n in [30u32, 10, 20] {
        let tid = cl.tid();
        cl.send(&announce(cid, tid, H, n, 7000 + n as u16, 1, Some("a")));
        assert!(matches!(cl.recv(), Response::Announce(_)));
    }
    let tid = cl.tid();
    let mut req = announce(cid, tid, H, 20, 7020, 1, Some("a"));
    if let Request::Announce(a) = &mut req {
        a.url_data = b"/announce?fabric=a&fabric_share=1".to_vec();
    }
    cl.send(&req);
    let raw = cl.recv_raw();
    let (rest, share) = split_fabric_share(&raw, false);
    // Peer 20 joined third: ranks are join-order slots.
    assert_eq!(share, Some(FabricShare { rank: 2, of: 3 }));
    let Ok(Response::Announce(r)) = Response::parse(rest, false) else {
        panic!("announce reply under the trailer")
    };
    assert_eq!(r.peers.len(), 2);
    let tid = cl.tid();
    cl.send(&announce(cid, tid, H, 20, 7020, 1, Some("a")));
    let plain = cl.recv_raw();
    assert_eq!(split_fabric_share(&plain, false).1, None);
    assert!(Response::parse(&plain, false).is_ok());
}

#[test]
fn fabric_in_url_data_puts_same_fabric_peers_first() {
    let mut c = loopback_config();
    c.access.open = true;
    c.fabric.bridges = 1;
    let t = TestTracker::start(c, None);
    let mut cl = UdpClient::new(t.udp);
    let cid = cl.connect();
    // Ports 8000..8005 in fabric a, 9000..9005 in fabric b.
    for i in 0..5u32 {
        for (fabric, base) in [("a", 8000u16), ("b", 9000)] {
            let tid = cl.tid();
            let n = u32::from(base) + i;
            cl.send(&announce(cid, tid, H, n, base + i as u16, 1, Some(fabric)));
            assert!(matches!(cl.recv(), Response::Announce(_)));
        }
    }
    let tid = cl.tid();
    cl.send(&announce(cid, tid, H, 1, 8100, 1, Some("a")));
    let Response::Announce(r) = cl.recv() else {
        panic!("announce reply")
    };
    let ports: Vec<u16> = r.peers.to_socket_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(
        ports.iter().filter(|p| (8000..8005).contains(*p)).count(),
        5,
        "{ports:?}"
    );
    assert_eq!(
        ports.iter().filter(|p| (9000..9005).contains(*p)).count(),
        1,
        "one bridge: {ports:?}"
    );
}

#[test]
fn malformed_packets_are_dropped_or_answered_and_serving_goes_on() {
    let t = open_tracker();
    let mut cl = UdpClient::new(t.udp);
    let cid = cl.connect();

    // Every length below a header, all zeros and all 0xff: silence.
    for len in 0..16 {
        cl.send_raw(&vec![0u8; len]);
        cl.send_raw(&vec![0xffu8; len]);
    }
    cl.assert_silent_so_far();

    // A connect request without the BEP 15 magic: silence.
    let mut bad_magic = vec![0u8; 16];
    bad_magic[15] = 9;
    cl.send_raw(&bad_magic);
    cl.assert_silent_so_far();

    // An announce with a wrong connection id: silence.
    let tid = cl.tid();
    cl.send(&announce(ConnectionId(cid.0 ^ 1), tid, H, 1, 1, 1, None));
    cl.assert_silent_so_far();

    // Wrong action with a valid id: an error naming it. With a wrong id: silence.
    let tid = cl.tid();
    let mut wrong_action = Vec::new();
    wrong_action.extend(cid.0.to_be_bytes());
    wrong_action.extend(9u32.to_be_bytes());
    wrong_action.extend(tid.0.to_be_bytes());
    cl.send_raw(&wrong_action);
    match cl.recv() {
        Response::Error(e) => {
            assert_eq!(e.transaction_id, tid);
            assert!(e.message.contains("unknown action 9"), "{}", e.message);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    wrong_action[..8].copy_from_slice(&(cid.0 ^ 1).to_be_bytes());
    cl.send_raw(&wrong_action);
    cl.assert_silent_so_far();

    // A truncated announce with a valid id: an error.
    let tid = cl.tid();
    let mut b = Vec::new();
    announce(cid, tid, H, 1, 1, 1, None).encode(&mut b);
    cl.send_raw(&b[..60]);
    assert!(matches!(cl.recv(), Response::Error(e) if e.transaction_id == tid));

    // An oversized scrape (75 hashes, BEP 15 allows about 74): an error.
    let tid = cl.tid();
    cl.send(&Request::Scrape(ScrapeRequest {
        connection_id: cid,
        transaction_id: tid,
        info_hashes: vec![H; 75],
    }));
    match cl.recv() {
        Response::Error(e) => assert!(e.message.contains("75"), "{}", e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }

    // A barrage of random datagrams, some with a valid id in front.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    for i in 0..3000 {
        let len = rng.gen_range(0..300);
        let mut p: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        if i % 2 == 0 && p.len() >= 8 {
            p[..8].copy_from_slice(&cid.0.to_be_bytes());
        }
        cl.send_raw(&p);
    }
    // Drain what was answered (errors), then show the tracker still works.
    cl.sock
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while cl.sock.recv(&mut buf).is_ok() {}
    cl.sock
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let cid = cl.connect();
    let tid = cl.tid();
    cl.send(&announce(cid, tid, H, 5, 5, 0, None));
    assert!(matches!(cl.recv(), Response::Announce(r) if r.transaction_id == tid));
    let s = t.handle.stats();
    assert!(s.udp_dropped >= 32, "{s:?}");
    assert!(s.udp_bad_connection_id >= 2, "{s:?}");
}

#[test]
fn unregistered_info_hash_gets_an_error_until_registered() {
    let dir = tempfile::tempdir().unwrap();
    let wl = dir.path().join("wl.txt");
    std::fs::write(&wl, format!("{}\n", InfoHash([0x33; 20]).to_hex())).unwrap();
    let mut c = loopback_config();
    c.access.whitelist = Some(wl.clone());
    let t = TestTracker::start(c, None);
    let mut cl = UdpClient::new(t.udp);
    let cid = cl.connect();

    let tid = cl.tid();
    cl.send(&announce(cid, tid, H, 1, 1, 1, None));
    match cl.recv() {
        Response::Error(e) => assert!(e.message.contains("not registered"), "{}", e.message),
        other => panic!("expected an error, got {other:?}"),
    }
    let tid = cl.tid();
    cl.send(&announce(cid, tid, InfoHash([0x33; 20]), 1, 1, 1, None));
    assert!(
        matches!(cl.recv(), Response::Announce(_)),
        "listed hash is served"
    );

    // Reload with H added (what SIGHUP does), and the other hash removed.
    std::fs::write(&wl, format!("# now\n{}\n", H.to_hex())).unwrap();
    assert_eq!(t.handle.reload_whitelist().unwrap(), 1);
    let tid = cl.tid();
    cl.send(&announce(cid, tid, H, 1, 1, 1, None));
    assert!(
        matches!(cl.recv(), Response::Announce(_)),
        "reloaded hash is served"
    );
    let tid = cl.tid();
    cl.send(&announce(cid, tid, InfoHash([0x33; 20]), 1, 1, 1, None));
    assert!(
        matches!(cl.recv(), Response::Error(_)),
        "dropped hash is refused"
    );

    // Run-time registration.
    let h4 = InfoHash([0x44; 20]);
    assert!(t.handle.register(h4));
    let tid = cl.tid();
    cl.send(&announce(cid, tid, h4, 1, 1, 1, None));
    assert!(matches!(cl.recv(), Response::Announce(_)));
}

#[test]
fn ipv6_answers_carry_18_byte_peers() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        panic!("this test needs IPv6 loopback ([::1]) to be configured");
    };
    drop(probe);
    let mut c = loopback_config();
    c.udp.listen = vec!["[::1]:0".parse().unwrap()];
    c.http.listen = vec![];
    c.access.open = true;
    let t = TestTracker::start(c, None);
    let mut a = UdpClient::new(t.udp);
    let cid = a.connect();
    let tid = a.tid();
    a.send(&announce(cid, tid, H, 1, 7001, 1, None));
    assert!(matches!(a.recv(), Response::Announce(_)));
    let mut b = UdpClient::new(t.udp);
    let cid = b.connect();
    let tid = b.tid();
    b.send(&announce(cid, tid, H, 2, 7002, 1, None));
    let Response::Announce(r) = b.recv() else {
        panic!("announce reply")
    };
    assert_eq!(r.peers, PeerList::V6(vec!["[::1]:7001".parse().unwrap()]));
}

#[test]
fn workers_share_the_port_and_shutdown_is_clean() {
    let mut c = loopback_config();
    c.udp.workers = 3;
    c.access.open = true;
    let t = TestTracker::start(c, None);
    // Many client sockets: SO_REUSEPORT spreads them over the workers.
    for n in 0..12u32 {
        let mut cl = UdpClient::new(t.udp);
        let cid = cl.connect();
        let tid = cl.tid();
        cl.send(&announce(cid, tid, H, n, 1000 + n as u16, 1, None));
        let Response::Announce(r) = cl.recv() else {
            panic!("announce reply")
        };
        assert_eq!(r.leechers, n + 1, "all workers see one registry");
    }
    t.stop().expect("clean shutdown");
}
