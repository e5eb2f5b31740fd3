//! One torrent's side of its announces: the task that wires a [`TrackerClient`] to a
//! torrent. It starts the client for the torrent's announce URLs, feeds the peers it
//! discovers to the torrent, keeps the transfer counters current, says `completed` when the
//! last piece lands and `stopped` when the torrent stops. (The client knows trackers, not
//! torrents; this file knows torrents, not trackers.)
//!
//! One task per torrent; it ends after the torrent task has ended and the `stopped`
//! announces went out (or a short deadline passed), so a shutdown never hangs on a dead
//! tracker.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use crate::session::{TorrentHandle, TorrentState, TorrentStatus};
use crate::tracker_client::{ClientConfig, Identity, TrackerClient, TransferStats};

/// How often the counters sent with announces are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How long a shutdown waits for `stopped` announces.
const STOP_WITHIN: Duration = Duration::from_secs(3);

fn transfer_stats(total: u64, s: &TorrentStatus) -> TransferStats {
    TransferStats {
        uploaded: s.stats.bytes_uploaded,
        downloaded: s.stats.bytes_downloaded,
        left: total.saturating_sub(s.stats.bytes_have),
    }
}

/// Starts announcing `handle`'s torrent; `None` if it has no usable tracker.
pub fn start(handle: TorrentHandle, id: Identity, config: ClientConfig) -> Option<JoinHandle<()>> {
    let urls = handle.meta().trackers.clone();
    if urls.is_empty() {
        return None;
    }
    let total = handle.meta().lengths.total_len();
    let mut watch = handle.watch();
    // One snapshot for the first announce and for whether it already said "complete": the
    // driver may publish Seeding at any moment, and a seed whose first announce carried the
    // pre-check `left` must still say `completed`, or the tracker counts it as a leecher.
    let initial = watch.borrow().clone();
    let first = transfer_stats(total, &initial);
    let (client, mut peers) = match TrackerClient::start(&urls, id, first, config) {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "no usable tracker");
            return None;
        }
    };
    let span = tracing::info_span!("announce", info_hash = %handle.info_hash());
    Some(tokio::spawn(
        async move {
            let mut completed = matches!(initial.state, TorrentState::Seeding);
            let mut tick = tokio::time::interval(STATS_EVERY);
            loop {
                tokio::select! {
                    p = peers.recv() => match p {
                        Some(d) => {
                            debug!(tracker = %d.tracker, n = d.peers.len(), "peers from tracker");
                            handle.add_peers(d.peers);
                            if let Some(share) = d.fabric_share {
                                handle.learn_fabric_share(share);
                            }
                        }
                        None => break,
                    },
                    r = watch.changed() => {
                        let s = watch.borrow_and_update().clone();
                        if r.is_err() || s.stopped {
                            client.update_stats(transfer_stats(total, &s));
                            break;
                        }
                        if !completed && s.state == TorrentState::Seeding {
                            completed = true;
                            client.update_stats(transfer_stats(total, &s));
                            client.completed();
                        }
                    }
                    _ = tick.tick() => client.update_stats(transfer_stats(total, &watch.borrow())),
                }
            }
            client.stop(STOP_WITHIN).await;
        }
        .instrument(span),
    ))
}
