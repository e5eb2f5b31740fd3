//! QUIC (quinn) as a second transport between instream peers. One QUIC connection per peer
//! connection, and on it one bidirectional stream that carries the 68-byte handshake and
//! then the peer wire messages exactly as over TCP: the same framing, the same
//! [`crate::connection`] reader and writer (generic over the stream halves).
//!
//! Negotiation: the QUIC endpoint listens on UDP at the TCP listen port when it can (so a
//! `--peer ADDR` given for TCP is also where QUIC is dialled first), and its port is
//! announced in the BEP 10 handshake (`quic`, see `proto::wire::extension`); once a peer
//! has announced it, dials of that peer go to the announced port ([`Quic::learn_port`]).
//! - [`Transport::Quic`]: an instream peer is dialled over QUIC first; if the QUIC handshake
//!   has not completed within [`QuicConfig::dial_timeout`] (UDP blocked, a client with no
//!   QUIC such as libtorrent, whose UDP port is its uTP/DHT socket), the QUIC address is
//!   remembered as unreachable and the peer dialled over TCP. A BitTorrent handshake that
//!   fails after QUIC got through is a failed connection, as over TCP, and the next dial is
//!   QUIC again.
//! - [`Transport::Auto`]: dials TCP; a connection we dialled to an instream peer moves to
//!   QUIC ([`move_to_quic`]) when its path is WAN-like (the rule and its measurements:
//!   [`super::auto`]), and its QUIC congestion control defaults to BBR, the one that
//!   measured better there. Both ends then close the TCP connection (the driver prefers the
//!   QUIC one of a peer id). A move that does not get through within the dial timeout
//!   leaves the TCP connection as it was.
//!
//! Closing: the writer finishes the stream as it ends, and the connection is closed only
//! once the peer has acknowledged all of it (or after [`LINGER`]), so the last messages
//! queued before a close arrive, as they would over TCP. MSE does not apply: QUIC is TLS 1.3.
//!
//! Keys ([`QuicIdentity`]): `SelfSigned` makes a fresh certificate per session and accepts
//! any peer certificate (encrypted, not authenticated: the embedded default); `Files` uses
//! the host's certificate and key and requires the peer's certificate, both ways, to chain
//! to the CA file (mutual TLS). The peer's name is not checked: peers are dialled by
//! address, and the CA is the authority on who is a host.
//!
//! Incoming QUIC connections count against the same [`ListenLimits`] as TCP ones.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto::wire::{HANDSHAKE_LEN, Handshake};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::listen::{Open, admit};
use super::tcp::{self, HandshakeFailed, SocketOptions};
use super::{ListenLimits, Route, Router};
use crate::connection::{self, NetEvent};

/// ALPN of the peer wire protocol over QUIC: a QUIC peer that speaks anything else is refused
/// in the TLS handshake.
pub const ALPN: &[u8] = b"instream-bt/1";
/// Name sent as SNI (peers are dialled by address; [`QuicIdentity`] says why it is not
/// checked).
const SERVER_NAME: &str = "instream";
/// Receive window per stream: 4 MiB covers 400 Mbit/s at 80 ms RTT (quinn's default,
/// 1.25 MB, would cap a 30 ms path near 330 Mbit/s).
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Longest wait, after a connection's writer ended, for the peer to acknowledge what it
/// wrote, before the connection is closed anyway (a peer that is gone).
pub const LINGER: Duration = Duration::from_secs(3);
/// Most announced QUIC ports remembered (one per peer address; more are not recorded).
const MAX_KNOWN_PORTS: usize = 4096;

/// Which transport a session dials instream peers with (`--transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP only; no QUIC endpoint (today's behaviour, the default).
    #[default]
    Tcp,
    /// Listen on both; dial QUIC first, TCP after [`QuicConfig::dial_timeout`].
    Quic,
    /// Listen on both; dial TCP, and move a connection to an instream peer over to QUIC
    /// where its path is WAN-like ([`super::auto`]).
    Auto,
}

impl Transport {
    /// True if the session runs a QUIC endpoint.
    pub fn listens_quic(self) -> bool {
        self != Self::Tcp
    }

    /// True if dials try QUIC first.
    pub fn dials_quic(self) -> bool {
        self == Self::Quic
    }

