//! One torrent machine and one scripted peer: the peer-wire policy end to end through
//! `handle_input` / `poll_action` (leniency, issue 9; bounded uploads, issue 15).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::PeerId;
use crate::bitfield::Bitfield;
use crate::lengths::{BLOCK_LEN, Lengths, MAX_REQUEST_LEN};
use crate::torrent::{Action, Config, DisconnectReason, Input, PeerInfo, PeerKey, Torrent};
use crate::wire::{BlockSpec, Message};

const PIECE: u32 = 256 * 1024;

struct Rig {
    t: Torrent,
    now: Instant,
}

impl Rig {
    /// A torrent of `pieces` pieces of 256 KiB, of which we have `have`.
    fn new(pieces: u32, have: Bitfield, config: Config) -> Self {
        let lengths = Lengths::new(u64::from(pieces) * u64::from(PIECE), PIECE).unwrap();
        let now = Instant::now();
        let mut t = Torrent::new(lengths, have, config, now, 1);
        while t.poll_action().is_some() {}
        Self { t, now }
    }

    fn leecher(pieces: u32) -> Self {
        Self::new(pieces, Bitfield::new(pieces), Config::default())
    }

    fn seed(pieces: u32, config: Config) -> Self {
        Self::new(pieces, Bitfield::full(pieces), config)
    }

    fn connect(&mut self, key: u64, fast: bool) -> PeerKey {
        let peer = PeerKey(key);
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&key.to_be_bytes());
        let info = PeerInfo {
            addr: format!("10.0.0.{key}:6881").parse().unwrap(),
            peer_id: PeerId(id),
            supports_fast: fast,
            supports_extensions: false,
            outgoing: false,
        };
        self.t
            .handle_input(self.now, Input::PeerConnected { peer, info });
        self.drain();
        peer
    }

    fn send(&mut self, peer: PeerKey, msg: Message) -> Vec<Action> {
        self.t
            .handle_input(self.now, Input::PeerMessage { peer, msg });
        self.drain()
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.t.handle_input(self.now, input);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.t.poll_action()).collect()
    }

    fn availability(&self, piece: u32) -> u16 {
        self.t
            .picker
            .availability(self.t.lengths.validate_piece(piece).unwrap())
    }
}

fn disconnects(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Disconnect { .. }))
        .count()
}

fn sent(actions: &[Action], want: impl Fn(&Message) -> bool) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send { msg, .. } if want(msg)))
        .count()
}

fn request(index: u32, begin: u32, len: u32) -> Message {
    Message::Request(BlockSpec { index, begin, len })
}

fn bitfield(pieces: u32, set: &[u32]) -> Message {
    let mut b = Bitfield::new(pieces);
    for &i in set {
        b.set_raw(i);
    }
    Message::Bitfield(b.to_wire())
}

/// Issue 9: aria2c 1.36 sends have-none, `have`s, then a full bitfield again. The new set
/// replaces the old one and availability moves exactly: old set out, new set in.
#[test]
fn r9_a_bitfield_after_haves_replaces_the_piece_set() {
    let mut r = Rig::leecher(8);
    let p = r.connect(1, true);
    let mut all = r.send(p, Message::HaveNone);
    for i in [0, 1, 2] {
        all.extend(r.send(p, Message::Have(i)));
    }
    assert_eq!(r.availability(1), 1);
    all.extend(r.send(p, bitfield(8, &[2, 3, 4])));
    all.extend(r.send(p, bitfield(8, &[2, 3, 4])));
    assert_eq!(disconnects(&all), 0, "{all:?}");
    let avail: Vec<u16> = (0..8).map(|i| r.availability(i)).collect();
    assert_eq!(avail, [0, 0, 1, 1, 1, 0, 0, 0]);
    all.extend(r.send(p, Message::HaveAll));
    assert!((0..8).all(|i| r.availability(i) == 1));
    assert_eq!(disconnects(&all), 0);
}

#[test]
fn interest_follows_a_replaced_piece_set() {
    let mut r = Rig::leecher(4);
    let p = r.connect(1, true);
    let a = r.send(p, Message::HaveAll);
    assert_eq!(sent(&a, |m| *m == Message::Interested), 1);
    let a = r.send(p, Message::HaveNone);
    assert_eq!(sent(&a, |m| *m == Message::NotInterested), 1);
    assert_eq!(r.availability(0), 0);
    let a = r.send(p, bitfield(4, &[3]));
    assert_eq!(sent(&a, |m| *m == Message::Interested), 1);
}

