//! The per-tracker tasks of one torrent: when to announce, which event to send, how long
//! to back off; [`TrackerClient`] is the session's handle on them.

use std::net::SocketAddr;
use std::time::Duration;

use proto::tracker::AnnounceEvent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

use super::config::ClientConfig;
use super::conn::{Identity, TrackerConn, TransferStats};
use super::error::ClientError;
use super::url::TrackerUrl;

/// How soon to announce again after the tracker's fabric share changed.
const SHARE_SETTLE: Duration = Duration::from_secs(2);
/// At most this many such early announces per tracker.
const SHARE_SETTLES: u32 = 5;

/// Peers one tracker returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeers {
    /// The tracker URL, as given.
    pub tracker: String,
    /// Peer addresses.
    pub peers: Vec<SocketAddr>,
    /// Seeders the tracker counts.
    pub seeders: u32,
    /// Leechers the tracker counts.
    pub leechers: u32,
    /// Our share of our fabric's cross-fabric fetches, from an instream tracker.
    pub fabric_share: Option<proto::picker::FabricShare>,
}

/// Messages from the [`TrackerClient`] to its per-tracker tasks.
#[derive(Debug, Clone, Copy)]
enum Command {
    Stats(TransferStats),
    Completed,
    AnnounceNow,
    Stop,
}

/// Announces one torrent to a set of trackers until stopped.
#[derive(Debug)]
pub struct TrackerClient {
    commands: Vec<mpsc::UnboundedSender<Command>>,
    tasks: JoinSet<()>,
}

impl TrackerClient {
    /// Parses `urls` (unusable ones are logged and skipped; an error only if none is
    /// usable), starts one task per tracker (each sends `started` at once) and returns the
    /// client and the channel of discovered peers. Must be called inside a tokio runtime.
    pub fn start(
        urls: &[String],
        id: Identity,
        stats: TransferStats,
        config: ClientConfig,
    ) -> Result<(Self, mpsc::Receiver<DiscoveredPeers>), ClientError> {
        let mut parsed = Vec::new();
        for u in urls {
            match TrackerUrl::parse(u) {
                Ok(t) => parsed.push((u.clone(), t)),
                Err(e) => tracing::warn!(url = %u, error = %e, "skipping tracker"),
            }
        }
        if parsed.is_empty() {
            return Err(ClientError::BadUrl {
                url: urls.join(" "),
            });
        }
        let (peers_tx, peers_rx) = mpsc::channel(64);
        let mut commands = Vec::new();
        let mut tasks = JoinSet::new();
        for (text, url) in parsed {
            let (tx, rx) = mpsc::unbounded_channel();
            commands.push(tx);
            let task = TrackerTask {
                name: text,
                conn: TrackerConn::new(url),
                cfg: config.clone(),
                id: id.clone(),
                stats,
                peers: peers_tx.clone(),
                commands: rx,
            };
            tasks.spawn(task.run());
        }
        Ok((Self { commands, tasks }, peers_rx))
    }

    fn send(&self, c: Command) {
        for tx in &self.commands {
            let _ = tx.send(c);
        }
    }

    /// New transfer counters for the next announces.
    pub fn update_stats(&self, stats: TransferStats) {
        self.send(Command::Stats(stats));
    }

    /// The download finished: announce `completed` now (with `left = 0`).
    pub fn completed(&self) {
        self.send(Command::Completed);
    }

    /// Ask every tracker for peers now, outside the interval.
    pub fn announce_now(&self) {
        self.send(Command::AnnounceNow);
    }

