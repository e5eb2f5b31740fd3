//! The origin side of publishing: an `instream-seed serve --watch DIR` picks up new
//! versions while it runs.
//!
//! Protocol of the watched directory (the publisher writes, the origin reads and answers):
//!
//! ```text
//! DIR/<key>/...            the payload, laid out as `get --out DIR/<key>` would put it
//!                          (`<name>` file or `<name>/...` directory of the torrent);
//!                          complete before the torrent appears
//! DIR/<key>.torrent        appears last, by rename: "this one is ready"
//! DIR/<key>.seeding        written by the origin once every piece checked out and the
//!                          torrent is in the session, which announces it to the
//!                          torrent's trackers (JSON: info_hash, name, pieces)
//! DIR/<key>.error          written instead if the data does not match the torrent
//! ```
//!
//! `<key>` is any name not starting with `.` (the publisher uses the info-hash in hex).
//! Files starting with `.` are work in progress and ignored. Removing `<key>.torrent`
//! stops seeding it. A torrent whose file changes after an error is tried again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::meta::TorrentMeta;
use crate::session::{AddOptions, Session, TorrentHandle};
use crate::storage::{Mode, OpenOptions, Storage};

/// Watch settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The watched directory.
    pub dir: PathBuf,
    /// How often it is listed. Default 250 ms.
    pub poll: Duration,
    /// Disk I/O back end for the seeded versions. Default auto.
    pub io_backend: crate::storage::IoBackend,
}

impl WatchConfig {
    /// Defaults for `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            poll: Duration::from_millis(250),
            io_backend: crate::storage::IoBackend::Auto,
        }
    }
}

/// Why one watched torrent could not be seeded (written to `<key>.error`).
#[derive(Debug, Error)]
enum LoadError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid torrent")]
    Torrent(#[from] proto::metainfo::Error),
    #[error("open the data")]
    Storage(#[from] crate::storage::Error),
    #[error("add to the session")]
    Session(#[from] crate::session::Error),
    #[error("the data does not match the torrent: {have} of {total} pieces verified")]
    Mismatch { have: u32, total: u32 },
}

struct Seeding {
    handle: TorrentHandle,
}

/// Watches `cfg.dir` and seeds what appears there in `session` until `shutdown`.
pub async fn watch(
    session: Session,
    cfg: WatchConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.dir)?;
    let mut seeding: HashMap<String, Seeding> = HashMap::new();
    let mut failed: HashMap<String, Option<SystemTime>> = HashMap::new();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(cfg.poll);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let present = match list_torrents(&cfg.dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dir = %cfg.dir.display(), error = %e, "cannot list the watched directory");
                continue;
            }
        };
        for (key, mtime) in &present {
            if seeding.contains_key(key) || failed.get(key).is_some_and(|m| m == mtime) {
                continue;
            }
            match load(&session, &cfg.dir, key, cfg.io_backend).await {
                Ok(handle) => {
                    let marker = serde_json::json!({
                        "info_hash": handle.info_hash().to_hex(),
                        "name": handle.meta().name,
                        "pieces": handle.meta().lengths.num_pieces(),
                    });
                    write_marker(&cfg.dir, key, "seeding", &marker.to_string());
                    let _ = std::fs::remove_file(cfg.dir.join(format!("{key}.error")));
                    tracing::info!(%key, info_hash = %handle.info_hash(), "seeding a new version");
                    failed.remove(key);
                    seeding.insert(key.clone(), Seeding { handle });
                }
                Err(e) => {
                    let line = exit::error_chain(&e);
                    tracing::warn!(%key, error = %line, "cannot seed");
                    write_marker(&cfg.dir, key, "error", &line);
                    failed.insert(key.clone(), *mtime);
                }
            }
        }
        let gone: Vec<String> = seeding
            .keys()
            .filter(|k| !present.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(s) = seeding.remove(&key) {
                tracing::info!(%key, "torrent removed; stop seeding it");
                s.handle.stop().await;
                let _ = std::fs::remove_file(cfg.dir.join(format!("{key}.seeding")));
            }
        }
    }
    drop(seeding);
    Ok(())
}

/// `<key>` -> modification time of `<key>.torrent`, for every ready torrent.
fn list_torrents(dir: &Path) -> std::io::Result<HashMap<String, Option<SystemTime>>> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if let Some(key) = name.strip_suffix(".torrent") {
            let mtime = e.metadata().ok().and_then(|m| m.modified().ok());
            out.insert(key.to_string(), mtime);
        }
    }
    Ok(out)
}

async fn load(
    session: &Session,
    dir: &Path,
    key: &str,
    backend: crate::storage::IoBackend,
) -> Result<TorrentHandle, LoadError> {
    let path = dir.join(format!("{key}.torrent"));
    let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path, source })?;
    let meta = TorrentMeta::from_torrent_bytes(&bytes)?;
    let storage: Arc<dyn Storage> = crate::storage::open_with(
        &dir.join(key),
        meta.layout()?,
        OpenOptions {
            mode: Mode::ReadOnly,
            ..Default::default()
        },
        backend,
    )?;
    let total = meta.lengths.num_pieces();
    // The data was hard-linked or copied by the publisher: check it rather than trust it.
    let handle = session
        .add_torrent(meta, storage, AddOptions::default())
        .await?;
    let have = handle.status().pieces_at_start;
    if have != total {
        handle.stop().await;
        return Err(LoadError::Mismatch { have, total });
    }
    Ok(handle)
}

fn write_marker(dir: &Path, key: &str, kind: &str, text: &str) {
    let tmp = dir.join(format!(".{key}.{kind}.tmp"));
    let dest = dir.join(format!("{key}.{kind}"));
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &dest)) {
        tracing::warn!(path = %dest.display(), error = %e, "cannot write marker");
    }
}