/// Everything libtorrent tolerates, in one conversation: nothing closes the connection.
#[test]
fn tolerated_messages_never_disconnect() {
    let mut r = Rig::seed(4, Config::default());
    let p = r.connect(1, true);
    let mut all = Vec::new();
    for m in [
        Message::KeepAlive,
        Message::Unknown { id: 42 },
        Message::Extended {
            id: 9,
            payload: Bytes::from_static(b"?"),
        },
        Message::Interested,
        Message::Interested,
        Message::HaveNone,
        Message::Have(1),
        Message::Have(1),
        Message::Cancel(BlockSpec {
            index: 0,
            begin: 0,
            len: BLOCK_LEN,
        }),
        Message::Reject(BlockSpec {
            index: 0,
            begin: 0,
            len: BLOCK_LEN,
        }),
        Message::Suggest(2),
        Message::AllowedFast(2),
        request(9, 0, BLOCK_LEN),
        request(0, 0, MAX_REQUEST_LEN + 1),
        request(0, PIECE - 1, 2),
        Message::NotInterested,
    ] {
        all.extend(r.send(p, m));
    }
    assert_eq!(disconnects(&all), 0, "{all:?}");
}

#[test]
fn requests_of_up_to_128_kib_are_served_larger_ones_rejected() {
    let mut r = Rig::seed(4, Config::default());
    let p = r.connect(1, true);
    r.send(p, Message::Interested);
    let a = r.send(p, request(1, 0, MAX_REQUEST_LEN));
    let block = a
        .iter()
        .find_map(|a| match a {
            Action::Read { block, .. } => Some(*block),
            _ => None,
        })
        .expect("a 128 KiB request is read");
    assert_eq!(block.len, MAX_REQUEST_LEN);
    let a = r.input(Input::BlockRead {
        peer: p,
        block,
        data: Bytes::from(vec![7; MAX_REQUEST_LEN as usize]),
    });
    assert_eq!(
        sent(
            &a,
            |m| matches!(m, Message::Piece { data, .. } if data.len() == MAX_REQUEST_LEN as usize)
        ),
        1
    );
    let a = r.send(p, request(1, 0, MAX_REQUEST_LEN + 1));
    assert_eq!(sent(&a, |m| matches!(m, Message::Reject(_))), 1);
    assert_eq!(disconnects(&a), 0);
}

#[test]
fn requests_while_choked_are_rejected_with_fast_and_ignored_without() {
    let config = Config {
        max_unchoked: 1,
        ..Config::default()
    };
    let mut r = Rig::seed(4, config);
    let first = r.connect(1, true);
    r.send(first, Message::Interested); // takes the one slot
    for (key, fast) in [(2, true), (3, false)] {
        let p = r.connect(key, fast);
        let a = r.send(p, request(0, 0, BLOCK_LEN));
        assert_eq!(disconnects(&a), 0);
        assert!(!a.iter().any(|a| matches!(a, Action::Read { .. })));
        let rejects = sent(&a, |m| matches!(m, Message::Reject(_)));
        assert_eq!(rejects, usize::from(fast), "fast={fast}: {a:?}");
    }
}

/// Issue 15: a peer that floods requests and never reads its socket gets at most
/// `max_peer_upload_bytes` read and queued for it; the rest waits, unread, until the edge
/// reports bytes written.
#[test]
fn r15_a_request_flood_holds_at_most_the_per_peer_bound() {
    let config = Config::default();
    let bound = config.max_peer_upload_bytes;
    let mut r = Rig::seed(64, config);
    let p = r.connect(1, true);
    r.send(p, Message::Interested);
    let mut reads = Vec::new();
    for i in 0..1024u32 {
        let (piece, block) = (i / 16, i % 16);
        for a in r.send(p, request(piece, block * BLOCK_LEN, BLOCK_LEN)) {
            if let Action::Read { block, .. } = a {
                reads.push(block);
            }
        }
    }
    let mut piece_bytes = 0u64;
    // Answer every read at once (a fast disk); the peer never reads, so nothing is written.
    while let Some(block) = reads.pop() {
        let data = Bytes::from(vec![0; block.len as usize]);
        for a in r.input(Input::BlockRead {
            peer: p,
            block,
            data,
        }) {
            match a {
                Action::Read { block, .. } => reads.push(block),
                Action::Send {
                    msg: Message::Piece { data, .. },
                    ..
                } => piece_bytes += data.len() as u64,
                _ => {}
            }
        }
        assert!(r.t.upload_bytes_held(p) <= bound);
    }
    assert_eq!(piece_bytes, bound, "exactly the bound went out, no more");
    // The socket drains: the next requests are read.
    let a = r.input(Input::UploadWritten {
        peer: p,
        bytes: 2 * u64::from(BLOCK_LEN),
    });
    let more = a
        .iter()
        .filter(|a| matches!(a, Action::Read { .. }))
        .count();
    assert_eq!(more, 2);
}

