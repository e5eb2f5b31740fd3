//! The HTTP tracker: a small hand-written HTTP/1.1 server on tokio serving
//! `GET /announce`, `GET /scrape`, `GET /stats`, `GET /metrics` (Prometheus) and the admin API
//! (`POST /register`, `POST /unregister`, bearer token).
//!
//! Robustness rules: a request (head and body) is at most `max_request_bytes` (an admin
//! request whose token checks out may carry a body of `max_admin_body_bytes`); waiting
//! for it, receiving it and writing its answer take at most `request_timeout_ms` together
//! (so it is also the idle limit of a keep-alive connection, and a client that does not
//! read is cut off too); at most `max_connections` connections at once, a newcomer at the
//! cap evicting the connection that has waited longest for a request; anything that is not
//! a well-formed request gets a 4xx and the connection is closed. [`respond`] maps a parsed
//! request to a response without I/O, so it is tested directly.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::InfoHash;
use proto::tracker::http::{
    AnnounceRequest, AnnounceResponse, ScrapeResponse, ScrapeStats, encode_failure,
    parse_scrape_query,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::state::{Shared, canonical};
use crate::stats::bump;
use crate::swarm::Announce;

/// A request head and body, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    /// Path without the query.
    pub(crate) path: String,
    /// Raw query (after `?`), still percent-encoded.
    pub(crate) query: Vec<u8>,
    pub(crate) authorization: Option<String>,
    pub(crate) keep_alive: bool,
    pub(crate) body: Vec<u8>,
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type,
            body,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: format!("{body}\n").into_bytes(),
        }
    }

    fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or a malformed line.
    Malformed,
    /// Over the size bound.
    TooLarge,
}

/// Parses a request head (everything before the blank line). Returns the request without
/// its body and the declared body length.
pub(crate) fn parse_head(head: &[u8]) -> Result<(HttpRequest, usize), HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(HeadError::Malformed)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(HeadError::Malformed);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q.as_bytes().to_vec()),
        None => (target, Vec::new()),
    };
    if !path.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let mut req = HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization: None,
        keep_alive: http11,
        body: Vec::new(),
    };
    let mut content_length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| HeadError::Malformed)?;
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                req.keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                req.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not needed by any client of this API: refuse them rather
            // than mis-frame the next request.
            return Err(HeadError::Malformed);
        }
    }
    Ok((req, content_length))
}

