//! What goes into and comes out of the torrent machine, and how it is configured.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::PeerId;
use crate::lengths::{BlockRef, ValidPieceIndex};
use crate::wire::Message;

/// Identifies one connection; allocated by the edge, never reused within a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// What the edge learned about a peer during the handshake.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Remote address (for incoming connections, the source address).
    pub addr: SocketAddr,
    /// The peer's id from its handshake.
    pub peer_id: PeerId,
    /// The peer set the BEP 6 bit.
    pub supports_fast: bool,
    /// The peer set the BEP 10 bit.
    pub supports_extensions: bool,
    /// We dialled it (as opposed to it dialling us).
    pub outgoing: bool,
}

/// Events fed into the machine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A handshake with this torrent's info-hash completed.
    PeerConnected {
        /// Key the edge allocated.
        peer: PeerKey,
        /// Handshake facts.
        info: PeerInfo,
    },
    /// A message arrived from a connected peer.
    PeerMessage {
        /// Sender.
        peer: PeerKey,
        /// The message.
        msg: Message,
    },
    /// The connection ended (by either side, for any reason).
    PeerDisconnected {
        /// The peer.
        peer: PeerKey,
    },
    /// A [`Action::Connect`] failed before a handshake completed.
    ConnectFailed {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// This address is ours (the edge recognised one of its listen or announce addresses
    /// before dialling, or a dial's handshake carried our own peer id): it is dropped from
    /// the address book and never dialled again.
    OwnAddress {
        /// The address.
        addr: SocketAddr,
    },
    /// Candidate peers from a tracker or `--peer`.
    PeersDiscovered {
        /// Their addresses.
        addrs: Vec<SocketAddr>,
    },
    /// An instream tracker counted our fabric's downloading hosts and ranked us among
    /// them: our share of what crosses into the fabric, unless `Config::fabric_share` was
    /// given (the control plane's word wins).
    FabricShareLearned {
        /// Rank and count.
        share: crate::picker::FabricShare,
    },
    /// Answer to [`Action::Read`].
    BlockRead {
        /// Who asked.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
        /// Its bytes (exactly `block.len`).
        data: Bytes,
    },
    /// Answer to [`Action::Read`] when the read failed; the request is rejected.
    ReadFailed {
        /// Who asked.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Payload bytes of `piece` messages (sent with [`Action::Send`]) that have left for the
    /// peer's socket. Until the edge reports them, they count against the peer's
    /// [`Config::max_peer_upload_bytes`]: an edge that never reports stops uploading to a peer
    /// after that many bytes.
    UploadWritten {
        /// The peer.
        peer: PeerKey,
        /// Payload bytes written (the data of `piece` messages only).
        bytes: u64,
    },
    /// Answer to [`Action::VerifyAndWrite`]: `ok` means the hash matched and the piece is
    /// durably written; `!ok` means the hash did not match and nothing was written.
    PieceVerified {
        /// The piece.
        piece: ValidPieceIndex,
        /// Hash matched (and write succeeded).
        ok: bool,
    },
    /// The piece verified but could not be written (disk full, I/O error): the torrent
    /// stops with [`Action::Fatal`].
    PieceWriteFailed {
        /// The piece.
        piece: ValidPieceIndex,
        /// Human-readable cause, for the operator.
        error: String,
    },
}

/// Why we closed a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer broke the protocol (bad bitfield, out-of-range index, unsolicited data...).
    ProtocolViolation(String),
    /// The peer sent too many pieces that failed their hash; it is banned for this torrent.
    Banned,
    /// Neither side needs the other (both seeds, or we finished and it has everything).
    NotUseful,
    /// Too many connections; this one was the least useful.
    TooManyPeers,
    /// Evicted to make room for a newcomer: connected a while with nothing going on.
    Idle,
    /// No message within the keep-alive window.
    Timeout,
    /// The torrent is shutting down.
    Shutdown,
    /// We already have a connection to this peer (same peer id).
    Duplicate,
}

/// Work for the edge.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a message to a peer.
    Send {
        /// Recipient.
        peer: PeerKey,
        /// The message.
        msg: Message,
    },
    /// Read a block from storage to upload it; answer with [`Input::BlockRead`] or
    /// [`Input::ReadFailed`].
    Read {
        /// Requester.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Hash a complete piece; write it only if it matches; answer with
    /// [`Input::PieceVerified`] (or [`Input::PieceWriteFailed`]).
    VerifyAndWrite {
        /// The piece.
        piece: ValidPieceIndex,
        /// The piece's bytes, in order, exactly its length.
        data: Bytes,
    },
    /// Dial a peer; on success send [`Input::PeerConnected`], else [`Input::ConnectFailed`].
    Connect {
        /// Where.
        addr: SocketAddr,
    },
    /// Close a connection (the edge then sends [`Input::PeerDisconnected`]).
    Disconnect {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: DisconnectReason,
    },
    /// Every piece is verified and written (emitted once, when the last piece lands, or at
    /// start for a complete torrent).
    Completed,
    /// The torrent cannot go on (e.g. a write failed); the edge should stop it and report.
    Fatal {
        /// Human-readable cause.
        error: String,
    },
}