#[test]
fn reads_in_flight_over_all_peers_stay_under_the_global_cap() {
    let config = Config {
        max_upload_read_bytes: 1024 * 1024,
        ..Config::default()
    };
    let cap = config.max_upload_read_bytes;
    let mut r = Rig::seed(64, config);
    let mut reads = Vec::new();
    for k in 1..=8 {
        let p = r.connect(k, true);
        r.send(p, Message::Interested);
        for i in 0..64u32 {
            for a in r.send(p, request(i / 16, (i % 16) * BLOCK_LEN, BLOCK_LEN)) {
                if let Action::Read { peer, block } = a {
                    reads.push((peer, block));
                }
            }
        }
        assert!(r.t.upload_bytes_reading() <= cap);
    }
    let issued: u64 = reads.iter().map(|(_, b)| u64::from(b.len)).sum();
    assert_eq!(issued, cap, "the disk is kept busy up to the cap");
    // One read returns: exactly its room is handed to the next waiting peer.
    let (peer, block) = reads[0];
    let a = r.input(Input::BlockRead {
        peer,
        block,
        data: Bytes::from(vec![0; block.len as usize]),
    });
    assert_eq!(
        a.iter()
            .filter(|a| matches!(a, Action::Read { .. }))
            .count(),
        1
    );
    assert!(r.t.upload_bytes_reading() <= cap);
}

/// BEP 6: with an allowed-fast grant we ask for that piece while choked, and only for it.
#[test]
fn allowed_fast_pieces_are_requested_while_choked() {
    let mut r = Rig::leecher(8);
    let p = r.connect(1, true);
    r.send(p, Message::HaveAll);
    let a = r.send(p, Message::AllowedFast(5));
    let asked: Vec<u32> = a
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: Message::Request(s),
                ..
            } => Some(s.index),
            _ => None,
        })
        .collect();
    assert!(!asked.is_empty(), "no request for the allowed-fast piece");
    assert!(asked.iter().all(|&i| i == 5), "{asked:?}");
}

/// Suggestions are recorded but do not override rarest-first.
#[test]
fn a_suggestion_does_not_beat_a_rarer_piece() {
    let mut r = Rig::leecher(4);
    let (a, b) = (r.connect(1, true), r.connect(2, true));
    r.send(b, bitfield(4, &[0, 1, 2]));
    r.send(a, Message::HaveAll); // piece 3 is the rarest: only `a` has it
    r.send(a, Message::Suggest(0));
    let acts = r.send(a, Message::Unchoke);
    let first = acts.iter().find_map(|x| match x {
        Action::Send {
            msg: Message::Request(s),
            ..
        } => Some(s.index),
        _ => None,
    });
    assert_eq!(first, Some(3));
}

