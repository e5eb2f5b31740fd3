//! The announce over BEP 15 UDP: connect, announce with BEP 41 URL data, retransmission
//! with a doubling timeout, reconnection after a tracker restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{
    self, AnnounceKey, ConnectRequest, ConnectionId, NumWant, Request, Response, TransactionId,
};
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until, timeout};

use super::config::ClientConfig;
use super::conn::{AnnounceOutcome, Identity, TrackerConn, TransferStats};
use super::error::ClientError;
use super::url::{resolve, with_param};

impl TrackerConn {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn udp_announce(
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
            key: AnnounceKey(id.key),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker_client::TrackerUrl;
    use proto::{InfoHash, PeerId};

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
