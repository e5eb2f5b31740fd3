//! Who we upload to. The fleet is cooperative (every host wants the whole swarm done, not a
//! fair trade), so there is no tit-for-tat: we unchoke as many interested peers as our upload
//! can serve well, favouring the peers that have the least, since they hold the swarm back.
//! One slot rotates randomly so that nobody starves when slots are short.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::torrent::PeerKey;

/// What the choker needs to know about one connected peer.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The peer.
    pub peer: PeerKey,
    /// It told us it is interested.
    pub interested: bool,
    /// Pieces it has (fewer = more deserving).
    pub pieces: u32,
}

/// Picks the peers to unchoke this round. `slots == 0` unchokes every interested peer.
pub fn choose_unchoked(candidates: &[Candidate], slots: usize, rng: &mut impl Rng) -> Vec<PeerKey> {
    let mut interested: Vec<Candidate> = candidates
        .iter()
        .copied()
        .filter(|c| c.interested)
        .collect();
    if slots == 0 || interested.len() <= slots {
        return interested.into_iter().map(|c| c.peer).collect();
    }
    // Random order first, then a stable sort: ties between equally-advanced peers are broken
    // randomly, so rounds do not always favour the same peers.
    interested.shuffle(rng);
    interested.sort_by_key(|c| c.pieces);
    let regular = slots.saturating_sub(1).max(1);
    let mut chosen: Vec<PeerKey> = interested[..regular].iter().map(|c| c.peer).collect();
    if slots > regular {
        let rest = &interested[regular..];
        chosen.push(rest[rng.gen_range(0..rest.len())].peer);
    }
    chosen
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small literal counts
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn c(peer: u64, interested: bool, pieces: u32) -> Candidate {
        Candidate {
            peer: PeerKey(peer),
            interested,
            pieces,
        }
    }

    #[test]
    fn unlimited_slots_unchoke_every_interested_peer() {
        let mut rng = SmallRng::seed_from_u64(1);
        let got = choose_unchoked(&[c(1, true, 5), c(2, false, 0), c(3, true, 9)], 0, &mut rng);
        assert_eq!(got, vec![PeerKey(1), PeerKey(3)]);
    }

    #[test]
    fn peers_with_fewest_pieces_are_favoured() {
        let mut rng = SmallRng::seed_from_u64(1);
        let cands: Vec<_> = (0..10).map(|i| c(i, true, 100 - i as u32 * 10)).collect();
        let got = choose_unchoked(&cands, 4, &mut rng);
        assert_eq!(got.len(), 4);
        for p in [9, 8, 7] {
            assert!(got.contains(&PeerKey(p)), "{got:?} lacks peer {p}");
        }
    }

    #[test]
    fn the_rotating_slot_eventually_reaches_everyone() {
        let mut rng = SmallRng::seed_from_u64(3);
        let cands: Vec<_> = (0..6).map(|i| c(i, true, i as u32)).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.extend(choose_unchoked(&cands, 3, &mut rng));
        }
        assert_eq!(seen.len(), 6);
    }
}
