//! Tests of the BEP 15 codec: byte fixtures field by field, round trips of generated
//! packets, never-panic sweeps over every length.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::*;
use crate::tracker::AnnounceEvent;
use crate::{InfoHash, PeerId};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

fn ih(b: u8) -> InfoHash {
    InfoHash([b; 20])
}

fn announce() -> AnnounceRequest {
    AnnounceRequest {
        connection_id: ConnectionId(0x0102_0304_0506_0708),
        transaction_id: TransactionId(0xdead_beef),
        info_hash: ih(0xaa),
        peer_id: PeerId(*b"-IS0100-abcdefghijkl"),
        downloaded: 1,
        left: 2,
        uploaded: 3,
        event: AnnounceEvent::Started,
        ip_address: Ipv4Addr::UNSPECIFIED,
        key: AnnounceKey(7),
        num_want: NumWant::DEFAULT,
        port: 6881,
        url_data: b"/announce?fabric=f1".to_vec(),
    }
}

/// BEP 15 "Announce" request, field by field, with one BEP 41 URL-data option.
/// <https://www.bittorrent.org/beps/bep_0015.html>, <https://www.bittorrent.org/beps/bep_0041.html>
#[test]
fn announce_request_fixture() {
    let mut b = Vec::new();
    b.extend(0x0102_0304_0506_0708u64.to_be_bytes()); // connection_id
    b.extend(1u32.to_be_bytes()); // action: announce
    b.extend(0xdead_beefu32.to_be_bytes()); // transaction_id
    b.extend([0xaa; 20]); // info_hash
    b.extend(*b"-IS0100-abcdefghijkl"); // peer_id
    b.extend(1u64.to_be_bytes()); // downloaded
    b.extend(2u64.to_be_bytes()); // left
    b.extend(3u64.to_be_bytes()); // uploaded
    b.extend(2u32.to_be_bytes()); // event: started
    b.extend(0u32.to_be_bytes()); // IP address: default
    b.extend(7u32.to_be_bytes()); // key
    b.extend((-1i32).to_be_bytes()); // num_want: default
    b.extend(6881u16.to_be_bytes()); // port
    b.push(2); // BEP 41 option: URLData
    b.push(19); // option length
    b.extend(b"/announce?fabric=f1"); // URL data
    b.push(0); // BEP 41 option: EndOfOptions

    let parsed = Request::parse(&b, MAX_SCRAPE_INFO_HASHES).unwrap();
    assert_eq!(parsed, Request::Announce(announce()));
    let mut out = Vec::new();
    parsed.encode(&mut out);
    assert_eq!(out, b);
    let Request::Announce(a) = parsed else {
        unreachable!()
    };
    assert_eq!(a.fabric(), Some("f1"));
}

/// BEP 15 "Connect" request and response.
#[test]
fn connect_fixtures() {
    let mut req = Vec::new();
    req.extend(0x417_2710_1980u64.to_be_bytes()); // protocol_id
    req.extend(0u32.to_be_bytes()); // action: connect
    req.extend(42u32.to_be_bytes()); // transaction_id
    assert_eq!(
        Request::parse(&req, 74),
        Ok(Request::Connect(ConnectRequest {
            transaction_id: TransactionId(42)
        }))
    );

    let mut resp = Vec::new();
    resp.extend(0u32.to_be_bytes()); // action: connect
    resp.extend(42u32.to_be_bytes()); // transaction_id
    resp.extend(99u64.to_be_bytes()); // connection_id
    let expected = Response::Connect(ConnectResponse {
        transaction_id: TransactionId(42),
        connection_id: ConnectionId(99),
    });
    assert_eq!(Response::parse(&resp, false), Ok(expected.clone()));
    let mut out = Vec::new();
    expected.encode(&mut out);
    assert_eq!(out, resp);
}

