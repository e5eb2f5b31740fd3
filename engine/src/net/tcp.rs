//! TCP for peer connections: socket options, dialling, and the 68-byte handshake exchange.
//!
//! Every socket gets `TCP_NODELAY`: requests and `have`s are small and latency-bound, and
//! the writer already coalesces bulk data, so Nagle would only add delay. Buffer sizes are
//! left to Linux autotuning by default: setting `SO_RCVBUF`/`SO_SNDBUF` explicitly turns
//! autotuning off and is capped by `net.core.{r,w}mem_max` (often 208 KiB), whereas
//! autotuning grows to `net.ipv4.tcp_{r,w}mem` max (4-6 MiB by default), which covers
//! 400 Mbit/s at 100 ms RTT (5 MB bandwidth-delay product). Explicit sizes stay available.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use proto::torrent::{PeerInfo, PeerKey};
use proto::wire::handshake::HandshakeError;
use proto::wire::{HANDSHAKE_LEN, Handshake};
use proto::{InfoHash, PeerId};
use socket2::SockRef;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::Route;
use crate::connection::{self, NetEvent};

/// How long a dial or a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket tuning for peer connections.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// `SO_SNDBUF` in bytes (0 = leave to autotuning, the default; see the module header).
    pub send_buffer: usize,
    /// `SO_RCVBUF` in bytes (0 = leave to autotuning).
    pub recv_buffer: usize,
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// Local IP dials bind to (the `--listen` IP when it is a specific one), so peers see
    /// the address they can dial back; `None`: the kernel's choice. See `own::source_for`.
    pub local_ip: Option<std::net::IpAddr>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            send_buffer: 0,
            recv_buffer: 0,
            connect_timeout: HANDSHAKE_TIMEOUT,
            local_ip: None,
        }
    }
}

/// Applies `opts` and `TCP_NODELAY` to a connected socket.
pub fn configure(stream: &TcpStream, opts: &SocketOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let s = SockRef::from(stream);
    if opts.send_buffer > 0 {
        s.set_send_buffer_size(opts.send_buffer)?;
    }
    if opts.recv_buffer > 0 {
        s.set_recv_buffer_size(opts.recv_buffer)?;
    }
    Ok(())
}

/// Why a handshake did not complete.
#[derive(Debug, Error)]
pub enum HandshakeFailed {
    /// Socket error.
    #[error("handshake i/o: {0}")]
    Io(#[from] io::Error),
    /// Not a BitTorrent stream.
    #[error(transparent)]
    Protocol(#[from] HandshakeError),
    /// The peer closed before finishing its handshake.
    #[error("peer closed during the handshake")]
    Eof,
    /// The peer answered for another torrent.
    #[error("peer answered for info-hash {0}")]
    WrongInfoHash(InfoHash),
    /// We dialled ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// Too slow.
    #[error("handshake timed out")]
    Timeout,
}

/// Reads the peer's handshake; returns it and any bytes that followed it.
pub async fn read_handshake(
    stream: &mut TcpStream,
) -> Result<(Handshake, BytesMut), HandshakeFailed> {
    let mut buf = BytesMut::with_capacity(HANDSHAKE_LEN + 4096);
    loop {
        if let Some(h) = Handshake::decode(&buf)? {
            let _ = buf.split_to(HANDSHAKE_LEN);
            return Ok((h, buf));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeFailed::Eof);
        }
    }
}

/// Facts about the peer for the torrent machine.
pub fn peer_info(addr: SocketAddr, h: &Handshake, outgoing: bool) -> PeerInfo {
    PeerInfo {
        addr,
        peer_id: h.peer_id,
        supports_fast: h.supports_fast(),
        supports_extensions: h.supports_extensions(),
        outgoing,
    }
}

async fn dial_and_handshake(
    addr: SocketAddr,
    info_hash: InfoHash,
    our_id: PeerId,
    opts: &SocketOptions,
) -> Result<(TcpStream, Handshake, BytesMut), HandshakeFailed> {
    let mut stream = match super::own::source_for(opts.local_ip, addr) {
        Some(local) => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(local)?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    configure(&stream, opts)?;
    stream
        .write_all(&Handshake::new(info_hash, our_id).encode())
        .await?;
    let (h, rest) = read_handshake(&mut stream).await?;
    if h.info_hash != info_hash {
        return Err(HandshakeFailed::WrongInfoHash(h.info_hash));
    }
    if h.peer_id == our_id {
        return Err(HandshakeFailed::SelfConnection);
    }
    Ok((stream, h, rest))
}

/// Dials `addr` for the torrent behind `route` and runs the connection; a failure before
/// the handshake completes is reported as [`NetEvent::ConnectFailed`].
pub async fn connect_peer(addr: SocketAddr, route: Route, opts: SocketOptions) {
    let r = tokio::time::timeout(
        opts.connect_timeout,
        dial_and_handshake(addr, route.info_hash, route.our_id, &opts),
    )
    .await
    .unwrap_or(Err(HandshakeFailed::Timeout));
    match r {
        Ok((stream, h, rest)) => {
            let peer = route.next_key();
            connection::run(
                stream,
                rest,
                peer,
                peer_info(addr, &h, true),
                route.events.clone(),
                &route.cancel,
            )
            .await;
        }
        Err(HandshakeFailed::SelfConnection) => {
            debug!(%addr, "dialled ourselves; never again");
            let _ = route.events.send(NetEvent::ReachedOurselves { addr }).await;
        }
        Err(e) => {
            debug!(%addr, error = %e, "connect failed");
            let _ = route.events.send(NetEvent::ConnectFailed { addr }).await;
        }
    }
}

/// Allocates a connection key (never reused within a torrent).
pub(crate) fn key_from(counter: &std::sync::atomic::AtomicU64) -> PeerKey {
    PeerKey(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}
