// Casts here are of small literal counts.
#![allow(clippy::cast_possible_truncation)]
use std::collections::HashSet;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::lengths::BLOCK_LEN;

const PIECE: u32 = 4 * BLOCK_LEN;

fn setup(pieces: u32) -> (Lengths, Picker) {
    let l = Lengths::new(pieces as u64 * PIECE as u64, PIECE).unwrap();
    (l, Picker::new(l, Bitfield::new(pieces)))
}

fn bf(len: u32, set: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(len);
    for &i in set {
        b.set_raw(i);
    }
    b
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

/// The liars of a good verdict (panics on a bad one).
fn liars(v: Verdict) -> Vec<PeerKey> {
    match v {
        Verdict::Good { liars, .. } => liars,
        bad => panic!("expected a good verdict, got {bad:?}"),
    }
}

/// What `p` picks for peer `peer` (with a fresh seeded rng).
fn picks(
    p: &mut Picker,
    peer: u64,
    theirs: &Bitfield,
    scope: PeerScope,
    fallback: bool,
    max: usize,
) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(
        PeerKey(peer),
        theirs,
        scope,
        fallback,
        false,
        max,
        &mut rng(),
        &mut out,
    );
    out
}

#[test]
fn rarest_piece_is_picked_first() {
    let (_, mut p) = setup(4);
    p.add_peer_pieces(&bf(4, &[0, 1, 2, 3]), PeerScope::Local);
    p.add_peer_pieces(&bf(4, &[0, 1, 3]), PeerScope::Local);
    p.add_peer_pieces(&bf(4, &[0, 1, 3]), PeerScope::Local);
    let mut out = Vec::new();
    p.pick(
        PeerKey(1),
        &bf(4, &[0, 1, 2, 3]),
        PeerScope::Local,
        false,
        false,
        4,
        &mut rng(),
        &mut out,
    );
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|b| b.piece.get() == 2), "{out:?}");
}

#[test]
fn partial_pieces_are_finished_first() {
    let (_, mut p) = setup(8);
    let all = Bitfield::full(8);
    p.add_peer_pieces(&all, PeerScope::Local);
    let out = picks(&mut p, 1, &all, PeerScope::Local, false, 2);
    let first_piece = out[0].piece;
    // Peer 1 leaves; its requests return to the pool.
    for b in out {
        p.release(PeerKey(1), b);
    }
    let out = picks(&mut p, 2, &all, PeerScope::Local, false, 4);
    assert!(out.iter().all(|b| b.piece == first_piece), "{out:?}");
}

#[test]
fn blocks_are_not_requested_twice_outside_endgame() {
    let (_, mut p) = setup(10);
    let all = Bitfield::full(10);
    let mut out = picks(&mut p, 1, &all, PeerScope::Local, false, 5);
    out.extend(picks(&mut p, 2, &all, PeerScope::Local, false, 5));
    assert!(!p.in_endgame());
    let unique: HashSet<_> = out.iter().collect();
    assert_eq!(unique.len(), out.len());
}

