//! The real `instream-tracker` binary at its per-torrent caps (`--max-peers-per-torrent`,
//! `--max-fabrics-per-torrent`): an announce beyond a cap gets a BEP 15 error or an HTTP
//! `failure reason` naming the cap, and every peer already listed stays listed.

mod support;

use std::net::SocketAddr;

use proto::InfoHash;
use proto::tracker::AnnounceEvent;
use proto::tracker::http::{AnnounceReply, AnnounceRequest};
use proto::tracker::udp::Response;
use support::*;

fn http_announce(http: SocketAddr, h: InfoHash, n: u32, fabric: Option<&str>) -> AnnounceReply {
    let q = AnnounceRequest {
        info_hash: h,
        peer_id: peer_id(n),
        port: 7000 + u16::try_from(n).unwrap(),
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: AnnounceEvent::Started,
        compact: true,
        numwant: Some(50),
        ip: None,
        fabric: fabric.map(str::to_owned),
    }
    .to_query();
    let (status, body) = get(http, &format!("/announce?{q}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    AnnounceReply::parse(&body).expect("a bencoded reply")
}

/// A UDP announce of peer `n`: `Ok(peer ports)` or `Err(error message)`.
fn udp_announce(
    cl: &mut UdpClient,
    h: InfoHash,
    n: u32,
    fabric: Option<&str>,
) -> Result<Vec<u16>, String> {
    let cid = cl.connect();
    let tid = cl.tid();
    let port = 7000 + u16::try_from(n).unwrap();
    cl.send(&announce(cid, tid, h, n, port, 1, fabric));
    match cl.recv() {
        Response::Announce(a) => {
            let mut ports: Vec<u16> = a.peers.to_socket_addrs().iter().map(|p| p.port()).collect();
            ports.sort_unstable();
            Ok(ports)
        }
        Response::Error(e) => Err(e.message),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn announces_beyond_the_peer_cap_are_refused_and_evict_nobody() {
    let t = BinTracker::start(&["--open", "--max-peers-per-torrent", "3"], &[]);
    let (udp, http) = (t.udp.unwrap(), t.http.unwrap());
    let h = InfoHash([0x31; 20]);
    let mut cl = UdpClient::new(udp);
    for n in 1..=3 {
        udp_announce(&mut cl, h, n, None).expect("below the cap");
    }
    let refused = udp_announce(&mut cl, h, 4, None).expect_err("a fourth peer is refused");
    assert_eq!(refused, "torrent is full: 3 peers listed");
    match http_announce(http, h, 5, None) {
        AnnounceReply::Failure(reason) => assert_eq!(reason, "torrent is full: 3 peers listed"),
        other => panic!("expected a failure reason, got {other:?}"),
    }
    // The three listed peers re-announce fine and still see each other, never 4 or 5.
    assert_eq!(udp_announce(&mut cl, h, 1, None), Ok(vec![7002, 7003]));
    match http_announce(http, h, 3, None) {
        AnnounceReply::Ok(r) => {
            let mut ports: Vec<u16> = r.socket_addrs().iter().map(|p| p.port()).collect();
            ports.sort_unstable();
            assert_eq!(ports, vec![7001, 7002]);
            assert_eq!(r.incomplete, 3);
        }
        other => panic!("a listed peer is answered, got {other:?}"),
    }
    // Another torrent has caps of its own.
    udp_announce(&mut cl, InfoHash([0x32; 20]), 4, None).expect("another torrent");
}

#[test]
fn announces_opening_a_fabric_beyond_the_cap_are_refused() {
    let t = BinTracker::start(&["--open", "--max-fabrics-per-torrent", "2"], &[]);
    let (udp, http) = (t.udp.unwrap(), t.http.unwrap());
    let h = InfoHash([0x41; 20]);
    let mut cl = UdpClient::new(udp);
    udp_announce(&mut cl, h, 1, Some("dc-a")).expect("first fabric");
    udp_announce(&mut cl, h, 2, Some("dc-b")).expect("second fabric");
    assert_eq!(
        udp_announce(&mut cl, h, 3, Some("dc-c")),
        Err("torrent is full: 2 fabrics listed".into())
    );
    // A listed peer cannot move into a third fabric either, and stays where it was.
    match http_announce(http, h, 1, Some("dc-c")) {
        AnnounceReply::Failure(reason) => assert_eq!(reason, "torrent is full: 2 fabrics listed"),
        other => panic!("expected a failure reason, got {other:?}"),
    }
    // Peer 4 in dc-a gets peer 1 first (same fabric), then peer 2 as a bridge.
    assert_eq!(
        udp_announce(&mut cl, h, 4, Some("dc-a")),
        Ok(vec![7001, 7002])
    );
}

#[test]
fn the_caps_default_to_50000_peers_and_1024_fabrics() {
    let c = instream_tracker::Config::default();
    assert_eq!(
        (
            c.swarm.max_peers_per_torrent,
            c.swarm.max_fabrics_per_torrent
        ),
        (50_000, 1024)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_instream-tracker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-peers-per-torrent"), "{help}");
    assert!(help.contains("--max-fabrics-per-torrent"), "{help}");
}
