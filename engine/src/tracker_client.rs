//! The announce client: tells every tracker of a torrent about us (BEP 15 UDP with BEP 41
//! URL data, BEP 3 HTTP) and hands the peers they return to the session.
//!
//! One tokio task per tracker URL (announce-list tiers are flattened: every tracker is used
//! at once, since in a fleet each one may know a different part of the swarm). Each task
//! owns its socket and connection id and nothing else; the session talks to the tasks
//! through [`TrackerClient`] (stats, `completed`, `stop`) and hears back through a channel
//! of [`DiscoveredPeers`].
//!
//! Timing: a UDP request is retransmitted after `udp_initial_timeout · 2^n` for
//! n = 0..=`udp_max_retries` (BEP 15 uses 15 s and 8; both are configurable so tests run
//! in milliseconds). A failed announce is retried after an exponential back-off between
//! `min_backoff` and `max_backoff`; an event (`started`, `completed`) that failed is sent
//! again with the retry rather than lost. Codecs come from `proto::tracker`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::tracker::AnnounceEvent;
use proto::tracker::http::{self, AnnounceReply};
use proto::tracker::udp::{
    self, ConnectRequest, ConnectionId, NumWant, PeerKey, Request, Response, TransactionId,
};
use proto::{InfoHash, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

/// How soon to announce again after the tracker's fabric share changed.
const SHARE_SETTLE: Duration = Duration::from_secs(2);
/// At most this many such early announces per tracker.
const SHARE_SETTLES: u32 = 5;

/// Timeouts, retries and limits of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// First UDP retransmission timeout; doubles on every retry. Default 15 s (BEP 15).
    pub udp_initial_timeout: Duration,
    /// UDP retransmissions before giving up on one request. Default 3 (BEP 15 allows 8,
    /// but a fleet has several trackers and a back-off; waiting 64 min helps nobody).
    pub udp_max_retries: u32,
    /// A connection id is reused for this long. Default 60 s (BEP 15).
    pub udp_connection_ttl: Duration,
    /// Whole HTTP announce (connect, send, receive). Default 15 s.
    pub http_timeout: Duration,
    /// Largest HTTP reply read, in bytes. Default 256 KiB.
    pub max_http_reply: usize,
    /// First back-off after a failure; doubles up to `max_backoff`. Default 5 s.
    pub min_backoff: Duration,
    /// Longest back-off. Default 5 min.
    pub max_backoff: Duration,
    /// Shortest interval honoured, whatever a tracker says. Default 10 s.
    pub min_interval: Duration,
    /// Peers asked for per announce. Default 50.
    pub numwant: u32,
    /// Where announce outcomes are counted: every client made from clones of this config
    /// shares it (a session's torrents do, so `/metrics` reads one set). Default: a fresh
    /// set of zeros.
    pub counters: Arc<AnnounceCounters>,
}

/// Announces answered and failed, over every tracker task sharing them.
#[derive(Debug, Default)]
pub struct AnnounceCounters {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl AnnounceCounters {
    /// Announces a tracker answered (a refusal counts as failed).
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Announces that timed out, were refused or could not be sent.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn count<T, E>(&self, r: &Result<T, E>) {
        let c = if r.is_ok() { &self.ok } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            udp_initial_timeout: Duration::from_secs(15),
            udp_max_retries: 3,
            udp_connection_ttl: Duration::from_secs(60),
            http_timeout: Duration::from_secs(15),
            max_http_reply: 256 * 1024,
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
            numwant: 50,
            counters: Arc::default(),
        }
    }
}

/// Who we are, for every announce of one torrent.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our listening port.
    pub port: u16,
    /// Our fabric, sent as `fabric=` (HTTP) or in BEP 41 URL data (UDP).
    pub fabric: Option<String>,
    /// The BEP 15 `key`, constant for the session.
    pub key: u32,
    /// Local IP the announce sockets bind to (the `--listen` IP when specific), so the
    /// tracker sees the address peers must dial (issue 9). `None`: the kernel's choice.
    pub local_ip: Option<IpAddr>,
    /// The address to be listed under (`--announce-ip`): HTTP `ip=`, BEP 15 IP field.
    pub announce_ip: Option<IpAddr>,
}

