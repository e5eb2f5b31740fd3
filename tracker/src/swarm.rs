//! The swarm registry, sans-IO: which peers are in which torrent, in which fabric, until
//! when. Time (`now`, whole seconds on the tracker's clock) and randomness are arguments.
//!
//! Invariants, per torrent and address family ([`PeerMap`]):
//! - every peer is in exactly one fabric group, and `index[peer_id]` names its slot;
//! - `group_of[fabric]` names the group of every fabric that has one, so an announce finds
//!   its group in O(1) instead of scanning them under the shard lock;
//! - a torrent holds at most [`SwarmConfig::max_peers`] peers and each of its maps at most
//!   [`SwarmConfig::max_fabrics`] groups: an announce that would need more is refused
//!   ([`Full`]) and never evicts an existing listing;
//! - `seeders + leechers` equals the number of peers;
//! - in each group, the downloading hosts (every peer but origins) hold distinct share
//!   slots `0..slots`, and `free` holds exactly the slots below `slots` that nobody holds;
//! - a peer whose `expires` is not after `now` is gone after the next [`Torrents::clean`];
//! - a peer list never contains the announcer and has at most `numwant` entries, of which
//!   at most [`SwarmConfig::bridges`] are from another fabric when the announcer's fabric
//!   is known.
//!
//! - an entry can only be refreshed, moved or removed by announces from the source address
//!   that created it (`Announce::source`): a peer may be listed under an address it
//!   announced (`ip=`, the BEP 15 IP field, when the tracker trusts them), but nobody at
//!   another source can take that listing over by sending the same peer id.
//!
//! A peer of unknown fabric (a plain BitTorrent client, no map entry) gets a uniform sample
//! of the whole swarm; to a peer of known fabric, peers of unknown fabric count as
//! cross-fabric (bridges), since nothing says they are near.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};

use proto::picker::FabricShare;
use proto::tracker::AnnounceEvent;
use proto::{InfoHash, PeerId};
use rand::Rng;

/// Whole seconds on the tracker's own clock (since it started).
pub type Secs = u32;

/// A fabric, as a 64-bit hash of its name (no interning, so no shared table between
/// workers); [`FabricId::UNKNOWN`] when the peer did not say and no map matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FabricId(pub u64);

impl FabricId {
    /// The peer's fabric is not known: it gets a uniform sample of the swarm.
    pub const UNKNOWN: Self = Self(0);

    /// FNV-1a of the name; 0 is remapped so that it stays [`FabricId::UNKNOWN`].
    pub fn from_name(name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h.max(1))
    }

    /// True for a known fabric.
    pub fn is_known(self) -> bool {
        self != Self::UNKNOWN
    }
}

/// Knobs of peer handout and expiry: the registry's run-time copy of the `[swarm]` section
/// ([`crate::config::RegistryConfig`]) and of `[fabric] bridges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Seconds between regular announces, sent to clients.
    pub interval: Secs,
    /// Extra seconds a silent peer is kept after its interval.
    pub grace: Secs,
    /// Peers handed out when the client does not say.
    pub default_numwant: u32,
    /// Most peers handed out in one reply.
    pub max_numwant: u32,
    /// Most cross-fabric peers handed to a peer whose fabric is known.
    pub bridges: u32,
    /// Most peers per torrent (both address families); 0: unlimited.
    pub max_peers: u32,
    /// Most fabric groups per torrent and address family (the unknown fabric counts as
    /// one); 0: unlimited.
    pub max_fabrics: u32,
}

/// Why an announce was refused: the torrent is at one of its caps. Existing listings stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// A new peer, but the torrent already lists `max` peers.
    #[error("torrent is full: {max} peers listed")]
    Peers {
        /// [`SwarmConfig::max_peers`].
        max: u32,
    },
    /// A new fabric, but the torrent already has `max` fabric groups.
    #[error("torrent is full: {max} fabrics listed")]
    Fabrics {
        /// [`SwarmConfig::max_fabrics`].
        max: u32,
    },
}

/// Address types a peer list can hold.
pub trait PeerAddr: Copy + Eq + std::fmt::Debug {}
impl PeerAddr for SocketAddrV4 {}
impl PeerAddr for SocketAddrV6 {}

/// One announce, as the registry needs it.
#[derive(Debug, Clone, Copy)]
pub struct Announce<A> {
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Where other peers reach it.
    pub addr: A,
    /// The address the announce came from (the packet's or connection's source), which
    /// owns the entry; usually `addr`'s IP.
    pub source: IpAddr,
    /// Bytes it still misses (0: seeder).
    pub left: u64,
    /// Life-cycle event.
    pub event: AnnounceEvent,
    /// Its fabric.
    pub fabric: FabricId,
    /// Peers it asked for (`None`: default).
    pub numwant: Option<u32>,
}