    /// The congestion controller QUIC uses unless `--quic-congestion` says: BBR under
    /// `auto` (it only moves WAN-like paths, where BBR is what measured better than TCP),
    /// else CUBIC.
    pub fn default_congestion(self) -> Congestion {
        if self == Self::Auto {
            Congestion::Bbr
        } else {
            Congestion::Cubic
        }
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "quic" => Ok(Self::Quic),
            "auto" => Ok(Self::Auto),
            _ => Err(format!("unknown transport {s:?} (tcp, quic or auto)")),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::Auto => "auto",
        })
    }
}

/// The TLS identity of the QUIC endpoint.
#[derive(Debug, Clone, Default)]
pub enum QuicIdentity {
    /// A fresh self-signed certificate; peers' certificates are not checked.
    #[default]
    SelfSigned,
    /// The host's credentials; peers must present a certificate signed by `ca`.
    Files {
        /// PEM: this host's certificate, then any intermediates.
        cert: PathBuf,
        /// PEM: its private key.
        key: PathBuf,
        /// PEM: the CA(s) peers' certificates must chain to.
        ca: PathBuf,
    },
}

/// QUIC congestion control (`--quic-congestion`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC, as Linux TCP uses by default (quinn's default).
    #[default]
    Cubic,
    /// BBR (quinn's, marked experimental there): paces on measured bandwidth and round
    /// trip instead of backing off on every loss, so random loss costs it little.
    Bbr,
}

impl FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Self::Cubic),
            "bbr" => Ok(Self::Bbr),
            _ => Err(format!("unknown congestion control {s:?} (cubic or bbr)")),
        }
    }
}

/// QUIC settings of a session.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// TLS identity. Default: self-signed.
    pub identity: QuicIdentity,
    /// Time the QUIC handshake of a dial has before TCP is dialled instead.
    /// Default 1 s: a QUIC handshake takes one round trip, so this leaves room for a few
    /// lost packets while keeping "UDP blocked" cheap.
    pub dial_timeout: Duration,
    /// Congestion controller. Default CUBIC.
    pub congestion: Congestion,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            identity: QuicIdentity::SelfSigned,
            dial_timeout: Duration::from_secs(1),
            congestion: Congestion::Cubic,
        }
    }
}

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, Error)]
pub enum QuicError {
    /// A PEM file could not be read.
    #[error("read QUIC {what} {path}")]
    Pem {
        /// certificate, key or CA.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file held no certificate.
    #[error("QUIC {what} {path} holds no \"BEGIN CERTIFICATE\" block")]
    Empty {
        /// certificate or CA.
        what: &'static str,
        /// The file.
        path: String,
    },
    /// The CA file held a certificate rustls cannot use as a root.
    #[error("use QUIC CA {path}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// Making the self-signed certificate failed.
    #[error("make the self-signed QUIC certificate")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the configuration (a key that does not match the certificate, ...).
    #[error("QUIC TLS configuration")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("QUIC peer verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// No TLS 1.3 cipher suite QUIC can use.
    #[error("QUIC TLS configuration")]
    CipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The UDP socket.
    #[error("QUIC endpoint")]
    Io(#[from] std::io::Error),
}

/// Transport counters of a session (the `--json` summary shows them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounts {
    /// Peer connections that ran over QUIC (both directions), handshake completed.
    pub quic_connections: u64,
    /// QUIC dials that gave up and went to TCP.
    pub quic_fallbacks: u64,
}

/// A session's QUIC endpoint: accepts and dials.
#[derive(Debug)]
pub struct Quic {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    dial_timeout: Duration,
    /// QUIC addresses whose dial failed once: dialled over TCP from then on.
    unreachable: Mutex<HashSet<SocketAddr>>,
    /// Announced QUIC address by the peer's TCP listen address.
    ports: Mutex<HashMap<SocketAddr, SocketAddr>>,
    connections: AtomicU64,
    fallbacks: AtomicU64,
}

impl Quic {
    /// An endpoint on `socket` (already bound) with `config`'s identity. Must run inside a
    /// tokio runtime.
    pub fn new(socket: std::net::UdpSocket, config: &QuicConfig) -> Result<Arc<Self>, QuicError> {
        let (server, client) = crypto(&config.identity)?;
        let transport = Arc::new(transport_config(config.congestion));
        let mut server =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server)?));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client)?));
        client.transport_config(transport);
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )?;
        Ok(Arc::new(Self {
            endpoint,
            client,
            dial_timeout: config.dial_timeout,
            unreachable: Mutex::new(HashSet::new()),
            ports: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }))
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Counters so far.
    pub fn counts(&self) -> TransportCounts {
        TransportCounts {
            quic_connections: self.connections.load(Ordering::Relaxed),
            quic_fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection at once (the session is over).
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// The peer listening for TCP at `tcp` announced QUIC on `quic_port` (BEP 10): dials
    /// of `tcp` go there from now on.
    pub fn learn_port(&self, tcp: SocketAddr, quic_port: u16) {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if ports.len() < MAX_KNOWN_PORTS || ports.contains_key(&tcp) {
            ports.insert(tcp, SocketAddr::new(tcp.ip(), quic_port));
        }
    }

    /// Where QUIC dials of the peer at TCP address `tcp` go: its announced port if known,
    /// else the same port number.
    pub fn quic_addr_for(&self, tcp: SocketAddr) -> SocketAddr {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tcp)
            .copied()
            .unwrap_or(tcp)
    }

    /// True if a QUIC dial of `addr` (a QUIC address) failed before.
    pub fn is_unreachable(&self, addr: SocketAddr) -> bool {
        self.unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&addr)
    }

    fn mark_unreachable(&self, addr: SocketAddr) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr);
    }

    fn forget_unreachable(&self, addr: SocketAddr) {
        self.unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
    }

    /// The QUIC (TLS) handshake alone, bounded by the caller: whether QUIC reaches `addr`.
    async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, HandshakeFailed> {
        let conn = self
            .endpoint
            .connect_with(self.client.clone(), addr, SERVER_NAME)
            .map_err(std::io::Error::other)?
            .await
            .map_err(std::io::Error::other)?;
        Ok(conn)
    }
}

