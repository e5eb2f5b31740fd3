//! What a torrent remembers about peers after they leave (identities for late hash
//! verdicts, strikes, bans, peer ids seen, addresses), with a cap: [`Fifo`] forgets its
//! oldest entry when a new one would pass the cap. A long-running origin sees every host of
//! every deployment come and go; without caps these maps only ever grow.
//!
//! Invariant: `order` holds each key of `map` exactly once, oldest first, so eviction is
//! O(1) and `len() <= cap` after every call.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Identities of departed peers kept for hash verdicts that arrive after they left.
pub(crate) const MAX_DEPARTED: usize = 4096;
/// Peer ids with strikes (bad pieces) against them.
pub(crate) const MAX_STRIKES: usize = 4096;
/// Banned peer ids, and banned addresses: the oldest ban is lifted first.
pub(crate) const MAX_BANS: usize = 4096;
/// Distinct peer ids counted in `Stats::peers_seen` (it saturates there).
pub(crate) const MAX_SEEN: usize = 65_536;

/// A map with at most `cap` keys; inserting a new key at the cap evicts the oldest.
#[derive(Debug, Clone)]
pub(crate) struct Fifo<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V> Fifo<K, V> {
    /// An empty map holding at most `cap` (at least 1) keys.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The value of `k`, made with `make` (evicting the oldest key at the cap) if absent.
    pub(crate) fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&k) {
            self.make_room();
            self.order.push_back(k);
        }
        self.map.entry(k).or_insert_with(make)
    }

    /// Inserts or replaces; returns true if `k` was new.
    pub(crate) fn insert(&mut self, k: K, v: V) -> bool {
        if let Some(slot) = self.map.get_mut(&k) {
            *slot = v;
            return false;
        }
        self.make_room();
        self.order.push_back(k);
        self.map.insert(k, v);
        true
    }

    fn make_room(&mut self) {
        if self.map.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_key_goes_first_and_the_cap_holds() {
        let mut f = Fifo::new(3);
        for k in 0..3 {
            assert!(f.insert(k, k * 10));
        }
        assert!(!f.insert(1, 11), "a known key is replaced, not added");
        assert_eq!(f.get(&1), Some(&11));
        assert!(f.insert(3, 30));
        assert_eq!(f.len(), 3);
        assert!(!f.contains(&0), "0 was the oldest");
        assert!(f.contains(&1) && f.contains(&2) && f.contains(&3));
        *f.get_or_insert_with(2, || 0) += 1;
        assert_eq!(f.get(&2), Some(&21));
        *f.get_or_insert_with(4, || 40) += 1;
        assert_eq!((f.get(&4), f.contains(&1), f.len()), (Some(&41), false, 3));
    }

    #[test]
    fn a_cap_of_zero_is_read_as_one() {
        let mut f = Fifo::new(0);
        f.insert('a', ());
        f.insert('b', ());
        assert_eq!((f.len(), f.contains(&'b')), (1, true));
    }
}
