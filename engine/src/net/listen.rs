//! The listener: one TCP socket serves every torrent of the session. Each accepted
//! connection sends its handshake first; its info-hash picks the torrent from the
//! [`Router`], we answer with our handshake, and the connection is handed to that torrent.
//! Unknown info-hashes, foreign protocols and slow handshakes are dropped without a reply.
//!
//! The first 20 bytes tell the two openings apart: `\x13BitTorrent protocol` is a plain
//! handshake (refused under `--encryption require`); anything else is taken for MSE/PE
//! ([`super::mse`]), whose `SKEY` the router resolves through `HASH('req2', info-hash)`.
//! The BT handshake then follows inside it, so the same time bound covers both.
//!
//! The accept loop takes an already-bound listener and a shutdown token (tests bind port 0).
//!
//! Bounds ([`ListenLimits`]): incoming connections open at once, in total and per source IP
//! (handshaking or running; a connection over either cap is closed on accept, unanswered),
//! at most [`MAX_PENDING_HANDSHAKES`] of them handshaking, and each handshake within
//! `handshake_timeout`. Accepting never waits, so slow handshakers cannot fill the kernel's
//! backlog. When a torrent's peer slots are full, the machine makes room by evicting an
//! idle peer (`proto::torrent`), not here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use proto::mse::{Ciphers, Method, Policy};
use proto::torrent::PeerKey;
use proto::wire::{HANDSHAKE_LEN, Handshake};
use proto::{InfoHash, PeerId};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::mse;
use super::tcp::{self, HANDSHAKE_TIMEOUT, HandshakeFailed, SocketOptions};
use crate::connection::{self, NetEvent};

/// Handshakes in progress at once; more connections are closed on accept.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Bounds on incoming peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Most incoming connections open at once over every torrent of the session,
    /// handshaking or running. Default 1024; 0: unlimited.
    pub max_connections: usize,
    /// Most incoming connections from one IP address. Default 32 (a host runs one
    /// connection per torrent it shares with us); 0: unlimited.
    pub max_per_ip: usize,
    /// Time an incoming connection has for its handshakes (MSE included). Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_ip: 32,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// Incoming connections open now, in total and by source address.
#[derive(Debug, Default)]
pub(super) struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's share of [`Open`], given back on drop.
pub(super) struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|e| e.into_inner());
        o.total -= 1;
        if let Some(n) = o.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Takes a slot for a connection from `ip`, or says which cap it would pass.
pub(super) fn admit(
    open: &Arc<Mutex<Open>>,
    ip: IpAddr,
    limits: &ListenLimits,
) -> Result<Slot, &'static str> {
    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
    if limits.max_connections != 0 && o.total >= limits.max_connections {
        return Err("too many incoming connections");
    }
    let from_ip = o.by_ip.get(&ip).copied().unwrap_or(0);
    if limits.max_per_ip != 0 && from_ip >= limits.max_per_ip {
        return Err("too many incoming connections from this address");
    }
    o.total += 1;
    *o.by_ip.entry(ip).or_insert(0) += 1;
    Ok(Slot {
        open: open.clone(),
        ip,
    })
}

/// How connection tasks reach one torrent's task.
#[derive(Debug, Clone)]
pub struct Route {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id (per session).
    pub our_id: PeerId,
    /// The torrent task's network channel.
    pub events: mpsc::Sender<NetEvent>,
    /// Connection key counter.
    pub keys: Arc<AtomicU64>,
    /// Cancelled when the torrent stops: every connection of it ends.
    pub cancel: CancellationToken,
}

impl Route {
    /// A fresh connection key.
    pub fn next_key(&self) -> PeerKey {
        tcp::key_from(&self.keys)
    }
}

/// Info-hash -> torrent, shared by the listener and the session.
#[derive(Debug, Default)]
pub struct Router {
    map: RwLock<Routes>,
}

#[derive(Debug, Default)]
struct Routes {
    by_hash: HashMap<InfoHash, Route>,
    /// `HASH('req2', info-hash)` -> info-hash: how an MSE handshake names its torrent.
    by_req2: HashMap<[u8; 20], InfoHash>,
}

impl Router {
    /// Routes connections for `route.info_hash` to it; false if one was already there.
    pub fn insert(&self, route: Route) -> bool {
        let mut m = self.map.write().expect("router lock");
        if m.by_hash.contains_key(&route.info_hash) {
            return false;
        }
        m.by_req2
            .insert(proto::mse::req2_hash(&route.info_hash), route.info_hash);
        m.by_hash.insert(route.info_hash, route);
        true
    }

    /// Stops routing `info_hash`.
    pub fn remove(&self, info_hash: &InfoHash) -> Option<Route> {
        let mut m = self.map.write().expect("router lock");
        m.by_req2.remove(&proto::mse::req2_hash(info_hash));
        m.by_hash.remove(info_hash)
    }

    /// The route for `info_hash`.
    pub fn get(&self, info_hash: &InfoHash) -> Option<Route> {
        self.map
            .read()
            .expect("router lock")
            .by_hash
            .get(info_hash)
            .cloned()
    }

    /// The torrent whose `HASH('req2', info-hash)` is `req2` (MSE's `SKEY` lookup).
    pub fn by_req2(&self, req2: &[u8; 20]) -> Option<InfoHash> {
        self.map
            .read()
            .expect("router lock")
            .by_req2
            .get(req2)
            .copied()
    }

    /// Number of torrents routed.
    pub fn len(&self) -> usize {
        self.map.read().expect("router lock").by_hash.len()
    }