/// Compares without an early exit, so the token cannot be guessed byte by byte by timing.
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the admin bearer token (false when none is configured).
fn authorized(shared: &Shared, req: &HttpRequest) -> bool {
    let Some(token) = &shared.admin_token else {
        return false;
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    same_token(given.trim(), token)
}

/// Maps one request to its response (no I/O; `peer` is the connection's address).
pub(crate) fn respond(
    shared: &Shared,
    rng: &mut SmallRng,
    req: &HttpRequest,
    peer: SocketAddr,
) -> HttpResponse {
    let path = req.path.trim_end_matches('/');
    match (req.method.as_str(), path) {
        ("GET", "/announce") => announce(shared, rng, &req.query, peer),
        ("GET", "/scrape") => scrape(shared, &req.query),
        ("GET", "/stats") => HttpResponse::ok(
            "application/json",
            serde_json::to_vec(&shared.stats()).unwrap_or_default(),
        ),
        ("GET", "/metrics") => HttpResponse::ok(
            proto::prometheus::CONTENT_TYPE,
            shared.stats().prometheus().into_bytes(),
        ),
        ("POST", "/register") | ("POST", "/unregister") => admin(shared, req, path),
        (_, "/announce" | "/scrape" | "/stats" | "/metrics" | "/register" | "/unregister") => {
            bump(&shared.counters(0).http_bad_request);
            HttpResponse::text(405, "method not allowed")
        }
        _ => {
            bump(&shared.counters(0).http_bad_request);
            HttpResponse::text(404, "not found")
        }
    }
}

fn failure(shared: &Shared, reason: &str) -> HttpResponse {
    bump(&shared.counters(0).http_failure);
    let mut body = Vec::new();
    encode_failure(reason, &mut body);
    // BEP 3: failures are a 200 with a `failure reason`, which every client shows.
    HttpResponse::ok("text/plain", body)
}

fn announce(shared: &Shared, rng: &mut SmallRng, query: &[u8], peer: SocketAddr) -> HttpResponse {
    let req = match AnnounceRequest::parse_query(query) {
        Ok(r) => r,
        Err(e) => return failure(shared, &e.to_string()),
    };
    // `ip=` only when configured (it lets a client list an address it does not hold);
    // either way the entry belongs to the connection's source (crate::swarm).
    let source = canonical(peer).ip();
    let ip = match req.ip {
        Some(ip) if shared.config.http.trust_ip_param => ip,
        _ => source,
    };
    let fabric = shared.fabric_of(req.fabric.as_deref(), ip);
    let mut resp = AnnounceResponse {
        interval: shared.swarm.interval,
        ..Default::default()
    };
    let counts = match ip {
        IpAddr::V4(v4) => {
            let a = Announce {
                peer_id: req.peer_id,
                addr: SocketAddrV4::new(v4, req.port),
                source,
                left: req.left,
                event: req.event,
                fabric,
                numwant: req.numwant,
            };
            shared.announce(req.info_hash, &a, rng, &mut resp.peers)
        }
        IpAddr::V6(v6) => {
            let a = Announce {
                peer_id: req.peer_id,
                addr: SocketAddrV6::new(v6, req.port, 0, 0),
                source,
                left: req.left,
                event: req.event,
                fabric,
                numwant: req.numwant,
            };
            shared.announce(req.info_hash, &a, rng, &mut resp.peers6)
        }
    };
    match counts {
        Ok(c) => {
            bump(&shared.counters(0).http_announce);
            resp.complete = c.seeders;
            resp.incomplete = c.leechers;
            resp.fabric_share = c.fabric_share;
            let mut body = Vec::new();
            resp.encode(&mut body);
            HttpResponse::ok("text/plain", body)
        }
        Err(refused) => failure(shared, &refused.to_string()),
    }
}

fn scrape(shared: &Shared, query: &[u8]) -> HttpResponse {
    let max = shared.config.udp.max_scrape_torrents;
    let hashes = match parse_scrape_query(query, max) {
        Ok(h) if h.is_empty() => return failure(shared, "full scrape is not supported"),
        Ok(h) => h,
        Err(e) => return failure(shared, &e.to_string()),
    };
    bump(&shared.counters(0).http_scrape);
    let files = hashes
        .into_iter()
        .map(|h| {
            let c = shared.scrape(&h);
            (
                h,
                ScrapeStats {
                    complete: c.seeders,
                    downloaded: c.completed,
                    incomplete: c.leechers,
                },
            )
        })
        .collect();
    let mut body = Vec::new();
    ScrapeResponse { files }.encode(&mut body);
    HttpResponse::ok("text/plain", body)
}

fn admin(shared: &Shared, req: &HttpRequest, path: &str) -> HttpResponse {
    if shared.admin_token.is_none() {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(403, "admin API disabled: no token configured");
    }
    if !authorized(shared, req) {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(401, "bad or missing bearer token");
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(400, "body must be hex info-hashes, one per line");
    };
    let hashes = match crate::access::parse_whitelist(text) {
        Ok(h) if !h.is_empty() => h,
        _ => {
            bump(&shared.counters(0).http_bad_request);
            return HttpResponse::text(400, "body must be hex info-hashes, one per line");
        }
    };
    let changed = hashes
        .iter()
        .filter(|h: &&InfoHash| {
            if path == "/register" {
                shared.register(**h)
            } else {
                shared.unregister(h)
            }
        })
        .count();
    tracing::info!(path, count = hashes.len(), changed, "admin request");
    HttpResponse::text(200, &format!("ok {changed}"))
}

/// Connections waiting for a request (between requests on a kept-alive connection, or
/// while a head and body trickle in), oldest first. At the connection cap a newcomer
/// evicts the one that has waited longest: an honest request arrives in milliseconds, so
/// the longest waiter is an idle or slow client, and a flood of slow sockets cannot keep
/// an announce out until their request timeouts run out.
#[derive(Default)]
struct Waiting {
    next: u64,
    by_age: BTreeMap<u64, Arc<Notify>>,
}

impl Waiting {
    fn enter(&mut self, evict: &Arc<Notify>) -> u64 {
        let key = self.next;
        self.next += 1;
        self.by_age.insert(key, evict.clone());
        key
    }

    fn leave(&mut self, key: u64) {
        self.by_age.remove(&key);
    }

    /// Tells the longest waiter to close; false when nobody is waiting.
    fn evict_oldest(&mut self) -> bool {
        match self.by_age.pop_first() {
            Some((_, evict)) => {
                evict.notify_one();
                true
            }
            None => false,
        }
    }
}

type WaitingList = Arc<std::sync::Mutex<Waiting>>;

fn lock(w: &WaitingList) -> std::sync::MutexGuard<'_, Waiting> {
    // Every critical section is one map operation: a panic cannot leave it half done.
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections until the task is dropped (that drops every connection too).
/// A connection task that panics is logged and ends alone; the others go on.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let limit = shared.config.http.max_connections;
    let waiting = WaitingList::default();
    let mut conns = JoinSet::new();
    let mut seed = 0u64;
    let reap = |r: Result<(), tokio::task::JoinError>| {
        if let Err(e) = r
            && e.is_panic()
        {
            tracing::error!(component = "http-connection", error = %e, "task panicked");
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(r) = conns.join_next(), if !conns.is_empty() => {
                reap(r);
                continue;
            }
        };
        crate::test_panic_point("http-listener");
        while let Some(r) = conns.try_join_next() {
            reap(r);
        }
        // Accepted and then closed at once when nothing can be evicted, so the kernel's
        // backlog never fills with connections nobody serves.
        if limit != 0 && conns.len() >= limit && !lock(&waiting).evict_oldest() {
            bump(&shared.counters(0).http_refused);
            continue;
        }
        seed += 1;
        let shared = shared.clone();
        let waiting = waiting.clone();
        // Waiting from accept on, not from the task's first poll: a burst of accepts runs
        // before any new task does, and each must find the others evictable.
        let evict = Arc::new(Notify::new());
        let key = lock(&waiting).enter(&evict);
        conns.spawn(async move {
            shared.counters(0).http_open.fetch_add(1, Ordering::Relaxed);
            let conn = Conn {
                stream,
                peer,
                evict,
                first_key: Some(key),
            };
            if let Err(e) = connection(conn, &shared, &waiting, seed).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            shared.counters(0).http_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// An accepted connection, already in the waiting list under `first_key`.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    evict: Arc<Notify>,
    first_key: Option<u64>,
}

/// How a connection's next request arrived.
enum Next {
    Request(std::io::Result<Option<Result<(HttpRequest, usize), HeadError>>>),
    TimedOut,
    Evicted,
}

/// Serves requests on one connection. Each request, from the first byte waited for to the
/// last byte of its answer written, must fit `request_timeout_ms`; a client that does not
/// read its answers is cut off like one that does not send.
async fn connection(
    conn: Conn,
    shared: &Shared,
    waiting: &WaitingList,
    seed: u64,
) -> std::io::Result<()> {
    let Conn {
        mut stream,
        peer,
        evict,
        mut first_key,
    } = conn;
    let cfg = &shared.config.http;
    let max = if cfg.max_request_bytes == 0 {
        1024
    } else {
        cfg.max_request_bytes
    };
    let timeout = Duration::from_millis(if cfg.request_timeout_ms == 0 {
        1000
    } else {
        cfg.request_timeout_ms
    });
    let st = shared.counters(0);
    let mut rng = SmallRng::seed_from_u64(seed ^ u64::from(peer.port()));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let deadline = tokio::time::Instant::now() + timeout;
        let admin_max = match cfg.max_admin_body_bytes {
            0 => max,
            n => n,
        };
        // The token is checked on the head, before a large body is read.
        let body_limit = |req: &HttpRequest| {
            let admin = req.method == "POST"
                && matches!(req.path.trim_end_matches('/'), "/register" | "/unregister")
                && authorized(shared, req);
            if admin { admin_max } else { max }
        };
        let key = match first_key.take() {
            Some(k) => k,
            None => lock(waiting).enter(&evict),
        };
        let next = tokio::select! {
            r = tokio::time::timeout_at(
                deadline,
                read_request(&mut stream, &mut buf, max, body_limit),
            ) => r.map_or(Next::TimedOut, Next::Request),
            () = evict.notified() => Next::Evicted,
        };
        lock(waiting).leave(key);
        let (req, used) = match next {
            Next::TimedOut => {
                bump(&st.http_timed_out);
                return Ok(());
            }
            Next::Evicted => {
                bump(&st.http_evicted);
                return Ok(());
            }
            Next::Request(Err(e)) => return Err(e),
            Next::Request(Ok(None)) => return Ok(()), // clean close between requests
            Next::Request(Ok(Some(Ok(r)))) => r,
            Next::Request(Ok(Some(Err(err)))) => {
                bump(&st.http_bad_request);
                let resp = match err {
                    HeadError::TooLarge => HttpResponse::text(413, "request too large"),
                    HeadError::Malformed => HttpResponse::text(400, "bad request"),
                };
                let reply = async {
                    stream.write_all(&resp.encode(false)).await?;
                    linger_close(&mut stream).await;
                    Ok::<_, std::io::Error>(())
                };
                return match tokio::time::timeout_at(deadline, reply).await {
                    Ok(r) => r,
                    Err(_) => {
                        bump(&st.http_timed_out);
                        Ok(())
                    }
                };
            }
        };
        buf.drain(..used);
        crate::test_panic_point("http-connection");
        let resp = respond(shared, &mut rng, &req, peer);
        let wire = resp.encode(req.keep_alive);
        match tokio::time::timeout_at(deadline, stream.write_all(&wire)).await {
            Ok(r) => r?,
            Err(_) => {
                bump(&st.http_timed_out);
                return Ok(());
            }
        }
        if !req.keep_alive {
            return Ok(());
        }
    }
}

/// Closes after an error reply without resetting the connection: closing a socket with
/// unread input makes the kernel send RST, which can destroy the reply before the client
/// reads it. So shut down our side, then discard input for a short, bounded while.
async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = 256 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Reads one request (head and body) into `buf`. `Ok(None)`: the peer closed before a
/// new request began. Returns the request and how many bytes of `buf` it used.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    body_limit: impl Fn(&HttpRequest) -> usize,
) -> std::io::Result<Option<Result<(HttpRequest, usize), HeadError>>> {
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= max {
            return Ok(Some(Err(HeadError::TooLarge)));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some(Err(HeadError::Malformed))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (mut req, body_len) = match parse_head(&buf[..head_end]) {
        Ok(x) => x,
        Err(e) => return Ok(Some(Err(e))),
    };
    let body_start = head_end + 4;
    let total = body_start.saturating_add(body_len);
    // An authenticated admin request may exceed `max` by its own body bound; anything
    // else must fit `max` whole.
    let admin_limit = body_limit(&req);
    let too_large = if admin_limit > max {
        body_len > admin_limit
    } else {
        total > max
    };
    if too_large {
        return Ok(Some(Err(HeadError::TooLarge)));
    }
    while buf.len() < total {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(Err(HeadError::Malformed)));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = buf[body_start..total].to_vec();
    Ok(Some(Ok((req, total))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_keep_alive_defaults() {
        let (r, len) = parse_head(b"GET /announce?a=1 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!(
            (r.path.as_str(), &r.query[..], r.keep_alive, len),
            ("/announce", &b"a=1"[..], true, 0)
        );
        let (r, _) = parse_head(b"GET / HTTP/1.0").unwrap();
        assert!(!r.keep_alive);
        let (r, len) = parse_head(
            b"POST /register HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 41\r\nConnection: close",
        )
        .unwrap();
        assert_eq!(
            (r.authorization.as_deref(), len, r.keep_alive),
            (Some("Bearer t"), 41, false)
        );
    }

    #[test]
    fn garbage_heads_are_malformed() {
        for bad in [
            &b""[..],
            b"GET",
            b"GET /x",
            b"GET /x HTTP/2",
            b"get /x HTTP/1.1",
            b"GET x HTTP/1.1",
            b"GET /x HTTP/1.1\r\nno colon",
            b"GET /x HTTP/1.1\r\nContent-Length: -1",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse_head(bad).map(|_| ()),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }
}
