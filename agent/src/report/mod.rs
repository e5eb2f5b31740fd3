//! Status events from a host to the control server, over one of two transports: HTTP
//! (`POST /api/v1/events`, [`http`]) or a Kafka topic the server consumes ([`kafka`]).
//!
//! Every state change becomes one event with a sequence number (`seq`; 0 is the server's
//! own), so `(deployment, host, seq)` names it and a re-sent event is a duplicate the server
//! drops. Numbers go on across agent runs: each run starts above everything an earlier run
//! on this host can have used ([`run_seq_base`]: the wall clock in microseconds, and never
//! below a floor kept on the host), so a re-run after a crash or reboot is never mistaken
//! for a re-delivery, and its events outrank the dead run's.
//! Events queue in memory and one task delivers them in batches: whatever accumulated while
//! the previous batch was in flight goes in the next one, so reporting never blocks the
//! download. A batch that fails is retried with back-off (100 ms doubling to 5 s) until it
//! is delivered or the reporter is finished and its deadline passes (at least once); a batch
//! the receiver refuses for good (HTTP 4xx) is dropped, since sending it again cannot
//! succeed. Order on the wire does not matter: the server keeps the maximum.

pub mod http;
pub mod kafka;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::control::ControlClient;

/// Sequence numbers one run reserves in the floor file; a run that uses more still counts
/// on (the clock has moved past them by the next run, unless it went backwards).
const SEQ_RESERVATION: u64 = 1 << 20;

/// The first sequence number of this agent run, minus one: the wall clock in microseconds,
/// but above `floor_file`'s number (a run's reservation, written before its first event), so
/// a clock that went backwards never reuses a number. Without a floor file (a bare `get`),
/// the clock alone.
pub fn run_seq_base(floor_file: Option<&std::path::Path>) -> u64 {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let Some(path) = floor_file else {
        return clock;
    };
    let floor = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let base = clock.max(floor);
    let tmp = path.with_extension("tmp");
    let saved = std::fs::write(&tmp, format!("{}\n", base + SEQ_RESERVATION))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = saved {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the event sequence floor");
    }
    base
}

/// Most events per batch (the server accepts up to 10,000 per POST).
const MAX_BATCH: usize = 1000;

/// Where status events go.
pub enum Transport {
    /// `POST /api/v1/events` on the control server.
    Http(ControlClient),
    /// Records on a Kafka topic that the control server consumes.
    Kafka(kafka::KafkaSink),
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Every event was delivered.
    All,
    /// The receiver refused the batch for good; sending it again cannot help.
    Refused(String),
    /// The events at these indices of the batch (ascending) were not delivered; try again.
    Retry {
        undelivered: Vec<usize>,
        error: String,
    },
}

impl Transport {
    async fn deliver(&mut self, batch: &[HostEvent]) -> Sent {
        match self {
            Transport::Http(client) => http::deliver(client, batch).await,
            Transport::Kafka(sink) => sink.deliver(batch).await,
        }
    }
}

/// The states and the event are the contract with the control server: one definition.
pub use contract::{HostEvent, HostState};

/// Who reports.
#[derive(Debug, Clone)]
pub struct ReportIdentity {
    /// Deployment id.
    pub deployment: String,
    /// Host name.
    pub host: String,
    /// Fabric name.
    pub fabric: String,
}

/// Queues events and delivers them from a background task.
pub struct Reporter {
    ident: ReportIdentity,
    seq: AtomicU64,
    /// The number before this run's first event.
    base: u64,
    tx: mpsc::UnboundedSender<HostEvent>,
    unsent: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
    finishing: Arc<tokio::sync::Notify>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Reporter {
    /// Starts the delivery task, numbering events from the wall clock (see
    /// [`run_seq_base`]). Must be called inside a tokio runtime.
    pub fn start(transport: Transport, ident: ReportIdentity) -> Self {
        Self::start_after(transport, ident, run_seq_base(None))
    }

    /// [`Reporter::start`], numbering this run's events from `base + 1`.
    pub fn start_after(transport: Transport, ident: ReportIdentity, base: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (unsent_tx, unsent) = watch::channel(0);
        let finishing = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(deliver_loop(transport, rx, unsent_tx, finishing.clone()));
        Self {
            ident,
            seq: AtomicU64::new(base),
            base,
            tx,
            unsent,
            task,
            finishing,
        }
    }

    /// Queues one event; returns its sequence number.
    pub fn report(&self, state: HostState, bytes: u64, reason: Option<String>) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            seq,
            ?state,
            bytes,
            reason = reason.as_deref().unwrap_or(""),
            "status"
        );
        let _ = self.tx.send(HostEvent {
            deployment: self.ident.deployment.clone(),
            host: self.ident.host.clone(),
            fabric: self.ident.fabric.clone(),
            seq,
            state,
            bytes,
            timestamp: now_ms(),
            reason,
        });
        seq
    }

    /// Events queued so far.
    pub fn sent_count(&self) -> u64 {
        self.seq.load(Ordering::Relaxed) - self.base
    }

    /// Waits up to `within` for every queued event to be delivered; returns how many were
    /// not (0 on success).
    pub async fn finish(self, within: Duration) -> usize {
        let Reporter {
            tx,
            task,
            unsent,
            finishing,
            ..
        } = self;
        drop(tx);
        finishing.notify_one();
        let mut task = task;
        match tokio::time::timeout(within, &mut task).await {
            Ok(_) => 0,
            Err(_) => {
                task.abort();
                let n = *unsent.borrow();
                tracing::warn!(unsent = n, "gave up delivering status events");
                n
            }
        }
    }
}

async fn deliver_loop(
    mut transport: Transport,
    mut rx: mpsc::UnboundedReceiver<HostEvent>,
    unsent: watch::Sender<usize>,
    finishing: Arc<tokio::sync::Notify>,
) {
    let mut queue: Vec<HostEvent> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    let mut open = true;
    loop {
        if queue.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(e) => queue.push(e),
                None => return,
            }
        }
        while open {
            match rx.try_recv() {
                Ok(e) => queue.push(e),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let _ = unsent.send(queue.len());
        let n = queue.len().min(MAX_BATCH);
        match transport.deliver(&queue[..n]).await {
            Sent::All => {
                queue.drain(..n);
                backoff = Duration::from_millis(100);
            }
            Sent::Refused(why) => {
                tracing::warn!(error = %why, events = n, "status events refused; dropping them");
                queue.drain(..n);
            }
            Sent::Retry { undelivered, error } => {
                // Keep what did not get through (in order) ahead of what queued since; the
                // transport already retried for its own budget. Go on trying (the receiver
                // may be restarting) until `finish` gives up on us.
                tracing::debug!(%error, undelivered = undelivered.len(), "delivering status events failed; will retry");
                let mut keep: Vec<HostEvent> = undelivered
                    .iter()
                    .filter(|&&i| i < n)
                    .map(|&i| queue[i].clone())
                    .collect();
                keep.extend(queue.drain(n..));
                queue = keep;
                let _ = unsent.send(queue.len());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = finishing.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        let _ = unsent.send(queue.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_the_control_api_expects() {
        let e = HostEvent {
            deployment: "d-1".into(),
            host: "h".into(),
            fabric: "f".into(),
            seq: 3,
            state: HostState::Failure,
            bytes: 7,
            timestamp: 9,
            reason: Some("bad".into()),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"deployment":"d-1","host":"h","fabric":"f","seq":3,"state":"failure","bytes":7,"timestamp":9,"reason":"bad"}"#
        );
    }
}