/// Issue 10: a peer on probation is asked for one piece, and for nothing more until that
/// piece's verdict; two bad verdicts ban it.
#[test]
fn r10_probation_asks_one_piece_per_verdict_and_two_bad_pieces_ban() {
    let mut r = Rig::leecher(16);
    let p = r.connect(1, false);
    r.send(p, bitfield(16, &(0..16).collect::<Vec<_>>()));
    let mut asked = requests_in(&r.send(p, Message::Unchoke));
    let mut bad_pieces = 0;
    loop {
        assert_eq!(
            asked.len(),
            (PIECE / BLOCK_LEN) as usize,
            "one piece's worth"
        );
        let mut verify = Vec::new();
        for s in asked.drain(..) {
            let data = Bytes::from(vec![0xEE; s.len as usize]);
            let a = r.send(
                p,
                Message::Piece {
                    index: s.index,
                    begin: s.begin,
                    data,
                },
            );
            assert!(
                requests_in(&a).is_empty(),
                "asked for more before the verdict"
            );
            verify.extend(a.iter().filter_map(|a| match a {
                Action::VerifyAndWrite { piece, .. } => Some(*piece),
                _ => None,
            }));
        }
        assert_eq!(verify.len(), 1);
        bad_pieces += 1;
        let a = r.input(Input::PieceVerified {
            piece: verify[0],
            ok: false,
        });
        if disconnects(&a) > 0 {
            break;
        }
        asked = requests_in(&a);
    }
    assert_eq!(bad_pieces, 2);
    assert_eq!(r.t.stats().peers_banned, 1);
}

fn requests_in(actions: &[Action]) -> Vec<BlockSpec> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: Message::Request(s),
                ..
            } => Some(*s),
            _ => None,
        })
        .collect()
}

/// The canary stall: the last piece was asked of a peer that then left (its agent's seeding
/// time ran out), so the piece is started but nobody is asked for it; the only peer left is
/// a complete one still on probation. It must be asked for that piece.
#[test]
fn r_stall_a_piece_whose_sender_left_is_asked_of_a_peer_on_probation() {
    let mut r = Rig::leecher(1);
    let gone = r.connect(1, true);
    r.send(gone, Message::HaveAll);
    let asked = requests_in(&r.send(gone, Message::Unchoke));
    assert_eq!(asked.len(), (PIECE / BLOCK_LEN) as usize);
    r.input(Input::PeerDisconnected { peer: gone });
    let left = r.connect(2, true);
    r.send(left, Message::HaveAll);
    let asked = requests_in(&r.send(left, Message::Unchoke));
    assert_eq!(
        asked.len(),
        (PIECE / BLOCK_LEN) as usize,
        "the whole piece from the peer on probation"
    );
}

/// Same with a piece of which the departed peer had sent some blocks: the peer on probation
/// fetches it again, whole (it owns it from then on, so a bad piece has one sender to blame).
#[test]
fn r_stall_a_half_received_piece_whose_sender_left_is_fetched_whole_from_a_peer_on_probation() {
    let mut r = Rig::leecher(1);
    let gone = r.connect(1, true);
    r.send(gone, Message::HaveAll);
    let asked = requests_in(&r.send(gone, Message::Unchoke));
    for s in &asked[..4] {
        r.send(
            gone,
            Message::Piece {
                index: s.index,
                begin: s.begin,
                data: Bytes::from(vec![0; s.len as usize]),
            },
        );
    }
    r.input(Input::PeerDisconnected { peer: gone });
    let left = r.connect(2, true);
    r.send(left, Message::HaveAll);
    let asked = requests_in(&r.send(left, Message::Unchoke));
    assert_eq!(
        asked.len(),
        (PIECE / BLOCK_LEN) as usize,
        "the whole piece again, from it alone"
    );
}

/// The canary stall, second cause: we dial a peer while it dials us; its connection wins
/// and ours is refused as a duplicate. When its connection ends, its address must be dialled
/// again (it stayed "connected" for good, so a host that both sides had refused this way
/// was never dialled by anyone again and, once the others left, sat alone).
#[test]
fn r_stall_a_dial_refused_as_a_duplicate_is_dialled_again_after_the_peer_leaves() {
    let mut r = Rig::leecher(4);
    let addr: std::net::SocketAddr = "10.0.0.9:6881".parse().unwrap();
    let dials = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::Connect { addr: x } if *x == addr))
            .count()
    };
    let a = r.input(Input::PeersDiscovered { addrs: vec![addr] });
    assert_eq!(dials(&a), 1);
    let id = PeerId([9; 20]);
    let info = |outgoing: bool, addr: std::net::SocketAddr| PeerInfo {
        addr,
        peer_id: id,
        supports_fast: true,
        supports_extensions: false,
        outgoing,
    };
    let theirs = PeerKey(1);
    r.input(Input::PeerConnected {
        peer: theirs,
        info: info(false, "10.0.0.9:40000".parse().unwrap()),
    });
    let ours = PeerKey(2);
    let a = r.input(Input::PeerConnected {
        peer: ours,
        info: info(true, addr),
    });
    assert_eq!(disconnects(&a), 1, "ours is the duplicate: {a:?}");
    r.input(Input::PeerDisconnected { peer: ours });
    let mut all = Vec::new();
    for _ in 0..8 {
        r.now += Duration::from_secs(1);
        r.t.handle_timeout(r.now);
        all.extend(r.drain());
    }
    assert_eq!(dials(&all), 0, "connected to it already: {all:?}");
    all.extend(r.input(Input::PeerDisconnected { peer: theirs }));
    for _ in 0..8 {
        r.now += Duration::from_secs(1);
        r.t.handle_timeout(r.now);
        all.extend(r.drain());
    }
    assert_eq!(dials(&all), 1, "dialled again once it left: {all:?}");
}