/// Counters sent with every announce reply and scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TorrentCounts {
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// Peers still downloading.
    pub leechers: u32,
    /// `completed` events seen since the torrent appeared on this tracker.
    pub completed: u32,
    /// The announcer's share of its fabric (see [`PeerMap::fabric_share`]); `None` in a
    /// scrape, for a peer of unknown fabric and for an origin.
    pub fabric_share: Option<FabricShare>,
}

#[derive(Debug, Clone, Copy)]
struct Peer<A> {
    id: PeerId,
    addr: A,
    source: IpAddr,
    seeder: bool,
    /// Its fabric-share rank (see [`PeerMap::fabric_share`]); `None` for an origin (listed
    /// first with nothing left), which is not one of the fabric's downloaders.
    slot: Option<u32>,
    expires: Secs,
}

#[derive(Debug)]
struct Group<A> {
    fabric: FabricId,
    peers: Vec<Peer<A>>,
    /// Share slots handed out: the fabric's count of downloading hosts.
    slots: u32,
    /// Slots below `slots` whose host left, reused lowest first.
    free: BTreeSet<u32>,
}

impl<A> Group<A> {
    /// The lowest free share slot, now taken.
    fn take_slot(&mut self) -> u32 {
        self.free.pop_first().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        })
    }

    /// A host left: its slot is free for the next one. The count shrinks when the highest
    /// slots are free, so their pieces go back to the hosts that had them before.
    fn release_slot(&mut self, slot: u32) {
        self.free.insert(slot);
        while self.slots > 0 && self.free.last() == Some(&(self.slots - 1)) {
            self.free.pop_last();
            self.slots -= 1;
        }
    }
}

/// The peers of one torrent and one address family, grouped by fabric.
#[derive(Debug)]
pub struct PeerMap<A> {
    groups: Vec<Group<A>>,
    /// fabric → its group's position in `groups`.
    group_of: HashMap<FabricId, u32>,
    /// peer id → (group, position).
    index: HashMap<PeerId, (u32, u32)>,
    seeders: u32,
    leechers: u32,
}

impl<A> Default for PeerMap<A> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            group_of: HashMap::new(),
            index: HashMap::new(),
            seeders: 0,
            leechers: 0,
        }
    }
}

fn idx(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 peers per torrent")
}

