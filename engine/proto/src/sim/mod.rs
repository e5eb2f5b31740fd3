//! A deterministic in-memory swarm: real [`Torrent`] machines exchanging messages over a
//! simulated network on a virtual clock (quinn's `Pair` idea, for N peers).
//!
//! Each node has an uplink and a downlink rate and sits in a fabric; a link between fabrics
//! can be narrower (`cross_fabric_rate`). A `piece` message occupies the sender's uplink and
//! the receiver's downlink for its length; every message keeps the order of its connection,
//! as TCP would. Disk and hashing are instantaneous: a node "verifies" a piece by comparing it
//! with the payload. Tests use it with a handful of nodes; `bench/` runs it with thousands,
//! dataless ([`Swarm::new_dataless`]): no payload in memory, blocks carry a shared static
//! buffer and the machines keep no block bytes, so a host costs only its protocol state.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::PeerId;
use crate::bitfield::Bitfield;
use crate::lengths::{BLOCK_LEN, Lengths};
use crate::picker::FabricShare;
use crate::torrent::{Action, Config, Input, PeerInfo, PeerKey, Torrent};
use crate::wire::Message;
use event_queue::EventQueue;

mod event_queue;

/// Where nodes learn about each other: a tracker model. `bench/` plugs the real tracker
/// registry in; tests use [`FullMesh`].
pub trait PeerSource {
    /// Node `node` (in `fabric`, `complete` or not) announces at virtual time `now`; returns
    /// the nodes to hand it and, as an instream tracker does, its fabric share.
    fn announce(
        &mut self,
        node: usize,
        fabric: &str,
        complete: bool,
        now: Duration,
    ) -> (Vec<usize>, Option<FabricShare>);
}

/// Re-announce this soon after the tracker's fabric share changed (as
/// `engine::tracker_client` does), at most [`SHARE_SETTLES`] times.
const SHARE_SETTLE: Duration = Duration::from_secs(2);
const SHARE_SETTLES: u32 = 5;

/// What every dataless block carries (its bytes are never looked at).
static ZEROS: [u8; BLOCK_LEN as usize] = [0; BLOCK_LEN as usize];

/// Every node learns every other node.
#[derive(Debug, Default)]
pub struct FullMesh {
    nodes: usize,
}

impl FullMesh {
    /// A mesh of `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self { nodes }
    }
}

impl PeerSource for FullMesh {
    fn announce(
        &mut self,
        node: usize,
        _fabric: &str,
        _complete: bool,
        _now: Duration,
    ) -> (Vec<usize>, Option<FabricShare>) {
        ((0..self.nodes).filter(|&j| j != node).collect(), None)
    }
}

/// How a node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Starts with every piece.
    Seed,
    /// Starts with nothing.
    Leecher,
    /// Starts "with every piece" but serves garbage.
    Liar,
}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Behaviour.
    pub role: Role,
    /// Fabric name (also sent in the extension handshake through `config.fabric`).
    pub fabric: String,
    /// Uplink, bytes per second.
    pub up_rate: f64,
    /// Downlink, bytes per second.
    pub down_rate: f64,
    /// Machine configuration.
    pub config: Config,
    /// Virtual time at which the node joins.
    pub start_at: Duration,
}

/// Per-node results.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// Virtual time from the start until the node had every piece.
    pub completed_at: Option<Duration>,
    /// Payload bytes received.
    pub bytes_down: u64,
    /// Payload bytes sent.
    pub bytes_up: u64,
    /// Payload bytes received from nodes in other fabrics.
    pub cross_fabric_down: u64,
    /// Of those, bytes sent by node 0 (the origin, in the fabric simulation).
    pub cross_from_first_down: u64,
    /// Of the rest, bytes of pieces in this node's fabric share (the others are fall-back
    /// fetches and duplicates).
    pub cross_share_down: u64,
    /// Peers this node banned.
    pub banned: usize,
    /// Hash failures seen.
    pub hash_failures: u32,
}

struct Node {
    spec: NodeSpec,
    /// `spec.fabric` as an index into `Swarm::fabric_names`.
    fabric: u32,
    addr: SocketAddr,
    torrent: Option<Torrent>,
    up_free_at: Duration,
    down_free_at: Duration,
    report: NodeReport,
    /// Virtual time up to which `torrent` has been given its timeout.
    timer_at: Option<Duration>,
    /// Shut down and left the swarm (see [`Swarm::seed_for`]).
    gone: bool,
    /// The fabric share of the last announce, and early re-announces made since it changed.
    share: (Option<FabricShare>, u32),
}