/// BEP 15 "Announce" responses over IPv4 (6-byte peers) and IPv6 (18-byte peers).
#[test]
fn announce_response_fixtures() {
    let mut v4 = Vec::new();
    v4.extend(1u32.to_be_bytes()); // action: announce
    v4.extend(5u32.to_be_bytes()); // transaction_id
    v4.extend(1800u32.to_be_bytes()); // interval
    v4.extend(3u32.to_be_bytes()); // leechers
    v4.extend(1u32.to_be_bytes()); // seeders
    v4.extend([10, 0, 0, 1]); // IPv4 address
    v4.extend(6881u16.to_be_bytes()); // TCP port
    let Response::Announce(a) = Response::parse(&v4, false).unwrap() else {
        panic!("not an announce")
    };
    assert_eq!(
        a.peers,
        PeerList::V4(vec!["10.0.0.1:6881".parse().unwrap()])
    );
    assert_eq!((a.interval.0, a.leechers, a.seeders), (1800, 3, 1));

    let mut v6 = Vec::new();
    v6.extend(1u32.to_be_bytes()); // action: announce
    v6.extend(5u32.to_be_bytes()); // transaction_id
    v6.extend(1800u32.to_be_bytes()); // interval
    v6.extend(0u32.to_be_bytes()); // leechers
    v6.extend(1u32.to_be_bytes()); // seeders
    v6.extend("::1".parse::<Ipv6Addr>().unwrap().octets()); // IPv6 address
    v6.extend(51413u16.to_be_bytes()); // TCP port
    let Response::Announce(a) = Response::parse(&v6, true).unwrap() else {
        panic!("not an announce")
    };
    assert_eq!(
        a.peers.to_socket_addrs(),
        vec!["[::1]:51413".parse::<std::net::SocketAddr>().unwrap()]
    );
    // The same bytes read as IPv4 are ragged: 18 is a multiple of 6, so check a
    // length that is not.
    assert_eq!(
        Response::parse(&v4[..v4.len() - 1], false),
        Err(ResponseParseError::RaggedList { len: 5, entry: 6 })
    );
}

/// BEP 15 "Scrape" request and response, and "Error".
#[test]
fn scrape_and_error_fixtures() {
    let mut req = Vec::new();
    req.extend(77u64.to_be_bytes()); // connection_id
    req.extend(2u32.to_be_bytes()); // action: scrape
    req.extend(9u32.to_be_bytes()); // transaction_id
    req.extend([1; 20]); // info_hash 1
    req.extend([2; 20]); // info_hash 2
    assert_eq!(
        Request::parse(&req, 74),
        Ok(Request::Scrape(ScrapeRequest {
            connection_id: ConnectionId(77),
            transaction_id: TransactionId(9),
            info_hashes: vec![ih(1), ih(2)],
        }))
    );

    let mut resp = Vec::new();
    resp.extend(2u32.to_be_bytes()); // action: scrape
    resp.extend(9u32.to_be_bytes()); // transaction_id
    resp.extend(4u32.to_be_bytes()); // seeders
    resp.extend(5u32.to_be_bytes()); // completed
    resp.extend(6u32.to_be_bytes()); // leechers
    assert_eq!(
        Response::parse(&resp, false),
        Ok(Response::Scrape(ScrapeResponse {
            transaction_id: TransactionId(9),
            stats: vec![TorrentScrapeStats {
                seeders: 4,
                completed: 5,
                leechers: 6
            }],
        }))
    );

    let mut err = Vec::new();
    err.extend(3u32.to_be_bytes()); // action: error
    err.extend(9u32.to_be_bytes()); // transaction_id
    err.extend(b"unregistered torrent"); // message
    assert_eq!(
        Response::parse(&err, false),
        Ok(Response::Error(ErrorResponse {
            transaction_id: TransactionId(9),
            message: "unregistered torrent".into()
        }))
    );
}

#[test]
fn request_errors_say_whether_they_may_be_answered() {
    let mut b = Vec::new();
    Request::Announce(announce()).encode(&mut b);
    // Header readable, body short: sendable.
    assert_eq!(
        Request::parse(&b[..50], 74),
        Err(RequestParseError::Sendable {
            connection_id: ConnectionId(0x0102_0304_0506_0708),
            transaction_id: TransactionId(0xdead_beef),
            kind: RequestErrorKind::TooShort {
                len: 50,
                min: ANNOUNCE_REQUEST_LEN
            },
        })
    );
    // No header: unsendable.
    assert_eq!(
        Request::parse(&b[..15], 74),
        Err(RequestParseError::Unsendable {
            kind: RequestErrorKind::TooShort { len: 15, min: 16 }
        })
    );
    // Wrong action: sendable.
    let mut wrong = b.clone();
    wrong[8..12].copy_from_slice(&7u32.to_be_bytes());
    assert!(matches!(
        Request::parse(&wrong, 74),
        Err(RequestParseError::Sendable {
            kind: RequestErrorKind::UnknownAction { action: 7 },
            ..
        })
    ));
    // Bad event code.
    let mut bad_event = b.clone();
    bad_event[80..84].copy_from_slice(&9u32.to_be_bytes());
    assert!(matches!(
        Request::parse(&bad_event, 74),
        Err(RequestParseError::Sendable {
            kind: RequestErrorKind::UnknownEvent { event: 9 },
            ..
        })
    ));
    // Connect without the magic: unsendable.
    let mut connect = Vec::new();
    connect.extend(5u64.to_be_bytes());
    connect.extend(0u32.to_be_bytes());
    connect.extend(1u32.to_be_bytes());
    assert_eq!(
        Request::parse(&connect, 74),
        Err(RequestParseError::Unsendable {
            kind: RequestErrorKind::BadProtocolId { found: 5 }
        })
    );
}

