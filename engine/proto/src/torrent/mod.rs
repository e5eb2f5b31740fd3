//! The per-torrent state machine: peers, requests, uploads, choking, piece completion.
//!
//! Contract (quinn style): call [`Torrent::handle_input`] for each event and
//! [`Torrent::handle_timeout`] when the deadline from [`Torrent::poll_timeout`] passes, then
//! drain [`Torrent::poll_action`] until it returns `None`. Time and randomness are inputs
//! (`now`, a seeded RNG), so the same inputs always give the same actions.
//!
//! Hashing and disk I/O are outside: the machine assembles a piece's blocks and emits
//! [`Action::VerifyAndWrite`]; the edge checks the SHA-1, writes the piece only if it
//! matches, and answers [`Input::PieceVerified`]. Uploads go the same way: [`Action::Read`],
//! answered by [`Input::BlockRead`]; the edge then reports the `piece` payload bytes it wrote
//! to the socket with [`Input::UploadWritten`] (the per-peer upload bound counts them until
//! then). What each incoming message may do is decided in `leniency.rs`; upload bounds live
//! in `uploads.rs`. See `engine/proto/STATE.md` for the transitions. What the machine keeps
//! about peers after they leave is capped (`bounded.rs`), and so is the address book.

mod address_book;
mod bounded;
mod config;
mod leniency;
mod peer;
mod peer_map;
mod stats;
mod super_seed;
mod types;
mod uploads;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::PeerId;
use crate::bitfield::Bitfield;
use crate::choker::{Candidate, choose_unchoked};
use crate::lengths::{BLOCK_LEN, BlockRef, Lengths, ValidPieceIndex};
use crate::picker::{FabricShare, PeerScope, Picker, Received, Verdict};
use crate::wire::extension::ExtendedHandshake;
use crate::wire::{BlockSpec, Message};
use address_book::AddressBook;
use bounded::Fifo;
pub use config::Config;
use leniency::{Treatment, View};
use peer::{MAX_ALLOWED_FAST, MAX_SUGGESTED, Peer};
use peer_map::PeerMap;
pub use stats::Stats;
pub use types::*;

/// Housekeeping period: rates, request timeouts, keep-alives, dials.
const TICK: Duration = Duration::from_millis(250);
/// Send a keep-alive after this much silence on our side (BEP 3 suggests two minutes).
const KEEPALIVE_AFTER: Duration = Duration::from_secs(60);
/// How long our request queue to a peer should take it to drain: depth = rate x this.
const REQUEST_QUEUE_TIME: Duration = Duration::from_millis(300);
/// A peer that dropped us is dialled again after this pause.
const RECONNECT_PAUSE: Duration = Duration::from_secs(5);
/// A seed we left while complete ourselves is not dialled again for this long: neither will
/// ever need the other (every redial was refused as not useful at once).
const BOTH_SEEDS_PAUSE: Duration = Duration::from_secs(3600);
/// Client name in our extension handshake.
const CLIENT_NAME: &str = concat!("instream/", env!("CARGO_PKG_VERSION"));

/// Who a peer is across reconnects, for strikes and bans.
#[derive(Debug, Clone, Copy)]
struct Identity {
    addr: SocketAddr,
    peer_id: PeerId,
    outgoing: bool,
}

/// One torrent's protocol state.
#[derive(Debug)]
pub struct Torrent {
    lengths: Lengths,
    config: Config,
    picker: Picker,
    peers: PeerMap<Peer>,
    book: AddressBook,
    actions: VecDeque<Action>,
    rng: SmallRng,
    last_tick: Instant,
    next_choke: Instant,
    /// Peers whose request queue should be topped up before we return, unsorted and maybe
    /// repeated (sorted once per flush: a B-tree set here allocated and freed a node for
    /// nearly every block received).
    dirty: Vec<PeerKey>,
    /// Every connected peer is dirty (what half the callers of `dirty` meant; one flag
    /// instead of inserting every key).
    all_dirty: bool,
    /// Identities of the latest departed peers, so verdicts that arrive after a peer left
    /// can still be pinned on it (a connected peer's identity is in `peers`).
    departed: Fifo<PeerKey, Identity>,
    strikes: Fifo<PeerId, u32>,
    banned_ids: Fifo<PeerId, ()>,
    peers_seen: Fifo<PeerId, ()>,
    super_seed: Option<super_seed::SuperSeed>,
    /// Our fabric share as the tracker last counted it (see [`Input::FabricShareLearned`]).
    tracker_share: Option<FabricShare>,
    stats: Stats,
    completed: bool,
    shutting_down: bool,
    scratch: Vec<BlockRef>,
    /// Bytes of `Action::Read`s not answered yet (see `uploads.rs`).
    upload_reading: u64,
    /// Peers with requests queued and not read yet.
    upload_waiting: BTreeSet<PeerKey>,
    /// The peer whose request was read last: the next round starts after it.
    upload_cursor: PeerKey,
    /// Addresses we dialled that reached a peer already connected another way (crossing
    /// dials), by its peer id: they count as connected until that peer leaves.
    duplicate_dials: HashMap<PeerId, Vec<SocketAddr>>,
}

