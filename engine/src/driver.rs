//! The task that drives one torrent: it owns the `proto::torrent::Torrent` machine, feeds it
//! every event (peer messages, disk and hash completions, timers, operator commands), and
//! carries out the actions it emits.
//!
//! Cost model (the 1 GiB loopback benchmark is the judge): each wake-up drains every event
//! already queued before it acts, so one loop iteration handles many blocks; the actions of
//! an iteration are batched per destination: one `Vec<Message>` per peer writer, one disk
//! job for all the block reads (coalesced into contiguous reads, sliced without copying).
//! Nothing here blocks: writers are unbounded (their queued bytes are watched), disk work
//! goes to the [`DiskPool`], dials are spawned.
//!
//! Invariant: a peer is in `peers` from its `Connected` event until the machine has been
//! told `PeerDisconnected` for it, exactly once, whichever side closed first.
//!
//! Transports: a QUIC connection of a peer id we hold over TCP replaces the TCP one (the
//! TCP one is closed and its end told to the machine before the QUIC one is), at both ends,
//! which is how a connection moves to QUIC (`net::auto`, `net::quic::move_to_quic`). The
//! peer's BEP 10 handshake on a TCP connection is read here too, for its QUIC port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto::lengths::BlockRef;
use proto::torrent::{Action, Input, PeerKey, Torrent};
use proto::wire::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::connection::{NetEvent, PeerWriter, Via};
use crate::disk::DiskPool;
use crate::meta::TorrentMeta;
use crate::net::{OwnAddresses, Quic, Route, SocketOptions, Transport, auto, quic};
use crate::session::{TorrentState, TorrentStatus};
use crate::storage::Storage;
use crate::verify::{PieceObserver, verify_and_write};

/// Events handled per wake-up before actions are flushed: enough to batch, few enough that
/// writers are fed at least every few hundred microseconds under load.
const MAX_EVENTS_PER_ROUND: usize = 256;
/// Status snapshots are published at most this often (plus on every state change).
const STATUS_EVERY: Duration = Duration::from_millis(100);
/// Largest single coalesced disk read for uploads.
const MAX_READ_RUN: u32 = 4 * 1024 * 1024;

/// Commands and completions for a torrent task (unbounded: they come from our own code).
#[derive(Debug)]
pub enum Control {
    /// Candidate peers (from `--peer`, a tracker, ...).
    AddPeers(Vec<std::net::SocketAddr>),
    /// Inputs computed off the task (disk reads, verifications).
    Inputs(Vec<Input>),
    /// A verify-and-write job finished: its answer, and the piece bytes it released.
    PieceDone(Input, usize),
    /// The storage finished syncing after completion.
    Synced(Result<(), String>),
    /// Stop: disconnect everyone, sync, exit; answer when done.
    Stop(Option<oneshot::Sender<()>>),
}

struct PeerSlot {
    writer: PeerWriter,
    out: Vec<Message>,
    info: proto::torrent::PeerInfo,
    via: Via,
    /// The peer's BEP 10 handshake was looked at (for TCP connections: its QUIC port).
    ext_seen: bool,
}

/// Everything the torrent task owns.
pub(crate) struct Driver {
    pub machine: Torrent,
    pub meta: Arc<TorrentMeta>,
    pub storage: Arc<dyn Storage>,
    /// Sees each piece as it is written ([`AddOptions::piece_observer`]).
    ///
    /// [`AddOptions::piece_observer`]: crate::session::AddOptions::piece_observer
    pub observer: Option<Arc<dyn PieceObserver>>,
    pub disk: Arc<DiskPool>,
    pub route: Route,
    pub socket: SocketOptions,
    /// The session's QUIC endpoint (any transport but `Tcp`).
    pub quic: Option<Arc<Quic>>,
    /// `--transport`: whether dials try QUIC first, and which connections move to QUIC.
    pub transport: Transport,
    /// Our fabric, for the `auto` rule.
    pub fabric: Option<String>,
    /// Where we would reach ourselves (never dialled).
    pub own: Arc<OwnAddresses>,
    pub net_rx: mpsc::Receiver<NetEvent>,
    pub ctl_rx: mpsc::UnboundedReceiver<Control>,
    pub ctl_tx: mpsc::UnboundedSender<Control>,
    pub status: watch::Sender<TorrentStatus>,
    pub max_queued_per_peer: usize,
    /// Piece bytes handed to the disk pool and not yet written.
    pub pending_writes: usize,
    /// Above this, peer messages are not read (see `SessionConfig::max_pending_writes`).
    pub max_pending_writes: usize,
    pub started: Instant,
}