fn disconnected_for(actions: &[Action], reason: &DisconnectReason) -> Vec<PeerKey> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Disconnect { peer, reason: r } if r == reason => Some(*peer),
            _ => None,
        })
        .collect()
}

/// Issue 15: at `max_peers`, a newcomer takes the slot of the peer idle longest (connected
/// at least `idle_evict_after`, nothing going on); busy or young peers keep theirs.
#[test]
fn r15_a_full_torrent_evicts_its_longest_idle_peer_for_a_newcomer() {
    let config = Config {
        max_peers: 2,
        idle_evict_after: Duration::from_secs(30),
        ..Config::default()
    };
    // A seed: peers are idle until they say they are interested.
    let mut r = Rig::seed(4, config);
    let busy = r.connect(1, true);
    r.send(busy, Message::Interested);
    r.now += Duration::from_secs(5);
    let idle = r.connect(2, true);
    // Too young to evict: the newcomer is refused.
    r.now += Duration::from_secs(10);
    r.connect(3, true);
    assert_eq!(
        r.t.stats().peers_connected,
        2,
        "peer 3 refused while peer 2 is young"
    );
    // Old enough now: peer 2 (idle) goes, peer 1 (interested) stays.
    r.now += Duration::from_secs(30);
    r.t.handle_input(
        r.now,
        Input::PeerConnected {
            peer: PeerKey(4),
            info: PeerInfo {
                addr: "10.0.0.4:6881".parse().unwrap(),
                peer_id: PeerId([4; 20]),
                supports_fast: true,
                supports_extensions: false,
                outgoing: false,
            },
        },
    );
    let actions = r.drain();
    assert_eq!(
        disconnected_for(&actions, &DisconnectReason::Idle),
        vec![idle]
    );
    assert!(
        disconnected_for(&actions, &DisconnectReason::TooManyPeers).is_empty(),
        "the newcomer is admitted: {actions:?}"
    );
    // A second newcomer finds nobody idle (peer 2 is closing, 1 and 4 are new or busy).
    r.now += Duration::from_secs(1);
    let actions = r.input(Input::PeerConnected {
        peer: PeerKey(5),
        info: PeerInfo {
            addr: "10.0.0.5:6881".parse().unwrap(),
            peer_id: PeerId([5; 20]),
            supports_fast: true,
            supports_extensions: false,
            outgoing: false,
        },
    });
    assert_eq!(
        disconnected_for(&actions, &DisconnectReason::TooManyPeers),
        vec![PeerKey(5)]
    );
    assert!(disconnected_for(&actions, &DisconnectReason::Idle).is_empty());
}