/// The BitTorrent handshakes on a new stream of a dialled connection.
async fn handshake_on(
    conn: quinn::Connection,
    route: &Route,
) -> Result<Established, HandshakeFailed> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(std::io::Error::other)?;
    let ours = Handshake::new(route.info_hash, route.our_id);
    tcp::write_handshake(&mut send, &ours, None).await?;
    let (theirs, rest) = tcp::read_handshake(&mut recv, BytesMut::new(), None).await?;
    if theirs.info_hash != route.info_hash {
        return Err(HandshakeFailed::WrongInfoHash(theirs.info_hash));
    }
    if theirs.peer_id == route.our_id {
        return Err(HandshakeFailed::SelfConnection);
    }
    Ok(Established {
        conn,
        send,
        recv,
        theirs,
        rest,
    })
}

/// A QUIC peer connection whose handshakes are done.
struct Established {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    theirs: Handshake,
    rest: BytesMut,
}

impl Established {
    /// Runs the peer wire protocol on the stream until the connection ends. `addr` is the
    /// peer's address for the torrent machine: for a dial, the address it asked for (its
    /// address book knows that one, not the QUIC port), else the source address.
    async fn run(self, quic: &Quic, route: &Route, addr: SocketAddr, outgoing: bool) {
        quic.connections.fetch_add(1, Ordering::Relaxed);
        debug!(%addr, udp = %self.conn.remote_address(), outgoing, "QUIC peer connection");
        // Resolves once our side is finished (the writer shuts down or drops the stream as
        // it ends) and the peer has acknowledged every byte, or the peer stopped reading.
        let delivered = self.send.stopped();
        connection::run_halves(
            self.recv,
            self.send,
            self.rest,
            None,
            route.next_key(),
            tcp::peer_info(addr, &self.theirs, outgoing),
            connection::Via::Quic,
            route.events.clone(),
            &route.cancel,
        )
        .await;
        // Closing at once would discard stream data still in flight (the last messages
        // queued before the close); wait for the acknowledgements first, briefly.
        let _ = tokio::time::timeout(LINGER, delivered).await;
        self.conn.close(0u32.into(), b"done");
    }
}

