//! Status ingest: how host events reach the store and the deployment driver.
//!
//! Whatever carries events (HTTP POST, or a Kafka consumer: [`kafka`]), they go through
//! [`Ingest::ingest`]: validate, commit to the store in one transaction (write-ahead: nothing
//! is acknowledged before it is durable), then hand the events that were new to the driver.
//! Idempotency is the store's: the key (deployment, host, seq) names one event, so a
//! re-delivered batch is counted as duplicates and changes nothing.

pub mod http;
pub mod kafka;

use crate::deploy::driver::DriverHandle;
use crate::deploy::model::{HostEvent, now_millis, validate_name};
use crate::metrics::Metrics;
use crate::store::{Db, IngestOutcome, StoreError};
use futures::future::BoxFuture;
use std::sync::Arc;

/// Most events one batch may carry; bigger batches are refused, not truncated.
pub const MAX_BATCH: usize = 10_000;

/// Longest failure reason kept; longer ones are cut (hooks can print a lot).
pub const MAX_REASON: usize = 1024;

#[derive(Clone)]
pub struct Ingest {
    db: Db,
    driver: DriverHandle,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("batch of {len} events exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("store")]
    Store(#[from] StoreError),
}

impl Ingest {
    pub fn new(db: Db, driver: DriverHandle, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            driver,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stores a batch and forwards what was new. Malformed events are rejected one by one
    /// (with a reason); the rest of the batch still counts.
    pub async fn ingest(&self, mut events: Vec<HostEvent>) -> Result<IngestOutcome, IngestError> {
        if events.len() > MAX_BATCH {
            return Err(IngestError::TooLarge {
                len: events.len(),
                max: MAX_BATCH,
            });
        }
        Metrics::inc(&self.metrics.ingest_batches, 1);
        Metrics::inc(&self.metrics.events_received, events.len() as u64);
        // Validate first; keep the original indices so the answer refers to the batch.
        let mut bad = Vec::new();
        let mut good = Vec::with_capacity(events.len());
        let mut good_idx = Vec::with_capacity(events.len());
        for (i, mut e) in events.drain(..).enumerate() {
            if let Err(why) = validate_name("deployment id", &e.deployment)
                .and_then(|_| validate_name("host name", &e.host))
            {
                bad.push((i, why));
                continue;
            }
            if let Some(r) = &mut e.reason
                && r.len() > MAX_REASON
            {
                let mut cut = MAX_REASON;
                while !r.is_char_boundary(cut) {
                    cut -= 1;
                }
                r.truncate(cut);
            }
            good.push(e);
            good_idx.push(i);
        }
        let stored = good.clone();
        let out = self
            .db
            .write(move |s| s.ingest(&stored, now_millis()))
            .await?;
        let new: Vec<HostEvent> = out.new.iter().map(|&i| good[i].clone()).collect();
        let result = IngestOutcome {
            new: out.new.iter().map(|&i| good_idx[i]).collect(),
            duplicates: out.duplicates,
            rejected: bad
                .into_iter()
                .chain(out.rejected.into_iter().map(|(i, r)| (good_idx[i], r)))
                .collect(),
        };
        Metrics::inc(&self.metrics.events_new, result.new.len() as u64);
        Metrics::inc(&self.metrics.events_duplicate, result.duplicates);
        Metrics::inc(&self.metrics.events_rejected, result.rejected.len() as u64);
        if !new.is_empty() {
            self.driver.events(new).await;
        }
        Ok(result)
    }
}

/// A transport that delivers host events by itself (a Kafka consumer): it runs until
/// `shutdown` and pushes what it receives through [`Ingest`]. HTTP needs no such task:
/// its route calls [`Ingest`] directly.
pub trait ReportSource: Send + 'static {
    fn name(&self) -> &'static str;
    fn run(
        self: Box<Self>,
        ingest: Ingest,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, Result<(), ReportError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report source {name}: {detail}")]
    Source { name: &'static str, detail: String },
}
