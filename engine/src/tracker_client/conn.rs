//! One announce to one tracker: who we are, what we send, what comes back, and the
//! connection state ([`TrackerConn`]) kept between announces.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{ConnectionId, TransactionId};
use proto::{InfoHash, PeerId};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

use super::config::ClientConfig;
use super::error::ClientError;
use super::http::http_announce;
use super::url::TrackerUrl;

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

/// One tracker's connection state: the UDP socket and connection id, or nothing for HTTP.
#[derive(Debug)]
pub struct TrackerConn {
    url: TrackerUrl,
    pub(super) udp: Option<(UdpSocket, SocketAddr)>,
    pub(super) connection: Option<(ConnectionId, Instant)>,
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

    pub(super) fn transaction(&mut self) -> TransactionId {
        self.next_transaction = self.next_transaction.wrapping_add(1);
        TransactionId(self.next_transaction)
    }
}