/// Transfer counters sent with each announce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Bytes uploaded.
    pub uploaded: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes still missing (0: we seed).
    pub left: u64,
}

/// Peers one tracker returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeers {
    /// The tracker URL, as given.
    pub tracker: String,
    /// Peer addresses.
    pub peers: Vec<SocketAddr>,
    /// Seeders the tracker counts.
    pub seeders: u32,
    /// Leechers the tracker counts.
    pub leechers: u32,
    /// Our share of our fabric's cross-fabric fetches, from an instream tracker.
    pub fabric_share: Option<proto::picker::FabricShare>,
}

/// What one announce returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOutcome {
    /// When the tracker wants the next announce.
    pub interval: Duration,
    /// Seeders.
    pub seeders: u32,
    /// Leechers.
    pub leechers: u32,
    /// Peers.
    pub peers: Vec<SocketAddr>,
    /// Our rank and the count of downloading hosts in our fabric, if the tracker is an
    /// instream tracker that knows our fabric (an extra HTTP key, a UDP trailer: see
    /// `proto::tracker`).
    pub fabric_share: Option<proto::picker::FabricShare>,
}

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not an `http://` or `udp://` URL we can use.
    #[error("unsupported tracker URL {url:?}")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// Name resolution failed.
    #[error("resolving tracker host {host}")]
    Resolve {
        /// Host name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Socket I/O failed.
    #[error("talking to the tracker")]
    Io(#[source] std::io::Error),
    /// No answer after every retransmission (UDP) or within the timeout (HTTP).
    #[error("tracker did not answer ({attempts} attempts)")]
    Timeout {
        /// Requests sent.
        attempts: u32,
    },
    /// The tracker refused the announce.
    #[error("tracker refused: {reason}")]
    Refused {
        /// BEP 15 error message or HTTP `failure reason`.
        reason: String,
    },
    /// A UDP reply that does not parse or does not fit the request.
    #[error("malformed UDP tracker reply")]
    UdpReply(#[from] udp::ResponseParseError),
    /// A UDP reply of the wrong kind for the request.
    #[error("unexpected UDP tracker reply")]
    UnexpectedReply,
    /// An HTTP reply body that does not parse.
    #[error("malformed HTTP tracker reply")]
    HttpReply(#[from] http::ResponseError),
    /// An HTTP reply that is not 200 or not HTTP.
    #[error("HTTP tracker answered status {status}")]
    HttpStatus {
        /// Status code (0: not an HTTP reply).
        status: u16,
    },
    /// An HTTP reply over the size bound.
    #[error("HTTP tracker reply exceeds {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
}

/// A parsed tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerUrl {
    /// `udp://host:port[/path?query]`; the path and query become BEP 41 URL data.
    Udp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
        /// Path and query, e.g. `/announce?fabric=f1` (may be empty).
        path: String,
    },
    /// `http://host[:port]/path[?query]`.
    Http {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port (80 by default).
        port: u16,
        /// Path and query.
        path: String,
    },
}

impl TrackerUrl {
    /// Parses `udp://` and `http://` URLs (https is not supported: fleet trackers are
    /// on the control network, and the payload is signed end to end anyway).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl { url: url.into() };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(bad)?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| bad()))
            .transpose()?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp {
                host: host.into(),
                port: port.ok_or_else(bad)?,
                path: path.into(),
            }),
            "http" => Ok(Self::Http {
                host: host.into(),
                port: port.unwrap_or(80),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
            }),
            _ => Err(bad()),
        }
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ClientError> {
    let resolve_err = |source| ClientError::Resolve {
        host: host.into(),
        source,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve_err)?;
    addrs.next().ok_or_else(|| {
        resolve_err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })
}

