//! The agent's two uses of the engine: download one torrent into a work directory through
//! the swarm (peers from the torrent's trackers), and afterwards seed the installed version
//! read-only from its version directory.
//!
//! The session announces each torrent to the trackers its torrent names (engine::announce),
//! with the tighter timing of [`fleet_tracker_config`].
//!
//! They are two sessions on purpose: the download writes through read-write descriptors,
//! and a file open for writing cannot be executed (ETXTBSY), so the download session is shut
//! down and its storage dropped before the version's hooks and programs run; seeding then
//! reads the installed files through read-only descriptors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;

use engine::meta::TorrentMeta;
use engine::session::{AddOptions, Session, SessionConfig, TorrentHandle, TorrentState};
use engine::storage::{Mode, OpenOptions, Storage};
use engine::tracker_client::ClientConfig;
use engine::verify::PieceObserver;

/// Errors of downloading or seeding.
#[derive(Debug, Error)]
pub enum SwarmError {
    /// Storage could not be prepared.
    #[error("prepare files under {dir}")]
    Storage {
        /// Where.
        dir: String,
        /// Why.
        #[source]
        source: engine::storage::Error,
    },
    /// The listener could not be bound.
    #[error("bind peer listener {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The session refused.
    #[error("start the torrent")]
    Session(#[from] engine::session::Error),
    /// The torrent names no tracker, so no peer can be found.
    #[error("the torrent names no tracker")]
    NoTracker,
    /// The torrent failed (disk full, ...).
    #[error("download failed: {0}")]
    Failed(String),
    /// Not complete in time.
    #[error("download timed out after {secs}s with {have} of {total} bytes")]
    Timeout {
        /// Limit.
        secs: u64,
        /// Bytes verified.
        have: u64,
        /// Payload.
        total: u64,
    },
    /// Asked to stop.
    #[error("interrupted during download ({have} of {total} bytes)")]
    Interrupted {
        /// Bytes verified.
        have: u64,
        /// Payload.
        total: u64,
    },
}

/// Announce settings for hosts inside one deployment: tighter than the client's defaults,
/// because a fleet's swarm forms within seconds and a host waiting 10 s for its next peer
/// list shows up in the fanout time.
pub fn fleet_tracker_config() -> ClientConfig {
    ClientConfig {
        udp_initial_timeout: Duration::from_secs(2),
        udp_max_retries: 3,
        http_timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
        min_interval: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

/// This host as a peer of the swarm: its listener, fabric, tracker client and transport.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Peer listener address (port 0: any).
    pub listen: SocketAddr,
    /// Our fabric, told to the tracker and to peers.
    pub fabric: Option<String>,
    /// Our share of cross-fabric work, if the dispatcher told us.
    pub fabric_share: Option<proto::picker::FabricShare>,
    /// Announce client settings.
    pub tracker: ClientConfig,
    /// MSE/PE policy (`--encryption`).
    pub encryption: proto::mse::Policy,
    /// Disk I/O back end (`--io-backend`).
    pub io_backend: engine::storage::IoBackend,
    /// Transport to other instream peers and the QUIC keys (`--transport`).
    pub transport: engine::programs::TransportArgs,
    /// The address trackers should list us under (`--announce-ip`); see
    /// `SessionConfig::announce_ip`.
    pub announce_ip: Option<std::net::IpAddr>,
}

/// A finished download's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transfer {
    /// Payload bytes received from peers (0 when everything was on disk).
    pub downloaded: u64,
    /// Bytes sent to peers.
    pub uploaded: u64,
}

async fn start_session(cfg: &PeerConfig) -> Result<Session, SwarmError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SwarmError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let mut config = SessionConfig::default();
    config.torrent.fabric = cfg.fabric.clone();
    config.torrent.fabric_share = cfg.fabric_share;
    config.tracker = cfg.tracker.clone();
    config.socket.encryption = cfg.encryption;
    config.announce_ip = cfg.announce_ip;
    cfg.transport.apply(&mut config);
    Ok(Session::start(config, Some(listener))?)
}