struct Round {
    peers: HashMap<PeerKey, PeerSlot>,
    /// Peers a move to QUIC was started for (one per peer, crossing dials or not), until
    /// their QUIC connection ends.
    moving: std::collections::HashSet<proto::PeerId>,
    dirty: Vec<PeerKey>,
    reads: Vec<(PeerKey, BlockRef)>,
    state: TorrentState,
    stop_waiters: Vec<oneshot::Sender<()>>,
    stopping: bool,
}

impl Driver {
    /// Runs the torrent until it is stopped (or fails).
    pub(crate) async fn run(mut self) {
        crate::supervise::test_panic_point("torrent");
        let mut r = Round {
            peers: HashMap::new(),
            moving: Default::default(),
            dirty: Vec::new(),
            reads: Vec::new(),
            state: if self.machine.is_complete() {
                TorrentState::Seeding
            } else {
                TorrentState::Downloading
            },
            stop_waiters: Vec::new(),
            stopping: false,
        };
        let mut last_status = Instant::now()
            .checked_sub(STATUS_EVERY)
            .unwrap_or_else(Instant::now);
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let cancel = self.route.cancel.clone();
        self.drain_actions(&mut r);
        loop {
            self.flush(&mut r);
            let now = Instant::now();
            if now.duration_since(last_status) >= STATUS_EVERY {
                self.publish(&r);
                last_status = now;
            }
            if r.stopping {
                break;
            }
            let deadline = self.machine.poll_timeout();
            if let Some(d) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => self.begin_stop(&mut r, None),
                c = self.ctl_rx.recv() => match c {
                    Some(c) => self.on_control(&mut r, c),
                    None => self.begin_stop(&mut r, None),
                },
                // Backpressure: while the disk is behind, leave peer data in the sockets.
                e = self.net_rx.recv(), if self.pending_writes < self.max_pending_writes => {
                    if let Some(e) = e {
                        self.on_net(&mut r, e);
                    }
                }
                _ = &mut sleep, if deadline.is_some() => {}
            }
            // Drain what else is already queued, so its actions go out in one batch.
            for _ in 0..MAX_EVENTS_PER_ROUND {
                if let Ok(c) = self.ctl_rx.try_recv() {
                    self.on_control(&mut r, c);
                } else if self.pending_writes < self.max_pending_writes
                    && let Ok(e) = self.net_rx.try_recv()
                {
                    self.on_net(&mut r, e);
                } else {
                    break;
                }
            }
            if let Some(d) = self.machine.poll_timeout()
                && d <= Instant::now()
            {
                self.machine.handle_timeout(Instant::now());
                self.drain_actions(&mut r);
            }
        }
        self.finish(r).await;
    }

    fn feed(&mut self, r: &mut Round, input: Input) {
        self.machine.handle_input(Instant::now(), input);
        self.drain_actions(r);
    }

    fn on_control(&mut self, r: &mut Round, c: Control) {
        match c {
            Control::AddPeers(addrs) => self.feed(r, Input::PeersDiscovered { addrs }),
            Control::Inputs(inputs) => {
                for i in inputs {
                    self.feed(r, i);
                }
            }
            Control::PieceDone(input, len) => {
                self.pending_writes -= len;
                self.feed(r, input);
            }
            Control::Synced(Ok(())) => debug!("storage synced"),
            Control::Synced(Err(e)) => warn!(error = %e, "sync after completion failed"),
            Control::Stop(w) => self.begin_stop(r, w),
        }
    }

    fn on_net(&mut self, r: &mut Round, e: NetEvent) {
        match e {
            NetEvent::Connected {
                peer,
                info,
                writer,
                via,
            } => {
                if r.stopping {
                    writer.close();
                    return;
                }
                debug!(addr = %info.addr, key = peer.0, outgoing = info.outgoing, ?via, "peer connected");
                if via == Via::Quic {
                    self.replace_tcp_of(r, &info);
                }
                r.peers.insert(
                    peer,
                    PeerSlot {
                        writer,
                        out: Vec::new(),
                        info: info.clone(),
                        via,
                        ext_seen: via == Via::Quic,
                    },
                );
                self.feed(r, Input::PeerConnected { peer, info });
            }
            NetEvent::Messages { peer, msgs } => {
                self.look_for_quic_port(r, peer, &msgs);
                for msg in msgs {
                    // The machine may drop the peer half-way through a batch.
                    if !r.peers.contains_key(&peer) {
                        break;
                    }
                    self.feed(r, Input::PeerMessage { peer, msg });
                }
            }
            NetEvent::Closed { peer, error } => {
                if let Some(slot) = r.peers.remove(&peer) {
                    if slot.via == Via::Quic {
                        // A later TCP connection to this peer may move again.
                        r.moving.remove(&slot.info.peer_id);
                    }
                    debug!(
                        key = peer.0,
                        error = error.as_deref().unwrap_or(""),
                        "peer closed"
                    );
                    self.feed(r, Input::PeerDisconnected { peer });
                }
            }
            NetEvent::Written { peer, bytes } => {
                if r.peers.contains_key(&peer) {
                    self.feed(r, Input::UploadWritten { peer, bytes });
                }
            }
            NetEvent::ConnectFailed { addr } => self.feed(r, Input::ConnectFailed { addr }),
            NetEvent::ReachedOurselves { addr } => self.feed(r, Input::OwnAddress { addr }),
        }
    }

    fn drain_actions(&mut self, r: &mut Round) {
        while let Some(a) = self.machine.poll_action() {
            match a {
                Action::Send { peer, msg } => {
                    if let Some(slot) = r.peers.get_mut(&peer) {
                        if slot.out.is_empty() {
                            r.dirty.push(peer);
                        }
                        slot.out.push(msg);
                    }
                }
                Action::Read { peer, block } => r.reads.push((peer, block)),
                Action::VerifyAndWrite { piece, data } => {
                    let storage = self.storage.clone();
                    let expected = self.meta.piece_hashes[piece.idx()];
                    let offset = self.meta.lengths.piece_offset(piece);
                    let tx = self.ctl_tx.clone();
                    let observer = self.observer.clone();
                    let len = data.len();
                    self.pending_writes += len;
                    self.disk.spawn(move || {
                        let outcome = verify_and_write(
                            &*storage,
                            piece,
                            offset,
                            &expected,
                            &data,
                            observer.as_deref(),
                        );
                        drop(data);
                        let _ = tx.send(Control::PieceDone(outcome.into_input(piece), len));
                    });
                }
                Action::Connect { addr } => {
                    if self.own.contains(addr) {
                        debug!(%addr, "not dialling our own address");
                        self.machine
                            .handle_input(Instant::now(), Input::OwnAddress { addr });
                    } else if !r.stopping {
                        tokio::spawn(quic::connect_peer(
                            addr,
                            self.route.clone(),
                            self.socket,
                            self.quic.clone().filter(|_| self.transport.dials_quic()),
                        ));
                    }
                }
                Action::Disconnect { peer, reason } => {
                    if let Some(slot) = r.peers.remove(&peer) {
                        debug!(key = peer.0, ?reason, "disconnecting");
                        // Flush what the machine queued before deciding to close (a final
                        // reject or have); the writer drops the rest when cancelled.
                        if !slot.out.is_empty() {
                            slot.writer.send(slot.out);
                        }
                        slot.writer.close();
                        self.machine
                            .handle_input(Instant::now(), Input::PeerDisconnected { peer });
                    }
                }
                Action::Completed => {
                    if r.state != TorrentState::Seeding {
                        info!(
                            info_hash = %self.meta.info_hash,
                            secs = self.started.elapsed().as_secs_f64(),
                            "download complete"
                        );
                    }
                    r.state = TorrentState::Seeding;
                    let storage = self.storage.clone();
                    let tx = self.ctl_tx.clone();
                    self.disk.spawn(move || {
                        let _ = tx.send(Control::Synced(
                            storage.sync().map_err(|e| exit::error_chain(&e)),
                        ));
                    });
                    self.publish(r);
                }
                Action::Fatal { error } => {
                    warn!(info_hash = %self.meta.info_hash, %error, "torrent failed");
                    r.state = TorrentState::Failed(error);
                    self.begin_stop(r, None);
                }
            }
        }
    }

    /// A QUIC connection of `info`'s peer id came up: its TCP connection, if any, is closed
    /// first, so the machine sees the QUIC one as the only one (not as a duplicate).
    fn replace_tcp_of(&mut self, r: &mut Round, info: &proto::torrent::PeerInfo) {
        let old = r
            .peers
            .iter()
            .find(|(_, s)| s.info.peer_id == info.peer_id && matches!(s.via, Via::Tcp { .. }))
            .map(|(k, _)| *k);
        if let Some(old) = old
            && let Some(slot) = r.peers.remove(&old)
        {
            debug!(key = old.0, addr = %slot.info.addr, "moved to QUIC; closing the TCP connection");
            if !slot.out.is_empty() {
                slot.writer.send(slot.out);
            }
            slot.writer.close();
            self.feed(r, Input::PeerDisconnected { peer: old });
        }
    }

    /// The peer's BEP 10 handshake on a TCP connection: remember its QUIC port for later
    /// dials, and move the connection to QUIC if the transport's rule says so
    /// ([`auto::moves_to_quic`]). Looked at once per connection.
    fn look_for_quic_port(
        &mut self,
        r: &mut Round,
        peer: proto::torrent::PeerKey,
        msgs: &[Message],
    ) {
        let Some(q) = &self.quic else {
            return;
        };
        let Some(slot) = r.peers.get_mut(&peer).filter(|s| !s.ext_seen) else {
            return;
        };
        let Some(payload) = msgs.iter().find_map(|m| match m {
            Message::Extended { id: 0, payload } => Some(payload),
            _ => None,
        }) else {
            return;
        };
        slot.ext_seen = true;
        let Ok(hs) = proto::wire::extension::ExtendedHandshake::decode(payload) else {
            return; // the machine judges a bad handshake
        };
        let Some(quic_port) = hs.quic_port else {
            return;
        };
        // The peer's TCP listen address: the one we dialled, or its source IP and `p`.
        let tcp_addr = if slot.info.outgoing {
            Some(slot.info.addr)
        } else {
            hs.listen_port
                .map(|p| std::net::SocketAddr::new(slot.info.addr.ip(), p))
        };
        if let Some(a) = tcp_addr {
            q.learn_port(a, quic_port);
        }
        let Via::Tcp { min_rtt } = slot.via else {
            return;
        };
        let facts = auto::PathFacts {
            we_decide: self.route.our_id.0 < slot.info.peer_id.0,
            quic_port: Some(quic_port),
            min_rtt,
            our_fabric: self.fabric.as_deref(),
            their_fabric: hs.fabric.as_deref(),
        };
        let quic_addr = std::net::SocketAddr::new(slot.info.addr.ip(), quic_port);
        if r.stopping
            || r.moving.contains(&slot.info.peer_id)
            || q.is_unreachable(quic_addr)
            || !auto::moves_to_quic(self.transport, &facts)
        {
            return;
        }
        r.moving.insert(slot.info.peer_id);
        debug!(addr = %slot.info.addr, %quic_addr, ?min_rtt, "moving to QUIC");
        // Reported as dialled to the peer's listen address, which the address book knows
        // (an incoming connection's source port is ephemeral).
        tokio::spawn(quic::move_to_quic(
            tcp_addr.unwrap_or(slot.info.addr),
            quic_addr,
            self.route.clone(),
            q.clone(),
        ));
    }

    fn begin_stop(&mut self, r: &mut Round, waiter: Option<oneshot::Sender<()>>) {
        if let Some(w) = waiter {
            r.stop_waiters.push(w);
        }
        if r.stopping {
            return;
        }
        r.stopping = true;
        self.machine.shutdown();
        self.drain_actions(r);
    }

    /// Sends the round's batches: one message vector per peer, one disk job for reads.
    fn flush(&mut self, r: &mut Round) {
        // Dropping a peer that stopped reading feeds the machine, which may queue more.
        while !r.dirty.is_empty() || !r.reads.is_empty() {
            for peer in std::mem::take(&mut r.dirty) {
                let Some(slot) = r.peers.get_mut(&peer) else {
                    continue;
                };
                if slot.out.is_empty() {
                    continue;
                }
                let msgs = std::mem::take(&mut slot.out);
                slot.writer.send(msgs);
                let queued = slot.writer.queued_bytes();
                if queued > self.max_queued_per_peer {
                    // The peer stopped reading; it must not hold memory hostage.
                    warn!(key = peer.0, queued, "peer not reading; dropping it");
                    slot.writer.close();
                    r.peers.remove(&peer);
                    self.feed(r, Input::PeerDisconnected { peer });
                }
            }
            if !r.reads.is_empty() {
                let reads = std::mem::take(&mut r.reads);
                let storage = self.storage.clone();
                let lengths = self.meta.lengths;
                let tx = self.ctl_tx.clone();
                self.disk.spawn(move || {
                    let inputs = read_blocks(&*storage, &lengths, reads);
                    let _ = tx.send(Control::Inputs(inputs));
                });
            }
        }
    }

    fn publish(&self, r: &Round) {
        let stats = self.machine.stats();
        self.status.send_modify(|s| {
            s.state = r.state.clone();
            s.stats = stats;
        });
    }

    async fn finish(mut self, mut r: Round) {
        for (_, slot) in r.peers.drain() {
            slot.writer.close();
        }
        self.route.cancel.cancel();
        // Sync what we wrote so a restart's resume check finds it.
        let (tx, rx) = oneshot::channel();
        let storage = self.storage.clone();
        self.disk.spawn(move || {
            let _ = tx.send(storage.sync());
        });
        if let Ok(Err(e)) = rx.await {
            warn!(error = %e, "sync at stop failed");
        }
        if !matches!(r.state, TorrentState::Failed(_)) {
            r.state = if self.machine.is_complete() {
                TorrentState::Seeding
            } else {
                TorrentState::Stopped
            };
        }
        let stats = self.machine.stats();
        self.status.send_modify(|s| {
            s.state = r.state.clone();
            s.stats = stats;
            s.stopped = true;
        });
        // Late disk completions are dropped with the channel.
        self.ctl_rx.close();
        for w in r.stop_waiters {
            let _ = w.send(());
        }
    }
}