/// Adds `name=value` to a path's query unless the path already has `name=`.
fn with_param(path: &str, name: &str, value: &str) -> String {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query
        .split('&')
        .any(|kv| kv.split('=').next() == Some(name))
    {
        return path.into();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{name}={value}")
}

/// One tracker's connection state: the UDP socket and connection id, or nothing for HTTP.
#[derive(Debug)]
pub struct TrackerConn {
    url: TrackerUrl,
    udp: Option<(UdpSocket, SocketAddr)>,
    connection: Option<(ConnectionId, Instant)>,
    next_transaction: u32,
}

impl TrackerConn {
    /// A connection to `url`; nothing is sent before the first announce.
    pub fn new(url: TrackerUrl) -> Self {
        Self {
            url,
            udp: None,
            connection: None,
            next_transaction: rand::random(),
        }
    }

    /// One announce, with retransmissions (UDP) or the timeout (HTTP).
    pub async fn announce(
        &mut self,
        cfg: &ClientConfig,
        id: &Identity,
        event: AnnounceEvent,
        stats: TransferStats,
    ) -> Result<AnnounceOutcome, ClientError> {
        match self.url.clone() {
            TrackerUrl::Udp { host, port, path } => {
                let r = self
                    .udp_announce(cfg, id, event, stats, &host, port, &path)
                    .await;
                if r.is_err() {
                    // The id may have expired or the tracker restarted: start over next time.
                    self.connection = None;
                    self.udp = None;
                }
                r
            }
            TrackerUrl::Http { host, port, path } => timeout(
                cfg.http_timeout,
                http_announce(cfg, id, event, stats, &host, port, &path),
            )
            .await
            .map_err(|_| ClientError::Timeout { attempts: 1 })?,
        }
    }

    fn transaction(&mut self) -> TransactionId {
        self.next_transaction = self.next_transaction.wrapping_add(1);
        TransactionId(self.next_transaction)
    }

    #[allow(clippy::too_many_arguments)]
    async fn udp_announce(
        &mut self,
        cfg: &ClientConfig,
        id: &Identity,
        event: AnnounceEvent,
        stats: TransferStats,
        host: &str,
        port: u16,
        path: &str,
    ) -> Result<AnnounceOutcome, ClientError> {
        if self.udp.is_none() {
            let addr = resolve(host, port).await?;
            let local =
                crate::net::own::source_for(id.local_ip, addr).unwrap_or(if addr.is_ipv6() {
                    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                } else {
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
                });
            let sock = UdpSocket::bind(local).await.map_err(ClientError::Io)?;
            sock.connect(addr).await.map_err(ClientError::Io)?;
            self.udp = Some((sock, addr));
        }
        let fresh = |c: &Option<(ConnectionId, Instant)>| {
            c.is_some_and(|(_, at)| at.elapsed() < cfg.udp_connection_ttl)
        };
        // A tracker that restarted no longer knows the ids it issued and drops requests that
        // carry one without a word: after one unanswered attempt with a reused id, connect
        // again rather than retransmit the announce for minutes (15 s · (1 + 2 + 4 + 8)).
        loop {
            let reused = fresh(&self.connection);
            let retries = if reused { 0 } else { cfg.udp_max_retries };
            match self
                .udp_announce_once(cfg, id, event, stats, path, retries)
                .await
            {
                Err(ClientError::Timeout { .. } | ClientError::Refused { .. }) if reused => {
                    self.connection = None
                }
                r => return r,
            }
        }
    }

    /// One connect (unless the id is fresh) and one announce, each retransmitted `retries`
    /// times.
    async fn udp_announce_once(
        &mut self,
        cfg: &ClientConfig,
        id: &Identity,
        event: AnnounceEvent,
        stats: TransferStats,
        path: &str,
        retries: u32,
    ) -> Result<AnnounceOutcome, ClientError> {
        let fresh = |c: &Option<(ConnectionId, Instant)>| {
            c.is_some_and(|(_, at)| at.elapsed() < cfg.udp_connection_ttl)
        };
        if !fresh(&self.connection) {
            let tid = self.transaction();
            let req = Request::Connect(ConnectRequest {
                transaction_id: tid,
            });
            match self.udp_transact(cfg, &req, tid, retries).await?.0 {
                Response::Connect(c) => self.connection = Some((c.connection_id, Instant::now())),
                Response::Error(e) => return Err(ClientError::Refused { reason: e.message }),
                _ => return Err(ClientError::UnexpectedReply),
            }
        }
        let (connection_id, _) = self.connection.expect("connected above");
        let url_data = match &id.fabric {
            // Asking for the share too: only instream trackers answer it, with a trailer
            // that only a client asking for it strips (proto::tracker::udp).
            Some(f) => with_param(
                &with_param(
                    if path.is_empty() { "/announce" } else { path },
                    "fabric",
                    f,
                ),
                udp::FABRIC_SHARE_PARAM,
                "1",
            ),
            None => path.to_owned(),
        };
        let tid = self.transaction();
        let req = Request::Announce(udp::AnnounceRequest {
            connection_id,
            transaction_id: tid,
            info_hash: id.info_hash,
            peer_id: id.peer_id,
            downloaded: stats.downloaded,
            left: stats.left,
            uploaded: stats.uploaded,
            event,
            // BEP 15: 0 means "the source address"; the field has no room for IPv6.
            ip_address: match id.announce_ip {
                Some(IpAddr::V4(v4)) => v4,
                _ => Ipv4Addr::UNSPECIFIED,
            },
            key: PeerKey(id.key),
            num_want: NumWant(i32::try_from(cfg.numwant).unwrap_or(i32::MAX)),
            port: id.port,
            url_data: url_data.into_bytes(),
        });
        let (reply, fabric_share) = self.udp_transact(cfg, &req, tid, retries).await?;
        match reply {
            Response::Announce(a) => Ok(AnnounceOutcome {
                interval: Duration::from_secs(a.interval.0.into()),
                seeders: a.seeders,
                leechers: a.leechers,
                peers: a.peers.to_socket_addrs(),
                fabric_share,
            }),
            Response::Error(e) => Err(ClientError::Refused { reason: e.message }),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Sends `req` until a reply with `tid` arrives (at most `retries` retransmissions),
    /// doubling the wait each time. Also returns the fabric share an instream tracker
    /// appended to an announce reply.
    async fn udp_transact(
        &mut self,
        cfg: &ClientConfig,
        req: &Request,
        tid: TransactionId,
        retries: u32,
    ) -> Result<(Response, Option<proto::picker::FabricShare>), ClientError> {
        let (sock, addr) = self.udp.as_ref().expect("socket set up by the caller");
        let ipv6 = addr.is_ipv6();
        let mut packet = Vec::with_capacity(128);
        req.encode(&mut packet);
        let mut buf = vec![0u8; 8192];
        let mut wait = cfg.udp_initial_timeout;
        for attempt in 0..=retries {
            sock.send(&packet).await.map_err(ClientError::Io)?;
            let deadline = Instant::now() + wait;
            loop {
                let n = match timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    sock.recv(&mut buf),
                )
                .await
                {
                    Err(_) => break, // this attempt timed out
                    // ICMP "port unreachable" from an earlier send: the tracker is down
                    // right now; the retransmission will tell.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        sleep_until(deadline).await;
                        break;
                    }
                    Ok(Err(e)) => return Err(ClientError::Io(e)),
                    Ok(Ok(n)) => n,
                };
                let (packet, share) = udp::split_fabric_share(&buf[..n], ipv6);
                match Response::parse(packet, ipv6) {
                    Ok(r) if r.transaction_id() == tid => return Ok((r, share)),
                    // A late reply to an earlier transaction, or junk: keep waiting.
                    Ok(_) => continue,
                    Err(e) if attempt == retries => return Err(e.into()),
                    Err(_) => continue,
                }
            }
            wait = wait.saturating_mul(2);
        }
        Err(ClientError::Timeout {
            attempts: retries + 1,
        })
    }
}

async fn http_announce(
    cfg: &ClientConfig,
    id: &Identity,
    event: AnnounceEvent,
    stats: TransferStats,
    host: &str,
    port: u16,
    path: &str,
) -> Result<AnnounceOutcome, ClientError> {
    let query = http::AnnounceRequest {
        info_hash: id.info_hash,
        peer_id: id.peer_id,
        port: id.port,
        uploaded: stats.uploaded,
        downloaded: stats.downloaded,
        left: stats.left,
        event,
        compact: true,
        numwant: Some(cfg.numwant),
        ip: id.announce_ip,
        fabric: id.fabric.clone(),
    }
    .to_query();
    let sep = if path.contains('?') { '&' } else { '?' };
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // HTTP/1.0 with Connection: close, so the reply is never chunked and ends at EOF.
    let request = format!(
        "GET {path}{sep}{query} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: instream/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let addr = resolve(host, port).await?;
    let mut stream = match crate::net::own::source_for(id.local_ip, addr) {
        Some(local) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(ClientError::Io)?;
            socket.bind(local).map_err(ClientError::Io)?;
            socket.connect(addr).await.map_err(ClientError::Io)?
        }
        None => TcpStream::connect(addr).await.map_err(ClientError::Io)?,
    };
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ClientError::Io)?;
    let limit = cfg.max_http_reply + 4096; // body bound plus room for the head
    let mut reply = Vec::new();
    (&mut stream)
        .take(limit as u64 + 1)
        .read_to_end(&mut reply)
        .await
        .map_err(ClientError::Io)?;
    if reply.len() > limit {
        return Err(ClientError::TooLarge {
            max: cfg.max_http_reply,
        });
    }
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::HttpStatus { status: 0 })?;
    let status = std::str::from_utf8(&reply[..head_end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ClientError::HttpStatus { status: 0 })?;
    if status != 200 {
        return Err(ClientError::HttpStatus { status });
    }
    match AnnounceReply::parse(&reply[head_end + 4..])? {
        AnnounceReply::Ok(r) => Ok(AnnounceOutcome {
            interval: Duration::from_secs(r.interval.into()),
            seeders: r.complete,
            leechers: r.incomplete,
            peers: r.socket_addrs(),
            fabric_share: r.fabric_share,
        }),
        AnnounceReply::Failure(reason) => Err(ClientError::Refused { reason }),
    }
}

