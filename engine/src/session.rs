//! A session: one listener, one peer id, one disk pool, and any number of torrents, which can
//! be added while it runs (`instream-seed serve` with many torrents; an origin taking new
//! versions).
//!
//! Each torrent runs in its own task ([`crate::driver`]); the session only keeps a handle to
//! each (a control channel and a status watch) and the [`Router`] the listener uses to hand
//! incoming connections to the right torrent. The library never reads argv or the
//! environment: binaries fill [`SessionConfig`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::bitfield::Bitfield;
use proto::torrent::{Config as TorrentConfig, Stats, Torrent};
use proto::{InfoHash, PeerId};
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info};

use crate::announce;
use crate::disk::DiskPool;
use crate::driver::{Control, Driver};
use crate::meta::TorrentMeta;
use crate::net::{
    ListenLimits, OwnAddresses, Quic, QuicConfig, Route, Router, SocketOptions, Transport,
    TransportCounts, listen, quic,
};
use crate::storage::{Storage, check_existing};
use crate::supervise::{Failure, panic_message};
use crate::tracker_client::{ClientConfig, Identity};

/// Session-wide settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our peer id (`None`: a random one).
    pub peer_id: Option<PeerId>,
    /// Defaults for every torrent's machine (`listen_port` is filled in from the listener).
    pub torrent: TorrentConfig,
    /// Socket tuning.
    pub socket: SocketOptions,
    /// Bounds on incoming connections (total, per IP, handshake time).
    pub listen: ListenLimits,
    /// Disk threads (reads, hashing, writes). Default 2: hashing is the heaviest job and
    /// two cores are the target machine.
    pub disk_threads: usize,
    /// Threads for the resume check at start. Default 2.
    pub check_threads: usize,
    /// Bytes queued to one peer's socket beyond which the peer is dropped (it stopped
    /// reading). Default 64 MiB.
    pub max_queued_per_peer: usize,
    /// Piece bytes waiting for hashing and writing beyond which a torrent stops reading from
    /// its peers until the disk catches up (at least two pieces). Default 64 MiB: without
    /// it a disk slower than the network turns into unbounded memory.
    pub max_pending_writes: usize,
    /// Capacity of each torrent's network event channel, in batches. Default 256.
    pub net_channel: usize,
    /// Tracker client timing.
    pub tracker: ClientConfig,
    /// The address trackers should list us under (`--announce-ip`, for a host behind
    /// NAT): sent as `ip=` (HTTP) or the BEP 15 IP field (UDP, IPv4 only), and counted as
    /// one of our own addresses. `None`: trackers use the announce's source address.
    pub announce_ip: Option<IpAddr>,
    /// Transport for instream peers (`--transport`): `Tcp` (default) runs no QUIC endpoint;
    /// `Quic` and `Auto` listen on UDP too and announce it, `Quic` dials QUIC first
    /// (`crate::net::quic`). Other clients always get TCP.
    pub transport: Transport,
    /// QUIC keys and dial timeout (with a transport other than `Tcp`).
    pub quic: QuicConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            peer_id: None,
            torrent: TorrentConfig::default(),
            socket: SocketOptions::default(),
            listen: ListenLimits::default(),
            disk_threads: 2,
            check_threads: 2,
            max_queued_per_peer: 64 * 1024 * 1024,
            max_pending_writes: 64 * 1024 * 1024,
            net_channel: 256,
            tracker: ClientConfig::default(),
            announce_ip: None,
            transport: Transport::Tcp,
            quic: QuicConfig::default(),
        }
    }
}