impl Torrent {
    /// A torrent whose verified pieces are `have` (from a resume check), created at `now`.
    pub fn new(
        lengths: Lengths,
        have: Bitfield,
        config: Config,
        now: Instant,
        rng_seed: u64,
    ) -> Self {
        let complete = have.is_full();
        let super_seed = (config.super_seed && complete)
            .then(|| super_seed::SuperSeed::new(lengths.num_pieces()));
        let mut t = Self {
            lengths,
            picker: Picker::new(lengths, have),
            config,
            peers: PeerMap::default(),
            book: AddressBook::default(),
            actions: VecDeque::new(),
            rng: SmallRng::seed_from_u64(rng_seed),
            last_tick: now,
            next_choke: now,
            dirty: Vec::new(),
            all_dirty: false,
            departed: Fifo::new(bounded::MAX_DEPARTED),
            strikes: Fifo::new(bounded::MAX_STRIKES),
            banned_ids: Fifo::new(bounded::MAX_BANS),
            peers_seen: Fifo::new(bounded::MAX_SEEN),
            super_seed,
            tracker_share: None,
            stats: Stats::default(),
            completed: complete,
            shutting_down: false,
            scratch: Vec::new(),
            upload_reading: 0,
            upload_waiting: BTreeSet::new(),
            upload_cursor: PeerKey(0),
            duplicate_dials: HashMap::new(),
        };
        if complete {
            t.actions.push_back(Action::Completed);
        }
        t.picker.set_fabric_share(t.config.fabric_share);
        t.picker.set_fallback_delay(t.config.fabric_fallback_delay);
        t.picker.set_buffer_pool(t.config.piece_buffer_pool_bytes);
        t.picker.set_dataless(t.config.dataless);
        t
    }