impl<A: PeerAddr> PeerMap<A> {
    /// Number of peers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no peer is left.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn count(&mut self, seeder: bool, delta: i32) {
        let c = if seeder {
            &mut self.seeders
        } else {
            &mut self.leechers
        };
        *c = c.wrapping_add_signed(delta);
    }

    /// Removes the peer in `(g, pos)`, keeping `index` right for the peer moved into its
    /// slot.
    fn remove_at(&mut self, g: usize, pos: usize) -> Peer<A> {
        let group = &mut self.groups[g];
        let gone = group.peers.swap_remove(pos);
        if let Some(moved) = group.peers.get(pos) {
            self.index.insert(moved.id, (idx(g), idx(pos)));
        }
        if let Some(slot) = gone.slot {
            group.release_slot(slot);
        }
        self.index.remove(&gone.id);
        self.count(gone.seeder, -1);
        gone
    }

    /// The group of `fabric`, made if there is none yet.
    fn group_or_insert(&mut self, fabric: FabricId) -> usize {
        if let Some(&g) = self.group_of.get(&fabric) {
            return g as usize;
        }
        self.groups.push(Group {
            fabric,
            peers: Vec::new(),
            slots: 0,
            free: BTreeSet::new(),
        });
        let g = self.groups.len() - 1;
        self.group_of.insert(fabric, idx(g));
        g
    }

    /// The group of `fabric`, if it has peers here.
    fn group(&self, fabric: FabricId) -> Option<&Group<A>> {
        self.group_of
            .get(&fabric)
            .map(|&g| &self.groups[g as usize])
    }

    /// Whether `a` would need a fabric group beyond `max_fabrics` (0: unlimited). Moving an
    /// existing peer to a new fabric needs one too.
    fn needs_group_beyond(&self, a: &Announce<A>, max_fabrics: u32) -> bool {
        max_fabrics != 0
            && !self.group_of.contains_key(&a.fabric)
            && self.groups.len() >= max_fabrics as usize
    }

    fn is_listed(&self, id: &PeerId) -> bool {
        self.index.contains_key(id)
    }

    /// True if an entry for `id` exists and belongs to another source than `source`.
    fn foreign(&self, id: &PeerId, source: IpAddr) -> bool {
        self.index
            .get(id)
            .is_some_and(|&(g, pos)| self.groups[g as usize].peers[pos as usize].source != source)
    }

    /// Inserts or refreshes a peer. Returns whether it was a known leecher before (for
    /// counting completions once). The caller checked [`PeerMap::foreign`].
    fn upsert(&mut self, a: &Announce<A>, expires: Secs) -> Option<bool> {
        let seeder = a.left == 0;
        let previous = match self.index.get(&a.peer_id).copied() {
            Some((g, pos)) if self.groups[g as usize].fabric == a.fabric => {
                let p = &mut self.groups[g as usize].peers[pos as usize];
                let was_seeder = p.seeder;
                p.addr = a.addr;
                p.seeder = seeder;
                p.expires = expires;
                if was_seeder != seeder {
                    self.count(was_seeder, -1);
                    self.count(seeder, 1);
                }
                return Some(was_seeder);
            }
            // Known, but it moved fabric: take it out and re-insert below.
            Some((g, pos)) => Some(self.remove_at(g as usize, pos as usize).seeder),
            None => None,
        };
        let g = self.group_or_insert(a.fabric);
        let group = &mut self.groups[g];
        let origin = seeder && previous.is_none();
        let slot = (!origin).then(|| group.take_slot());
        group.peers.push(Peer {
            id: a.peer_id,
            addr: a.addr,
            source: a.source,
            seeder,
            slot,
            expires,
        });
        self.index
            .insert(a.peer_id, (idx(g), idx(group.peers.len() - 1)));
        self.count(seeder, 1);
        previous
    }

    /// The share of `id` in its fabric group: its slot as rank, and the slots handed out
    /// (every peer listed there except origins) as the count. Slots go in the order hosts
    /// join, a departed host's to the next one, and a host keeps its slot until it leaves
    /// (finished or not): a host's rank never moves, and as hosts arrive the count grows,
    /// so its share only shrinks (see [`FabricShare::owner`]). Ranking by peer id instead
    /// moved almost every host's rank at each arrival, and every piece's owner with it.
    fn fabric_share(&self, id: &PeerId) -> Option<FabricShare> {
        let &(g, pos) = self.index.get(id)?;
        let group = &self.groups[g as usize];
        let rank = group.peers[pos as usize].slot?;
        group.fabric.is_known().then_some(FabricShare {
            rank,
            of: group.slots,
        })
    }

    fn remove(&mut self, id: &PeerId) {
        if let Some((g, pos)) = self.index.get(id).copied() {
            self.remove_at(g as usize, pos as usize);
        }
    }

    /// Appends up to `want` peers of `groups` to `out`, never `me`, starting at a random
    /// offset of their concatenation (contiguous runs are as good as a random sample here:
    /// swap-removal keeps shuffling the order).
    fn sample<'g>(
        groups: impl Iterator<Item = &'g Group<A>> + Clone,
        me: &PeerId,
        want: usize,
        rng: &mut impl Rng,
        out: &mut Vec<A>,
    ) -> usize
    where
        A: 'g,
    {
        let total: usize = groups.clone().map(|g| g.peers.len()).sum();
        if want == 0 || total == 0 {
            return 0;
        }
        let start = rng.gen_range(0..total);
        let mut added = 0;
        let mut seen = 0;
        // Two passes over the concatenation: from `start` to the end, then from 0 to `start`.
        for pass in 0..2 {
            let mut offset = 0;
            for g in groups.clone() {
                let (lo, hi) = (offset, offset + g.peers.len());
                offset = hi;
                let (from, to) = if pass == 0 {
                    (start.max(lo), hi)
                } else {
                    (lo, start.min(hi))
                };
                if from >= to {
                    continue;
                }
                for p in &g.peers[from - lo..to - lo] {
                    seen += 1;
                    if p.id != *me {
                        out.push(p.addr);
                        added += 1;
                        if added == want {
                            return added;
                        }
                    }
                }
            }
        }
        debug_assert_eq!(seen, total);
        added
    }

    /// Up to `want` cross-fabric peers, each drawn independently so that bridges spread over
    /// the other fabrics instead of coming from one run of one fabric. Costs O(`want`), not
    /// O(fabrics), except when every other peer fits the list anyway.
    fn bridges(&self, mine: FabricId, want: usize, rng: &mut impl Rng, out: &mut Vec<A>) -> usize {
        let total = self.len() - self.group(mine).map_or(0, |g| g.peers.len());
        let want = want.min(total);
        if want == total {
            for g in self.groups.iter().filter(|g| g.fabric != mine) {
                out.extend(g.peers.iter().map(|p| p.addr));
            }
            return total;
        }
        let first = out.len();
        let mut tries = 0;
        // Rejection sampling over groups: mine and groups emptied since the last clean are
        // drawn again, within the bounded number of tries.
        while out.len() - first < want && tries < 8 * want {
            tries += 1;
            let g = &self.groups[rng.gen_range(0..self.groups.len())];
            if g.fabric == mine || g.peers.is_empty() {
                continue;
            }
            let p = g.peers[rng.gen_range(0..g.peers.len())].addr;
            if !out[first..].contains(&p) {
                out.push(p);
            }
        }
        out.len() - first
    }

    /// Fills `out` for an announcer of fabric `fabric`.
    fn select(
        &self,
        fabric: FabricId,
        me: &PeerId,
        numwant: usize,
        bridges: usize,
        rng: &mut impl Rng,
        out: &mut Vec<A>,
    ) {
        if !fabric.is_known() {
            Self::sample(self.groups.iter(), me, numwant, rng, out);
            return;
        }
        let cross_wanted = bridges.min(numwant);
        let same = Self::sample(
            self.group(fabric).into_iter(),
            me,
            numwant - cross_wanted,
            rng,
            out,
        );
        // Bridges are capped: a small fabric gets fewer peers, not more cross traffic.
        let _ = same;
        self.bridges(fabric, cross_wanted, rng, out);
    }

    /// Panics unless both indexes name exactly the peers and groups there are.
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.group_of.len(), self.groups.len());
        for (g, group) in self.groups.iter().enumerate() {
            assert_eq!(self.group_of[&group.fabric], idx(g));
            for (pos, p) in group.peers.iter().enumerate() {
                assert_eq!(self.index[&p.id], (idx(g), idx(pos)));
            }
            let mut held: Vec<u32> = group.peers.iter().filter_map(|p| p.slot).collect();
            held.extend(group.free.iter().copied());
            held.sort_unstable();
            assert_eq!(
                held,
                (0..group.slots).collect::<Vec<_>>(),
                "slots held or free"
            );
        }
        let listed: usize = self.groups.iter().map(|g| g.peers.len()).sum();
        assert_eq!(listed, self.index.len());
    }

    fn clean(&mut self, now: Secs) {
        for g in (0..self.groups.len()).rev() {
            let mut pos = 0;
            while pos < self.groups[g].peers.len() {
                if self.groups[g].peers[pos].expires <= now {
                    self.remove_at(g, pos);
                } else {
                    pos += 1;
                }
            }
        }
        if self.groups.iter().any(|g| g.peers.is_empty()) {
            self.groups.retain(|g| !g.peers.is_empty());
            // Group numbers shifted: rebuild both indexes.
            self.index.clear();
            self.group_of.clear();
            for (g, group) in self.groups.iter().enumerate() {
                self.group_of.insert(group.fabric, idx(g));
                for (pos, p) in group.peers.iter().enumerate() {
                    self.index.insert(p.id, (idx(g), idx(pos)));
                }
            }
        }
    }
}

