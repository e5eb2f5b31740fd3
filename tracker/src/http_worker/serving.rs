//! Serving connections: accepting, the connection cap, per-request deadlines.
//!
//! Robustness rules: a request (head and body) is at most `max_request_bytes` (an admin
//! request whose token checks out may carry a body of `max_admin_body_bytes`); waiting
//! for it, receiving it and writing its answer take at most `request_timeout_ms` together
//! (so it is also the idle limit of a keep-alive connection, and a client that does not
//! read is cut off too); at most `max_connections` connections at once, a newcomer at the
//! cap evicting the connection that has waited longest for a request; anything that is not
//! a well-formed request gets a 4xx and the connection is closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::auth::authorized;
use super::framing::{HeadError, HttpRequest, HttpResponse, read_request};
use super::routes::respond;
use crate::state::Shared;
use crate::stats::bump;

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