/// Crossing dials: each end ends up with both connections, in either order; both ends must
/// keep the same one (the one the lower peer id dialled), or each would close the one the
/// other kept.
#[test]
fn crossing_dials_keep_the_connection_the_lower_peer_id_dialled_at_both_ends() {
    let (low, high) = (PeerId([1; 20]), PeerId([2; 20]));
    let info = |theirs: PeerId, outgoing: bool| PeerInfo {
        addr: "10.0.0.9:6881".parse().unwrap(),
        peer_id: theirs,
        supports_fast: true,
        supports_extensions: false,
        outgoing,
    };
    let closed = |actions: &[Action]| -> Vec<PeerKey> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Disconnect {
                    peer,
                    reason: DisconnectReason::Duplicate,
                } => Some(*peer),
                _ => None,
            })
            .collect()
    };
    // Connection X is dialled by `low`, Y by `high`. Both orders of arrival, at both ends.
    for x_first in [true, false] {
        for (us, them) in [(low, high), (high, low)] {
            let mut rig = Rig::leecher(4);
            rig.t = Torrent::new(
                Lengths::new(4 * u64::from(PIECE), PIECE).unwrap(),
                Bitfield::new(4),
                Config {
                    peer_id: us,
                    ..Config::default()
                },
                rig.now,
                1,
            );
            rig.drain();
            let we_dialled_x = us == low;
            let (x, y) = (PeerKey(1), PeerKey(2));
            let arrivals = if x_first {
                [(x, we_dialled_x), (y, !we_dialled_x)]
            } else {
                [(y, !we_dialled_x), (x, we_dialled_x)]
            };
            let mut dropped = Vec::new();
            for (peer, outgoing) in arrivals {
                let a = rig.input(Input::PeerConnected {
                    peer,
                    info: info(them, outgoing),
                });
                dropped.extend(closed(&a));
            }
            assert_eq!(
                dropped,
                vec![y],
                "x first: {x_first}, we are the low id: {}",
                us == low
            );
            rig.input(Input::PeerDisconnected { peer: y });
            assert_eq!(rig.t.peers.len(), 1);
            assert!(rig.t.peers.contains_key(&x));
        }
    }
}

/// Two seeds part at once as not useful to each other; the complete side must not dial the
/// other seed back a few seconds later (each such redial was refused at once, all through
/// `--seed-for`), but a leecher that left is dialled again.
#[test]
fn a_complete_torrent_does_not_redial_a_seed_it_left() {
    let mut rig = Rig::seed(4, Config::default());
    let (seed, leecher): (std::net::SocketAddr, std::net::SocketAddr) = (
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:6881".parse().unwrap(),
    );
    rig.input(Input::PeersDiscovered {
        addrs: vec![seed, leecher],
    });
    for (k, addr) in [(1u8, seed), (2, leecher)] {
        let info = PeerInfo {
            addr,
            peer_id: PeerId([k; 20]),
            supports_fast: true,
            supports_extensions: false,
            outgoing: true,
        };
        rig.input(Input::PeerConnected {
            peer: PeerKey(k.into()),
            info,
        });
    }
    let a = rig.send(PeerKey(1), Message::HaveAll);
    assert_eq!(disconnects(&a), 1, "two seeds stay connected: {a:?}");
    rig.input(Input::PeerDisconnected { peer: PeerKey(1) });
    rig.input(Input::PeerDisconnected { peer: PeerKey(2) });
    let mut dialled = Vec::new();
    for _ in 0..(60 * 4) {
        rig.now += Duration::from_millis(250);
        rig.t.handle_timeout(rig.now);
        for a in rig.drain() {
            if let Action::Connect { addr } = a {
                dialled.push(addr);
            }
        }
    }
    assert!(
        dialled.contains(&leecher),
        "the leecher was not dialled again"
    );
    assert!(
        !dialled.contains(&seed),
        "the seed was dialled again: {dialled:?}"
    );
}

/// BEP 10: our extended handshake tells the peer the address we see it at (`yourip`), the
/// source of its connection for an incoming one (a two-address host dials from the address
/// it does not listen on).
#[test]
fn the_extended_handshake_tells_the_peer_its_address_as_we_see_it() {
    use crate::wire::extension::ExtendedHandshake;

    let lengths = Lengths::new(4 * 16 * 1024, 16 * 1024).unwrap();
    let t0 = Instant::now();
    let mut t = Torrent::new(lengths, Bitfield::new(4), Config::default(), t0, 1);
    let addr: std::net::SocketAddr = "10.88.0.14:50123".parse().unwrap();
    let info = PeerInfo {
        addr,
        peer_id: PeerId([7; 20]),
        supports_fast: true,
        supports_extensions: true,
        outgoing: false,
    };
    t.handle_input(
        t0,
        Input::PeerConnected {
            peer: PeerKey(1),
            info,
        },
    );
    let hs = std::iter::from_fn(|| t.poll_action())
        .find_map(|a| match a {
            Action::Send {
                msg: Message::Extended { id: 0, payload },
                ..
            } => Some(ExtendedHandshake::decode(&payload).expect("our handshake decodes")),
            _ => None,
        })
        .expect("an extended handshake is sent to a peer that supports extensions");
    assert_eq!(hs.yourip, Some(addr.ip()));
}