/// Dials `addr` for the torrent behind `route`: over QUIC first when `quic` is given and the
/// address has not failed QUIC before, then over TCP (as [`tcp::connect_peer`]).
pub async fn connect_peer(
    addr: SocketAddr,
    route: Route,
    opts: SocketOptions,
    quic: Option<Arc<Quic>>,
) {
    let Some((q, target)) = quic
        .map(|q| {
            let target = q.quic_addr_for(addr);
            (q, target)
        })
        .filter(|(q, target)| !q.is_unreachable(*target))
    else {
        tcp::connect_peer(addr, route, opts).await;
        return;
    };
    let dialled = tokio::time::timeout(q.dial_timeout, q.connect(target))
        .await
        .unwrap_or(Err(HandshakeFailed::Timeout));
    let conn = match dialled {
        Ok(c) => c,
        Err(e) => {
            debug!(%addr, %target, error = %exit::error_chain(&e), "QUIC dial failed; dialling TCP");
            q.mark_unreachable(target);
            if !tcp::connect_peer(addr, route, opts).await {
                // TCP failed too: the host was down, which says nothing about its UDP; the
                // next dial tries QUIC again.
                q.forget_unreachable(target);
            }
            return;
        }
    };
    // QUIC reaches the peer: a failure from here on (its torrent not added yet, a wrong
    // info-hash) is a failed connection like over TCP, retried later over QUIC.
    let r = tokio::time::timeout(tcp::HANDSHAKE_TIMEOUT, handshake_on(conn, &route))
        .await
        .unwrap_or(Err(HandshakeFailed::Timeout));
    match r {
        Ok(e) => e.run(&q, &route, addr, true).await,
        Err(HandshakeFailed::SelfConnection) => {
            debug!(%addr, "dialled ourselves over QUIC; never again");
            let _ = route.events.send(NetEvent::ReachedOurselves { addr }).await;
        }
        Err(e) => {
            debug!(%addr, error = %exit::error_chain(&e), "QUIC handshake failed");
            let _ = route.events.send(NetEvent::ConnectFailed { addr }).await;
        }
    }
}

/// Moves the TCP connection we dialled to `addr` over to QUIC at `quic_addr` (the
/// `auto` rule decided, [`super::auto`]): a QUIC dial and the BitTorrent handshakes, bounded
/// by the dial timeout for QUIC and the handshake timeout for the rest. On success the
/// connection runs as one dialled to `addr`, and the driver closes the TCP one when it
/// sees a QUIC connection of the same peer id. On failure nothing is reported (the machine
/// did not ask for this dial) and the TCP connection goes on; a QUIC address that did not
/// answer is not tried again.
pub async fn move_to_quic(addr: SocketAddr, quic_addr: SocketAddr, route: Route, q: Arc<Quic>) {
    let dialled = tokio::time::timeout(q.dial_timeout, q.connect(quic_addr))
        .await
        .unwrap_or(Err(HandshakeFailed::Timeout));
    let conn = match dialled {
        Ok(c) => c,
        Err(e) => {
            debug!(%addr, %quic_addr, error = %exit::error_chain(&e), "QUIC unreachable; staying on TCP");
            q.mark_unreachable(quic_addr);
            return;
        }
    };
    let r = tokio::time::timeout(tcp::HANDSHAKE_TIMEOUT, handshake_on(conn, &route))
        .await
        .unwrap_or(Err(HandshakeFailed::Timeout));
    match r {
        Ok(e) => {
            debug!(%addr, %quic_addr, "moved to QUIC");
            e.run(&q, &route, addr, true).await
        }
        Err(e) => {
            debug!(%addr, error = %exit::error_chain(&e), "QUIC handshake failed; staying on TCP")
        }
    }
}