#[test]
fn oversized_and_empty_scrapes_are_refused() {
    let scrape = |n: usize| {
        let mut b = Vec::new();
        Request::Scrape(ScrapeRequest {
            connection_id: ConnectionId(1),
            transaction_id: TransactionId(2),
            info_hashes: (0..n).map(|i| ih(u8::try_from(i).unwrap())).collect(),
        })
        .encode(&mut b);
        Request::parse(&b, MAX_SCRAPE_INFO_HASHES)
    };
    assert!(scrape(MAX_SCRAPE_INFO_HASHES).is_ok());
    assert!(matches!(
        scrape(MAX_SCRAPE_INFO_HASHES + 1),
        Err(RequestParseError::Sendable {
            kind: RequestErrorKind::TooManyInfoHashes { count: 75, max: 74 },
            ..
        })
    ));
    assert!(matches!(
        scrape(0),
        Err(RequestParseError::Sendable {
            kind: RequestErrorKind::NoInfoHashes,
            ..
        })
    ));
}

#[test]
fn url_data_options_are_concatenated_and_nops_skipped() {
    let mut b = Vec::new();
    let mut a = announce();
    a.url_data.clear();
    Request::Announce(a).encode(&mut b);
    b.push(1); // NOP
    b.extend([2, 9]); // URLData, 9 bytes
    b.extend(b"/announce");
    b.extend([7, 2, 0, 0]); // unknown option with 2 bytes: skipped
    b.extend([2, 10]); // URLData, 10 bytes
    b.extend(b"?fabric=f2");
    b.extend([2, 200]); // truncated option: ends the parse
    let Ok(Request::Announce(a)) = Request::parse(&b, 74) else {
        panic!("announce must parse")
    };
    assert_eq!(a.url_data, b"/announce?fabric=f2");
    assert_eq!(a.fabric(), Some("f2"));
}

#[test]
fn long_url_data_is_split_into_255_byte_options() {
    let mut a = announce();
    a.url_data = vec![b'x'; 600];
    let mut b = Vec::new();
    Request::Announce(a.clone()).encode(&mut b);
    assert_eq!(b.len(), ANNOUNCE_REQUEST_LEN + 3 * 2 + 600 + 1);
    assert_eq!(Request::parse(&b, 74), Ok(Request::Announce(a)));
}

#[test]
fn fabric_share_trailer_is_stripped_only_when_whole() {
    use crate::picker::FabricShare;
    for ipv6 in [false, true] {
        let peers = if ipv6 {
            PeerList::V6(vec!["[::1]:5".parse().unwrap(); 2])
        } else {
            PeerList::V4(vec!["1.2.3.4:5".parse().unwrap(); 3])
        };
        let resp = Response::Announce(AnnounceResponse {
            transaction_id: TransactionId(9),
            interval: AnnounceInterval(30),
            leechers: 1,
            seeders: 2,
            peers,
        });
        let mut plain = Vec::new();
        resp.encode(&mut plain);
        let mut with = plain.clone();
        append_fabric_share(FabricShare { rank: 3, of: 7 }, &mut with);
        // A parser that does not know the trailer refuses the list rather than
        // inventing a peer from it.
        assert!(Response::parse(&with, ipv6).is_err());
        let (rest, share) = split_fabric_share(&with, ipv6);
        assert_eq!(share, Some(FabricShare { rank: 3, of: 7 }));
        assert_eq!(Response::parse(rest, ipv6), Ok(resp.clone()));
        assert_eq!(split_fabric_share(&plain, ipv6), (&plain[..], None));
        for len in 0..with.len() {
            let _ = split_fabric_share(&with[..len], ipv6);
        }
    }
}

#[test]
fn fabric_param_is_validated() {
    let mut a = announce();
    a.url_data = b"/announce?x=1&fabric=bad%20name".to_vec();
    assert_eq!(a.fabric(), None);
    a.url_data = b"/announce?x=1&fabric=eu-1".to_vec();
    assert_eq!(a.fabric(), Some("eu-1"));
    a.url_data = b"/announce".to_vec();
    assert_eq!(a.fabric(), None);
}

#[test]
fn numwant_default_is_negative() {
    assert_eq!(NumWant::DEFAULT.get(), None);
    assert_eq!(NumWant(30).get(), Some(30));
}

