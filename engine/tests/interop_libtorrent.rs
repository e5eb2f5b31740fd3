//! Interoperability with a real client, python3-libtorrent 2.0 (issue 3, judged tests 1 and 2):
//! libtorrent downloads from `instream-seed`, and `instream-peer` downloads from libtorrent with
//! a torrent made by mktorrent, finding the seed through opentracker over UDP and over HTTP.
//! Every download is compared byte for byte with the original.

mod support;

use std::path::Path;

use support::*;

/// A size that is not a multiple of the piece or block length, so the short last piece and
/// the short last block are exercised.
const ODD_LEN: usize = 6 * 1024 * 1024 + 12_345;

/// instream-seed -> libtorrent for the payload at `data` (file or directory).
fn instream_seeds_libtorrent(data: &Path, work: &Path) {
    let torrent = work.join("t.torrent");
    instream_create(data, "256KiB", &[], &torrent);
    let info = torrent_info(&torrent); // libtorrent must accept the torrent we wrote
    let (mut seed, seed_addr) = instream_serve(&torrent, data);

    let out = work.join("lt-out");
    let (mut leecher, _) = lt_peer(
        "libtorrent-leecher",
        &torrent,
        &out,
        &LtOpts {
            peers: vec![seed_addr],
            ..Default::default()
        },
    );
    leecher.wait_success(TRANSFER_TIMEOUT);
    let finished = leecher
        .event("finished")
        .expect("libtorrent printed no 'finished' event");
    assert_eq!(
        finished["down"].as_u64(),
        Some(info.total_size),
        "libtorrent payload bytes downloaded"
    );

    let downloaded = out.join(&info.name);
    if data.is_dir() {
        assert_same_tree(data, &downloaded);
    } else {
        assert_same_file(data, &downloaded);
    }
    assert!(
        seed.try_wait().is_none(),
        "instream-seed died during the transfer\n{}",
        seed.output_tail()
    );
}

#[test]
fn libtorrent_downloads_single_file_from_instream_seed() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    write_payload(&data, ODD_LEN, 1);
    instream_seeds_libtorrent(&data, work.path());
}

#[test]
fn libtorrent_downloads_multi_file_from_instream_seed() {
    let work = temp_dir();
    let data = work.path().join("src/tree");
    write_tree(
        &data,
        &[
            ("a.bin", 3 * 1024 * 1024 + 1),
            ("sub/b.bin", 100 * 1024 - 7),
            ("sub/deeper/c.bin", 1),
            ("sub/deeper/d.bin", 2 * 1024 * 1024 + 16 * 1024),
            ("e.bin", 700_001),
        ],
        2,
    );
    instream_seeds_libtorrent(&data, work.path());
}

#[derive(Clone, Copy, Debug)]
enum TrackerProto {
    Udp,
    Http,
}

/// libtorrent seed -> instream-peer, a mktorrent torrent, peers found through opentracker.
fn instream_downloads_from_libtorrent_via_opentracker(proto: TrackerProto) {
    let work = temp_dir();
    let src = work.path().join("src");
    let payload = src.join("payload.bin");
    write_payload(&payload, ODD_LEN, 3);

    let port = free_port();
    let url = match proto {
        TrackerProto::Udp => format!("udp://127.0.0.1:{port}/announce"),
        TrackerProto::Http => format!("http://127.0.0.1:{port}/announce"),
    };
    let torrent = work.path().join("mk.torrent");
    mktorrent(&payload, 18, Some(&url), &torrent); // 256 KiB pieces, written by mktorrent
    let info = torrent_info(&torrent);
    let _tracker = Opentracker::start(port, &[&info.info_hash]);

    let (mut seed, _) = lt_peer(
        "libtorrent-seed",
        &torrent,
        &src,
        &LtOpts {
            seed: true,
            tracker: true,
            ..Default::default()
        },
    );
    // The seed must be registered before instream asks, or instream gets an empty list and
    // the test would measure instream's re-announce interval instead of interop.
    let reply = seed.wait_event("tracker_reply", STARTUP_TIMEOUT);
    assert!(
        reply["url"]
            .as_str()
            .unwrap_or("")
            .contains(&port.to_string()),
        "announce went elsewhere: {reply}"
    );

    let out = work.path().join("out");
    let mut peer = Proc::spawn(
        &format!("instream-peer ({proto:?} tracker)"),
        instream_get_cmd(&torrent, &out, &["--listen".into(), "127.0.0.1:0".into()]),
    );
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&payload, &out.join(&info.name));

    let summary = PeerSummary::of(&peer);
    assert!(
        summary.u64("bytes_downloaded") >= info.total_size,
        "summary says {} bytes downloaded for a {}-byte payload",
        summary.u64("bytes_downloaded"),
        info.total_size
    );
    assert!(
        summary.u64("peers_seen") >= 1,
        "summary says no peer was seen: {}",
        summary.0
    );
    assert!(
        seed.try_wait().is_none(),
        "libtorrent seed died during the transfer\n{}",
        seed.output_tail()
    );
}

#[test]
fn instream_peer_downloads_mktorrent_torrent_from_libtorrent_via_opentracker_udp() {
    instream_downloads_from_libtorrent_via_opentracker(TrackerProto::Udp);
}

#[test]
fn instream_peer_downloads_mktorrent_torrent_from_libtorrent_via_opentracker_http() {
    instream_downloads_from_libtorrent_via_opentracker(TrackerProto::Http);
}