/// One torrent: its IPv4 and IPv6 peers and its completion counter.
#[derive(Debug, Default)]
pub struct Torrent {
    v4: PeerMap<SocketAddrV4>,
    v6: PeerMap<SocketAddrV6>,
    completed: u32,
}

impl Torrent {
    fn counts(&self) -> TorrentCounts {
        TorrentCounts {
            seeders: self.v4.seeders + self.v6.seeders,
            leechers: self.v4.leechers + self.v6.leechers,
            completed: self.completed,
            fabric_share: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether `a` may be listed: a refresh always may; a new peer or a new fabric only
    /// below the caps.
    fn admits<A: Family>(&mut self, cfg: &SwarmConfig, a: &Announce<A>) -> Result<(), Full> {
        let known = A::map(self).is_listed(&a.peer_id);
        if !known && cfg.max_peers != 0 && self.len() >= cfg.max_peers as usize {
            return Err(Full::Peers { max: cfg.max_peers });
        }
        if A::map(self).needs_group_beyond(a, cfg.max_fabrics) {
            return Err(Full::Fabrics {
                max: cfg.max_fabrics,
            });
        }
        Ok(())
    }
}

/// Access to the family-specific map of a torrent.
pub trait Family: PeerAddr {
    /// The map of this family.
    fn map(t: &mut Torrent) -> &mut PeerMap<Self>;
}
impl Family for SocketAddrV4 {
    fn map(t: &mut Torrent) -> &mut PeerMap<Self> {
        &mut t.v4
    }
}
impl Family for SocketAddrV6 {
    fn map(t: &mut Torrent) -> &mut PeerMap<Self> {
        &mut t.v6
    }
}

/// All torrents of one shard.
#[derive(Debug, Default)]
pub struct Torrents {
    map: HashMap<InfoHash, Torrent>,
}

impl Torrents {
    /// Records an announce and appends the reply's peers (same family as the announcer) to
    /// `out`. Returns the counters after the announce, or [`Full`] (and nothing in `out`,
    /// nothing changed) when listing the announcer would pass a cap.
    pub fn announce<A: Family>(
        &mut self,
        cfg: &SwarmConfig,
        info_hash: InfoHash,
        a: &Announce<A>,
        now: Secs,
        rng: &mut impl Rng,
        out: &mut Vec<A>,
    ) -> Result<TorrentCounts, Full> {
        if a.event == AnnounceEvent::Stopped {
            // Do not create a torrent just to remove a peer from it.
            let Some(t) = self.map.get_mut(&info_hash) else {
                return Ok(TorrentCounts::default());
            };
            if !A::map(t).foreign(&a.peer_id, a.source) {
                A::map(t).remove(&a.peer_id);
            }
            let counts = t.counts();
            if t.is_empty() {
                self.map.remove(&info_hash);
            }
            return Ok(counts);
        }
        let t = self.map.entry(info_hash).or_default();
        let expires = now.saturating_add(cfg.interval).saturating_add(cfg.grace);
        // Another source's peer id: answer with peers, but leave its listing alone.
        if !A::map(t).foreign(&a.peer_id, a.source) {
            // A new torrent has no peer and no group, so it is never refused: no empty
            // torrent is left behind.
            t.admits(cfg, a)?;
            let was_seeder = A::map(t).upsert(a, expires);
            // Count a completion once per peer: a peer that never was a seeder here.
            if a.event == AnnounceEvent::Completed && was_seeder != Some(true) {
                t.completed = t.completed.saturating_add(1);
            }
        }
        let numwant = a
            .numwant
            .unwrap_or(cfg.default_numwant)
            .min(cfg.max_numwant) as usize;
        A::map(t).select(
            a.fabric,
            &a.peer_id,
            numwant,
            cfg.bridges as usize,
            rng,
            out,
        );
        let mut counts = t.counts();
        counts.fabric_share = A::map(t).fabric_share(&a.peer_id);
        Ok(counts)
    }

    /// Counters of a torrent (zero when unknown).
    pub fn scrape(&self, info_hash: &InfoHash) -> TorrentCounts {
        self.map
            .get(info_hash)
            .map(Torrent::counts)
            .unwrap_or_default()
    }

    /// Drops peers whose time ran out, then torrents left empty.
    pub fn clean(&mut self, now: Secs) {
        self.map.retain(|_, t| {
            t.v4.clean(now);
            t.v6.clean(now);
            !t.is_empty()
        });
    }

    /// Forgets a torrent (it was unregistered).
    pub fn remove(&mut self, info_hash: &InfoHash) {
        self.map.remove(info_hash);
    }

    /// Keeps only the torrents `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&InfoHash) -> bool) {
        self.map.retain(|h, _| keep(h));
    }

    /// Number of torrents with at least one peer.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no torrent has a peer.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total peers over all torrents.
    pub fn peers(&self) -> usize {
        self.map.values().map(|t| t.v4.len() + t.v6.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const CFG: SwarmConfig = SwarmConfig {
        interval: 100,
        grace: 20,
        default_numwant: 50,
        max_numwant: 80,
        bridges: 2,
        max_peers: 0,
        max_fabrics: 0,
    };

    /// An announce that must stay below the caps.
    fn go<A: Family>(
        t: &mut Torrents,
        cfg: &SwarmConfig,
        h: InfoHash,
        a: &Announce<A>,
        now: Secs,
        rng: &mut SmallRng,
        out: &mut Vec<A>,
    ) -> TorrentCounts {
        t.announce(cfg, h, a, now, rng, out)
            .expect("no cap is reached")
    }

    fn pid(n: u32) -> PeerId {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&n.to_be_bytes());
        PeerId(id)
    }

    fn addr(n: u32) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::from(0x0a00_0000 + n), 6881)
    }

