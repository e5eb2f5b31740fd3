//! QUIC between instream peers (issue 11), with the real binaries: instream peers trade over
//! QUIC while a libtorrent peer in the same swarm uses TCP; and where UDP is blocked, peers
//! told to use QUIC fall back to TCP and complete. The `--json` summary's
//! `quic_connections` / `quic_fallbacks` say which transport each connection really took.
//!
//! Behaviour only; QUIC-versus-TCP speed is measured in bench/ (harness swarm --transports).

mod support;

use std::net::SocketAddr;
use std::process::Command;

use instream_bench::harness::delay_line::Impairment;
use instream_bench::harness::topology::{Link, Topology, TopologySpec, host_addr};
use support::*;

const PIECE: &str = "256KiB";

fn quic_args(listen: SocketAddr, peers: &[SocketAddr], seed_for: u32) -> Vec<String> {
    transport_args("quic", listen, peers, seed_for)
}

fn transport_args(
    transport: &str,
    listen: SocketAddr,
    peers: &[SocketAddr],
    seed_for: u32,
) -> Vec<String> {
    let mut a = vec![
        "--listen".to_string(),
        listen.to_string(),
        "--transport".into(),
        transport.into(),
        "--seed-for".into(),
        seed_for.to_string(),
    ];
    a.extend(peer_args(peers));
    a
}

/// Two instream peers and an instream seed on `--transport quic`, and a libtorrent leecher
/// that knows only the seed: every one completes byte for byte; both instream peers ran
/// connections over QUIC (to the seed and to each other), and their QUIC dial of the
/// libtorrent peer fell back to TCP, which is how libtorrent got its pieces from them.
#[test]
fn instream_peers_trade_over_quic_while_libtorrent_uses_tcp() {
    const LEN: usize = 8 * 1024 * 1024;
    let work = temp_dir();
    let src = work.path().join("src");
    let payload = src.join("payload.bin");
    write_payload(&payload, LEN, 111);
    let torrent = work.path().join("t.torrent");
    instream_create(&payload, PIECE, &[], &torrent);
    let (mut seed, seed_addr) =
        instream_serve_with(&torrent, &payload, &["--transport", "quic"], "info");

    let lt_out = work.path().join("lt");
    std::fs::create_dir_all(&lt_out).unwrap();
    let (mut lt, lt_addr) = lt_peer(
        "libtorrent-leecher",
        &torrent,
        &lt_out,
        &LtOpts {
            peers: vec![seed_addr],
            seed_for: Some(5.0),
            ..LtOpts::default()
        },
    );

    let addrs = distinct_addrs(2);
    let mut peers: Vec<Proc> = (0..2)
        .map(|i| {
            let known = [seed_addr, addrs[1 - i], lt_addr];
            Proc::spawn(
                &format!("instream-peer-{i}"),
                instream_get_cmd(
                    &torrent,
                    &work.path().join(format!("out{i}")),
                    &quic_args(addrs[i], &known, 5),
                ),
            )
        })
        .collect();

    for (i, p) in peers.iter_mut().enumerate() {
        p.wait_success(TRANSFER_TIMEOUT);
        assert_same_file(&payload, &work.path().join(format!("out{i}/payload.bin")));
        let s = PeerSummary::of(p);
        assert!(
            s.u64("quic_connections") >= 2,
            "peer {i} ran fewer than 2 connections over QUIC (seed and the other peer): {}",
            s.0
        );
        assert!(
            s.u64("quic_fallbacks") >= 1,
            "peer {i}'s QUIC dial of the libtorrent peer did not fall back to TCP: {}",
            s.0
        );
    }
    let lt_done = lt.wait_event("finished", TRANSFER_TIMEOUT);
    assert_same_file(&payload, &lt_out.join("payload.bin"));
    eprintln!("libtorrent finished: {lt_done}");
    assert!(
        seed.try_wait().is_none(),
        "instream-seed died\n{}",
        seed.output_tail()
    );
}