/// One end of a connection, at the index of its [`PeerKey`].
#[derive(Debug, Clone, Copy)]
struct Link {
    /// The node holding this key.
    node: u32,
    /// The node at the other end.
    peer: u32,
    /// The key of the other end (on `peer`).
    peer_key: PeerKey,
    /// When the last message on it arrives at `node`, so messages stay in order.
    last_arrival: Duration,
    open: bool,
}

impl Link {
    const CLOSED: Link = Link {
        node: 0,
        peer: 0,
        peer_key: PeerKey(0),
        last_arrival: Duration::ZERO,
        open: false,
    };
}

#[derive(Debug)]
enum Event {
    Start,
    Input(Input),
    Timer,
    Announce,
    /// The node's seeding time after completion is over: it shuts down and leaves.
    Leave,
}

/// The simulated network.
pub struct Swarm {
    base: Instant,
    now: Duration,
    lengths: Lengths,
    payload: Bytes,
    /// No payload in memory (see [`Swarm::new_dataless`]).
    dataless: bool,
    nodes: Vec<Node>,
    /// Events with their node, by virtual nanoseconds, first in first out within a time.
    queue: EventQueue<(u32, Event)>,
    /// Leechers that have not completed yet.
    leechers_left: usize,
    next_key: u64,
    /// Latency of every hop.
    pub latency: Duration,
    /// Cap on throughput between two nodes of different fabrics, bytes per second (per
    /// connection; `f64::INFINITY` for none).
    pub cross_fabric_rate: f64,
    /// Every connection end ever made, by its [`PeerKey`] (keys are never reused, so the
    /// key is the index: no hashing on the per-message path).
    links: Vec<Link>,
    /// Aggregate capacity into each fabric from outside it, bytes per second (absent = none).
    fabric_ingress: Vec<Option<(f64, Duration)>>,
    /// Fabric names; a node's `fabric` indexes this and `fabric_ingress`.
    fabric_names: Vec<String>,
    peer_source: Box<dyn PeerSource>,
    /// How often nodes re-announce (zero: only at start).
    pub reannounce: Duration,
    /// Added to every node's RNG seed (see [`Swarm::reseed`]).
    rng_salt: u64,
    /// How long hashing and writing a piece takes (zero: the verdict comes at once).
    pub verify_delay: Duration,
    /// How long a disk read for an upload takes.
    pub read_delay: Duration,
    /// Each end of a new connection learns of it up to this much later than the earliest
    /// moment (zero: both ends at once).
    pub connect_jitter: Duration,
    /// Draws for `connect_jitter`.
    rng: SmallRng,
    /// A leecher that completes seeds this long, then shuts down and leaves, as an agent
    /// with `--seed-for` does (`None`: it stays).
    pub seed_for: Option<Duration>,
    /// Events handled so far (the simulator's unit of work).
    events_handled: u64,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Swarm {
    /// A swarm for `payload` cut into `piece_len` pieces.
    pub fn new(payload: Bytes, piece_len: u32, specs: Vec<NodeSpec>) -> Self {
        let len = payload.len() as u64;
        Self::build(payload, len, piece_len, specs, false)
    }

    /// A swarm for a payload of `len` bytes that exists nowhere: blocks carry a static
    /// buffer, every piece verifies, and each node's machine runs with `Config::dataless`
    /// (set here). No [`Role::Liar`] (there is nothing to lie about).
    pub fn new_dataless(len: u64, piece_len: u32, mut specs: Vec<NodeSpec>) -> Self {
        for s in &mut specs {
            assert!(s.role != Role::Liar, "a dataless swarm has no liars");
            s.config.dataless = true;
            s.config.piece_buffer_pool_bytes = 0;
        }
        Self::build(Bytes::new(), len, piece_len, specs, true)
    }

    fn build(
        payload: Bytes,
        len: u64,
        piece_len: u32,
        specs: Vec<NodeSpec>,
        dataless: bool,
    ) -> Self {
        let lengths = Lengths::new(len, piece_len).expect("valid geometry");
        let mut fabric_names: Vec<String> = Vec::new();
        let nodes = (0u32..)
            .zip(specs)
            .map(|(i, spec)| Node {
                fabric: match fabric_names.iter().position(|f| *f == spec.fabric) {
                    Some(k) => u32::try_from(k).expect("fewer fabrics than nodes"),
                    None => {
                        fabric_names.push(spec.fabric.clone());
                        u32::try_from(fabric_names.len() - 1).expect("fewer fabrics than nodes")
                    }
                },
                spec,
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i + 1)), 6881),
                torrent: None,
                up_free_at: Duration::ZERO,
                down_free_at: Duration::ZERO,
                report: NodeReport::default(),
                timer_at: None,
                gone: false,
                share: (None, 0),
            })
            .collect();
        let mut s = Self {
            base: Instant::now(),
            now: Duration::ZERO,
            lengths,
            payload,
            dataless,
            nodes,
            queue: EventQueue::default(),
            leechers_left: 0,
            next_key: 1,
            latency: Duration::from_millis(1),
            cross_fabric_rate: f64::INFINITY,
            // Keys start at 1: slot 0 is never a connection.
            links: vec![Link::CLOSED],
            fabric_ingress: vec![None; fabric_names.len()],
            fabric_names,
            peer_source: Box::new(FullMesh::new(0)),
            reannounce: Duration::from_secs(5),
            rng_salt: 0,
            verify_delay: Duration::ZERO,
            read_delay: Duration::ZERO,
            seed_for: None,
            connect_jitter: Duration::ZERO,
            rng: SmallRng::seed_from_u64(0),
            events_handled: 0,
        };
        s.peer_source = Box::new(FullMesh::new(s.nodes.len()));
        s.leechers_left = s
            .nodes
            .iter()
            .filter(|n| n.spec.role == Role::Leecher)
            .count();
        for i in 0..s.nodes.len() {
            let at = s.nodes[i].spec.start_at;
            s.schedule(at, i, Event::Start);
        }
        s
    }

    /// Node `node` shuts down at virtual time `at` (closing its connections) and never comes
    /// back, finished or not: a host that dies.
    pub fn leave_at(&mut self, node: usize, at: Duration) {
        self.schedule(at, node, Event::Leave);
    }

    /// Runs one set of specs under another schedule: `salt` changes every node's RNG seed and
    /// the simulator's own draws. Call before [`Swarm::run`].
    pub fn reseed(&mut self, salt: u64) {
        self.rng_salt = salt;
        self.rng = SmallRng::seed_from_u64(salt);
    }

    /// Replaces the tracker model.
    pub fn set_peer_source(&mut self, source: Box<dyn PeerSource>) {
        self.peer_source = source;
    }

    /// Caps the aggregate rate of everything entering `fabric` from other fabrics.
    pub fn set_fabric_ingress(&mut self, fabric: &str, bytes_per_sec: f64) {
        if let Some(k) = self.fabric_names.iter().position(|f| f == fabric) {
            self.fabric_ingress[k] = Some((bytes_per_sec, Duration::ZERO));
        }
    }

    /// Node addresses (what a tracker would hand out).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    fn schedule(&mut self, at: Duration, node: usize, ev: Event) {
        // Runs are far shorter than the 584 years of u64 nanoseconds.
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        let node = u32::try_from(node).expect("node index fits u32");
        self.queue.push(nanos, (node, ev));
    }

    /// Runs until every leecher completes or `limit` of virtual time passes (then the clock
    /// reads `limit`, and a later call goes on from there); returns the virtual time at the
    /// end.
    pub fn run(&mut self, limit: Duration) -> Duration {
        while let Some(nanos) = self.queue.peek_time() {
            let at = Duration::from_nanos(nanos);
            if at > limit {
                self.now = self.now.max(limit);
                break;
            }
            let (_, (node, ev)) = self.queue.pop().expect("peeked");
            self.now = at;
            self.events_handled += 1;
            self.deliver(node as usize, ev);
            if self.leechers_left == 0 {
                break;
            }
        }
        self.now
    }

    /// Results per node, in the order of the specs.
    pub fn reports(&self) -> Vec<NodeReport> {
        self.nodes
            .iter()
            .map(|n| {
                let mut r = n.report.clone();
                if let Some(t) = &n.torrent {
                    let st = t.stats();
                    r.banned = st.peers_banned;
                    r.hash_failures = st.hash_failures;
                }
                r
            })
            .collect()
    }

    /// The machine of node `i` (after it started).
    pub fn torrent(&self, i: usize) -> Option<&Torrent> {
        self.nodes[i].torrent.as_ref()
    }

    fn deliver(&mut self, i: usize, ev: Event) {
        let now = self.base + self.now;
        if self.nodes[i].gone {
            return;
        }
        match ev {
            Event::Start => {
                let n = self.lengths.num_pieces();
                let have = if self.nodes[i].spec.role == Role::Leecher {
                    Bitfield::new(n)
                } else {
                    Bitfield::full(n)
                };
                let mut config = self.nodes[i].spec.config.clone();
                config.peer_id = Self::peer_id(i);
                let t = Torrent::new(
                    self.lengths,
                    have,
                    config,
                    now,
                    (i as u64 + 1).wrapping_add(self.rng_salt),
                );
                self.nodes[i].torrent = Some(t);
                self.announce(i, now);
            }
            Event::Announce => self.announce(i, now),
            Event::Input(input) => {
                if self.nodes[i].torrent.is_none() {
                    return;
                }
                self.with_torrent(i, |t| t.handle_input(now, input));
            }
            Event::Timer => {
                self.nodes[i].timer_at = None;
                self.with_torrent(i, |t| t.handle_timeout(now));
            }
            Event::Leave => {
                self.with_torrent(i, Torrent::shutdown);
                self.drain(i);
                self.nodes[i].gone = true;
                // A leecher that dies unfinished will never complete: the run waits for the
                // others only.
                if self.nodes[i].spec.role == Role::Leecher
                    && self.nodes[i].report.completed_at.is_none()
                {
                    self.leechers_left -= 1;
                }
                return;
            }
        }
        self.drain(i);
    }

    fn announce(&mut self, i: usize, now: Instant) {
        let fabric = self.nodes[i].spec.fabric.clone();
        let complete =
            self.nodes[i].report.completed_at.is_some() || self.nodes[i].spec.role != Role::Leecher;
        let (peers, share) = self.peer_source.announce(i, &fabric, complete, self.now);
        let addrs: Vec<_> = peers.into_iter().map(|j| self.nodes[j].addr).collect();
        self.with_torrent(i, |t| t.handle_input(now, Input::PeersDiscovered { addrs }));
        let mut next = self.reannounce;
        if let Some(share) = share {
            self.with_torrent(i, |t| {
                t.handle_input(now, Input::FabricShareLearned { share })
            });
            // As the engine's tracker client does: ask again soon while the count changes.
            let (last, settles) = &mut self.nodes[i].share;
            if *last != Some(share) {
                *last = Some(share);
                if *settles < SHARE_SETTLES {
                    *settles += 1;
                    next = next.min(SHARE_SETTLE);
                }
            }
        }
        if !next.is_zero() && !complete {
            self.schedule(self.now + next, i, Event::Announce);
        }
    }

    fn with_torrent(&mut self, i: usize, f: impl FnOnce(&mut Torrent)) {
        if let Some(t) = self.nodes[i].torrent.as_mut() {
            f(t);
        }
    }

    fn drain(&mut self, i: usize) {
        loop {
            let Some(action) = self.nodes[i].torrent.as_mut().and_then(|t| t.poll_action()) else {
                break;
            };
            self.execute(i, action);
        }
        if let Some(deadline) = self.nodes[i]
            .torrent
            .as_ref()
            .and_then(|t| t.poll_timeout())
        {
            let at = deadline.saturating_duration_since(self.base).max(self.now);
            if self.nodes[i].timer_at.is_none_or(|t| at < t) {
                self.nodes[i].timer_at = Some(at);
                self.schedule(at, i, Event::Timer);
            }
        }
    }

    /// A payload offset as an index into the in-memory payload.
    fn payload_index(&self, offset: u64) -> usize {
        usize::try_from(offset).expect("the payload is in memory")
    }

    fn execute(&mut self, i: usize, action: Action) {
        match action {
            Action::Send { peer, msg } => self.send(i, peer, msg),
            Action::Read { peer, block } => {
                let start = self.payload_index(
                    self.lengths.piece_offset(block.piece) + u64::from(block.offset),
                );
                let data = if self.dataless {
                    Bytes::from_static(&ZEROS[..block.len as usize])
                } else if self.nodes[i].spec.role == Role::Liar {
                    Bytes::from(vec![0xA5; block.len as usize])
                } else {
                    self.payload.slice(start..start + block.len as usize)
                };
                let input = Input::BlockRead { peer, block, data };
                self.answer(i, self.read_delay, input);
            }
            Action::VerifyAndWrite { piece, data } => {
                let start = self.payload_index(self.lengths.piece_offset(piece));
                let ok = self.dataless || data[..] == self.payload[start..start + data.len()];
                self.answer(i, self.verify_delay, Input::PieceVerified { piece, ok });
            }
            Action::Connect { addr } => {
                let Some(j) = self.node_at(addr) else {
                    return;
                };
                if self.nodes[j].torrent.is_none() || self.nodes[j].gone {
                    self.schedule(
                        self.now + self.latency,
                        i,
                        Event::Input(Input::ConnectFailed { addr }),
                    );
                    return;
                }
                let (ki, kj) = (PeerKey(self.next_key), PeerKey(self.next_key + 1));
                self.next_key += 2;
                // Each end learns of the connection when its handshake exchange is over, not
                // necessarily at the same moment (so two crossing dials can each keep a
                // different one); nothing on it arrives before that.
                let at = self.now + self.latency * 2;
                let (at_i, at_j) = if self.connect_jitter.is_zero() {
                    (at, at)
                } else {
                    let max = u64::try_from(self.connect_jitter.as_nanos()).unwrap_or(u64::MAX);
                    (
                        at + Duration::from_nanos(self.rng.gen_range(0..max)),
                        at + Duration::from_nanos(self.rng.gen_range(0..max)),
                    )
                };
                // Node counts are far below u32::MAX (addresses are 10.x.y.z).
                let end = |node: usize, peer: usize, peer_key: PeerKey, at: Duration| Link {
                    node: u32::try_from(node).expect("node index fits u32"),
                    peer: u32::try_from(peer).expect("node index fits u32"),
                    peer_key,
                    last_arrival: at,
                    open: true,
                };
                debug_assert_eq!(self.links.len() as u64, ki.0);
                self.links.push(end(i, j, kj, at_i));
                self.links.push(end(j, i, ki, at_j));
                let info = |from: usize, outgoing: bool| PeerInfo {
                    addr: self.nodes[from].addr,
                    peer_id: Self::peer_id(from),
                    supports_fast: true,
                    supports_extensions: true,
                    outgoing,
                };
                let (ii, ij) = (info(j, true), info(i, false));
                self.schedule(
                    at_i,
                    i,
                    Event::Input(Input::PeerConnected { peer: ki, info: ii }),
                );
                self.schedule(
                    at_j,
                    j,
                    Event::Input(Input::PeerConnected { peer: kj, info: ij }),
                );
            }
            Action::Disconnect { peer, .. } => {
                if let Some((j, kj)) = self.link(i, peer) {
                    self.links[Self::slot(peer)].open = false;
                    let theirs = &mut self.links[Self::slot(kj)];
                    theirs.open = false;
                    let at = theirs.last_arrival.max(self.now) + self.latency;
                    self.schedule(self.now, i, Event::Input(Input::PeerDisconnected { peer }));
                    self.schedule(at, j, Event::Input(Input::PeerDisconnected { peer: kj }));
                }
            }
            Action::Completed => {
                if self.nodes[i].report.completed_at.is_none() {
                    self.nodes[i].report.completed_at =
                        Some(self.now.saturating_sub(self.nodes[i].spec.start_at));
                    if self.nodes[i].spec.role == Role::Leecher {
                        self.leechers_left -= 1;
                        if let Some(after) = self.seed_for {
                            self.schedule(self.now + after, i, Event::Leave);
                        }
                    }
                }
            }
            Action::Fatal { error } => panic!("node {i} failed: {error}"),
        }
    }

    /// The edge's answer to node `i`'s disk or hash work, `delay` later: at once, without a
    /// trip through the queue, when there is no delay (a quarter of a run's events were
    /// reads answered at the same instant).
    fn answer(&mut self, i: usize, delay: Duration, input: Input) {
        if delay.is_zero() {
            let now = self.base + self.now;
            self.events_handled += 1;
            self.with_torrent(i, |t| t.handle_input(now, input));
        } else {
            self.schedule(self.now + delay, i, Event::Input(input));
        }
    }

    fn send(&mut self, i: usize, peer: PeerKey, msg: Message) {
        let Some((j, kj)) = self.link(i, peer) else {
            return;
        };
        let mut at = self.now + self.latency;
        if let Message::Piece { data, .. } = &msg {
            let len = data.len() as f64;
            let cross = self.nodes[i].fabric != self.nodes[j].fabric;
            let mut rate = self.nodes[i].spec.up_rate.min(self.nodes[j].spec.down_rate);
            if cross {
                rate = rate.min(self.cross_fabric_rate);
            }
            let up_start = self.nodes[i].up_free_at.max(self.now);
            let up_done = up_start + Duration::from_secs_f64(len / self.nodes[i].spec.up_rate);
            self.nodes[i].up_free_at = up_done;
            // The sender learns its socket drained when the bytes are on the wire.
            let written = Input::UploadWritten {
                peer,
                bytes: data.len() as u64,
            };
            self.schedule(up_done, i, Event::Input(written));
            let down_start = self.nodes[j].down_free_at.max(up_start + self.latency);
            let mut down_done = down_start + Duration::from_secs_f64(len / rate);
            if cross
                && let Some((ingress, free_at)) =
                    self.fabric_ingress[self.nodes[j].fabric as usize].as_mut()
            {
                // The fabric's ingress is one shared pipe in front of every host in it.
                let start = (*free_at).max(up_start + self.latency);
                *free_at = start + Duration::from_secs_f64(len / *ingress);
                down_done = down_done.max(*free_at);
            }
            self.nodes[j].down_free_at = down_done;
            at = at.max(down_done).max(up_done + self.latency);
            self.nodes[i].report.bytes_up += data.len() as u64;
            self.nodes[j].report.bytes_down += data.len() as u64;
            if cross {
                self.nodes[j].report.cross_fabric_down += data.len() as u64;
                if i == 0 {
                    self.nodes[j].report.cross_from_first_down += data.len() as u64;
                } else if let Message::Piece { index, .. } = &msg
                    && let Some(sh) = self.nodes[j].spec.config.fabric_share
                    && sh.owns(*index)
                {
                    self.nodes[j].report.cross_share_down += data.len() as u64;
                }
            }
        }
        let last = &mut self.links[Self::slot(kj)].last_arrival;
        at = at.max(*last);
        *last = at;
        self.schedule(at, j, Event::Input(Input::PeerMessage { peer: kj, msg }));
    }

    /// The node listening at `addr` (addresses are `10.0.0.1 + index`, see `build`).
    fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        let IpAddr::V4(ip) = addr.ip() else {
            return None;
        };
        let i = usize::try_from(u32::from(ip).checked_sub(0x0a00_0001)?).ok()?;
        self.nodes.get(i).filter(|n| n.addr == addr).map(|_| i)
    }

    fn slot(key: PeerKey) -> usize {
        usize::try_from(key.0).expect("keys count connections made: far below usize::MAX")
    }

    /// The other end (node, key there) of node `i`'s open connection `key`.
    fn link(&self, i: usize, key: PeerKey) -> Option<(usize, PeerKey)> {
        let l = self.links.get(Self::slot(key))?;
        (l.open && l.node as usize == i).then_some((l.peer as usize, l.peer_key))
    }

    fn peer_id(i: usize) -> PeerId {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        PeerId(id)
    }

    /// Events handled so far.
    pub fn events_handled(&self) -> u64 {
        self.events_handled
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> u64 {
        self.lengths.total_len()
    }

    /// True when every leecher completed.
    pub fn is_done(&self) -> bool {
        self.leechers_left == 0
    }

    /// Node `i`'s verified pieces (0 before it started).
    pub fn pieces_of(&self, i: usize) -> u32 {
        self.nodes[i]
            .torrent
            .as_ref()
            .map_or(0, |t| t.have().count())
    }

    /// Pieces each node has (for debugging stalls).
    pub fn progress(&self) -> BTreeMap<usize, u32> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.torrent.as_ref().map(|t| (i, t.have().count())))
            .collect()
    }
}
