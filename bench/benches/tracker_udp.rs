//! Micro-benchmarks of the UDP tracker's per-packet work: BEP 15 decode and encode, and the
//! whole request → response step of a worker (`tracker::Processor`) against a
//! registry holding 10k torrents and 100k peers, with no socket in the way.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{
    AnnounceInterval, AnnounceKey, AnnounceRequest, AnnounceResponse, ConnectRequest, ConnectionId,
    MAX_SCRAPE_INFO_HASHES, NumWant, PeerList, Request, Response, TransactionId,
};
use proto::{InfoHash, PeerId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TORRENTS: usize = 10_000;
const PEERS: usize = 100_000;

fn announce(cid: ConnectionId, info_hash: InfoHash, peer: u32, left: u64) -> Request {
    let mut id = [b'x'; 20];
    id[..4].copy_from_slice(&peer.to_be_bytes());
    Request::Announce(AnnounceRequest {
        connection_id: cid,
        transaction_id: TransactionId(peer),
        info_hash,
        peer_id: PeerId(id),
        downloaded: 0,
        left,
        uploaded: 0,
        event: AnnounceEvent::None,
        ip_address: Ipv4Addr::UNSPECIFIED,
        key: AnnounceKey(peer),
        num_want: NumWant(30),
        port: 6881,
        url_data: Vec::new(),
    })
}

fn codec(c: &mut Criterion) {
    let req = announce(ConnectionId(1), InfoHash([7; 20]), 1, 0);
    let mut bytes = Vec::new();
    req.encode(&mut bytes);
    let mut g = c.benchmark_group("udp_codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_announce", |b| {
        b.iter(|| Request::parse(black_box(&bytes), MAX_SCRAPE_INFO_HASHES))
    });
    let resp = Response::Announce(AnnounceResponse {
        transaction_id: TransactionId(1),
        interval: AnnounceInterval(300),
        leechers: 10,
        seeders: 20,
        peers: PeerList::V4(
            (0..30u32)
                .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 6881))
                .collect(),
        ),
    });
    let mut out = Vec::with_capacity(512);
    g.bench_function("encode_announce_30_peers", |b| {
        b.iter(|| {
            out.clear();
            black_box(&resp).encode(&mut out);
        })
    });
    g.finish();
}

fn processor(c: &mut Criterion) {
    let mut config = tracker::Config::default();
    config.access.open = true;
    let tracker = tracker::Tracker::new(config, None).unwrap();
    let mut p = tracker.processor(1);
    let mut rng = SmallRng::seed_from_u64(5);
    let hashes: Vec<InfoHash> = (0..TORRENTS).map(|_| InfoHash(rng.r#gen())).collect();
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();

    let mut connect = Vec::new();
    Request::Connect(ConnectRequest {
        transaction_id: TransactionId(1),
    })
    .encode(&mut connect);
    let cid = match Response::parse(p.process(src, &connect).unwrap(), false).unwrap() {
        Response::Connect(c) => c.connection_id,
        other => panic!("{other:?}"),
    };
    // Fill the registry: 100k peers over 10k torrents, 3 seeders out of 4.
    let packets: Vec<Vec<u8>> = (0..PEERS as u32)
        .map(|i| {
            let h = hashes[rng.gen_range(0..TORRENTS)];
            let mut b = Vec::new();
            announce(cid, h, i, u64::from(rng.gen_ratio(1, 4))).encode(&mut b);
            b
        })
        .collect();
    for pkt in &packets {
        assert!(p.process(src, pkt).is_some());
    }

    let mut g = c.benchmark_group("udp_processor");
    g.throughput(Throughput::Elements(1));
    g.bench_function("connect", |b| {
        b.iter(|| p.process(src, black_box(&connect)).map(<[u8]>::len))
    });
    let mut i = 0;
    g.bench_function("announce_10k_torrents_100k_peers", |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            p.process(src, black_box(&packets[i])).map(<[u8]>::len)
        })
    });
    g.finish();
}

criterion_group!(benches, codec, processor);
criterion_main!(benches);