/// A peer on `--transport quic` whose seed runs TCP only (nothing listens on the seed's UDP
/// port): the QUIC dial gives up, TCP takes over, the download completes.
#[test]
fn quic_dial_to_a_tcp_only_seed_falls_back_to_tcp() {
    const LEN: usize = 2 * 1024 * 1024;
    let work = temp_dir();
    let payload = work.path().join("src/payload.bin");
    write_payload(&payload, LEN, 112);
    let torrent = work.path().join("t.torrent");
    instream_create(&payload, PIECE, &[], &torrent);
    let (_seed, seed_addr) = instream_serve(&torrent, &payload);
    let listen = free_addr();
    let mut peer = Proc::spawn(
        "instream-peer",
        instream_get_cmd(
            &torrent,
            &work.path().join("out"),
            &quic_args(listen, &[seed_addr], 0),
        ),
    );
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&payload, &work.path().join("out/payload.bin"));
    let s = PeerSummary::of(&peer);
    assert_eq!(s.u64("quic_connections"), 0, "{}", s.0);
    assert!(s.u64("quic_fallbacks") >= 1, "no QUIC fallback: {}", s.0);
}

/// Every host in its own network namespace, all on `--transport quic`, and every UDP packet
/// dropped on each host's link (a `tc` filter; CI has no nftables and this kernel no tc drop
/// action): the
/// QUIC dials time out, every connection is TCP, and both peers complete.
#[test]
fn with_udp_blocked_quic_peers_fall_back_to_tcp_and_complete() {
    if !testkit::needs_root("with_udp_blocked... (network namespaces)") {
        return;
    }
    const LEN: usize = 4 * 1024 * 1024;
    const PORT: u16 = 6881;
    let work = temp_dir();
    let payload = work.path().join("src/payload.bin");
    write_payload(&payload, LEN, 113);
    let torrent = work.path().join("t.torrent");
    instream_create(&payload, PIECE, &[], &torrent);
    let link = Link {
        up_mbit: 200.0,
        down_mbit: 200.0,
    };
    let topo = Topology::build(TopologySpec::star(2, 1, link, None)).expect("namespaces");
    // No tc actions on this kernel (no act_gact), so UDP is classified into an htb class
    // whose queue holds nothing: `pfifo limit 0` drops every packet offered to it.
    for i in 0..3 {
        tc_in(
            &topo,
            i,
            &[
                "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10",
            ],
        );
        tc_in(
            &topo,
            i,
            &[
                "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate",
                "200mbit",
            ],
        );
        tc_in(
            &topo,
            i,
            &[
                "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb", "rate",
                "1mbit",
            ],
        );
        tc_in(
            &topo,
            i,
            &[
                "qdisc", "add", "dev", "eth0", "parent", "1:20", "handle", "20:", "pfifo", "limit",
                "0",
            ],
        );
        tc_in(
            &topo,
            i,
            &[
                "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "u32", "match",
                "ip", "protocol", "17", "0xff", "flowid", "1:20",
            ],
        );
    }
    let addr = |i: usize| SocketAddr::from((host_addr(i), PORT));
    let in_ns = |i: usize, program: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", topo.host_ns(i).name()])
            .arg(bin(program));
        c
    };
    let mut seed_cmd = in_ns(0, "instream-seed");
    seed_cmd
        .arg("serve")
        .arg(&torrent)
        .arg("--data")
        .arg(&payload)
        .args(["--listen", &addr(0).to_string(), "--transport", "quic"])
        .env("RUST_LOG", "info");
    let mut seed = Proc::spawn("instream-seed", seed_cmd);
    wait_for(STARTUP_TIMEOUT, "instream-seed to listen", || {
        listening_in(seed.pid(), PORT) || seed.try_wait().is_some()
    });
    assert!(
        seed.try_wait().is_none(),
        "seed exited\n{}",
        seed.output_tail()
    );
    let mut peers: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut c = in_ns(i, "instream-peer");
            let known = [addr(0), addr(3 - i)];
            c.arg("get")
                .arg(&torrent)
                .arg("--out")
                .arg(work.path().join(format!("out{i}")))
                .arg("--json")
                .args(quic_args(addr(i), &known, 3))
                .env("RUST_LOG", "info");
            Proc::spawn(&format!("instream-peer-{i}"), c)
        })
        .collect();
    for (k, p) in peers.iter_mut().enumerate() {
        let i = k + 1;
        p.wait_success(TRANSFER_TIMEOUT);
        assert_same_file(&payload, &work.path().join(format!("out{i}/payload.bin")));
        let s = PeerSummary::of(p);
        assert_eq!(
            s.u64("quic_connections"),
            0,
            "peer {i} used QUIC with UDP blocked: {}",
            s.0
        );
        assert!(
            s.u64("quic_fallbacks") >= 1,
            "peer {i} never fell back: {}",
            s.0
        );
    }
    seed.terminate(std::time::Duration::from_secs(10));
    let stats = tc_in(&topo, 1, &["-s", "qdisc", "show", "dev", "eth0"]);
    let dropped: u64 = stats
        .split("qdisc pfifo 20:")
        .nth(1)
        .and_then(|s| s.split("dropped ").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop count for the UDP queue in:\n{stats}"));
    assert!(
        dropped > 0,
        "no UDP packet was dropped (QUIC never tried?):\n{stats}"
    );
}