/// Reads the requested blocks, coalescing one peer's blocks that are adjacent in the payload
/// into one read whose buffer the blocks then share (no copy). Answers in request order.
/// Runs never span peers: a shared run lives until its last slice is sent, so a peer that
/// never reads would otherwise pin other peers' data, past the machine's per-peer bound.
pub(crate) fn read_blocks(
    storage: &dyn Storage,
    lengths: &proto::lengths::Lengths,
    reads: Vec<(PeerKey, BlockRef)>,
) -> Vec<Input> {
    let offset_of = |b: &BlockRef| lengths.piece_offset(b.piece) + u64::from(b.offset);
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&i| (reads[i].0, offset_of(&reads[i].1)));
    let mut data: Vec<Option<Bytes>> = vec![None; reads.len()];
    let mut i = 0;
    while i < order.len() {
        // Extend a run while the next block starts where the run ends (or repeats a block).
        let start = offset_of(&reads[order[i]].1);
        let mut end = start + u64::from(reads[order[i]].1.len);
        let mut j = i + 1;
        while j < order.len() && reads[order[j]].0 == reads[order[i]].0 {
            let b = &reads[order[j]].1;
            let o = offset_of(b);
            let e = o + u64::from(b.len);
            if o > end || e - start > u64::from(MAX_READ_RUN) {
                break;
            }
            end = end.max(e);
            j += 1;
        }
        let mut buf = BytesMut::zeroed((end - start) as usize);
        match storage.read_at(start, &mut buf) {
            Ok(()) => {
                let run = buf.freeze();
                for &k in &order[i..j] {
                    let b = &reads[k].1;
                    let o = (offset_of(b) - start) as usize;
                    data[k] = Some(run.slice(o..o + b.len as usize));
                }
            }
            Err(e) => warn!(error = %e, offset = start, "read for upload failed"),
        }
        i = j;
    }
    reads
        .into_iter()
        .zip(data)
        .map(|((peer, block), d)| match d {
            Some(data) => Input::BlockRead { peer, block, data },
            None => Input::ReadFailed { peer, block },
        })
        .collect()
}