#[test]
fn parsers_never_panic_on_any_length() {
    let mut announce_bytes = Vec::new();
    Request::Announce(announce()).encode(&mut announce_bytes);
    for action in 0u32..5 {
        for len in 0..200 {
            let mut b = announce_bytes.clone();
            b.resize(len.max(16), 0xff);
            b[8..12].copy_from_slice(&action.to_be_bytes());
            b.truncate(len);
            let _ = Request::parse(&b, MAX_SCRAPE_INFO_HASHES);
            let mut r = b.clone();
            if r.len() >= 4 {
                r[..4].copy_from_slice(&action.to_be_bytes());
            }
            let _ = Response::parse(&r, false);
            let _ = Response::parse(&r, true);
        }
    }
}

fn arb_info_hash() -> impl Strategy<Value = InfoHash> {
    any::<[u8; 20]>().prop_map(InfoHash)
}

fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
    (0u32..4).prop_map(|c| AnnounceEvent::from_udp(c).unwrap())
}

prop_compose! {
    fn arb_announce()(
        cid in any::<u64>(), tid in any::<u32>(), info_hash in arb_info_hash(),
        peer_id in any::<[u8; 20]>(), downloaded in any::<u64>(), left in any::<u64>(),
        uploaded in any::<u64>(), event in arb_event(), ip in any::<u32>(),
        key in any::<u32>(), num_want in any::<i32>(), port in any::<u16>(),
        url_data in proptest::collection::vec(any::<u8>(), 0..700),
    ) -> AnnounceRequest {
        AnnounceRequest {
            connection_id: ConnectionId(cid), transaction_id: TransactionId(tid),
            info_hash, peer_id: PeerId(peer_id), downloaded, left, uploaded, event,
            ip_address: Ipv4Addr::from(ip), key: AnnounceKey(key), num_want: NumWant(num_want),
            port, url_data,
        }
    }
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|t| Request::Connect(ConnectRequest {
            transaction_id: TransactionId(t)
        })),
        arb_announce().prop_map(Request::Announce),
        (
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(arb_info_hash(), 1..=MAX_SCRAPE_INFO_HASHES)
        )
            .prop_map(|(c, t, info_hashes)| Request::Scrape(ScrapeRequest {
                connection_id: ConnectionId(c),
                transaction_id: TransactionId(t),
                info_hashes
            })),
    ]
}

fn arb_response(ipv6: bool) -> impl Strategy<Value = Response> {
    let peers = if ipv6 {
        proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..50)
            .prop_map(|v| {
                PeerList::V6(
                    v.into_iter()
                        .map(|(ip, port)| SocketAddrV6::new(ip.into(), port, 0, 0))
                        .collect(),
                )
            })
            .boxed()
    } else {
        proptest::collection::vec((any::<u32>(), any::<u16>()), 0..50)
            .prop_map(|v| {
                PeerList::V4(
                    v.into_iter()
                        .map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
                        .collect(),
                )
            })
            .boxed()
    };
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(t, c)| Response::Connect(ConnectResponse {
            transaction_id: TransactionId(t),
            connection_id: ConnectionId(c)
        })),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            peers
        )
            .prop_map(|(t, i, l, s, peers)| Response::Announce(AnnounceResponse {
                transaction_id: TransactionId(t),
                interval: AnnounceInterval(i),
                leechers: l,
                seeders: s,
                peers
            })),
        (
            any::<u32>(),
            proptest::collection::vec(any::<(u32, u32, u32)>(), 0..74)
        )
            .prop_map(|(t, v)| Response::Scrape(ScrapeResponse {
                transaction_id: TransactionId(t),
                stats: v
                    .into_iter()
                    .map(|(seeders, completed, leechers)| TorrentScrapeStats {
                        seeders,
                        completed,
                        leechers
                    })
                    .collect()
            })),
        (any::<u32>(), ".{0,100}").prop_map(|(t, message)| Response::Error(ErrorResponse {
            transaction_id: TransactionId(t),
            message
        })),
    ]
}

proptest! {
    #[test]
    fn requests_same_after_conversion(req in arb_request()) {
        let mut b = Vec::new();
        req.encode(&mut b);
        prop_assert_eq!(Request::parse(&b, MAX_SCRAPE_INFO_HASHES), Ok(req));
    }

    #[test]
    fn v4_responses_same_after_conversion(resp in arb_response(false)) {
        let mut b = Vec::new();
        resp.encode(&mut b);
        prop_assert_eq!(Response::parse(&b, false), Ok(resp));
    }

    #[test]
    fn v6_responses_same_after_conversion(resp in arb_response(true)) {
        let mut b = Vec::new();
        resp.encode(&mut b);
        prop_assert_eq!(Response::parse(&b, true), Ok(resp));
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::parse(&b, MAX_SCRAPE_INFO_HASHES);
        let _ = Response::parse(&b, false);
        let _ = Response::parse(&b, true);
    }
}