/// `tc ARGS` inside host `i`'s namespace; its standard output.
fn tc_in(topo: &Topology, i: usize, args: &[&str]) -> String {
    run_ok(
        "tc",
        Command::new("ip")
            .args(["netns", "exec", topo.host_ns(i).name(), "tc"])
            .args(args),
    )
}

/// `--transport auto` across two fabrics whose uplinks add 15 ms each way (the delay line:
/// 30 ms round trips between fabrics, LAN ones within): the seed and peer 1 share fabric f1,
/// peer 2 is in f2. Connections start on TCP; the two that cross fabrics (peer 2 with the
/// seed and with peer 1) move to QUIC, the one within f1 stays on TCP, and all complete.
#[test]
fn auto_moves_cross_fabric_connections_to_quic_and_keeps_tcp_within_a_fabric() {
    if !testkit::needs_root("auto_moves... (network namespaces)") {
        return;
    }
    const LEN: usize = 4 * 1024 * 1024;
    const PORT: u16 = 6881;
    let work = temp_dir();
    let payload = work.path().join("src/payload.bin");
    write_payload(&payload, LEN, 114);
    let torrent = work.path().join("t.torrent");
    instream_create(&payload, PIECE, &[], &torrent);
    let link = Link {
        up_mbit: 200.0,
        down_mbit: 200.0,
    };
    let imp = Impairment {
        delay: std::time::Duration::from_millis(15),
        loss: 0.0,
    };
    let topo =
        Topology::build(TopologySpec::star(2, 2, link, None).impaired(imp)).expect("namespaces");
    let fabric = |i: usize| topo.fabric_name(i).to_string();
    assert_eq!(
        (fabric(0), fabric(1), fabric(2)),
        ("f1".into(), "f1".into(), "f2".into())
    );
    let addr = |i: usize| SocketAddr::from((host_addr(i), PORT));
    let in_ns = |i: usize, program: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", topo.host_ns(i).name()])
            .arg(bin(program));
        c
    };
    let mut seed_cmd = in_ns(0, "instream-seed");
    seed_cmd
        .arg("serve")
        .arg(&torrent)
        .arg("--data")
        .arg(&payload)
        .args(["--listen", &addr(0).to_string(), "--transport", "auto"])
        .args(["--fabric", "f1"])
        .env("RUST_LOG", "info");
    let mut seed = Proc::spawn("instream-seed", seed_cmd);
    wait_for(STARTUP_TIMEOUT, "instream-seed to listen", || {
        listening_in(seed.pid(), PORT) || seed.try_wait().is_some()
    });
    assert!(
        seed.try_wait().is_none(),
        "seed exited\n{}",
        seed.output_tail()
    );
    let mut peers: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut c = in_ns(i, "instream-peer");
            let args = transport_args("auto", addr(i), &[addr(0), addr(3 - i)], 3);
            c.arg("get")
                .arg(&torrent)
                .arg("--out")
                .arg(work.path().join(format!("out{i}")))
                .arg("--json")
                .args(args)
                .args(["--fabric", &fabric(i)])
                .env("RUST_LOG", "info");
            Proc::spawn(&format!("instream-peer-{i}"), c)
        })
        .collect();
    let mut quic = Vec::new();
    for (k, p) in peers.iter_mut().enumerate() {
        let i = k + 1;
        p.wait_success(TRANSFER_TIMEOUT);
        assert_same_file(&payload, &work.path().join(format!("out{i}/payload.bin")));
        quic.push(PeerSummary::of(p));
    }
    seed.terminate(std::time::Duration::from_secs(10));
    // Peer 1's only cross-fabric connection is to peer 2: one QUIC connection, and its
    // connection to the seed (same fabric) stayed TCP (else it would count two).
    assert_eq!(
        quic[0].u64("quic_connections"),
        1,
        "peer 1 (f1): {}",
        quic[0].0
    );
    // Peer 2 crosses fabrics to both.
    assert_eq!(
        quic[1].u64("quic_connections"),
        2,
        "peer 2 (f2): {}",
        quic[1].0
    );
}