    /// True if no torrent is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accepts connections until `shutdown` is cancelled, within `limits`.
pub async fn run(
    listener: TcpListener,
    router: Arc<Router>,
    opts: SocketOptions,
    limits: ListenLimits,
    shutdown: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (mut stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Closed at once (dropped unanswered) over a cap: nothing waits in the backlog.
        let slot = match admit(&open, addr.ip().to_canonical(), &limits) {
            Ok(s) => s,
            Err(why) => {
                debug!(%addr, why, "incoming connection refused");
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            debug!(%addr, "incoming connection refused: too many handshakes in progress");
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = tcp::configure(&stream, &opts) {
                debug!(%addr, error = %e, "socket options");
            }
            let r = tokio::time::timeout(
                limits.handshake_timeout,
                handshake(&mut stream, &router, opts.encryption),
            )
            .await
            .unwrap_or(Err(HandshakeFailed::Timeout));
            let Incoming {
                theirs,
                route,
                rest,
                ciphers,
                mse,
            } = match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(%addr, error = %exit::error_chain(&e), "incoming handshake failed");
                    return;
                }
            };
            if let Some(method) = mse {
                debug!(%addr, ?method, "incoming MSE handshake");
            }
            drop(permit);
            let peer = route.next_key();
            connection::run(
                stream,
                rest,
                ciphers,
                peer,
                tcp::peer_info(addr, &theirs, false),
                route.events.clone(),
                &route.cancel,
            )
            .await;
        });
    }
}

/// An incoming connection whose handshakes are done.
struct Incoming {
    theirs: Handshake,
    route: Route,
    rest: BytesMut,
    ciphers: Option<Ciphers>,
    /// The MSE payload method, if the peer opened with MSE.
    mse: Option<Method>,
}

/// Tells a plain handshake from MSE, runs it, finds the torrent and answers.
async fn handshake(
    stream: &mut TcpStream,
    router: &Router,
    policy: Policy,
) -> Result<Incoming, HandshakeFailed> {
    let mut buf = BytesMut::with_capacity(HANDSHAKE_LEN + 4096);
    let plain = loop {
        match Handshake::check_prefix(&buf) {
            Ok(true) => break true,
            Ok(false) => {}
            Err(_) => break false,
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeFailed::Eof);
        }
    };
    let (theirs, rest, mut ciphers, mse) = if plain {
        if !policy.accepts_plain() {
            return Err(HandshakeFailed::PlainRefused);
        }
        let (theirs, rest) = tcp::read_handshake(stream, buf, None).await?;
        (theirs, rest, None, None)
    } else {
        let e = mse::respond(stream, &buf, policy.methods(), |h| router.by_req2(h)).await?;
        let start = mse::payload_start(&e);
        let mut ciphers = e.ciphers;
        let decrypt = ciphers.as_mut().map(|c| &mut c.decrypt);
        let (theirs, rest) = tcp::read_handshake(stream, start, decrypt).await?;
        if theirs.info_hash != e.info_hash {
            return Err(HandshakeFailed::WrongInfoHash(theirs.info_hash));
        }
        (theirs, rest, ciphers, Some(e.method))
    };
    let Some(route) = router.get(&theirs.info_hash) else {
        return Err(HandshakeFailed::UnknownTorrent(theirs.info_hash));
    };
    let ours = Handshake::new(route.info_hash, route.our_id);
    tcp::write_handshake(stream, &ours, ciphers.as_mut().map(|c| &mut c.encrypt)).await?;
    if theirs.peer_id == route.our_id {
        // Our own dial: the reply above lets the dialling side see our peer id and never
        // dial that address again (issue 9); closing without it looked like a flaky peer,
        // retried forever.
        return Err(HandshakeFailed::SelfConnection);
    }
    Ok(Incoming {
        theirs,
        route,
        rest,
        ciphers,
        mse,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_per_ip_and_in_total_and_frees_on_drop() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ListenLimits {
            max_connections: 3,
            max_per_ip: 2,
            ..ListenLimits::default()
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admit(&open, a, &limits).unwrap();
        let _a2 = admit(&open, a, &limits).unwrap();
        assert!(
            admit(&open, a, &limits).is_err(),
            "a third from one address"
        );
        let _b1 = admit(&open, b, &limits).unwrap();
        assert!(admit(&open, b, &limits).is_err(), "a fourth in total");
        drop(a1);
        let _a3 = admit(&open, a, &limits).unwrap();
        let unlimited = ListenLimits {
            max_connections: 0,
            max_per_ip: 0,
            ..limits
        };
        let many: Vec<Slot> = (0..10)
            .map(|_| admit(&open, a, &unlimited).unwrap())
            .collect();
        assert_eq!(open.lock().unwrap().total, 13);
        drop(many);
        assert_eq!(open.lock().unwrap().by_ip[&a], 2);
    }

    #[test]
    fn the_router_finds_a_torrent_by_its_mse_skey_hash_until_removed() {
        let (events, _rx) = mpsc::channel(1);
        let info_hash = InfoHash([7; 20]);
        let router = Router::default();
        assert!(router.insert(Route {
            info_hash,
            our_id: PeerId([1; 20]),
            events,
            keys: Arc::default(),
            cancel: CancellationToken::new(),
        }));
        let req2 = proto::mse::req2_hash(&info_hash);
        assert_eq!(router.by_req2(&req2), Some(info_hash));
        assert_eq!(router.by_req2(&[0; 20]), None);
        assert!(router.remove(&info_hash).is_some());
        assert_eq!(router.by_req2(&req2), None);
    }
}
