//! One snapshot of a whole session's counters (every torrent's machine stats summed, plus
//! the announce outcomes its tracker clients share), and its Prometheus text for the
//! `--metrics` endpoint of the programs.
//!
//! Counters stay monotonic as long as the session keeps a stopped torrent's handle (it
//! does: a handle's status watch holds its final snapshot), so a scraper never sees one go
//! down when an origin stops seeding a version.

use proto::prometheus::Exposition;

use crate::session::{TorrentHandle, TorrentState};
use crate::tracker_client::AnnounceCounters;

/// A session's counters at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Torrents checking their data.
    pub torrents_checking: u64,
    /// Torrents fetching pieces.
    pub torrents_downloading: u64,
    /// Torrents with every piece, serving.
    pub torrents_seeding: u64,
    /// Torrents stopped (by request or by an error).
    pub torrents_stopped: u64,
    /// Peers connected now, over all torrents.
    pub peers_connected: u64,
    /// Peers banned, ever.
    pub peers_banned: u64,
    /// Payload bytes sent in `piece` messages.
    pub uploaded_bytes: u64,
    /// Payload bytes received in `piece` messages (wasted ones included).
    pub downloaded_bytes: u64,
    /// Bytes received for pieces that failed their hash or arrived twice.
    pub wasted_bytes: u64,
    /// Pieces that failed their hash check.
    pub piece_verification_failures: u64,
    /// Announces a tracker answered.
    pub announces: u64,
    /// Announces that failed (timeout, refusal, I/O).
    pub announce_errors: u64,
}

impl SessionStats {
    /// Sums the torrents' latest snapshots and reads the announce counters.
    pub fn collect(torrents: &[TorrentHandle], announces: &AnnounceCounters) -> Self {
        let mut s = Self {
            announces: announces.ok(),
            announce_errors: announces.failed(),
            ..Self::default()
        };
        for t in torrents {
            let st = t.status();
            let state = if st.stopped {
                &mut s.torrents_stopped
            } else {
                match st.state {
                    TorrentState::Checking => &mut s.torrents_checking,
                    TorrentState::Downloading => &mut s.torrents_downloading,
                    TorrentState::Seeding => &mut s.torrents_seeding,
                    TorrentState::Stopped | TorrentState::Failed(_) => &mut s.torrents_stopped,
                }
            };
            *state += 1;
            let x = &st.stats;
            if !st.stopped {
                s.peers_connected += x.peers_connected as u64;
            }
            s.peers_banned += x.peers_banned as u64;
            s.uploaded_bytes += x.bytes_uploaded;
            s.downloaded_bytes += x.bytes_downloaded;
            s.wasted_bytes += x.bytes_wasted;
            s.piece_verification_failures += u64::from(x.hash_failures);
        }
        s
    }

    /// The Prometheus text exposition, every name under `prefix` (`instream_seed`).
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let n = |name: &str| format!("{prefix}_{name}");
        let mut e = Exposition::new();
        e.counter(
            &n("uploaded_bytes_total"),
            "Payload bytes served to peers (piece messages sent).",
            self.uploaded_bytes,
        )
        .counter(
            &n("downloaded_bytes_total"),
            "Payload bytes received from peers (piece messages, wasted ones included).",
            self.downloaded_bytes,
        )
        .counter(
            &n("wasted_bytes_total"),
            "Bytes received for pieces that failed their hash or arrived twice.",
            self.wasted_bytes,
        )
        .counter(
            &n("piece_verification_failures_total"),
            "Pieces whose SHA-1 did not match the torrent.",
            self.piece_verification_failures,
        )
        .counter(
            &n("announces_total"),
            "Tracker announces answered.",
            self.announces,
        )
        .counter(
            &n("announce_errors_total"),
            "Tracker announces that timed out, were refused or could not be sent.",
            self.announce_errors,
        )
        .counter(
            &n("peers_banned_total"),
            "Peers banned (bad data, protocol violations).",
            self.peers_banned,
        )
        .gauge(
            &n("connected_peers"),
            "Peer connections open now, over all torrents.",
            self.peers_connected,
        )
        .family(
            &n("torrents"),
            "Torrents in the session, by state.",
            "gauge",
            &[
                (&[("state", "checking")], self.torrents_checking),
                (&[("state", "downloading")], self.torrents_downloading),
                (&[("state", "seeding")], self.torrents_seeding),
                (&[("state", "stopped")], self.torrents_stopped),
            ],
        );
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_once_with_its_unit_and_kind() {
        let s = SessionStats {
            uploaded_bytes: 7,
            torrents_seeding: 2,
            ..SessionStats::default()
        };
        let text = s.to_prometheus("instream_seed");
        assert!(text.contains(
            "# TYPE instream_seed_uploaded_bytes_total counter\ninstream_seed_uploaded_bytes_total 7\n"
        ));
        assert!(text.contains("instream_seed_torrents{state=\"seeding\"} 2\n"));
        assert!(text.contains("# TYPE instream_seed_connected_peers gauge\n"));
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
        let all = names.len();
        names.dedup();
        assert_eq!(names.len(), all, "a family named twice: {text}");
        for l in &types {
            let (name, kind) = (l.split(' ').nth(2).unwrap(), l.split(' ').nth(3).unwrap());
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "counters and only counters end in _total: {l}"
            );
        }
    }
}