/// How the machine behaves; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our peer id (ranks us among same-fabric hosts; see [`crate::picker::FabricShare`]).
    pub peer_id: PeerId,
    /// Our fabric, sent in the BEP 10 handshake and used to prefer same-fabric peers.
    pub fabric: Option<String>,
    /// Our exact share of the pieces to bring into our fabric from other fabrics, when
    /// something knows the whole fabric (the control plane knows which hosts it deploys to).
    /// `None`: rank ourselves among the same-fabric peers we happen to know.
    pub fabric_share: Option<crate::picker::FabricShare>,
    /// How long a piece must have been visible in other fabrics, and still be missing from
    /// ours, before we fetch it from there outside our share (when no same-fabric peer has
    /// anything for us). The share's owner gets that head start; without it every idle host
    /// brings the same pieces in at once (fabric_sim, 1000 hosts: 4-7x the payload into
    /// each fabric instead of 1.5x).
    pub fabric_fallback_delay: Duration,
    /// TCP port we listen on, for the BEP 10 `p` key (0 = not listening).
    pub listen_port: u16,
    /// QUIC port, for our BEP 10 `quic` key (0 = no QUIC).
    pub quic_port: u16,
    /// Most simultaneous connections.
    pub max_peers: usize,
    /// Most outstanding connect attempts.
    pub max_half_open: usize,
    /// Most peers unchoked at once (0 = all interested peers).
    pub max_unchoked: usize,
    /// Origin mode (BEP 16-like): hand each peer pieces nobody else has yet.
    pub super_seed: bool,
    /// Pieces proven bad from a peer before it is banned (default 2). A piece whose blocks
    /// came from several peers counts against the liar once a re-fetch from one peer finds it.
    pub max_hash_failures: u32,
    /// Requests we keep in flight per peer at first (grows with the peer's rate).
    pub initial_queue_depth: u32,
    /// Upper bound on requests in flight per peer.
    pub max_queue_depth: u32,
    /// Bytes of complete pieces handed out with [`Action::VerifyAndWrite`] and not answered
    /// yet, past which no new blocks are requested: when the disk falls behind the network,
    /// memory stays bounded and TCP slows the senders down instead. Four pieces at least.
    pub max_pending_write_bytes: u64,
    /// Bytes of verified pieces' buffers kept to assemble the next pieces in (0: none).
    /// Reused buffers spare the allocator and the page faults of a fresh buffer per piece;
    /// a simulation of thousands of hosts in one process sets 0 to save memory.
    pub piece_buffer_pool_bytes: usize,
    /// Simulation only: keep no block bytes, hand completed pieces out empty in
    /// [`Action::VerifyAndWrite`] (the caller's verdict is all there is), so thousands of
    /// simulated hosts cost no payload memory. Default false.
    pub dataless: bool,
    /// Requests a peer may have queued with us before we reject more (default 1024; sent as
    /// our BEP 10 `reqq`). A queued request costs a few bytes; its data is read only within
    /// `max_peer_upload_bytes`.
    pub max_peer_requests: u32,
    /// Bytes of a peer's requests being read from disk plus queued to its socket, past which
    /// its further requests wait (unread) until the socket drains. Bounds what a peer that
    /// asks and never reads can make us hold: about peers x this. Default 4 MiB (at 400 Mbit/s
    /// that is 80 ms of sending, plenty to keep the pipe full); 0 means one request at a time.
    pub max_peer_upload_bytes: u64,
    /// Bytes being read from disk for uploads, over all peers, past which reads wait for
    /// earlier ones to finish. Default 16 MiB; 0 means one read at a time.
    pub max_upload_read_bytes: u64,
    /// How often the choker runs.
    pub choke_interval: Duration,
    /// A request unanswered this long is given to another peer.
    pub request_timeout: Duration,
    /// Close a connection silent for this long (BEP 3 keep-alives come every 2 minutes).
    pub idle_timeout: Duration,
    /// When `max_peers` is reached, a newcomer takes the place of a peer connected at least
    /// this long with nothing going on (no interest either way, no request in flight).
    /// Default 30 s; without it, idle peers hold every slot and nobody new gets in.
    pub idle_evict_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            peer_id: PeerId([0; 20]),
            fabric: None,
            fabric_share: None,
            fabric_fallback_delay: Duration::from_millis(250),
            listen_port: 0,
            quic_port: 0,
            max_peers: 80,
            max_half_open: 16,
            max_unchoked: 0,
            super_seed: false,
            max_hash_failures: 2,
            initial_queue_depth: 16,
            max_queue_depth: 512,
            max_pending_write_bytes: 8 * 1024 * 1024,
            piece_buffer_pool_bytes: 4 * 1024 * 1024,
            dataless: false,
            max_peer_requests: 1024,
            // 4 MiB: 256 blocks of 16 KiB.
            max_peer_upload_bytes: 4 * 1024 * 1024,
            // 16 MiB: four peers' worth in flight to the disk at once.
            max_upload_read_bytes: 16 * 1024 * 1024,
            choke_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(180),
            idle_evict_after: Duration::from_secs(30),
        }
    }
}

/// Counters for progress displays and summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pieces verified and written.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Payload bytes verified and written.
    pub bytes_have: u64,
    /// Payload bytes received in `piece` messages (including wasted ones).
    pub bytes_downloaded: u64,
    /// Payload bytes sent in `piece` messages.
    pub bytes_uploaded: u64,
    /// Bytes received for pieces that failed their hash or arrived twice.
    pub bytes_wasted: u64,
    /// Pieces that failed their hash.
    pub hash_failures: u32,
    /// Connected peers now.
    pub peers_connected: usize,
    /// Distinct peers ever connected.
    pub peers_seen: usize,
    /// Peers banned.
    pub peers_banned: usize,
    /// Dials started ([`Action::Connect`] emitted).
    pub dials: u64,
    /// Distinct addresses found to be our own ([`Input::OwnAddress`]).
    pub own_addresses: u32,
}