/// Errors of session operations.
#[derive(Debug, Error)]
pub enum Error {
    /// The torrent is already in the session.
    #[error("torrent {0} is already in the session")]
    Duplicate(InfoHash),
    /// The session is shutting down.
    #[error("the session is shutting down")]
    ShuttingDown,
    /// Storage does not match the torrent.
    #[error("storage holds {storage} bytes but the torrent has {torrent}")]
    StorageSize {
        /// Payload length of the storage layout.
        storage: u64,
        /// Payload length of the torrent.
        torrent: u64,
    },
    /// Starting a thread or a socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The QUIC endpoint could not be set up (keys, UDP socket).
    #[error(transparent)]
    Quic(#[from] quic::QuicError),
}

/// Where a torrent stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
pub enum TorrentState {
    /// Hashing existing data.
    #[default]
    Checking,
    /// Fetching pieces.
    Downloading,
    /// Every piece verified; serving.
    Seeding,
    /// Stopped before completion.
    Stopped,
    /// Stopped by an error (disk full, ...).
    Failed(String),
}

/// A snapshot for progress bars and summaries.
#[derive(Debug, Clone, Default)]
pub struct TorrentStatus {
    /// Lifecycle state.
    pub state: TorrentState,
    /// The machine's counters.
    pub stats: Stats,
    /// Pieces that were already verified on disk when the torrent was added.
    pub pieces_at_start: u32,
    /// The torrent task has exited.
    pub stopped: bool,
}

/// Options for [`Session::add_torrent`].
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Peers to dial at once.
    pub peers: Vec<SocketAddr>,
    /// Trust the data as complete without hashing it (an origin that just created the
    /// torrent from these files).
    pub assume_complete: bool,
    /// Override the session's machine config for this torrent.
    pub config: Option<TorrentConfig>,
    /// Do not announce to the torrent's trackers (static peers only).
    pub no_trackers: bool,
    /// Sees every piece that is verified and in storage: those the resume check finds and
    /// those written as they arrive (not with `assume_complete`, where nothing is read).
    pub piece_observer: Option<Arc<dyn crate::verify::PieceObserver>>,
}

/// A handle on one running torrent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    meta: Arc<TorrentMeta>,
    ctl: mpsc::UnboundedSender<Control>,
    status: watch::Receiver<TorrentStatus>,
}

impl TorrentHandle {
    /// The torrent.
    pub fn meta(&self) -> &TorrentMeta {
        &self.meta
    }

