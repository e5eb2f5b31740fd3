//! TCP for peer connections: socket options, dialling, and the 68-byte handshake exchange
//! (inside MSE when the policy asks for it: [`super::mse`]). `--encryption prefer` dials
//! with MSE and, if the peer drops that attempt, dials once more in plaintext.
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
use proto::mse::{Ciphers, CryptoSet, MseError, Policy, Rc4};
use proto::torrent::{PeerInfo, PeerKey};
use proto::wire::handshake::HandshakeError;
use proto::wire::{HANDSHAKE_LEN, Handshake};
use proto::{InfoHash, PeerId};
use socket2::SockRef;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::{Route, mse};
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
    /// Dial timeout (each attempt, when `prefer` retries in plaintext).
    pub connect_timeout: Duration,
    /// MSE/PE policy for both directions (`--encryption`, default plaintext).
    pub encryption: Policy,
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
            encryption: Policy::Plaintext,
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

/// The smallest round trip the kernel has sampled on `stream` so far (`tcpi_min_rtt`), or
/// `None` if TCP_INFO cannot be read. Queueing only adds to a sample, so the minimum is
/// the best view of the path itself that a young connection has.
pub fn min_rtt(stream: &TcpStream) -> Option<Duration> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt(2) into a buffer of `len` bytes that we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // Kernels older than 4.9 return a shorter struct without tcpi_min_rtt.
    let has_min = len as usize
        >= std::mem::offset_of!(libc::tcp_info, tcpi_min_rtt) + std::mem::size_of::<u32>();
    (rc == 0 && has_min && info.tcpi_min_rtt != u32::MAX)
        .then(|| Duration::from_micros(u64::from(info.tcpi_min_rtt)))
}

/// Why a handshake did not complete.
#[derive(Debug, Error)]
pub enum HandshakeFailed {
    /// Socket error.
    #[error("handshake i/o")]
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
    /// No torrent of ours has this info-hash.
    #[error("unknown torrent {0}")]
    UnknownTorrent(InfoHash),
    /// We dialled ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// Too slow.
    #[error("handshake timed out")]
    Timeout,
    /// The MSE handshake failed.
    #[error(transparent)]
    Mse(#[from] MseError),
    /// A plain handshake came in while the policy requires MSE.
    #[error("plaintext handshake refused (--encryption require)")]
    PlainRefused,
}

impl HandshakeFailed {
    /// True if a plaintext dial may still work after an MSE dial failed this way (the
    /// peer dropped or garbled the encrypted attempt, or never answered it; not when the
    /// dial itself failed).
    pub(crate) fn worth_plain_retry(&self) -> bool {
        use io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable};
        match self {
            Self::Io(e) => !matches!(
                e.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable
            ),
            Self::Eof | Self::Timeout | Self::Mse(_) | Self::Protocol(_) => true,
            _ => false,
        }
    }
}

/// Reads the peer's handshake after the bytes already in `buf`; returns it and any bytes
/// that followed it. With `decrypt`, bytes read from the socket are decrypted first (`buf`
/// is already plain).
pub async fn read_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: BytesMut,
    mut decrypt: Option<&mut Rc4>,
) -> Result<(Handshake, BytesMut), HandshakeFailed> {
    buf.reserve(HANDSHAKE_LEN + 4096);
    loop {
        if let Some(h) = Handshake::decode(&buf)? {
            let _ = buf.split_to(HANDSHAKE_LEN);
            return Ok((h, buf));
        }
        let start = buf.len();
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeFailed::Eof);
        }
        if let Some(c) = decrypt.as_deref_mut() {
            c.apply(&mut buf[start..]);
        }
    }
}

/// Writes our handshake, through the payload cipher if there is one.
pub async fn write_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    ours: &Handshake,
    encrypt: Option<&mut Rc4>,
) -> io::Result<()> {
    let mut bytes = ours.encode();
    if let Some(c) = encrypt {
        c.apply(&mut bytes);
    }
    stream.write_all(&bytes).await
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

/// A connection whose handshakes are done.
struct Dialled {
    stream: TcpStream,
    theirs: Handshake,
    rest: BytesMut,
    ciphers: Option<Ciphers>,
}

/// One dial: plain when `mse` is `None`, else MSE offering those methods with our BT
/// handshake as its initial payload.
async fn dial_and_handshake(
    addr: SocketAddr,
    info_hash: InfoHash,
    our_id: PeerId,
    opts: &SocketOptions,
    mse: Option<CryptoSet>,
) -> Result<Dialled, HandshakeFailed> {
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
    let ours = Handshake::new(info_hash, our_id);
    let (rest, mut ciphers) = match mse {
        None => {
            write_handshake(&mut stream, &ours, None).await?;
            (BytesMut::new(), None)
        }
        Some(offered) => {
            let e = mse::initiate(&mut stream, info_hash, offered, ours.encode().to_vec()).await?;
            debug!(%addr, method = ?e.method, "outgoing MSE handshake");
            (mse::payload_start(&e), e.ciphers)
        }
    };
    let decrypt = ciphers.as_mut().map(|c| &mut c.decrypt);
    let (theirs, rest) = read_handshake(&mut stream, rest, decrypt).await?;
    if theirs.info_hash != info_hash {
        return Err(HandshakeFailed::WrongInfoHash(theirs.info_hash));
    }
    if theirs.peer_id == our_id {
        return Err(HandshakeFailed::SelfConnection);
    }
    Ok(Dialled {
        stream,
        theirs,
        rest,
        ciphers,
    })
}

/// Dials as `opts.encryption` says, retrying once in plaintext under `prefer`.
async fn dial(
    addr: SocketAddr,
    route: &Route,
    opts: &SocketOptions,
) -> Result<Dialled, HandshakeFailed> {
    let policy = opts.encryption;
    let attempt = |mse| async move {
        tokio::time::timeout(
            opts.connect_timeout,
            dial_and_handshake(addr, route.info_hash, route.our_id, opts, mse),
        )
        .await
        .unwrap_or(Err(HandshakeFailed::Timeout))
    };
    let first = attempt(policy.dials_encrypted().then(|| policy.methods())).await;
    match first {
        Err(e) if policy == Policy::Prefer && e.worth_plain_retry() => {
            debug!(%addr, error = %exit::error_chain(&e), "MSE dial failed; retrying in plaintext");
            attempt(None).await
        }
        r => r,
    }
}

/// Dials `addr` for the torrent behind `route` and runs the connection; a failure before
/// the handshake completes is reported as [`NetEvent::ConnectFailed`]. Returns false if the
/// dial or the handshake failed.
pub async fn connect_peer(addr: SocketAddr, route: Route, opts: SocketOptions) -> bool {
    match dial(addr, &route, &opts).await {
        Ok(d) => {
            let peer = route.next_key();
            connection::run(
                d.stream,
                d.rest,
                d.ciphers,
                peer,
                peer_info(addr, &d.theirs, true),
                route.events.clone(),
                &route.cancel,
            )
            .await;
            true
        }
        Err(HandshakeFailed::SelfConnection) => {
            debug!(%addr, "dialled ourselves; never again");
            let _ = route.events.send(NetEvent::ReachedOurselves { addr }).await;
            false
        }
        Err(e) => {
            debug!(%addr, error = %exit::error_chain(&e), "connect failed");
            let _ = route.events.send(NetEvent::ConnectFailed { addr }).await;
            false
        }
    }
}

/// Allocates a connection key (never reused within a torrent).
pub(crate) fn key_from(counter: &std::sync::atomic::AtomicU64) -> PeerKey {
    PeerKey(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}