#[test]
fn endgame_duplicates_in_flight_blocks() {
    let (_, mut p) = setup(1);
    let all = Bitfield::full(1);
    let a = picks(&mut p, 1, &all, PeerScope::Local, false, 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    let b = picks(&mut p, 2, &all, PeerScope::Local, false, 10);
    assert_eq!(a, b, "second peer duplicates every block");
    let c = picks(&mut p, 3, &all, PeerScope::Local, false, 10);
    assert!(c.is_empty(), "at most two requesters per block");
    // The first answer cancels the duplicate.
    match p.block_received(PeerKey(2), a[0], &[0; BLOCK_LEN as usize]) {
        Received::Accepted { cancel, complete } => {
            assert_eq!(cancel, vec![PeerKey(1)]);
            assert!(complete.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.block_received(PeerKey(1), a[0], &[0; BLOCK_LEN as usize]),
        Received::Duplicate
    ));
}

#[test]
fn completed_piece_carries_its_bytes_in_order() {
    let (l, mut p) = setup(1);
    let all = Bitfield::full(1);
    let out = picks(&mut p, 1, &all, PeerScope::Local, false, 10);
    let mut done = None;
    for b in out.iter().rev() {
        let data = vec![b.index() as u8; b.len as usize];
        if let Received::Accepted {
            complete: Some(d), ..
        } = p.block_received(PeerKey(1), *b, &data)
        {
            done = Some(d);
        }
    }
    let d = done.expect("piece completes");
    assert_eq!(d.len() as u32, l.piece_len(out[0].piece));
    for (i, chunk) in d.chunks(BLOCK_LEN as usize).enumerate() {
        assert!(chunk.iter().all(|&x| x == i as u8));
    }
    assert_eq!(liars(p.piece_verified(out[0].piece, true)), vec![]);
    assert!(p.have().is_full());
}

/// Issue 10: a piece that failed with blocks from several peers is fetched again from one
/// peer only, so its next verdict has a single sender; a peer on probation is never given a
/// block of a piece another peer sends.
#[test]
fn a_failed_piece_is_refetched_from_one_peer_and_probation_never_shares() {
    let (_, mut p) = setup(1);
    let all = Bitfield::full(1);
    let (a, b) = (PeerKey(1), PeerKey(2));
    let mut first = Vec::new();
    p.pick(
        a,
        &all,
        PeerScope::Local,
        false,
        false,
        2,
        &mut rng(),
        &mut first,
    );
    let mut newcomer = Vec::new();
    p.pick(
        b,
        &all,
        PeerScope::Local,
        false,
        true,
        4,
        &mut rng(),
        &mut newcomer,
    );
    assert!(
        newcomer.is_empty(),
        "probation joined a shared piece: {newcomer:?}"
    );
    let mut second = Vec::new();
    p.pick(
        b,
        &all,
        PeerScope::Local,
        false,
        false,
        2,
        &mut rng(),
        &mut second,
    );
    let mut piece = None;
    for (peer, blk) in first
        .iter()
        .map(|x| (a, x))
        .chain(second.iter().map(|x| (b, x)))
    {
        if let Received::Accepted {
            complete: Some(_), ..
        } = p.block_received(peer, *blk, &vec![0; blk.len as usize])
        {
            piece = Some(blk.piece);
        }
    }
    let piece = piece.expect("the piece completed");
    assert_eq!(
        p.piece_verified(piece, false),
        Verdict::Bad { sole_sender: None }
    );
    let mut again = Vec::new();
    p.pick(
        a,
        &all,
        PeerScope::Local,
        false,
        false,
        2,
        &mut rng(),
        &mut again,
    );
    assert_eq!(again.len(), 2);
    let mut other = Vec::new();
    p.pick(
        b,
        &all,
        PeerScope::Local,
        false,
        false,
        4,
        &mut rng(),
        &mut other,
    );
    assert!(
        other.is_empty(),
        "a second sender joined the re-fetch: {other:?}"
    );
}

#[test]
fn unsolicited_blocks_are_flagged() {
    let (l, mut p) = setup(2);
    let b = l.block(l.validate_piece(1).unwrap(), 0).unwrap();
    assert!(matches!(
        p.block_received(PeerKey(1), b, &[0; BLOCK_LEN as usize]),
        Received::Unsolicited
    ));
}

/// Two peers share a piece; it fails; it is fetched again from the honest one; the block
/// that differs names the liar.
#[test]
fn smart_ban_names_the_peer_whose_block_differed() {
    let (_, mut p) = setup(1);
    let all = Bitfield::full(1);
    let (honest, liar) = (PeerKey(1), PeerKey(2));
    let mut a = Vec::new();
    p.pick(
        honest,
        &all,
        PeerScope::Local,
        false,
        false,
        2,
        &mut rng(),
        &mut a,
    );
    let mut b = Vec::new();
    p.pick(
        liar,
        &all,
        PeerScope::Local,
        false,
        false,
        2,
        &mut rng(),
        &mut b,
    );
    let good = |blk: &BlockRef| vec![blk.index() as u8 + 1; blk.len as usize];
    for blk in &a {
        p.block_received(honest, *blk, &good(blk));
    }
    let mut piece = None;
    for blk in &b {
        if let Received::Accepted {
            complete: Some(_), ..
        } = p.block_received(liar, *blk, &[0xEE; BLOCK_LEN as usize])
        {
            piece = Some(blk.piece);
        }
    }
    let piece = piece.unwrap();
    assert_eq!(
        p.piece_verified(piece, false),
        Verdict::Bad { sole_sender: None }
    );
    let mut again = Vec::new();
    p.pick(
        honest,
        &all,
        PeerScope::Local,
        false,
        false,
        4,
        &mut rng(),
        &mut again,
    );
    assert_eq!(again.len(), 4);
    for blk in &again {
        p.block_received(honest, *blk, &good(blk));
    }
    assert_eq!(liars(p.piece_verified(piece, true)), vec![liar]);
}

#[test]
fn sole_sender_of_a_bad_piece_is_named() {
    let (_, mut p) = setup(1);
    let all = Bitfield::full(1);
    let a = picks(&mut p, 9, &all, PeerScope::Local, false, 4);
    for blk in &a {
        p.block_received(PeerKey(9), *blk, &[1; BLOCK_LEN as usize]);
    }
    assert_eq!(
        p.piece_verified(a[0].piece, false),
        Verdict::Bad {
            sole_sender: Some(PeerKey(9))
        }
    );
    assert!(!p.have().is_full());
}

#[test]
fn remote_peers_only_bring_pieces_new_to_the_fabric() {
    let (_, mut p) = setup(3);
    p.add_peer_pieces(&bf(3, &[0, 1]), PeerScope::Local);
    let out = picks(&mut p, 5, &Bitfield::full(3), PeerScope::Remote, false, 8);
    assert!(!out.is_empty());
    assert!(out.iter().all(|b| b.piece.get() == 2), "{out:?}");
}

/// Outside its share, a host brings a piece in from another fabric only once the piece has
/// been visible there for the fall-back delay, and one such piece at a time.
#[test]
fn fallback_fetches_wait_for_the_delay_and_go_one_at_a_time() {
    let (_, mut p) = setup(8);
    p.set_fabric_share(Some(FabricShare { rank: 0, of: 4 })); // ours: pieces 0 and 4
    p.set_fallback_delay(Duration::from_millis(250));
    let t0 = Instant::now();
    p.set_now(t0);
    let theirs = bf(8, &[1, 2, 3]); // none of them ours
    p.add_peer_pieces(&theirs, PeerScope::Remote);
    let pick = |p: &mut Picker, peer: u64| {
        let mut out = Vec::new();
        p.pick(
            PeerKey(peer),
            &theirs,
            PeerScope::Remote,
            true,
            false,
            16,
            &mut rng(),
            &mut out,
        );
        out
    };
    p.set_now(t0 + Duration::from_millis(200));
    assert!(pick(&mut p, 1).is_empty(), "fetched before the delay");
    p.set_now(t0 + Duration::from_millis(250));
    let first = pick(&mut p, 1);
    let pieces: HashSet<u32> = first.iter().map(|b| b.piece.get()).collect();
    assert_eq!(pieces.len(), 1, "one fall-back piece at a time: {first:?}");
    // The first ripe one is piece 3: its owner (rank 3) ranks just before us (0 of 4), so
    // we are its first backup; we are the third for piece 1.
    assert!(pieces.contains(&3), "{first:?}");
    assert!(
        pick(&mut p, 2).is_empty(),
        "a second fall-back piece while one is in flight"
    );
    // Without the fall-back flag (same-fabric peers still have work for us) nothing outside
    // the share is asked of another fabric.
    let out = picks(&mut p, 3, &theirs, PeerScope::Remote, false, 16);
    assert!(out.is_empty(), "{out:?}");
}

/// Fall-back waits are staggered by rank: the host right after a piece's owner may bring it
/// in after one delay, the next after two, and so on, so idle hosts do not all fetch the
/// same piece when its owner is slow.
#[test]
fn fallback_waits_grow_with_the_distance_from_the_owner() {
    let (_, mut p) = setup(8);
    p.set_fabric_share(Some(FabricShare { rank: 0, of: 4 }));
    p.set_fallback_delay(Duration::from_millis(100));
    let t0 = Instant::now();
    p.set_now(t0);
    let theirs = bf(8, &[1]); // owner rank 1: we are its third backup
    p.add_peer_pieces(&theirs, PeerScope::Remote);
    p.set_now(t0 + Duration::from_millis(299));
    let out = picks(&mut p, 1, &theirs, PeerScope::Remote, true, 16);
    assert!(out.is_empty(), "fetched before three delays: {out:?}");
    p.set_now(t0 + Duration::from_millis(300));
    let out = picks(&mut p, 1, &theirs, PeerScope::Remote, true, 16);
    assert!(
        !out.is_empty() && out.iter().all(|b| b.piece.get() == 1),
        "{out:?}"
    );
}

/// End-game duplicates are asked of same-fabric peers only.
#[test]
fn endgame_never_duplicates_across_fabrics() {
    let (_, mut p) = setup(1);
    let all = Bitfield::full(1);
    let a = picks(&mut p, 1, &all, PeerScope::Remote, false, 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    let b = picks(&mut p, 2, &all, PeerScope::Remote, false, 10);
    assert!(b.is_empty(), "remote duplicate: {b:?}");
    let c = picks(&mut p, 3, &all, PeerScope::Local, false, 10);
    assert_eq!(a, c, "a same-fabric peer still duplicates");
}

proptest! {
    /// Against a naive model: outside end-game no block is ever outstanding twice, and
    /// every block eventually arrives exactly once if peers answer everything.
    #[test]
    fn random_schedules_complete_without_double_requests(
        pieces in 1u32..12,
        seed in any::<u64>(),
        peers in 1u64..5,
        max in 1usize..9,
    ) {
        let (l, mut p) = setup(pieces);
        let all = Bitfield::full(pieces);
        for _ in 0..peers { p.add_peer_pieces(&all, PeerScope::Local); }
        let mut r = SmallRng::seed_from_u64(seed);
        let mut rounds = 0;
        while !p.have().is_full() {
            rounds += 1;
            prop_assert!(rounds < 10_000);
            let peer = PeerKey(r.gen_range(0..peers));
            let mut out = Vec::new();
            let endgame = p.in_endgame();
            // Some picks on probation, so owned and adopted pieces come and go too.
            let probation = r.gen_bool(0.3);
            p.pick(peer, &all, PeerScope::Local, false, probation, max, &mut r, &mut out);
            let unique: HashSet<_> = out.iter().collect();
            prop_assert_eq!(unique.len(), out.len());
            for b in out {
                prop_assert!(endgame || p.in_endgame() || p.is_requested_from(peer, b));
                if r.gen_bool(0.2) {
                    p.release(peer, b);
                    continue;
                }
                if let Received::Accepted { complete: Some(d), .. } = p.block_received(peer, b, &vec![1; b.len as usize]) {
                    prop_assert_eq!(d.len() as u32, l.piece_len(b.piece));
                    prop_assert_eq!(liars(p.piece_verified(b.piece, true)), vec![]);
                }
                prop_assert!(p.open_is_consistent(), "{}", p.debug_state());
            }
        }
    }
}

#[test]
fn fabric_share_parses_rank_of() {
    assert_eq!(
        "3/40".parse::<FabricShare>(),
        Ok(FabricShare { rank: 3, of: 40 })
    );
    assert_eq!(FabricShare { rank: 3, of: 40 }.to_string(), "3/40");
    for bad in ["3", "40/40", "1/0", "a/2", "-1/2"] {
        assert!(bad.parse::<FabricShare>().is_err(), "{bad}");
    }
}

/// The split rule: a growing fabric moves only pieces to the newcomer, each rank owns about
/// the same number, and a power-of-two count is `index % of`.
#[test]
fn fabric_share_owners_stay_put_as_the_fabric_grows() {
    const PIECES: u32 = 1024;
    for n in 1..300u32 {
        let mut owned = vec![0u32; n as usize + 1];
        for i in 0..PIECES {
            let (before, after) = (FabricShare::owner(i, n), FabricShare::owner(i, n + 1));
            assert!(
                before < n && after <= n,
                "piece {i}: {before} of {n}, {after}"
            );
            assert!(
                after == before || after == n,
                "piece {i} moved from {before} to {after}, not to the newcomer {n}"
            );
            owned[after as usize] += 1;
        }
        let (min, max) = (owned.iter().min().unwrap(), owned.iter().max().unwrap());
        if n < PIECES {
            assert!(
                *min >= 1 && max <= &(2 * min + 1),
                "{n} + 1 hosts: {owned:?}"
            );
        }
        if n.is_power_of_two() {
            assert!((0..PIECES).all(|i| FabricShare::owner(i, n) == i % n));
        }
    }
    let s = FabricShare { rank: 5, of: 6 };
    let mine: Vec<u32> = (0..32).filter(|&i| s.owns(i)).collect();
    assert_eq!(
        mine,
        [5, 13, 21, 29],
        "of 6, rank 5 holds half of what rank 1 held of 4"
    );
}
