//! The announce over BEP 3 HTTP: one HTTP/1.0 GET, the reply read to EOF under a size
//! bound, its bencoded body parsed by `proto::tracker::http`.

use std::time::Duration;

use proto::tracker::AnnounceEvent;
use proto::tracker::http::{self, AnnounceReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::config::ClientConfig;
use super::conn::{AnnounceOutcome, Identity, TransferStats};
use super::error::ClientError;
use super::url::resolve;

pub(super) async fn http_announce(
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