    /// Announces `stopped` to every tracker, waiting at most `within` for them.
    pub async fn stop(mut self, within: Duration) {
        self.send(Command::Stop);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(within, all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

struct TrackerTask {
    name: String,
    conn: TrackerConn,
    cfg: ClientConfig,
    id: Identity,
    stats: TransferStats,
    peers: mpsc::Sender<DiscoveredPeers>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl TrackerTask {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.cfg
            .min_backoff
            .saturating_mul(factor)
            .min(self.cfg.max_backoff)
    }

    /// Applies a command; returns true on `Stop`.
    fn apply(
        &mut self,
        c: Command,
        pending: &mut Option<AnnounceEvent>,
        next: &mut Instant,
    ) -> bool {
        match c {
            Command::Stats(s) => self.stats = s,
            Command::Completed => {
                self.stats.left = 0;
                // `started` not yet delivered: that first announce will carry left = 0.
                if *pending != Some(AnnounceEvent::Started) {
                    *pending = Some(AnnounceEvent::Completed);
                }
                *next = Instant::now();
            }
            Command::AnnounceNow => *next = Instant::now(),
            Command::Stop => return true,
        }
        false
    }

    async fn run(mut self) {
        let mut pending = Some(AnnounceEvent::Started);
        let mut next = Instant::now();
        let mut failures = 0u32;
        let mut announced = false;
        let mut last_share = None;
        let mut settles = 0u32;
        'outer: loop {
            tokio::select! {
                () = sleep_until(next) => {}
                c = self.commands.recv() => match c {
                    Some(c) => {
                        if self.apply(c, &mut pending, &mut next) { break 'outer; }
                        continue;
                    }
                    None => break 'outer,
                },
            }
            let event = pending.take().unwrap_or(AnnounceEvent::None);
            let stats = self.stats;
            let result = {
                let announce = self.conn.announce(&self.cfg, &self.id, event, stats);
                tokio::pin!(announce);
                loop {
                    tokio::select! {
                        r = &mut announce => break r,
                        c = self.commands.recv() => match c {
                            Some(Command::Stop) | None => break 'outer,
                            Some(Command::Stats(s)) => self.stats = s,
                            Some(Command::Completed) => {
                                self.stats.left = 0;
                                pending = Some(AnnounceEvent::Completed);
                            }
                            Some(Command::AnnounceNow) => {}
                        },
                    }
                }
            };
            self.cfg.counters.count(&result);
            match result {
                Ok(o) => {
                    failures = 0;
                    announced = true;
                    let mut interval = o.interval.max(self.cfg.min_interval);
                    // While a rollout's hosts are still arriving, the count of our fabric
                    // grows with each announce: ask again soon, a few times, so that early
                    // hosts do not keep a share computed from a handful of them.
                    if o.fabric_share.is_some() && o.fabric_share != last_share {
                        last_share = o.fabric_share;
                        if settles < SHARE_SETTLES {
                            settles += 1;
                            interval = interval.min(SHARE_SETTLE);
                        }
                    }
                    next = Instant::now() + interval;
                    if pending.is_some() {
                        next = Instant::now();
                    }
                    tracing::debug!(tracker = %self.name, peers = o.peers.len(), ?event, "announced");
                    let found = DiscoveredPeers {
                        tracker: self.name.clone(),
                        peers: o.peers,
                        seeders: o.seeders,
                        leechers: o.leechers,
                        fabric_share: o.fabric_share,
                    };
                    // Never block on a slow session: a later announce brings fresh peers.
                    match self.peers.try_send(found) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!(tracker = %self.name, "peer channel full; dropping a peer list");
                        }
                        // Nobody listens any more: the session is gone.
                        Err(mpsc::error::TrySendError::Closed(_)) => break 'outer,
                    }
                }
                Err(e) => {
                    failures += 1;
                    if event != AnnounceEvent::None && pending.is_none() {
                        pending = Some(event);
                    }
                    let wait = self.backoff(failures);
                    tracing::debug!(tracker = %self.name, error = %e, ?wait, "announce failed");
                    next = Instant::now() + wait;
                }
            }
        }
        if announced {
            // Best effort, single attempt: the caller bounds the wait.
            let r = self
                .conn
                .announce(&self.cfg, &self.id, AnnounceEvent::Stopped, self.stats)
                .await;
            self.cfg.counters.count(&r);
        }
    }
}