/// Messages from the [`TrackerClient`] to its per-tracker tasks.
#[derive(Debug, Clone, Copy)]
enum Command {
    Stats(TransferStats),
    Completed,
    AnnounceNow,
    Stop,
}

/// Announces one torrent to a set of trackers until stopped.
#[derive(Debug)]
pub struct TrackerClient {
    commands: Vec<mpsc::UnboundedSender<Command>>,
    tasks: JoinSet<()>,
}

impl TrackerClient {
    /// Parses `urls` (unusable ones are logged and skipped; an error only if none is
    /// usable), starts one task per tracker (each sends `started` at once) and returns the
    /// client and the channel of discovered peers. Must be called inside a tokio runtime.
    pub fn start(
        urls: &[String],
        id: Identity,
        stats: TransferStats,
        config: ClientConfig,
    ) -> Result<(Self, mpsc::Receiver<DiscoveredPeers>), ClientError> {
        let mut parsed = Vec::new();
        for u in urls {
            match TrackerUrl::parse(u) {
                Ok(t) => parsed.push((u.clone(), t)),
                Err(e) => tracing::warn!(url = %u, error = %e, "skipping tracker"),
            }
        }
        if parsed.is_empty() {
            return Err(ClientError::BadUrl {
                url: urls.join(" "),
            });
        }
        let (peers_tx, peers_rx) = mpsc::channel(64);
        let mut commands = Vec::new();
        let mut tasks = JoinSet::new();
        for (text, url) in parsed {
            let (tx, rx) = mpsc::unbounded_channel();
            commands.push(tx);
            let task = TrackerTask {
                name: text,
                conn: TrackerConn::new(url),
                cfg: config.clone(),
                id: id.clone(),
                stats,
                peers: peers_tx.clone(),
                commands: rx,
            };
            tasks.spawn(task.run());
        }
        Ok((Self { commands, tasks }, peers_rx))
    }

