//! What goes into the torrent machine and what comes out: its inputs, its actions, the
//! connections they name.

use std::net::SocketAddr;

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
