//! The connected peers by [`PeerKey`]: a map with `BTreeMap`'s order and a flat layout.
//!
//! Keys come from the edge (never reused, mostly increasing) and a torrent holds at most
//! `max_peers` of them (tens), so the keys sit sorted in one small vector next to the peers,
//! in the same order. A lookup is a binary search over a few cache lines instead of a walk
//! down B-tree nodes (the simulator's hottest spot: a quarter of its time went into
//! `BTreeMap::get_mut` on every message); iteration is in key order, as before, so the
//! choker, the upload round-robin and every per-peer loop see the peers in the same order.
//! Insert and remove move the tail of both vectors, once per connection.
//!
//! Invariant: `keys` is strictly increasing and `peers[i]` belongs to `keys[i]`.

use super::types::PeerKey;

/// Values by [`PeerKey`], in key order (the torrent's `Peer`s; generic for the model test).
#[derive(Debug)]
pub(crate) struct PeerMap<V> {
    keys: Vec<PeerKey>,
    peers: Vec<V>,
}

impl<V> Default for PeerMap<V> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            peers: Vec::new(),
        }
    }
}

impl<V> PeerMap<V> {
    fn find(&self, key: &PeerKey) -> Result<usize, usize> {
        // Keys are handed out in increasing order: the newest peer is the likeliest miss
        // of a search, and the last slot is checked first.
        match self.keys.last() {
            Some(last) if last < key => Err(self.keys.len()),
            _ => self.keys.binary_search(key),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, key: &PeerKey) -> bool {
        self.find(key).is_ok()
    }

    pub(crate) fn get(&self, key: &PeerKey) -> Option<&V> {
        self.find(key).ok().map(|i| &self.peers[i])
    }

    pub(crate) fn get_mut(&mut self, key: &PeerKey) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.peers[i])
    }

    /// Adds or replaces the peer at `key`; returns the one replaced.
    pub(crate) fn insert(&mut self, key: PeerKey, peer: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.peers[i], peer)),
            Err(i) => {
                self.keys.insert(i, key);
                self.peers.insert(i, peer);
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &PeerKey) -> Option<V> {
        let i = self.find(key).ok()?;
        self.keys.remove(i);
        Some(self.peers.remove(i))
    }

    pub(crate) fn keys(&self) -> std::slice::Iter<'_, PeerKey> {
        self.keys.iter()
    }

    pub(crate) fn values(&self) -> std::slice::Iter<'_, V> {
        self.peers.iter()
    }

    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, V> {
        self.peers.iter_mut()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PeerKey, &V)> {
        self.keys.iter().zip(self.peers.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&PeerKey, &mut V)> {
        self.keys.iter().zip(self.peers.iter_mut())
    }
}

impl<'a, V> IntoIterator for &'a PeerMap<V> {
    type Item = (&'a PeerKey, &'a V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, PeerKey>, std::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter().zip(self.peers.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Against `BTreeMap`: same answers to every lookup and the same iteration order,
        /// whatever mix of inserts (in and out of order) and removes.
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((0u64..40, any::<bool>()), 0..200)) {
            let mut map = PeerMap::default();
            let mut model = BTreeMap::new();
            for (n, (k, insert)) in (0u32..).zip(ops) {
                let key = PeerKey(k);
                if insert {
                    prop_assert_eq!(map.insert(key, n), model.insert(key, n));
                } else {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.get(&key), model.get(&key));
                prop_assert_eq!(map.contains_key(&key), model.contains_key(&key));
                let ours: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
                let theirs: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(ours, theirs);
                prop_assert!(map.keys().copied().eq(model.keys().copied()));
            }
        }
    }
}