    fn send(&self, c: Command) {
        for tx in &self.commands {
            let _ = tx.send(c);
        }
    }

    /// New transfer counters for the next announces.
    pub fn update_stats(&self, stats: TransferStats) {
        self.send(Command::Stats(stats));
    }

    /// The download finished: announce `completed` now (with `left = 0`).
    pub fn completed(&self) {
        self.send(Command::Completed);
    }

    /// Ask every tracker for peers now, outside the interval.
    pub fn announce_now(&self) {
        self.send(Command::AnnounceNow);
    }

    /// Announces `stopped` to every tracker, waiting at most `within` for them.
    pub async fn stop(mut self, within: Duration) {
        self.send(Command::Stop);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(within, all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

struct TrackerTask {
    name: String,
    conn: TrackerConn,
    cfg: ClientConfig,
    id: Identity,
    stats: TransferStats,
    peers: mpsc::Sender<DiscoveredPeers>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl TrackerTask {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.cfg
            .min_backoff
            .saturating_mul(factor)
            .min(self.cfg.max_backoff)
    }

    /// Applies a command; returns true on `Stop`.
    fn apply(
        &mut self,
        c: Command,
        pending: &mut Option<AnnounceEvent>,
        next: &mut Instant,
    ) -> bool {
        match c {
            Command::Stats(s) => self.stats = s,
            Command::Completed => {
                self.stats.left = 0;
                // `started` not yet delivered: that first announce will carry left = 0.
                if *pending != Some(AnnounceEvent::Started) {
                    *pending = Some(AnnounceEvent::Completed);
                }
                *next = Instant::now();
            }
            Command::AnnounceNow => *next = Instant::now(),
            Command::Stop => return true,
        }
        false
    }

    async fn run(mut self) {
        let mut pending = Some(AnnounceEvent::Started);
        let mut next = Instant::now();
        let mut failures = 0u32;
        let mut announced = false;
        let mut last_share = None;
        let mut settles = 0u32;
        'outer: loop {
            tokio::select! {
                () = sleep_until(next) => {}
                c = self.commands.recv() => match c {
                    Some(c) => {
                        if self.apply(c, &mut pending, &mut next) { break 'outer; }
                        continue;
                    }
                    None => break 'outer,
                },
            }
            let event = pending.take().unwrap_or(AnnounceEvent::None);
            let stats = self.stats;
            let result = {
                let announce = self.conn.announce(&self.cfg, &self.id, event, stats);
                tokio::pin!(announce);
                loop {
                    tokio::select! {
                        r = &mut announce => break r,
                        c = self.commands.recv() => match c {
                            Some(Command::Stop) | None => break 'outer,
                            Some(Command::Stats(s)) => self.stats = s,
                            Some(Command::Completed) => {
                                self.stats.left = 0;
                                pending = Some(AnnounceEvent::Completed);
                            }
                            Some(Command::AnnounceNow) => {}
                        },
                    }
                }
            };
            self.cfg.counters.count(&result);
            match result {
                Ok(o) => {
                    failures = 0;
                    announced = true;
                    let mut interval = o.interval.max(self.cfg.min_interval);
                    // While a rollout's hosts are still arriving, the count of our fabric
                    // grows with each announce: ask again soon, a few times, so that early
                    // hosts do not keep a share computed from a handful of them.
                    if o.fabric_share.is_some() && o.fabric_share != last_share {
                        last_share = o.fabric_share;
                        if settles < SHARE_SETTLES {
                            settles += 1;
                            interval = interval.min(SHARE_SETTLE);
                        }
                    }
                    next = Instant::now() + interval;
                    if pending.is_some() {
                        next = Instant::now();
                    }
                    tracing::debug!(tracker = %self.name, peers = o.peers.len(), ?event, "announced");
                    let found = DiscoveredPeers {
                        tracker: self.name.clone(),
                        peers: o.peers,
                        seeders: o.seeders,
                        leechers: o.leechers,
                        fabric_share: o.fabric_share,
                    };
                    // Never block on a slow session: a later announce brings fresh peers.
                    match self.peers.try_send(found) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!(tracker = %self.name, "peer channel full; dropping a peer list");
                        }
                        // Nobody listens any more: the session is gone.
                        Err(mpsc::error::TrySendError::Closed(_)) => break 'outer,
                    }
                }
                Err(e) => {
                    failures += 1;
                    if event != AnnounceEvent::None && pending.is_none() {
                        pending = Some(event);
                    }
                    let wait = self.backoff(failures);
                    tracing::debug!(tracker = %self.name, error = %e, ?wait, "announce failed");
                    next = Instant::now() + wait;
                }
            }
        }
        if announced {
            // Best effort, single attempt: the caller bounds the wait.
            let r = self
                .conn
                .announce(&self.cfg, &self.id, AnnounceEvent::Stopped, self.stats)
                .await;
            self.cfg.counters.count(&r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ports_paths_and_ipv6() {
        assert_eq!(
            TrackerUrl::parse("udp://tracker.example:6969/announce?fabric=f1").unwrap(),
            TrackerUrl::Udp {
                host: "tracker.example".into(),
                port: 6969,
                path: "/announce?fabric=f1".into()
            }
        );
        assert_eq!(
            TrackerUrl::parse("http://[::1]:8080/announce").unwrap(),
            TrackerUrl::Http {
                host: "::1".into(),
                port: 8080,
                path: "/announce".into()
            }
        );
        assert_eq!(
            TrackerUrl::parse("http://t").unwrap(),
            TrackerUrl::Http {
                host: "t".into(),
                port: 80,
                path: "/".into()
            }
        );
        for bad in [
            "udp://t/announce",
            "https://t/a",
            "t:1",
            "udp://:1",
            "http://t:x/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fabric_is_added_once() {
        assert_eq!(
            with_param("/announce", "fabric", "f1"),
            "/announce?fabric=f1"
        );
        assert_eq!(with_param("/a?x=1", "fabric", "f1"), "/a?x=1&fabric=f1");
        assert_eq!(with_param("/a?fabric=f2", "fabric", "f1"), "/a?fabric=f2");
    }

    /// A BEP 15 tracker on loopback that answers an announce only when it carries the
    /// connection id of the current generation; bumping the generation is a restart (the
    /// ids issued before are unknown and get no answer, as in tracker/src/udp_worker.rs).
    async fn forgetful_tracker() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let generation = std::sync::Arc::new(AtomicU64::new(1));
        let g = generation.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, src)) = sock.recv_from(&mut buf).await {
                let now = ConnectionId(g.load(Ordering::Relaxed));
                let reply = match Request::parse(&buf[..n], 16) {
                    Ok(Request::Connect(c)) => Response::Connect(udp::ConnectResponse {
                        transaction_id: c.transaction_id,
                        connection_id: now,
                    }),
                    Ok(Request::Announce(a)) if a.connection_id == now => {
                        Response::Announce(udp::AnnounceResponse {
                            transaction_id: a.transaction_id,
                            interval: udp::AnnounceInterval(60),
                            leechers: 0,
                            seeders: 1,
                            peers: udp::PeerList::V4(Vec::new()),
                        })
                    }
                    _ => continue,
                };
                let mut out = Vec::new();
                reply.encode(&mut out);
                let _ = sock.send_to(&out, src).await;
            }
        });
        (addr, generation)
    }

    #[tokio::test]
    async fn a_restarted_udp_tracker_is_reconnected_after_one_unanswered_announce() {
        let (addr, generation) = forgetful_tracker().await;
        let cfg = ClientConfig {
            udp_initial_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        };
        let id = Identity {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId(*b"-IS0001-restart-test"),
            port: 6881,
            fabric: None,
            key: 7,
            local_ip: None,
            announce_ip: None,
        };
        let url = TrackerUrl::parse(&format!("udp://{addr}/announce")).unwrap();
        let mut conn = TrackerConn::new(url);
        let stats = TransferStats::default();
        conn.announce(&cfg, &id, AnnounceEvent::Started, stats)
            .await
            .expect("the first announce");
        generation.store(2, std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        let r = conn.announce(&cfg, &id, AnnounceEvent::None, stats).await;
        // Before: the same announce retransmitted 3 times (100 + 200 + 400 + 800 ms), then
        // a timeout, with the forgotten id still cached.
        assert!(r.is_ok(), "the announce after the restart failed: {r:?}");
        assert!(
            start.elapsed() < Duration::from_millis(700),
            "reconnected only after {:?}",
            start.elapsed()
        );
    }
}