/// Downloads `meta` under `dir` (as `get --out dir` would lay it out), calling `progress`
/// with the payload bytes received from peers so far every `every` (not the bytes present:
/// data already on disk, such as a content-cache copy, was not downloaded, and a status
/// event's byte count is what the host received), until complete, `timeout`, or `stop`.
/// `observer` sees every piece verified on disk (found there or written). On return the
/// session is shut down and every descriptor on the files is closed.
#[allow(clippy::too_many_arguments)]
pub async fn download(
    meta: TorrentMeta,
    dir: &Path,
    cfg: &PeerConfig,
    observer: Option<Arc<dyn PieceObserver>>,
    timeout: Duration,
    every: Duration,
    mut progress: impl FnMut(u64),
    stop: impl std::future::Future<Output = ()>,
) -> Result<Transfer, SwarmError> {
    let storage_err = |source| SwarmError::Storage {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        storage_err(engine::storage::Error::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source: e,
        })
    })?;
    if meta.trackers.is_empty() {
        return Err(SwarmError::NoTracker);
    }
    let total = meta.lengths.total_len();
    let storage: Arc<dyn Storage> = engine::storage::open_with(
        dir,
        meta.layout().map_err(storage_err)?,
        OpenOptions::default(),
        cfg.io_backend,
    )
    .map_err(storage_err)?;
    let weak = Arc::downgrade(&storage);
    let session = start_session(cfg).await?;
    let handle = session
        .add_torrent(
            meta,
            storage,
            AddOptions {
                piece_observer: observer,
                ..Default::default()
            },
        )
        .await?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline, stop);
    let mut last = u64::MAX;
    let result = loop {
        tokio::select! {
            r = handle.wait_complete() => break r.map_err(SwarmError::Failed),
            // A panicked disk thread lost an answer the torrent waits for: fail now.
            e = session.failed() => break Err(SwarmError::Failed(e)),
            _ = tick.tick() => {
                let received = handle.status().stats.bytes_downloaded;
                if received != last {
                    last = received;
                    progress(received);
                }
            }
            _ = &mut deadline => {
                break Err(SwarmError::Timeout {
                    secs: timeout.as_secs(),
                    have: handle.status().stats.bytes_have,
                    total,
                });
            }
            _ = &mut stop => {
                break Err(SwarmError::Interrupted { have: handle.status().stats.bytes_have, total });
            }
        }
    };
    let s = handle.status().stats;
    session.shutdown().await;
    drop(handle);
    drop(session);
    // The torrent task drops its storage as it exits; wait (bounded) for the last
    // descriptor so the files can be executed once installed.
    let t = tokio::time::Instant::now();
    while weak.strong_count() > 0 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    result.map(|()| Transfer {
        downloaded: s.bytes_downloaded,
        uploaded: s.bytes_uploaded,
    })
}

/// Seeds an installed version read-only from its directory (`dir` is the torrent's own
/// directory for a multi-file torrent, the directory holding `<name>` for a single file).
pub struct Seeder {
    session: Session,
    handle: TorrentHandle,
}

impl Seeder {
    /// Starts seeding; the data was verified just before, so it is not hashed again.
    pub async fn start(
        meta: TorrentMeta,
        dir: &Path,
        cfg: &PeerConfig,
    ) -> Result<Self, SwarmError> {
        let storage_err = |source| SwarmError::Storage {
            dir: dir.display().to_string(),
            source,
        };
        let layout = match meta.layout_inside() {
            Some(l) => l,
            None => meta.layout(),
        }
        .map_err(storage_err)?;
        let storage = engine::storage::open_with(
            dir,
            layout,
            OpenOptions {
                mode: Mode::ReadOnly,
                ..Default::default()
            },
            cfg.io_backend,
        )
        .map_err(storage_err)?;
        let session = start_session(cfg).await?;
        let handle = session
            .add_torrent(
                meta,
                Arc::new(storage),
                AddOptions {
                    assume_complete: true,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Self { session, handle })
    }

    /// Bytes sent to peers so far.
    pub fn uploaded(&self) -> u64 {
        self.handle.status().stats.bytes_uploaded
    }

    /// True while the torrent serves.
    pub fn is_seeding(&self) -> bool {
        matches!(self.handle.status().state, TorrentState::Seeding)
    }

    /// Stops seeding (the session announces `stopped`).
    pub async fn stop(self) {
        self.session.shutdown().await;
    }
}
