//! State shared by every worker: the swarm registry split into shards by info-hash, each
//! behind its own mutex together with its part of the access list, so two workers only
//! contend when they touch torrents of the same shard. No lock is held across I/O, and
//! no code path holds two shard locks at once (so there is no lock order to keep).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use proto::InfoHash;
use rand::Rng;

use crate::Error;
use crate::access::AccessSet;
use crate::config::Config;
use crate::connection_id::ConnectionIds;
use crate::fabric_map::FabricMap;
use crate::stats::{Padded, Stats, StatsSnapshot};
use crate::swarm::{self, Announce, FabricId, Family, Secs, TorrentCounts, Torrents};

/// One shard: torrents whose info-hash maps here, and which of them may be served.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub(crate) torrents: Torrents,
    pub(crate) access: AccessSet,
}

/// Why an announce gets an error reply (BEP 15 error, HTTP `failure reason`) instead of
/// peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The info-hash is not served here.
    #[error("info-hash not registered with this tracker")]
    NotRegistered,
    /// Listing the announcer would pass a cap of the torrent.
    #[error(transparent)]
    Full(#[from] swarm::Full),
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) swarm: swarm::SwarmConfig,
    shards: Box<[Mutex<Shard>]>,
    pub(crate) ids: ConnectionIds,
    fabric_map: FabricMap,
    pub(crate) admin_token: Option<String>,
    /// Slot 0: HTTP and anything else; slot `w + 1`: UDP worker `w`.
    stats: Box<[Padded]>,
    start: Instant,
    pub(crate) shutdown: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        fabric_map: FabricMap,
        whitelist: Vec<InfoHash>,
        admin_token: Option<String>,
        key: [u8; 32],
    ) -> Self {
        let shards: Box<[Mutex<Shard>]> = (0..config.shards()).map(|_| Mutex::default()).collect();
        let stats: Box<[Padded]> = (0..=config.udp_workers())
            .map(|_| Padded::default())
            .collect();
        let s = Self {
            swarm: config.swarm_config(),
            ids: ConnectionIds::new(key, config.udp.connection_id_window_secs),
            config,
            shards,
            fabric_map,
            admin_token,
            stats,
            start: Instant::now(),
            shutdown: AtomicBool::new(false),
        };
        s.set_whitelist(&whitelist);
        s
    }

    fn shard_index(&self, h: &InfoHash) -> usize {
        // Info-hashes are SHA-1 output: their first bytes are already uniform.
        usize::from(u16::from_le_bytes([h.0[0], h.0[1]])) % self.shards.len()
    }

    pub(crate) fn shard(&self, h: &InfoHash) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_index(h)])
    }

    /// Seconds since the tracker started.
    pub(crate) fn now(&self) -> Secs {
        u32::try_from(self.start.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// The announcer's fabric: what it said, else the CIDR map, else unknown.
    pub(crate) fn fabric_of(&self, announced: Option<&str>, ip: IpAddr) -> FabricId {
        match announced {
            Some(name) => FabricId::from_name(name),
            None if self.fabric_map.is_empty() => FabricId::UNKNOWN,
            None => self.fabric_map.lookup(ip),
        }
    }

    /// Records an announce, or says why it is refused.
    pub(crate) fn announce<A: Family>(
        &self,
        h: InfoHash,
        a: &Announce<A>,
        rng: &mut impl Rng,
        out: &mut Vec<A>,
    ) -> Result<TorrentCounts, Refused> {
        let now = self.now();
        let mut shard = self.shard(&h);
        if !self.config.access.open && !shard.access.allows(&h) {
            return Err(Refused::NotRegistered);
        }
        Ok(shard.torrents.announce(&self.swarm, h, a, now, rng, out)?)
    }

    /// Counters of one torrent (zeros when unknown or not served, so a scrape cannot be
    /// used to tell which hashes are registered).
    pub(crate) fn scrape(&self, h: &InfoHash) -> TorrentCounts {
        self.shard(h).torrents.scrape(h)
    }

    pub(crate) fn clean(&self) {
        let now = self.now();
        for s in self.shards.iter() {
            lock(s).torrents.clean(now);
        }
    }

    /// Replaces the file part of the access list and drops swarms no longer allowed.
    pub(crate) fn set_whitelist(&self, hashes: &[InfoHash]) {
        let mut per_shard: Vec<Vec<InfoHash>> = vec![Vec::new(); self.shards.len()];
        for h in hashes {
            per_shard[self.shard_index(h)].push(*h);
        }
        let open = self.config.access.open;
        for (s, list) in self.shards.iter().zip(per_shard) {
            let mut s = lock(s);
            let Shard { torrents, access } = &mut *s;
            access.set_listed(list);
            if !open {
                torrents.retain(|h| access.allows(h));
            }
        }
    }

    pub(crate) fn register(&self, h: InfoHash) -> bool {
        self.shard(&h).access.register(h)
    }

    pub(crate) fn unregister(&self, h: &InfoHash) -> bool {
        let mut s = self.shard(h);
        let was = s.access.unregister(h);
        if !self.config.access.open && !s.access.allows(h) {
            s.torrents.remove(h);
        }
        was
    }

    /// The counters of `slot` (0: HTTP; `w + 1`: UDP worker `w`), wrapped around.
    pub(crate) fn counters(&self, slot: usize) -> &Stats {
        &self.stats[slot % self.stats.len()].0
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        let mut snap = StatsSnapshot::default();
        for s in self.stats.iter() {
            s.0.add_to(&mut snap);
        }
        for s in self.shards.iter() {
            let s = lock(s);
            snap.torrents += s.torrents.len() as u64;
            snap.peers += s.torrents.peers() as u64;
        }
        snap
    }
}

/// A worker that panicked while holding a shard left it consistent enough (every
/// mutation is a few field writes); keep serving rather than poison every other worker.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control surface of a running tracker: whitelist reload, run-time registration,
/// counters. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Re-reads the whitelist file (as on SIGHUP); returns how many hashes it lists.
    pub fn reload_whitelist(&self) -> Result<usize, Error> {
        let path = self
            .shared
            .config
            .access
            .whitelist
            .as_ref()
            .ok_or(Error::NoWhitelist)?;
        let list = crate::access::read_whitelist(path)?;
        self.shared.set_whitelist(&list);
        Ok(list.len())
    }

    /// Registers an info-hash at run time; returns whether it was new.
    pub fn register(&self, h: InfoHash) -> bool {
        self.shared.register(h)
    }

    /// Withdraws a run-time registration (its swarm is dropped unless the file lists it).
    pub fn unregister(&self, h: &InfoHash) -> bool {
        self.shared.unregister(h)
    }

    /// Counters and registry sizes.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats()
    }

    /// Whether the tracker would serve `h` now.
    pub fn is_served(&self, h: &InfoHash) -> bool {
        self.shared.config.access.open || self.shared.shard(h).access.allows(h)
    }

    /// Sweeps expired peers now (the cleaning thread does it periodically).
    pub fn clean(&self) {
        self.shared.clean();
    }
}

/// Unmaps `::ffff:a.b.c.d` so that dual-stack sources count as IPv4 peers.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
