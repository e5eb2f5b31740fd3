//! The listener: one TCP socket serves every torrent of the session. Each accepted
//! connection sends its handshake first; its info-hash picks the torrent from the
//! [`Router`], we answer with our handshake, and the connection is handed to that torrent.
//! Unknown info-hashes, foreign protocols and slow handshakes are dropped without a reply.
//!
//! The accept loop takes an already-bound listener and a shutdown token (tests bind port 0).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use proto::torrent::PeerKey;
use proto::wire::Handshake;
use proto::{InfoHash, PeerId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::tcp::{self, HANDSHAKE_TIMEOUT, HandshakeFailed, SocketOptions};
use crate::connection::{self, NetEvent};

/// Handshakes in progress at once; more connections wait in the accept backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;

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
    map: RwLock<HashMap<InfoHash, Route>>,
}

impl Router {
    /// Routes connections for `route.info_hash` to it; false if one was already there.
    pub fn insert(&self, route: Route) -> bool {
        let mut m = self.map.write().expect("router lock");
        if m.contains_key(&route.info_hash) {
            return false;
        }
        m.insert(route.info_hash, route);
        true
    }

    /// Stops routing `info_hash`.
    pub fn remove(&self, info_hash: &InfoHash) -> Option<Route> {
        self.map.write().expect("router lock").remove(info_hash)
    }

    /// The route for `info_hash`.
    pub fn get(&self, info_hash: &InfoHash) -> Option<Route> {
        self.map
            .read()
            .expect("router lock")
            .get(info_hash)
            .cloned()
    }

    /// Number of torrents routed.
    pub fn len(&self) -> usize {
        self.map.read().expect("router lock").len()
    }

    /// True if no torrent is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accepts connections until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    router: Arc<Router>,
    opts: SocketOptions,
    shutdown: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = pending.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
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
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = tcp::configure(&stream, &opts) {
                debug!(%addr, error = %e, "socket options");
            }
            let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp::read_handshake(&mut stream))
                .await
                .unwrap_or(Err(HandshakeFailed::Timeout));
            let (theirs, rest) = match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(%addr, error = %e, "incoming handshake failed");
                    return;
                }
            };
            let Some(route) = router.get(&theirs.info_hash) else {
                debug!(%addr, info_hash = %theirs.info_hash, "unknown torrent");
                return;
            };
            let ours = Handshake::new(route.info_hash, route.our_id).encode();
            if let Err(e) = stream.write_all(&ours).await {
                debug!(%addr, error = %e, "handshake reply failed");
                return;
            }
            if theirs.peer_id == route.our_id {
                // Our own dial: the reply above lets the dialling side see our peer id and
                // never dial that address again (issue 9); closing without it looked like a
                // flaky peer, retried forever.
                debug!(%addr, "connection from ourselves");
                return;
            }
            drop(permit);
            let peer = route.next_key();
            connection::run(
                stream,
                rest,
                peer,
                tcp::peer_info(addr, &theirs, false),
                route.events.clone(),
                &route.cancel,
            )
            .await;
        });
    }
}