    /// Feeds one event.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.picker.set_now(now);
        match input {
            Input::PeerConnected { peer, info } => self.on_connected(now, peer, info),
            Input::PeerMessage { peer, msg } => self.on_message(now, peer, msg),
            Input::PeerDisconnected { peer } => self.on_disconnected(now, peer),
            Input::ConnectFailed { addr } => {
                self.book.failed(addr, now);
                self.dial(now);
            }
            Input::OwnAddress { addr } => {
                if self.book.mark_own(addr) {
                    self.stats.own_addresses += 1;
                }
                self.dial(now);
            }
            Input::PeersDiscovered { addrs } => {
                for addr in addrs {
                    self.book.add(addr, now);
                }
                self.dial(now);
            }
            Input::FabricShareLearned { share } => {
                self.tracker_share = Some(share);
                self.update_fabric_share();
            }
            Input::BlockRead { peer, block, data } => self.on_block_read(now, peer, block, data),
            Input::ReadFailed { peer, block } => self.on_read_failed(peer, block),
            Input::UploadWritten { peer, bytes } => self.on_upload_written(peer, bytes),
            Input::PieceVerified { piece, ok } => self.on_piece_verified(now, piece, ok),
            Input::PieceWriteFailed { piece, error } => {
                let _ = self.picker.piece_verified(piece, false);
                self.actions.push_back(Action::Fatal { error });
            }
        }
        self.flush_dirty(now);
    }

    /// Runs timers due at `now` (choker rounds, request timeouts, idle peers, reconnects).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.picker.set_now(now);
        if now < self.last_tick + TICK {
            return;
        }
        let dt = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let mut expired = Vec::new();
        let mut idle = Vec::new();
        for (&key, p) in self.peers.iter_mut() {
            p.down.tick(dt);
            p.up.tick(dt);
            // Deep enough to keep the pipe full for REQUEST_QUEUE_TIME at the measured rate.
            // A float-to-int `as` saturates, and the clamp below bounds it anyway.
            #[allow(clippy::cast_possible_truncation)]
            let want =
                (p.down.per_sec() * REQUEST_QUEUE_TIME.as_secs_f64() / BLOCK_LEN as f64) as u32;
            p.queue_depth =
                want.clamp(self.config.initial_queue_depth, self.config.max_queue_depth);
            while let Some(&(block, sent)) = p.requests.front() {
                if now.saturating_duration_since(sent) < self.config.request_timeout {
                    break;
                }
                p.requests.pop_front();
                expired.push((key, block));
                // A peer that lets requests time out is slow: shrink its queue.
                p.queue_depth = self.config.initial_queue_depth.min(p.queue_depth);
            }
            // An idle pipe to a peer that could serve us: what we may ask of it can change
            // without any message from it (e.g. same-fabric peers ran dry), so look again.
            if p.requests.is_empty() && p.am_interested && !p.peer_choking {
                self.dirty.push(key);
            }
            if now.saturating_duration_since(p.last_recv) > self.config.idle_timeout {
                idle.push(key);
            } else if now.saturating_duration_since(p.last_sent) > KEEPALIVE_AFTER {
                p.last_sent = now;
                self.actions.push_back(Action::Send {
                    peer: key,
                    msg: Message::KeepAlive,
                });
            }
        }
        self.fold_dirty_repeats();
        if !expired.is_empty() {
            for (key, block) in expired {
                self.picker.release(key, block);
            }
            self.all_dirty = true;
        }
        for key in idle {
            self.actions.push_back(Action::Disconnect {
                peer: key,
                reason: DisconnectReason::Timeout,
            });
        }
        if now >= self.next_choke {
            self.next_choke = now + self.config.choke_interval;
            self.choke_round();
        }
        self.dial(now);
        self.flush_dirty(now);
    }

    /// Next piece of work; call after every `handle_*` until it returns `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.shutting_down).then_some(self.last_tick + TICK)
    }

    /// Begins a clean shutdown: every peer gets [`Action::Disconnect`] with
    /// [`DisconnectReason::Shutdown`].
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        for &peer in self.peers.keys() {
            self.actions.push_back(Action::Disconnect {
                peer,
                reason: DisconnectReason::Shutdown,
            });
        }
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// Geometry.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// True once every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.have().is_full()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let have = self.picker.have();
        // Every piece is full-length but the last: no need to walk the bitfield.
        let mut bytes_have = have.count() as u64 * self.lengths.default_piece_len() as u64;
        if let Some(last) = self
            .lengths
            .num_pieces()
            .checked_sub(1)
            .and_then(|i| self.lengths.validate_piece(i))
            && have.has(last)
        {
            bytes_have -= (self.lengths.default_piece_len() - self.lengths.piece_len(last)) as u64;
        }
        Stats {
            pieces_have: have.count(),
            pieces_total: self.lengths.num_pieces(),
            bytes_have,
            peers_connected: self.peers.len(),
            peers_seen: self.peers_seen.len(),
            peers_banned: self.banned_ids.len(),
            ..self.stats.clone()
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- connections

    fn on_connected(&mut self, now: Instant, key: PeerKey, info: PeerInfo) {
        if info.outgoing {
            self.book.connected(info.addr);
        }
        let reason = if self.shutting_down {
            Some(DisconnectReason::Shutdown)
        } else if self.banned_ids.contains(&info.peer_id) || self.book.is_banned(&info.addr) {
            Some(DisconnectReason::Banned)
        } else if !self.replaces_crossing_dial(&info) {
            Some(DisconnectReason::Duplicate)
        } else if self.peers.len() >= self.config.max_peers && !self.evict_idle_peer(now) {
            Some(DisconnectReason::TooManyPeers)
        } else {
            None
        };
        if let Some(reason) = reason {
            // A refused dial must leave the address dialable again (the stall: crossing dials
            // refused as duplicates at both ends left each address "connected" for good, so
            // neither side ever dialled the other again).
            if info.outgoing {
                match reason {
                    DisconnectReason::Duplicate => self
                        .duplicate_dials
                        .entry(info.peer_id)
                        .or_default()
                        .push(info.addr),
                    DisconnectReason::Banned => self.book.ban(info.addr),
                    _ => self.book.disconnected(info.addr, now, RECONNECT_PAUSE),
                }
            }
            self.actions
                .push_back(Action::Disconnect { peer: key, reason });
            return;
        }
        self.peers_seen.insert(info.peer_id, ());
        let (fast, ext) = (info.supports_fast, info.supports_extensions);
        let mut p = Peer::new(
            info,
            self.lengths.num_pieces(),
            self.config.initial_queue_depth,
            now,
        );
        if ext {
            let hs = ExtendedHandshake {
                fabric: self.config.fabric.clone(),
                listen_port: (self.config.listen_port != 0).then_some(self.config.listen_port),
                quic_port: (self.config.quic_port != 0).then_some(self.config.quic_port),
                client: Some(CLIENT_NAME.to_owned()),
                reqq: Some(self.config.max_peer_requests),
                // BEP 10 `yourip`: the address we see the peer at, so a client on a host with
                // several addresses (or behind NAT) learns which one it dials from.
                yourip: Some(p.info.addr.ip()),
                ..Default::default()
            };
            self.actions.push_back(Action::Send {
                peer: key,
                msg: Message::Extended {
                    id: 0,
                    payload: hs.encode(),
                },
            });
        }
        let have = self.picker.have();
        let first = if self.super_seed.is_some() {
            p.revealed = Some(Bitfield::new(self.lengths.num_pieces()));
            fast.then_some(Message::HaveNone)
        } else if fast && have.is_full() {
            Some(Message::HaveAll)
        } else if fast && have.count() == 0 {
            Some(Message::HaveNone)
        } else if have.count() > 0 {
            Some(Message::Bitfield(have.to_wire()))
        } else {
            None
        };
        if let Some(msg) = first {
            self.actions.push_back(Action::Send { peer: key, msg });
        }
        if let Some(ss) = self.super_seed.as_mut() {
            let lone = !self.peers.values().any(Peer::downloads_revealed);
            ss.top_up(
                key,
                &mut p,
                lone,
                &self.picker,
                &mut self.rng,
                &mut self.actions,
            );
        }
        self.peers.insert(key, p);
        // Nobody is choked for long in a cooperative swarm: open a slot right away if free.
        self.quick_unchoke(key);
    }

    /// A second connection to a peer we are connected to: false if it is the duplicate to
    /// close. Crossing dials (one dialled by each side) end with both connections at both
    /// ends, in either order; each end must keep the same one, or each closes the one the
    /// other kept and both redial. So, as in TCP's simultaneous open, the rule depends on the
    /// pair, not on arrival order: the connection dialled by the lower peer id stays, and when
    /// that is the newcomer the older one is closed here (true). Two connections dialled by
    /// the same side keep the first.
    fn replaces_crossing_dial(&mut self, info: &PeerInfo) -> bool {
        let Some((&old, p)) = self
            .peers
            .iter()
            .find(|(_, p)| p.info.peer_id == info.peer_id && !p.closing)
        else {
            return true;
        };
        let lower_dialled_new = (self.config.peer_id.0 < info.peer_id.0) == info.outgoing;
        if p.info.outgoing == info.outgoing || !lower_dialled_new {
            return false;
        }
        if let Some(p) = self.peers.get_mut(&old) {
            p.closing = true;
        }
        self.actions.push_back(Action::Disconnect {
            peer: old,
            reason: DisconnectReason::Duplicate,
        });
        true
    }

    /// Makes room for a newcomer at `max_peers`: asks the edge to close the peer idle the
    /// longest among those connected at least `idle_evict_after`. False if none qualifies.
    fn evict_idle_peer(&mut self, now: Instant) -> bool {
        let open = self.peers.values().filter(|p| !p.closing).count();
        if open < self.config.max_peers {
            return true; // an earlier eviction already made room
        }
        let oldest = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.closing
                    && p.is_idle()
                    && now.saturating_duration_since(p.connected_at) >= self.config.idle_evict_after
            })
            .min_by_key(|(k, p)| (p.last_recv, **k))
            .map(|(k, _)| *k);
        let Some(key) = oldest else {
            return false;
        };
        if let Some(p) = self.peers.get_mut(&key) {
            p.closing = true;
        }
        self.actions.push_back(Action::Disconnect {
            peer: key,
            reason: DisconnectReason::Idle,
        });
        true
    }

    fn on_disconnected(&mut self, now: Instant, key: PeerKey) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        self.departed.insert(
            key,
            Identity {
                addr: p.info.addr,
                peer_id: p.info.peer_id,
                outgoing: p.info.outgoing,
            },
        );
        self.picker.remove_peer_pieces(&p.pieces, p.scope);
        for (block, _) in &p.requests {
            self.picker.release(key, *block);
        }
        if let Some(ss) = self.super_seed.as_mut() {
            ss.peer_left(&p);
        }
        let still_connected = self
            .peers
            .values()
            .any(|q| q.info.peer_id == p.info.peer_id);
        if still_connected {
            // A crossing dial replaced this one: its address stays "connected" until the
            // peer is gone, as a refused duplicate dial's does.
            if p.info.outgoing {
                self.duplicate_dials
                    .entry(p.info.peer_id)
                    .or_default()
                    .push(p.info.addr);
            }
        } else {
            let pause = if self.picker.have().is_full() && p.is_seed() {
                BOTH_SEEDS_PAUSE
            } else {
                RECONNECT_PAUSE
            };
            if p.info.outgoing {
                self.book.disconnected(p.info.addr, now, pause);
            }
            for addr in self
                .duplicate_dials
                .remove(&p.info.peer_id)
                .unwrap_or_default()
            {
                self.book.disconnected(addr, now, pause);
            }
        }
        if p.fabric.is_some() {
            self.update_fabric_share();
        }
        self.dirty.retain(|k| *k != key);
        self.upload_waiting.remove(&key);
        if !p.requests.is_empty() {
            self.all_dirty = true;
        }
        self.dial(now);
    }

    fn dial(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        let open = self.peers.len() + self.book.half_open();
        let room = self.config.max_peers.saturating_sub(open).min(
            self.config
                .max_half_open
                .saturating_sub(self.book.half_open()),
        );
        let mut addrs = Vec::new();
        self.book.next_dials(now, room, &mut addrs);
        for addr in addrs {
            self.stats.dials += 1;
            self.actions.push_back(Action::Connect { addr });
        }
    }

    fn violation(&mut self, key: PeerKey, what: String) {
        self.actions.push_back(Action::Disconnect {
            peer: key,
            reason: DisconnectReason::ProtocolViolation(what),
        });
    }

    // ---------------------------------------------------------------- messages

    fn on_message(&mut self, now: Instant, key: PeerKey, msg: Message) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        p.last_recv = now;
        let view = View {
            lengths: &self.lengths,
            have: self.picker.have(),
            fast: p.info.supports_fast,
            am_choking: p.am_choking,
            ext_handshakes: p.ext_handshakes,
        };
        let treatment = leniency::judge(&msg, view);
        if let Message::Request(_) = &msg
            && !p.peer_interested
        {
            // libtorrent: "be lenient and pretend that the peer said it was interested".
            p.peer_interested = true;
            self.quick_unchoke(key);
        }
        match treatment {
            Treatment::Accept => {}
            Treatment::Ignore => {
                if let Message::Piece { data, .. } = &msg {
                    self.stats.bytes_wasted += data.len() as u64;
                }
                return;
            }
            Treatment::Reject => {
                if let Message::Request(s) = msg {
                    self.refuse(key, s);
                }
                return;
            }
            Treatment::Disconnect(why) => return self.violation(key, why),
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::Unknown { .. } => {}
            Message::Suggest(i) => {
                p.suggested.retain(|s| *s != i);
                p.suggested.push_front(i);
                p.suggested.truncate(MAX_SUGGESTED);
            }
            Message::AllowedFast(i) => {
                if !p.allowed_fast.contains(&i) && p.allowed_fast.len() < MAX_ALLOWED_FAST {
                    p.allowed_fast.push(i);
                    self.mark_dirty(key);
                }
            }
            Message::Choke => {
                p.peer_choking = true;
                // Without BEP 6, a choke silently discards our requests; with it, rejects follow
                // (and requests for allowed-fast pieces stay valid).
                if !p.info.supports_fast {
                    let dropped: Vec<_> = p.requests.drain(..).map(|(b, _)| b).collect();
                    self.release_all(key, dropped);
                }
            }
            Message::Unchoke => {
                p.peer_choking = false;
                self.mark_dirty(key);
            }
            Message::Interested => {
                p.peer_interested = true;
                self.quick_unchoke(key);
            }
            Message::NotInterested => p.peer_interested = false,
            Message::Have(i) => {
                let Some(piece) = self.lengths.validate_piece(i) else {
                    return; // judged in range
                };
                if p.pieces.set(piece) {
                    self.picker.add_peer_piece(piece, p.scope);
                    if let Some(ss) = self.super_seed.as_mut() {
                        ss.peer_has(p, piece);
                    }
                    self.after_peer_pieces_changed(key);
                }
            }
            Message::Bitfield(bytes) => {
                if let Some(bf) = leniency::lenient_bitfield(&bytes, self.lengths.num_pieces()) {
                    self.set_peer_pieces(key, bf);
                }
            }
            Message::HaveAll => {
                self.set_peer_pieces(key, Bitfield::full(self.lengths.num_pieces()))
            }
            Message::HaveNone => {
                self.set_peer_pieces(key, Bitfield::new(self.lengths.num_pieces()))
            }
            Message::Request(s) => self.on_request(key, s),
            Message::Cancel(s) => {
                if let Some(block) = self.lengths.validate_request(s.index, s.begin, s.len) {
                    p.cancel_upload(block);
                }
            }
            Message::Reject(s) => {
                if let Some(block) = self.lengths.validate_grid_block(s.index, s.begin, s.len)
                    && p.take_request(block)
                {
                    if p.peer_choking {
                        // libtorrent: a reject while choked withdraws the allowed-fast grant.
                        p.allowed_fast.retain(|i| *i != s.index);
                    }
                    self.picker.release(key, block);
                    self.all_dirty = true;
                }
            }
            Message::Piece { index, begin, data } => self.on_block(key, index, begin, data),
            Message::Extended { id: 0, payload } => self.on_extended_handshake(key, &payload),
            Message::Extended { .. } => {}
        }
    }

    /// The peer's whole piece set, from a bitfield, have-all or have-none, first or again:
    /// the old set's availability is taken out of the picker and the new one's put in.
    fn set_peer_pieces(&mut self, key: PeerKey, bf: Bitfield) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if let Some(ss) = self.super_seed.as_mut() {
            ss.pieces_replaced(p, &bf);
        }
        self.picker.remove_peer_pieces(&p.pieces, p.scope);
        p.pieces = bf;
        self.picker.add_peer_pieces(&p.pieces, p.scope);
        if p.am_interested && !self.picker.wants_any_of(&p.pieces) {
            p.am_interested = false;
            self.actions.push_back(Action::Send {
                peer: key,
                msg: Message::NotInterested,
            });
        }
        self.after_peer_pieces_changed(key);
    }

    fn after_peer_pieces_changed(&mut self, key: PeerKey) {
        // Only an origin asks (an O(peers) scan per `have` it receives).
        let lone = self.super_seed.is_some()
            && !self
                .peers
                .iter()
                .any(|(k, q)| *k != key && q.downloads_revealed());
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if self.picker.have().is_full() && p.is_seed() {
            self.actions.push_back(Action::Disconnect {
                peer: key,
                reason: DisconnectReason::NotUseful,
            });
            return;
        }
        if !p.am_interested && self.picker.wants_any_of(&p.pieces) {
            p.am_interested = true;
            self.actions.push_back(Action::Send {
                peer: key,
                msg: Message::Interested,
            });
        }
        if let Some(ss) = self.super_seed.as_mut() {
            ss.top_up(key, p, lone, &self.picker, &mut self.rng, &mut self.actions);
        }
        self.mark_dirty(key);
    }

    fn on_extended_handshake(&mut self, key: PeerKey, payload: &[u8]) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        // Counted before decoding: a malformed one uses up an attempt too.
        p.ext_handshakes += 1;
        let Ok(hs) = ExtendedHandshake::decode(payload) else {
            return;
        };
        p.fabric = hs.fabric;
        let scope = match (&self.config.fabric, &p.fabric) {
            (Some(ours), Some(theirs)) if ours != theirs => PeerScope::Remote,
            _ => PeerScope::Local,
        };
        if scope != p.scope {
            self.picker.remove_peer_pieces(&p.pieces, p.scope);
            p.scope = scope;
            self.picker.add_peer_pieces(&p.pieces, p.scope);
        }
        self.update_fabric_share();
    }

    /// Sets our fabric share (see [`FabricShare`]). An instream tracker's rank is our place
    /// in the order the fabric's hosts joined, which never moves; its count can lag behind
    /// the hosts already here (early in a rollout, each announce counts only those before
    /// it), so the count is at least the same-fabric peers we are connected to, plus us: a
    /// larger count only shrinks our share, towards what it will be. Without a tracker's
    /// share, we rank ourselves by peer id among the same-fabric peers we know.
    fn update_fabric_share(&mut self) {
        let Some(ours) = &self.config.fabric else {
            return;
        };
        if self.config.fabric_share.is_some() {
            return; // told by whoever knows the whole fabric (the control plane)
        }
        let mut ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.fabric.as_ref() == Some(ours))
            .map(|p| p.info.peer_id)
            .chain(std::iter::once(self.config.peer_id))
            .collect();
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        // Connected peers are bounded by max_peers: far below u32::MAX.
        let here = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let share = match self.tracker_share {
            Some(t) => FabricShare {
                rank: t.rank,
                of: t.of.max(here),
            },
            None => {
                let rank = ids.iter().position(|id| *id == self.config.peer_id);
                FabricShare {
                    rank: rank.map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
                    of: here,
                }
            }
        };
        self.picker.set_fabric_share(Some(share));
    }

    /// True when no same-fabric peer has anything we need, so remote peers may be asked for
    /// any piece new to the fabric, not just our share.
    fn local_peers_exhausted(&self) -> bool {
        let Some(ours) = &self.config.fabric else {
            return true;
        };
        !self
            .peers
            .values()
            .any(|p| p.fabric.as_ref() == Some(ours) && self.picker.wants_any_of(&p.pieces))
    }

    fn on_block(&mut self, key: PeerKey, index: u32, begin: u32, data: bytes::Bytes) {
        // An over-long block maps to u32::MAX, which no grid block has.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(block) = self.lengths.validate_grid_block(index, begin, len) else {
            if self.lengths.validate_request(index, begin, len).is_none() {
                return self.violation(
                    key,
                    format!("piece message {index}/{begin}/{len} outside the torrent"),
                );
            }
            self.stats.bytes_wasted += len as u64;
            return;
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        p.take_request(block);
        p.down.add(len as u64);
        self.stats.bytes_downloaded += len as u64;
        self.mark_dirty(key);
        match self.picker.block_received(key, block, &data) {
            Received::Unsolicited | Received::Duplicate => self.stats.bytes_wasted += len as u64,
            Received::Accepted { cancel, complete } => {
                for other in cancel {
                    if let Some(o) = self.peers.get_mut(&other)
                        && o.take_request(block)
                    {
                        self.actions.push_back(Action::Send {
                            peer: other,
                            msg: Message::Cancel(spec(block)),
                        });
                    }
                }
                if let Some(data) = complete {
                    if let Some(p) = self.peers.get_mut(&key)
                        && !p.trusted
                    {
                        p.awaiting_verdict.push(block.piece.get());
                    }
                    self.actions.push_back(Action::VerifyAndWrite {
                        piece: block.piece,
                        data,
                    });
                }
            }
        }
    }

    fn on_piece_verified(&mut self, _now: Instant, piece: ValidPieceIndex, ok: bool) {
        // Room in the write backlog may let stalled pipes go on.
        self.all_dirty = true;
        for p in self.peers.values_mut() {
            p.awaiting_verdict.retain(|i| *i != piece.get());
        }
        match self.picker.piece_verified(piece, ok) {
            Verdict::Good { liars, senders } => {
                for liar in &liars {
                    self.strike(*liar);
                }
                // Probation ends for whoever sent blocks of a good piece.
                for s in senders {
                    if !liars.contains(&s)
                        && let Some(p) = self.peers.get_mut(&s)
                    {
                        p.trusted = true;
                    }
                }
                let have_msg = Message::Have(piece.get());
                let complete = self.picker.have().is_full();
                for (&key, p) in self.peers.iter_mut() {
                    // To every peer, even one that has the piece: an origin in super-seed
                    // mode learns from these that its reveals arrived (BEP 16).
                    self.actions.push_back(Action::Send {
                        peer: key,
                        msg: have_msg.clone(),
                    });
                    if p.am_interested && !self.picker.wants_any_of(&p.pieces) {
                        p.am_interested = false;
                        self.actions.push_back(Action::Send {
                            peer: key,
                            msg: Message::NotInterested,
                        });
                    }
                    if complete && p.is_seed() {
                        self.actions.push_back(Action::Disconnect {
                            peer: key,
                            reason: DisconnectReason::NotUseful,
                        });
                    }
                }
                if complete && !self.completed {
                    self.completed = true;
                    self.actions.push_back(Action::Completed);
                }
            }
            Verdict::Bad { sole_sender } => {
                self.stats.hash_failures += 1;
                self.stats.bytes_wasted += self.lengths.piece_len(piece) as u64;
                if let Some(peer) = sole_sender {
                    self.strike(peer);
                }
                self.all_dirty = true;
            }
        }
    }

    /// One strike against the peer behind `key` (connected or not); enough strikes ban it.
    fn strike(&mut self, key: PeerKey) {
        let id = match self.peers.get(&key) {
            Some(p) => Identity {
                addr: p.info.addr,
                peer_id: p.info.peer_id,
                outgoing: p.info.outgoing,
            },
            None => match self.departed.get(&key) {
                Some(id) => *id,
                None => return,
            },
        };
        let n = self.strikes.get_or_insert_with(id.peer_id, || 0);
        *n += 1;
        if *n < self.config.max_hash_failures || !self.banned_ids.insert(id.peer_id, ()) {
            return;
        }
        if id.outgoing {
            self.book.ban(id.addr);
        }
        let victims: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.info.peer_id == id.peer_id)
            .map(|(k, _)| *k)
            .collect();
        for peer in victims {
            self.actions.push_back(Action::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
        }
    }

    fn release_all(&mut self, key: PeerKey, blocks: Vec<BlockRef>) {
        if blocks.is_empty() {
            return;
        }
        for b in blocks {
            self.picker.release(key, b);
        }
        self.all_dirty = true;
    }

    // ---------------------------------------------------------------- requests and choking

    /// Tops up the request queues of peers marked dirty.
    fn flush_dirty(&mut self, now: Instant) {
        if self.picker.have().is_full() {
            self.dirty.clear();
            self.all_dirty = false;
            return;
        }
        // At least four pieces, so that large pieces still keep the disk threads busy.
        let cap = (self.config.max_pending_write_bytes)
            .max(4 * u64::from(self.lengths.default_piece_len()));
        if self.picker.bytes_verifying() > cap {
            // The disk is behind: leave the peers dirty; a verdict will let us go on.
            return;
        }
        let mut fallback = None;
        let probation_depth = self.lengths.default_piece_len().div_ceil(BLOCK_LEN).max(1);
        // In key order, each once, as a sorted set would pop them. Nothing below marks a
        // peer dirty, so the list is taken whole.
        let all = std::mem::take(&mut self.all_dirty);
        let mut dirty = std::mem::take(&mut self.dirty);
        if all {
            dirty.clear();
            dirty.extend(self.peers.keys().copied());
        } else {
            dirty.sort_unstable();
            dirty.dedup();
        }
        for &key in &dirty {
            let remote = self
                .peers
                .get(&key)
                .is_some_and(|p| p.scope == PeerScope::Remote);
            let remote_fallback =
                remote && *fallback.get_or_insert_with(|| self.local_peers_exhausted());
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            if !p.am_interested || (p.peer_choking && p.allowed_fast.is_empty()) {
                continue;
            }
            // On probation (nothing of it verified yet): one piece's worth in flight and
            // nothing more until that piece's verdict, so each bad piece is judged before the
            // next is asked for and a liar costs one piece per strike (issue 10).
            let depth = if p.trusted {
                p.queue_depth
            } else if !p.awaiting_verdict.is_empty() {
                0
            } else {
                p.queue_depth.min(probation_depth)
            };
            let room = (depth as usize).saturating_sub(p.requests.len());
            if room == 0 {
                continue;
            }
            // Choked with BEP 6 allowed-fast grants: only those pieces may be asked for.
            let fast_only;
            let theirs = if p.peer_choking {
                let mut bf = Bitfield::new(self.lengths.num_pieces());
                for &i in &p.allowed_fast {
                    if p.pieces.get_raw(i) {
                        bf.set_raw(i);
                    }
                }
                fast_only = bf;
                &fast_only
            } else {
                &p.pieces
            };
            self.scratch.clear();
            self.picker.pick(
                key,
                theirs,
                p.scope,
                remote_fallback,
                !p.trusted,
                room,
                &mut self.rng,
                &mut self.scratch,
            );
            for &block in &self.scratch {
                p.requests.push_back((block, now));
                self.actions.push_back(Action::Send {
                    peer: key,
                    msg: Message::Request(spec(block)),
                });
            }
            if !self.scratch.is_empty() {
                p.last_sent = now;
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Marks one peer's request queue to be topped up before we return.
    fn mark_dirty(&mut self, key: PeerKey) {
        self.fold_dirty_repeats();
        self.dirty.push(key);
    }

    /// While the disk is behind, flushes wait and marks pile up: folds the repeats, so the
    /// list stays within a few times the peers.
    fn fold_dirty_repeats(&mut self) {
        if self.dirty.len() >= 2 * self.peers.len() + 16 {
            self.dirty.sort_unstable();
            self.dirty.dedup();
        }
    }

    fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|p| !p.am_choking).count()
    }

    fn quick_unchoke(&mut self, key: PeerKey) {
        let slots = self.config.max_unchoked;
        if slots != 0 && self.unchoked_count() >= slots {
            return;
        }
        if let Some(p) = self.peers.get_mut(&key)
            && p.am_choking
            && p.peer_interested
        {
            p.am_choking = false;
            self.actions.push_back(Action::Send {
                peer: key,
                msg: Message::Unchoke,
            });
        }
    }

    fn choke_round(&mut self) {
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(&peer, p)| Candidate {
                peer,
                interested: p.peer_interested,
                pieces: p.pieces.count(),
            })
            .collect();
        let chosen: std::collections::HashSet<PeerKey> =
            choose_unchoked(&candidates, self.config.max_unchoked, &mut self.rng)
                .into_iter()
                .collect();
        for (&key, p) in self.peers.iter_mut() {
            let unchoke = chosen.contains(&key);
            if unchoke && p.am_choking {
                p.am_choking = false;
                self.actions.push_back(Action::Send {
                    peer: key,
                    msg: Message::Unchoke,
                });
            } else if !unchoke && !p.am_choking {
                p.am_choking = true;
                self.actions.push_back(Action::Send {
                    peer: key,
                    msg: Message::Choke,
                });
                // BEP 6: a choke must be followed by a reject for each pending request.
                for block in p.drop_uploads() {
                    if p.info.supports_fast {
                        self.actions.push_back(Action::Send {
                            peer: key,
                            msg: Message::Reject(spec(block)),
                        });
                    }
                }
            }
        }
    }
}

fn spec(b: BlockRef) -> BlockSpec {
    BlockSpec {
        index: b.piece.get(),
        begin: b.offset,
        len: b.len,
    }
}