    /// Its info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.meta.info_hash
    }

    /// Hands candidate peers to the torrent (static `--peer` list, tracker replies).
    pub fn add_peers(&self, addrs: Vec<SocketAddr>) {
        if !addrs.is_empty() {
            let _ = self.ctl.send(Control::AddPeers(addrs));
        }
    }

    /// Our share of our fabric's cross-fabric fetches as a tracker counted it (ignored by
    /// the machine when `--fabric-share` was given).
    pub fn learn_fabric_share(&self, share: proto::picker::FabricShare) {
        let _ = self.ctl.send(Control::Inputs(vec![
            proto::torrent::Input::FabricShareLearned { share },
        ]));
    }

    /// The latest snapshot.
    pub fn status(&self) -> TorrentStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes with every snapshot (at most every 100 ms).
    pub fn watch(&self) -> watch::Receiver<TorrentStatus> {
        self.status.clone()
    }

    /// Waits until every piece is verified (`Ok`), or the torrent fails or stops first.
    pub async fn wait_complete(&self) -> Result<(), String> {
        let mut rx = self.status.clone();
        let s = rx
            .wait_for(|s| {
                s.stopped || matches!(s.state, TorrentState::Seeding | TorrentState::Failed(_))
            })
            .await
            .map_err(|_| "torrent task ended".to_string())?;
        match &s.state {
            TorrentState::Seeding => Ok(()),
            TorrentState::Failed(e) => Err(e.clone()),
            _ => Err("stopped before completion".into()),
        }
    }

    /// Stops the torrent (peers disconnected, storage synced) and waits for it.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Control::Stop(Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Inner {
    config: SessionConfig,
    our_id: PeerId,
    router: Arc<Router>,
    disk: Arc<DiskPool>,
    shutdown: CancellationToken,
    /// Tripped by a torrent task or disk thread that panicked.
    failure: Arc<Failure>,
    listen_addr: Option<SocketAddr>,
    own: Arc<OwnAddresses>,
    /// The QUIC endpoint (transport other than `Tcp`).
    quic: Option<Arc<Quic>>,
    torrents: Mutex<HashMap<InfoHash, TorrentHandle>>,
    announcers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The engine: a listener and its torrents.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl Session {
    /// Starts a session; with a bound `listener` it accepts incoming peers too.
    pub fn start(mut config: SessionConfig, listener: Option<TcpListener>) -> Result<Self, Error> {
        let our_id = config
            .peer_id
            .unwrap_or_else(|| PeerId::generate(&mut rand::thread_rng()));
        let listen_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        if let Some(a) = listen_addr {
            config.torrent.listen_port = a.port();
        }
        let own = Arc::new(OwnAddresses::new(listen_addr, config.announce_ip));
        // Dials leave from the listen IP, so peers see the address they can dial back.
        if config.socket.local_ip.is_none() {
            config.socket.local_ip = own.bind_ip();
        }
        let router = Arc::new(Router::default());
        let shutdown = CancellationToken::new();
        if let Some(l) = listener {
            tokio::spawn(listen::run(
                l,
                router.clone(),
                config.socket,
                config.listen,
                shutdown.child_token(),
            ));
        }
        let quic = if config.transport.listens_quic() {
            let at = listen_addr.unwrap_or_else(|| {
                SocketAddr::new(own.bind_ip().unwrap_or([0, 0, 0, 0].into()), 0)
            });
            let socket = quic::bind_udp(at).map_err(quic::QuicError::Io)?;
            let q = Quic::new(socket, &config.quic)?;
            if listen_addr.is_some() {
                config.torrent.quic_port = q.local_addr()?.port();
            }
            info!(udp = %q.local_addr()?, transport = %config.transport, "QUIC endpoint");
            tokio::spawn(quic::accept_loop(
                q.clone(),
                router.clone(),
                config.listen,
                shutdown.child_token(),
            ));
            Some(q)
        } else {
            None
        };
        let failure = Arc::new(Failure::default());
        let disk = Arc::new(DiskPool::new(config.disk_threads, failure.clone())?);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                our_id,
                router,
                disk,
                shutdown,
                failure,
                listen_addr,
                own,
                quic,
                torrents: Mutex::new(HashMap::new()),
                announcers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The address peers can reach us at, if listening.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listen_addr
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.our_id
    }

    /// The QUIC endpoint's UDP address, if the transport runs one.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.inner.quic.as_ref().and_then(|q| q.local_addr().ok())
    }

    /// QUIC connection and fallback counts (zero under `Transport::Tcp`).
    pub fn transport_counts(&self) -> TransportCounts {
        self.inner
            .quic
            .as_ref()
            .map(|q| q.counts())
            .unwrap_or_default()
    }

    /// Resolves once a torrent task or a disk thread has panicked, with which one and why
    /// (it was logged already). Programs wait on it and exit non-zero: the session cannot
    /// be trusted to serve on without that part.
    pub async fn failed(&self) -> String {
        self.inner.failure.wait().await
    }

    /// The torrents in the session.
    pub fn torrents(&self) -> Vec<TorrentHandle> {
        self.inner
            .torrents
            .lock()
            .expect("torrents lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every torrent's counters summed, and the announce outcomes (for `--metrics`).
    pub fn stats_snapshot(&self) -> crate::session_stats::SessionStats {
        crate::session_stats::SessionStats::collect(
            &self.torrents(),
            &self.inner.config.tracker.counters,
        )
    }

    /// Adds a torrent: checks which pieces `storage` already holds (unless told to trust
    /// it), then starts its task. Callable at any time while the session runs.
    pub async fn add_torrent(
        &self,
        meta: TorrentMeta,
        storage: Arc<dyn Storage>,
        opts: AddOptions,
    ) -> Result<TorrentHandle, Error> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let info_hash = meta.info_hash;
        if inner
            .torrents
            .lock()
            .expect("torrents lock")
            .contains_key(&info_hash)
        {
            return Err(Error::Duplicate(info_hash));
        }
        let storage_len = storage.layout().total_len();
        if storage_len != meta.lengths.total_len() {
            return Err(Error::StorageSize {
                storage: storage_len,
                torrent: meta.lengths.total_len(),
            });
        }
        let meta = Arc::new(meta);
        let have = if opts.assume_complete {
            Bitfield::full(meta.lengths.num_pieces())
        } else {
            let (m, s, threads) = (meta.clone(), storage.clone(), inner.config.check_threads);
            let observer = opts.piece_observer.clone();
            let t = Instant::now();
            let have = tokio::task::spawn_blocking(move || {
                check_existing(
                    &m.lengths,
                    &m.piece_hashes,
                    &*s,
                    threads,
                    None,
                    observer.as_deref(),
                )
            })
            .await
            .expect("resume check panicked");
            info!(
                %info_hash,
                have = have.count(),
                of = meta.lengths.num_pieces(),
                secs = t.elapsed().as_secs_f64(),
                "checked existing data"
            );
            have
        };
        let pieces_at_start = have.count();
        let meta_piece_len = meta.lengths.default_piece_len();
        let mut config = opts.config.unwrap_or_else(|| inner.config.torrent.clone());
        config.listen_port = inner.config.torrent.listen_port;
        config.quic_port = inner.config.torrent.quic_port;
        // The machine compares it with peers' ids (crossing dials, fabric rank): it must be
        // the id our handshakes carry.
        config.peer_id = inner.our_id;
        let seed = rand::random::<u64>();
        let now = Instant::now();
        let machine = Torrent::new(meta.lengths, have, config, now, seed);

        let (net_tx, net_rx) = mpsc::channel(inner.config.net_channel);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(TorrentStatus {
            state: TorrentState::Checking,
            stats: Stats::default(),
            pieces_at_start,
            stopped: false,
        });
        let route = Route {
            info_hash,
            our_id: inner.our_id,
            events: net_tx,
            keys: Arc::new(AtomicU64::new(0)),
            cancel: inner.shutdown.child_token(),
        };
        let handle = TorrentHandle {
            meta: meta.clone(),
            ctl: ctl_tx.clone(),
            status: status_rx,
        };
        {
            let mut t = inner.torrents.lock().expect("torrents lock");
            if t.contains_key(&info_hash) {
                return Err(Error::Duplicate(info_hash));
            }
            t.insert(info_hash, handle.clone());
        }
        inner.router.insert(route.clone());
        let driver = Driver {
            machine,
            meta,
            storage,
            observer: opts.piece_observer,
            disk: inner.disk.clone(),
            route,
            socket: inner.config.socket,
            quic: inner.quic.clone(),
            transport: inner.config.transport,
            fabric: inner.config.torrent.fabric.clone(),
            own: inner.own.clone(),
            net_rx,
            ctl_rx,
            ctl_tx,
            status: status_tx,
            max_queued_per_peer: inner.config.max_queued_per_peer,
            pending_writes: 0,
            max_pending_writes: inner
                .config
                .max_pending_writes
                .max(2 * meta_piece_len as usize),
            started: now,
        };
        let span = tracing::info_span!("torrent", %info_hash);
        let router = inner.router.clone();
        let failure = inner.failure.clone();
        tokio::spawn(
            async move {
                use futures::FutureExt;
                // The machine may be half-updated after a panic: it is not restarted, the
                // failure is reported and the program exits.
                if let Err(p) = std::panic::AssertUnwindSafe(driver.run())
                    .catch_unwind()
                    .await
                {
                    failure.trip(&format!("torrent {info_hash}"), &panic_message(&*p));
                }
                router.remove(&info_hash);
            }
            .instrument(span),
        );
        handle.add_peers(opts.peers);
        if !opts.no_trackers {
            let id = Identity {
                info_hash,
                peer_id: inner.our_id,
                port: inner.config.torrent.listen_port,
                fabric: inner.config.torrent.fabric.clone(),
                key: rand::random(),
                local_ip: inner.own.bind_ip(),
                announce_ip: inner.config.announce_ip,
            };
            if let Some(task) = announce::start(handle.clone(), id, inner.config.tracker.clone()) {
                inner.announcers.lock().expect("announcers lock").push(task);
            }
        }
        Ok(handle)
    }

    /// Stops every torrent (peers disconnected, storage synced) and the listener.
    pub async fn shutdown(&self) {
        let torrents = self.torrents();
        futures::future::join_all(torrents.iter().map(|t| t.stop())).await;
        // Announcers see their torrent stop and send `stopped` (bounded wait each).
        let announcers =
            std::mem::take(&mut *self.inner.announcers.lock().expect("announcers lock"));
        futures::future::join_all(announcers).await;
        self.inner.shutdown.cancel();
    }
}