/// Accepts QUIC peer connections until `shutdown` is cancelled, within `limits` (counted
/// apart from the TCP listener's).
pub async fn accept_loop(
    quic: Arc<Quic>,
    router: Arc<Router>,
    limits: ListenLimits,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = quic.endpoint.accept() => match i {
                Some(i) => i,
                None => break, // endpoint closed
            },
        };
        let addr = incoming.remote_address();
        let slot = match admit(&open, addr.ip().to_canonical(), &limits) {
            Ok(s) => s,
            Err(why) => {
                debug!(%addr, why, "incoming QUIC connection refused");
                incoming.refuse();
                continue;
            }
        };
        let (quic, router) = (quic.clone(), router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let r = tokio::time::timeout(limits.handshake_timeout, accept_one(incoming, &router))
                .await
                .unwrap_or(Err(HandshakeFailed::Timeout));
            match r {
                Ok((e, route)) => e.run(&quic, &route, addr, false).await,
                Err(e) => {
                    debug!(%addr, error = %exit::error_chain(&e), "incoming QUIC handshake failed")
                }
            }
        });
    }
    quic.close();
}

/// TLS, the stream and the BitTorrent handshakes of one incoming connection.
async fn accept_one(
    incoming: quinn::Incoming,
    router: &Router,
) -> Result<(Established, Route), HandshakeFailed> {
    let conn = incoming.await.map_err(std::io::Error::other)?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(std::io::Error::other)?;
    let buf = BytesMut::with_capacity(HANDSHAKE_LEN);
    let (theirs, rest) = tcp::read_handshake(&mut recv, buf, None).await?;
    let Some(route) = router.get(&theirs.info_hash) else {
        return Err(HandshakeFailed::UnknownTorrent(theirs.info_hash));
    };
    let ours = Handshake::new(route.info_hash, route.our_id);
    tcp::write_handshake(&mut send, &ours, None).await?;
    if theirs.peer_id == route.our_id {
        return Err(HandshakeFailed::SelfConnection); // see listen.rs: the reply tells them
    }
    Ok((
        Established {
            conn,
            send,
            recv,
            theirs,
            rest,
        },
        route,
    ))
}