    fn ann(n: u32, fabric: &str, left: u64, event: AnnounceEvent) -> Announce<SocketAddrV4> {
        Announce {
            peer_id: pid(n),
            addr: addr(n),
            source: IpAddr::V4(*addr(n).ip()),
            left,
            event,
            fabric: if fabric.is_empty() {
                FabricId::UNKNOWN
            } else {
                FabricId::from_name(fabric)
            },
            numwant: None,
        }
    }

    const H: InfoHash = InfoHash([7; 20]);

    #[test]
    fn fabric_share_ranks_downloaders_in_join_order_within_their_fabric() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        let mut share = |n, fabric, left, event| {
            go(
                &mut t,
                &CFG,
                H,
                &ann(n, fabric, left, event),
                1,
                &mut rng,
                &mut out,
            )
            .fabric_share
        };
        let of = |rank, of| Some(FabricShare { rank, of });
        // An origin in f1 is nobody's share; f2's hosts do not count in f1.
        assert_eq!(share(1, "f1", 0, AnnounceEvent::Started), None);
        assert_eq!(share(9, "f1", 10, AnnounceEvent::Started), of(0, 1));
        assert_eq!(share(5, "f1", 10, AnnounceEvent::Started), of(1, 2));
        assert_eq!(share(2, "f2", 10, AnnounceEvent::Started), of(0, 1));
        assert_eq!(share(7, "f1", 10, AnnounceEvent::Started), of(2, 3));
        // Ranks stay as hosts arrive, whatever their peer ids; finishing keeps a place.
        assert_eq!(share(9, "f1", 10, AnnounceEvent::None), of(0, 3));
        assert_eq!(share(5, "f1", 0, AnnounceEvent::Completed), of(1, 3));
        // A departed host's slot goes to the next one; the count shrinks only from the top.
        share(5, "f1", 0, AnnounceEvent::Stopped);
        assert_eq!(share(7, "f1", 10, AnnounceEvent::None), of(2, 3));
        assert_eq!(share(4, "f1", 10, AnnounceEvent::Started), of(1, 3));
        share(7, "f1", 10, AnnounceEvent::Stopped);
        assert_eq!(share(4, "f1", 10, AnnounceEvent::None), of(1, 2));
        assert_eq!(share(2, "f2", 10, AnnounceEvent::None), of(0, 1));
        assert_eq!(share(3, "", 10, AnnounceEvent::Started), None);
    }

    #[test]
    fn r9_another_source_cannot_take_over_or_remove_a_listing() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        // Peer 1 announces from 10.0.0.1 and asks to be listed under 192.0.2.7 (NAT).
        let listed = Announce {
            addr: SocketAddrV4::new([192, 0, 2, 7].into(), 7000),
            ..ann(1, "", 0, AnnounceEvent::Started)
        };
        go(&mut t, &CFG, H, &listed, 0, &mut rng, &mut out);
        // Someone at 10.0.0.66 sends peer 1's id with its own address, then a stop.
        let thief = Announce {
            addr: SocketAddrV4::new([10, 0, 0, 66].into(), 6666),
            source: IpAddr::V4([10, 0, 0, 66].into()),
            ..ann(1, "", 0, AnnounceEvent::None)
        };
        go(&mut t, &CFG, H, &thief, 1, &mut rng, &mut out);
        let stop = Announce {
            event: AnnounceEvent::Stopped,
            ..thief
        };
        go(&mut t, &CFG, H, &stop, 2, &mut rng, &mut out);
        out.clear();
        go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 1, AnnounceEvent::Started),
            3,
            &mut rng,
            &mut out,
        );
        assert_eq!(out, vec![listed.addr]);
        // The owner itself can still stop.
        go(
            &mut t,
            &CFG,
            H,
            &Announce {
                event: AnnounceEvent::Stopped,
                ..listed
            },
            4,
            &mut rng,
            &mut out,
        );
        out.clear();
        go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 1, AnnounceEvent::None),
            5,
            &mut rng,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn announce_counts_seeders_leechers_and_completions_once() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        go(
            &mut t,
            &CFG,
            H,
            &ann(1, "", 0, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        let c = go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 10, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        assert_eq!((c.seeders, c.leechers, c.completed), (1, 1, 0));
        let c = go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 0, AnnounceEvent::Completed),
            1,
            &mut rng,
            &mut out,
        );
        assert_eq!((c.seeders, c.leechers, c.completed), (2, 0, 1));
        // A repeated completed event from a seeder is not counted again.
        let c = go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 0, AnnounceEvent::Completed),
            2,
            &mut rng,
            &mut out,
        );
        assert_eq!(c.completed, 1);
        let c = go(
            &mut t,
            &CFG,
            H,
            &ann(1, "", 0, AnnounceEvent::Stopped),
            3,
            &mut rng,
            &mut out,
        );
        assert_eq!((c.seeders, c.leechers), (1, 0));
        assert_eq!(t.scrape(&H).seeders, 1);
    }

    #[test]
    fn peers_expire_after_interval_plus_grace() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        go(
            &mut t,
            &CFG,
            H,
            &ann(1, "", 5, AnnounceEvent::Started),
            10,
            &mut rng,
            &mut out,
        );
        go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 5, AnnounceEvent::Started),
            50,
            &mut rng,
            &mut out,
        );
        // Peer 1 expires at 10 + 100 + 20 = 130; peer 2 at 170.
        t.clean(129);
        assert_eq!(t.scrape(&H).leechers, 2);
        t.clean(130);
        assert_eq!(t.scrape(&H).leechers, 1);
        // A re-announce pushes expiry forward.
        go(
            &mut t,
            &CFG,
            H,
            &ann(2, "", 5, AnnounceEvent::None),
            160,
            &mut rng,
            &mut out,
        );
        t.clean(200);
        assert_eq!(t.scrape(&H).leechers, 1);
        t.clean(280);
        assert!(t.is_empty(), "empty torrents are dropped");
    }

    #[test]
    fn stopped_for_unknown_torrent_creates_nothing() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        go(
            &mut t,
            &CFG,
            H,
            &ann(1, "", 5, AnnounceEvent::Stopped),
            0,
            &mut rng,
            &mut out,
        );
        assert!(t.is_empty());
    }

    #[test]
    fn same_fabric_first_and_bridges_capped() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut out = Vec::new();
        // 10 peers in f1 (ids 0..10), 10 in f2 (10..20), 10 in f3 (20..30).
        for n in 0..30 {
            let f = ["f1", "f2", "f3"][(n / 10) as usize];
            go(
                &mut t,
                &CFG,
                H,
                &ann(n, f, 5, AnnounceEvent::Started),
                0,
                &mut rng,
                &mut out,
            );
        }
        for _ in 0..50 {
            out.clear();
            let a = Announce {
                numwant: Some(20),
                ..ann(3, "f1", 5, AnnounceEvent::None)
            };
            go(&mut t, &CFG, H, &a, 1, &mut rng, &mut out);
            let same: Vec<_> = out
                .iter()
                .filter(|p| (p.ip().octets()[3] as u32) < 10)
                .collect();
            let cross = out.len() - same.len();
            assert_eq!(same.len(), 9, "all other f1 peers first: {out:?}");
            assert_eq!(cross, 2, "exactly `bridges` cross-fabric peers");
            assert!(!out.contains(&addr(3)), "never the announcer");
            let mut dedup = out.clone();
            dedup.sort_by_key(|a| a.ip().octets());
            dedup.dedup();
            assert_eq!(dedup.len(), out.len(), "no duplicates");
        }
    }

    #[test]
    fn bridges_zero_keeps_lists_inside_the_fabric() {
        let cfg = SwarmConfig { bridges: 0, ..CFG };
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut out = Vec::new();
        for n in 0..6 {
            let f = if n < 3 { "a" } else { "b" };
            go(
                &mut t,
                &cfg,
                H,
                &ann(n, f, 5, AnnounceEvent::Started),
                0,
                &mut rng,
                &mut out,
            );
        }
        out.clear();
        go(
            &mut t,
            &cfg,
            H,
            &ann(0, "a", 5, AnnounceEvent::None),
            0,
            &mut rng,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|p| p.ip().octets()[3] < 3));
    }

    #[test]
    fn unknown_fabric_gets_a_uniform_sample() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(9);
        let mut out = Vec::new();
        for n in 0..20 {
            let f = if n % 2 == 0 { "a" } else { "b" };
            go(
                &mut t,
                &CFG,
                H,
                &ann(n, f, 5, AnnounceEvent::Started),
                0,
                &mut rng,
                &mut out,
            );
        }
        out.clear();
        go(
            &mut t,
            &CFG,
            H,
            &ann(99, "", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        assert_eq!(out.len(), 20, "everyone but itself");
    }

    #[test]
    fn moving_fabric_keeps_one_entry() {
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(9);
        let mut out = Vec::new();
        go(
            &mut t,
            &CFG,
            H,
            &ann(1, "a", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        go(
            &mut t,
            &CFG,
            H,
            &ann(2, "a", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        let c = go(
            &mut t,
            &CFG,
            H,
            &ann(1, "b", 5, AnnounceEvent::None),
            0,
            &mut rng,
            &mut out,
        );
        assert_eq!(c.leechers, 2);
        out.clear();
        go(
            &mut t,
            &CFG,
            H,
            &ann(3, "b", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        // Peer 1 now in b (same fabric), peer 2 in a as a bridge.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], addr(1));
    }

    #[test]
    fn a_new_peer_beyond_the_cap_is_refused_and_evicts_nobody() {
        let cfg = SwarmConfig {
            max_peers: 3,
            ..CFG
        };
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        for n in 1..=3 {
            go(
                &mut t,
                &cfg,
                H,
                &ann(n, "", 5, AnnounceEvent::Started),
                0,
                &mut rng,
                &mut out,
            );
        }
        out.clear();
        let r = t.announce(
            &cfg,
            H,
            &ann(4, "", 5, AnnounceEvent::Started),
            1,
            &mut rng,
            &mut out,
        );
        assert_eq!(r, Err(Full::Peers { max: 3 }));
        assert!(out.is_empty(), "a refused announce gets no peers: {out:?}");
        assert_eq!(t.scrape(&H).leechers, 3);
        // Listed peers still refresh, and see each other (never peer 4).
        let c = go(
            &mut t,
            &cfg,
            H,
            &ann(2, "", 0, AnnounceEvent::Completed),
            2,
            &mut rng,
            &mut out,
        );
        assert_eq!((c.seeders, c.leechers), (1, 2));
        assert_eq!(out.len(), 2);
        assert!(!out.contains(&addr(4)));
        // A slot freed by a stop is taken by the next newcomer.
        go(
            &mut t,
            &cfg,
            H,
            &ann(3, "", 5, AnnounceEvent::Stopped),
            3,
            &mut rng,
            &mut out,
        );
        go(
            &mut t,
            &cfg,
            H,
            &ann(4, "", 5, AnnounceEvent::Started),
            4,
            &mut rng,
            &mut out,
        );
        assert_eq!(t.peers(), 3);
    }

    #[test]
    fn a_new_fabric_beyond_the_cap_is_refused_and_moves_nobody() {
        let cfg = SwarmConfig {
            max_fabrics: 2,
            ..CFG
        };
        let mut t = Torrents::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        go(
            &mut t,
            &cfg,
            H,
            &ann(1, "a", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        go(
            &mut t,
            &cfg,
            H,
            &ann(2, "b", 5, AnnounceEvent::Started),
            0,
            &mut rng,
            &mut out,
        );
        let r = t.announce(
            &cfg,
            H,
            &ann(3, "c", 5, AnnounceEvent::Started),
            1,
            &mut rng,
            &mut out,
        );
        assert_eq!(r, Err(Full::Fabrics { max: 2 }));
        // Peer 1 moving to a third fabric is refused too, and stays listed in a.
        let r = t.announce(
            &cfg,
            H,
            &ann(1, "c", 5, AnnounceEvent::None),
            1,
            &mut rng,
            &mut out,
        );
        assert_eq!(r, Err(Full::Fabrics { max: 2 }));
        out.clear();
        go(
            &mut t,
            &cfg,
            H,
            &ann(4, "a", 5, AnnounceEvent::Started),
            2,
            &mut rng,
            &mut out,
        );
        assert_eq!(out.first(), Some(&addr(1)), "peer 1 is still in a: {out:?}");
        // Once fabric b is gone (expired and swept), c fits.
        go(
            &mut t,
            &cfg,
            H,
            &ann(1, "a", 5, AnnounceEvent::None),
            100,
            &mut rng,
            &mut out,
        );
        go(
            &mut t,
            &cfg,
            H,
            &ann(4, "a", 5, AnnounceEvent::None),
            100,
            &mut rng,
            &mut out,
        );
        t.clean(120);
        go(
            &mut t,
            &cfg,
            H,
            &ann(3, "c", 5, AnnounceEvent::Started),
            121,
            &mut rng,
            &mut out,
        );
        assert_eq!(t.peers(), 3);
    }

    proptest! {
        #[test]
        fn caps_hold_and_indexes_stay_right(
            ops in proptest::collection::vec((0u32..40, 0usize..6, 0u32..4, 0u32..120), 1..300),
            max_peers in 1u32..20,
            max_fabrics in 1u32..5,
        ) {
            let cfg = SwarmConfig { max_peers, max_fabrics, ..CFG };
            let mut t = Torrents::default();
            let mut rng = SmallRng::seed_from_u64(7);
            let mut out = Vec::new();
            let fabrics = ["", "a", "b", "c", "d", "e"];
            for (n, f, ev, now) in ops {
                // Every fifth peer id is an origin (nothing left), which holds no share slot.
                let left = u64::from(n % 5 != 0);
                let a = ann(n, fabrics[f], left, AnnounceEvent::from_udp(ev).unwrap());
                let before = t.peers();
                if t.announce(&cfg, H, &a, now, &mut rng, &mut out).is_err() {
                    prop_assert_eq!(t.peers(), before, "a refusal changes nothing");
                }
                t.clean(now / 2);
                prop_assert!(t.peers() <= max_peers as usize);
                if let Some(tor) = t.map.get(&H) {
                    tor.v4.check();
                    prop_assert!(tor.v4.groups.len() <= max_fabrics as usize);
                }
            }
        }

        #[test]
        fn lists_are_bounded_and_never_contain_the_announcer(
            ops in proptest::collection::vec((0u32..40, 0usize..4, any::<bool>(), 0u32..4, 0u32..120), 1..300),
            seed in any::<u64>(),
        ) {
            let mut t = Torrents::default();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut out = Vec::new();
            let fabrics = ["", "a", "b", "c"];
            for (n, f, seeder, ev, numwant) in ops {
                out.clear();
                let a = Announce {
                    numwant: Some(numwant),
                    ..ann(n, fabrics[f], if seeder { 0 } else { 1 }, AnnounceEvent::from_udp(ev).unwrap())
                };
                go(&mut t, &CFG, H, &a, n, &mut rng, &mut out);
                prop_assert!(out.len() <= numwant.min(CFG.max_numwant) as usize);
                prop_assert!(!out.contains(&addr(n)));
                t.clean(n / 2);
                let c = t.scrape(&H);
                prop_assert_eq!((c.seeders + c.leechers) as usize, t.peers());
            }
        }
    }
}