fn transport_config(congestion: Congestion) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    if congestion == Congestion::Bbr {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    t.stream_receive_window(STREAM_WINDOW.into());
    t.send_window(2 * u64::from(STREAM_WINDOW));
    // Idle peers stay connected as over TCP (BitTorrent sends its own keep-alives every
    // two minutes); QUIC's keep-alive keeps NAT and firewall state warm in between.
    t.max_idle_timeout(Some(
        Duration::from_secs(180)
            .try_into()
            .expect("180 s is a valid idle timeout"),
    ));
    t.keep_alive_interval(Some(Duration::from_secs(30)));
    // quinn assumes 333 ms before the first sample, so a lost first Initial (a peer whose
    // endpoint is not up yet) would be resent only after the 1 s dial timeout; 100 ms
    // leaves a few resends inside it.
    t.initial_rtt(Duration::from_millis(100));
    t
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls server and client configurations for `identity` (TLS 1.3, ring, [`ALPN`]).
fn crypto(
    identity: &QuicIdentity,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), QuicError> {
    let provider = provider();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let (mut server, mut client) = match identity {
        QuicIdentity::SelfSigned => {
            let key = rcgen::KeyPair::generate()?;
            let cert =
                rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?.self_signed(&key)?;
            let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let server = server
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)?;
            let client = client
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth();
            (server, client)
        }
        QuicIdentity::Files { cert, key, ca } => {
            let chain = read_certs(cert, "certificate")?;
            let key_der = || {
                PrivateKeyDer::from_pem_file(key).map_err(|source| QuicError::Pem {
                    what: "key",
                    path: key.display().to_string(),
                    source,
                })
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca, "CA")? {
                roots.add(c).map_err(|source| QuicError::Ca {
                    path: ca.display().to_string(),
                    source,
                })?;
            }
            let roots = Arc::new(roots);
            let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()?;
            let server = server
                .with_client_cert_verifier(peers)
                .with_single_cert(chain.clone(), key_der()?)?;
            let hosts =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()?;
            let client = client
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignedByCa(hosts)))
                .with_client_auth_cert(chain, key_der()?)?;
            (server, client)
        }
    };
    server.alpn_protocols = vec![ALPN.to_vec()];
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((server, client))
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|source| QuicError::Pem {
            what,
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(QuicError::Empty {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Self-signed mode: any certificate is accepted, but the handshake signature is still
/// checked against it (the session keys belong to whoever holds that certificate's key).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Host-credential mode: the peer's chain must verify against the CA; the name it is valid
/// for is not checked (peers are dialled by address; see the module header).
#[derive(Debug)]
struct SignedByCa(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for SignedByCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Binds the UDP socket of the QUIC endpoint: at `tcp`'s address (same port number) when
/// free, else at a free port of that IP (announced in the BEP 10 handshake all the same).
pub fn bind_udp(tcp: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    match std::net::UdpSocket::bind(tcp) {
        Ok(s) => Ok(s),
        Err(e) if tcp.port() != 0 => {
            warn!(%tcp, error = %e, "QUIC cannot use the TCP port number; using another");
            std::net::UdpSocket::bind(SocketAddr::new(tcp.ip(), 0))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{InfoHash, PeerId};
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use std::sync::atomic::AtomicU64;
    use tokio::sync::mpsc;

    /// A CA, and a host certificate signed by it written as `name`.{crt,key} beside ca.pem.
    struct Pki {
        dir: PathBuf,
        ca: rcgen::CertifiedIssuer<'static, KeyPair>,
    }

    impl Pki {
        fn new(dir: &Path, name: &str) -> Pki {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            let ca = rcgen::CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
            let dir = dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
            Pki { dir, ca }
        }

        /// Host credentials (server and client auth, as a host certificate carries).
        fn host(&self, name: &str) -> QuicIdentity {
            let mut p = CertificateParams::new(vec![format!("{name}.example")]).unwrap();
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &*self.ca).unwrap();
            let (c, k) = (
                self.dir.join(format!("{name}.crt")),
                self.dir.join(format!("{name}.key")),
            );
            std::fs::write(&c, cert.pem()).unwrap();
            std::fs::write(&k, key.serialize_pem()).unwrap();
            QuicIdentity::Files {
                cert: c,
                key: k,
                ca: self.dir.join("ca.pem"),
            }
        }
    }

    fn endpoint(identity: QuicIdentity) -> Arc<Quic> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = QuicConfig {
            identity,
            dial_timeout: Duration::from_secs(5),
            congestion: Congestion::Cubic,
        };
        Quic::new(socket, &config).unwrap()
    }

    fn route(id: u8) -> (Route, mpsc::Receiver<NetEvent>) {
        let (events, rx) = mpsc::channel(16);
        let route = Route {
            info_hash: InfoHash([9; 20]),
            our_id: PeerId([id; 20]),
            events,
            keys: Arc::new(AtomicU64::new(0)),
            cancel: CancellationToken::new(),
        };
        (route, rx)
    }

    async fn connected(rx: &mut mpsc::Receiver<NetEvent>) -> bool {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        matches!(ev, Ok(Some(NetEvent::Connected { .. })))
    }

    /// Host-credential mode: a peer whose certificate the CA signed connects (both ways
    /// authenticated); one signed by another CA is refused in the TLS handshake.
    #[tokio::test]
    async fn host_credentials_admit_peers_of_the_ca_and_refuse_others() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Pki::new(dir.path(), "fleet");
        let theirs = Pki::new(dir.path(), "stranger");
        let server = endpoint(ours.host("a"));
        let server_addr = server.local_addr().unwrap();
        let router = Arc::new(Router::default());
        let (server_route, mut server_rx) = route(1);
        assert!(router.insert(server_route));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            server.clone(),
            router,
            ListenLimits::default(),
            stop.clone(),
        ));

        let member = endpoint(ours.host("b"));
        let (r, mut member_rx) = route(2);
        let dial = tokio::spawn(connect_peer(
            server_addr,
            r.clone(),
            SocketOptions::default(),
            Some(member.clone()),
        ));
        assert!(
            connected(&mut member_rx).await,
            "the CA's host did not connect"
        );
        assert!(
            connected(&mut server_rx).await,
            "the server saw no connection"
        );
        assert_eq!(member.counts().quic_connections, 1);
        r.cancel.cancel();
        dial.await.unwrap();

        let stranger = endpoint(theirs.host("c"));
        let (r, _rx) = route(3);
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            handshake_on(stranger.connect(server_addr).await?, &r).await
        })
        .await
        .expect("the refusal comes within the handshake");
        assert!(refused.is_err(), "a certificate of another CA was accepted");
        assert_eq!(server.counts().quic_connections, 1);
        stop.cancel();
    }

    /// Self-signed mode: two fresh identities connect to each other.
    #[tokio::test]
    async fn self_signed_peers_connect() {
        let server = endpoint(QuicIdentity::SelfSigned);
        let router = Arc::new(Router::default());
        let (server_route, mut server_rx) = route(1);
        router.insert(server_route);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            server.clone(),
            router,
            ListenLimits::default(),
            stop.clone(),
        ));
        let client = endpoint(QuicIdentity::SelfSigned);
        let (r, mut rx) = route(2);
        tokio::spawn(connect_peer(
            server.local_addr().unwrap(),
            r,
            SocketOptions::default(),
            Some(client),
        ));
        assert!(connected(&mut rx).await && connected(&mut server_rx).await);
        stop.cancel();
    }

    /// Item 4 of issue 11: messages queued just before a close still arrive. The dialler
    /// queues a batch and closes at once; the other end must read every message before it
    /// sees the connection end (a close that did not wait for the stream's acknowledgements,
    /// or a writer that dropped its queue on cancel, loses them).
    #[tokio::test]
    async fn messages_queued_before_a_close_arrive() {
        const N: u32 = 128;
        let server = endpoint(QuicIdentity::SelfSigned);
        let router = Arc::new(Router::default());
        let (server_route, mut server_rx) = route(1);
        router.insert(server_route);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            server.clone(),
            router,
            ListenLimits::default(),
            stop.clone(),
        ));
        let client = endpoint(QuicIdentity::SelfSigned);
        let (r, mut rx) = route(2);
        tokio::spawn(connect_peer(
            server.local_addr().unwrap(),
            r,
            SocketOptions::default(),
            Some(client),
        ));
        let writer = match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(NetEvent::Connected { writer, via, .. })) => {
                assert_eq!(via, connection::Via::Quic);
                writer
            }
            other => panic!("no QUIC connection: {other:?}"),
        };
        // 2 MiB: far more than QUIC's first congestion window, so most of it is still
        // unacknowledged when the writer ends.
        let block = bytes::Bytes::from(vec![7u8; 16 * 1024]);
        assert!(
            writer.send(
                (0..N)
                    .map(|index| proto::wire::Message::Piece {
                        index,
                        begin: 0,
                        data: block.clone(),
                    })
                    .collect()
            )
        );
        writer.close();
        let mut got = Vec::new();
        let mut server_writer = None; // dropping it would close the server's end
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = server_rx.recv().await {
                match ev {
                    NetEvent::Connected { writer, .. } => server_writer = Some(writer),
                    NetEvent::Messages { msgs, .. } => got.extend(msgs),
                    NetEvent::Closed { .. } => return true,
                    _ => {}
                }
            }
            false
        })
        .await;
        assert_eq!(closed, Ok(true), "the server never saw the connection end");
        let haves: Vec<u32> = got
            .iter()
            .filter_map(|m| match m {
                proto::wire::Message::Piece { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert!(
            haves.iter().copied().eq(0..N),
            "messages queued before the close were lost: {} of {N} arrived",
            haves.len()
        );
        drop(server_writer);
        stop.cancel();
    }

    #[tokio::test]
    async fn announced_ports_redirect_dials_and_unknown_ones_keep_the_port_number() {
        let q = endpoint(QuicIdentity::SelfSigned);
        let tcp: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        assert_eq!(q.quic_addr_for(tcp), tcp);
        q.learn_port(tcp, 7000);
        assert_eq!(q.quic_addr_for(tcp), "10.0.0.1:7000".parse().unwrap());
        assert_eq!(
            q.quic_addr_for("10.0.0.2:6881".parse().unwrap()),
            "10.0.0.2:6881".parse().unwrap()
        );
    }

    #[test]
    fn transport_names_round_trip() {
        for t in [Transport::Tcp, Transport::Quic, Transport::Auto] {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        }
        assert!("udp".parse::<Transport>().is_err());
        assert_eq!(Transport::default(), Transport::Tcp);
        assert!(!Transport::Tcp.listens_quic() && !Transport::Auto.dials_quic());
        assert_eq!(Transport::Auto.default_congestion(), Congestion::Bbr);
        assert_eq!(Transport::Quic.default_congestion(), Congestion::Cubic);
    }
}
