//! The Kafka shape of event reporting: agents produce one record per host event on a status
//! topic (`instream-peer deploy --report-kafka`), and the control server consumes it here
//! (`instream serve --reporter kafka`) and pushes what it reads through [`Ingest`].
//!
//! Invariant: an offset is committed only after [`Ingest::ingest`] has committed every
//! event below it to the store. A server killed between the two reads those records again
//! on restart, and the store drops them as duplicates (events are keyed by deployment,
//! host, seq): nothing is lost, nothing is counted twice. A record that does not decode is
//! logged, counted (`instream_events_malformed_total`) and skipped: it can never decode
//! later, and holding the partition for it would stop every host behind it.
//!
//! While no broker answers the consumer keeps its place, logs that once (and once again when
//! the broker is back), and librdkafka reconnects by itself; records wait in Kafka.

use super::{Ingest, MAX_BATCH, ReportError, ReportSource};
use crate::deploy::model::HostEvent;
use crate::metrics::Metrics;
use agent::report::kafka::{broker_unreachable, route_librdkafka_log};
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The status topic, unless told otherwise (the agent's default too).
pub const DEFAULT_TOPIC: &str = "instream-status";

/// The consumer group of control servers.
pub const DEFAULT_GROUP: &str = "instream-control";

/// Largest record value taken; an event is a few hundred bytes (reasons are cut to 1 KiB).
pub const MAX_RECORD: usize = 64 * 1024;

/// Most records ingested (and committed) together.
const BATCH: usize = 1000;

/// After the first record of a batch, how long to wait for more.
const BATCH_LINGER: Duration = Duration::from_millis(20);

const _: () = assert!(BATCH <= MAX_BATCH);

/// `serve --reporter kafka` options.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers (`host:port,...`) for `--reporter kafka`; agents are told to
    /// produce their status events there.
    #[arg(long = "kafka", value_name = "BROKERS")]
    pub brokers: Option<String>,
    /// Status topic (created if missing).
    #[arg(long = "kafka-topic", default_value = DEFAULT_TOPIC, value_name = "TOPIC")]
    pub topic: String,
    /// Consumer group of the control server.
    #[arg(long = "kafka-group", default_value = DEFAULT_GROUP, value_name = "GROUP")]
    pub group: String,
    /// Partitions of the status topic when `serve` creates it.
    #[arg(long = "kafka-partitions", default_value_t = 3, value_name = "N")]
    pub partitions: u16,
    /// A librdkafka consumer setting (repeatable), e.g. `session.timeout.ms=6000`.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
}

impl KafkaArgs {
    /// The consumer's configuration; fails on a missing broker list or a malformed option.
    pub fn config(&self) -> Result<KafkaConfig, ReportError> {
        let bad = |detail: String| ReportError::Source {
            name: "kafka",
            detail,
        };
        let brokers = self
            .brokers
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| bad("--reporter kafka needs --kafka BROKERS".into()))?;
        let options = self
            .options
            .iter()
            .map(|o| match o.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
                _ => Err(bad(format!("--kafka-option {o:?} is not KEY=VALUE"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(KafkaConfig {
            brokers,
            topic: self.topic.clone(),
            group: self.group.clone(),
            partitions: self.partitions.max(1),
            options,
        })
    }
}

/// Where the control server reads status events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port,...`.
    pub brokers: String,
    /// Status topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Partitions of the topic if this server creates it.
    pub partitions: u16,
    /// librdkafka settings applied last (they win over ours).
    pub options: Vec<(String, String)>,
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no value")]
    NoValue,
    #[error("record value of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("record value is not a host event: {0}")]
    NotAnEvent(String),
    #[error("record key {key:?} does not name the event's deployment/host {expected:?}")]
    KeyMismatch { key: String, expected: String },
}

/// The record key agents use: `deployment/host` (one host's events share a partition);
/// the contract's, so the two sides cannot drift.
pub use contract::record_key;

/// Decodes one record: the value is one host event as JSON (as in an HTTP batch); a key, if
/// any, must be the event's [`record_key`].
pub fn decode_record(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<HostEvent, RecordError> {
    let value = value.ok_or(RecordError::NoValue)?;
    if value.len() > MAX_RECORD {
        return Err(RecordError::TooLarge {
            len: value.len(),
            max: MAX_RECORD,
        });
    }
    let event: HostEvent =
        serde_json::from_slice(value).map_err(|e| RecordError::NotAnEvent(e.to_string()))?;
    if let Some(key) = key {
        let expected = record_key(&event);
        if key != expected.as_bytes() {
            return Err(RecordError::KeyMismatch {
                key: String::from_utf8_lossy(key).into_owned(),
                expected,
            });
        }
    }
    Ok(event)
}

/// Consumes the status topic into the store; see the module header.
pub struct KafkaSource {
    cfg: KafkaConfig,
}

impl KafkaSource {
    pub fn new(cfg: KafkaConfig) -> Self {
        Self { cfg }
    }
}

impl ReportSource for KafkaSource {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn run(
        self: Box<Self>,
        ingest: Ingest,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, Result<(), ReportError>> {
        Box::pin(consume(self.cfg, ingest, shutdown))
    }
}

/// Logs librdkafka's complaints once per outage instead of once per reconnect attempt.
struct Context {
    brokers: String,
    down: AtomicBool,
}

impl Context {
    fn broker_down(&self, why: &str) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(brokers = %self.brokers, %why, "kafka broker unreachable: status events wait in Kafka until it is back");
        } else {
            tracing::debug!(%why, "kafka still unreachable");
        }
    }

    fn broker_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(brokers = %self.brokers, "kafka broker reachable again");
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        route_librdkafka_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if broker_unreachable(&error) {
            self.broker_down(reason);
        } else {
            tracing::warn!(%error, %reason, "kafka consumer error");
        }
    }
}

impl ConsumerContext for Context {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.broker_up(),
            // The next commit covers these offsets; until then a restart re-reads a few
            // records, which the store drops as duplicates.
            Err(e) => {
                tracing::warn!(error = %e, partitions = offsets.count(), "commit kafka offsets")
            }
        }
    }
}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "instream-serve")
        .set("group.id", &cfg.group)
        // Offsets are committed by hand, after the store has the events.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning: events produced before the server first
        // ran are still events.
        .set("auto.offset.reset", "earliest")
        // Find a restarted broker within a second or two, not minutes.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

/// Creates the topic unless it exists; retried until it works or the server stops.
async fn ensure_topic(
    cfg: &KafkaConfig,
    shutdown: &mut BoxFuture<'static, ()>,
) -> Result<bool, ReportError> {
    let source = |e: KafkaError| ReportError::Source {
        name: "kafka",
        detail: format!("create an admin client for {}: {e}", cfg.brokers),
    };
    let mut admin_cfg = ClientConfig::new();
    admin_cfg.set("bootstrap.servers", &cfg.brokers);
    // The operator's options (security.protocol, sasl.*) apply to every client we make:
    // against a SASL-only broker an admin client without them never connects.
    for (k, v) in &cfg.options {
        admin_cfg.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = admin_cfg.create().map_err(source)?;
    let topic = NewTopic::new(
        &cfg.topic,
        i32::from(cfg.partitions),
        TopicReplication::Fixed(1),
    );
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    loop {
        let outcome = tokio::select! {
            _ = &mut *shutdown => return Ok(false),
            r = admin.create_topics([&topic], &opts) => r,
        };
        let why = match outcome.map(|mut v| v.pop()) {
            Ok(Some(Ok(_))) => {
                tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, "created kafka status topic");
                return Ok(true);
            }
            Ok(Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))) => return Ok(true),
            Ok(Some(Err((_, code)))) => code.to_string(),
            Ok(None) => "no answer for the topic".to_string(),
            Err(e) => e.to_string(),
        };
        if !warned {
            warned = true;
            tracing::warn!(brokers = %cfg.brokers, topic = %cfg.topic, %why, "cannot reach kafka to check the status topic; retrying");
        }
        tokio::select! {
            _ = &mut *shutdown => return Ok(false),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Records read together: their events, and per partition the offset to commit after them.
#[derive(Default)]
struct Batch {
    events: Vec<HostEvent>,
    next_offsets: BTreeMap<i32, i64>,
    records: usize,
}

impl Batch {
    fn add(&mut self, msg: &impl Message, metrics: &Metrics) {
        self.records += 1;
        let next = self.next_offsets.entry(msg.partition()).or_insert(0);
        *next = (*next).max(msg.offset() + 1);
        match decode_record(msg.key(), msg.payload()) {
            Ok(e) => self.events.push(e),
            Err(why) => {
                Metrics::inc(&metrics.events_malformed, 1);
                tracing::warn!(partition = msg.partition(), offset = msg.offset(), %why, "skipping a malformed status record");
            }
        }
    }
}

async fn consume(
    cfg: KafkaConfig,
    ingest: Ingest,
    mut shutdown: BoxFuture<'static, ()>,
) -> Result<(), ReportError> {
    let fail = |what: &str, e: KafkaError| ReportError::Source {
        name: "kafka",
        detail: format!("{what}: {e}"),
    };
    let ctx = Context {
        brokers: cfg.brokers.clone(),
        down: AtomicBool::new(false),
    };
    let metrics = ingest.metrics().clone();
    let consumer: StreamConsumer<Context> = client_config(&cfg)
        .create_with_context(ctx)
        .map_err(|e| fail(&format!("create a kafka consumer for {}", cfg.brokers), e))?;
    if !ensure_topic(&cfg, &mut shutdown).await? {
        return Ok(());
    }
    consumer
        .subscribe(&[&cfg.topic])
        .map_err(|e| fail(&format!("subscribe to kafka topic {}", cfg.topic), e))?;
    tracing::info!(brokers = %cfg.brokers, topic = %cfg.topic, group = %cfg.group, "consuming status events from kafka");
    loop {
        let batch = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            b = next_batch(&consumer, &metrics) => b,
        };
        consumer.context().broker_up();
        // Until the store has the batch, nothing is committed: keep trying (the store can
        // be busy), and a restart re-reads it.
        let mut backoff = Duration::from_millis(100);
        loop {
            match ingest.ingest(batch.events.clone()).await {
                Ok(out) => {
                    tracing::debug!(
                        records = batch.records,
                        new = out.new.len(),
                        duplicates = out.duplicates,
                        rejected = out.rejected.len(),
                        "ingested status events from kafka"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "store status events from kafka; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &batch.next_offsets {
            tpl.add_partition_offset(&cfg.topic, partition, Offset::Offset(next))
                .map_err(|e| fail("build the offsets to commit", e))?;
        }
        // Async: the callback logs failures, and the next commit covers this one.
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "commit kafka offsets");
        }
    }
}

/// Waits for one record, then takes what else arrives within [`BATCH_LINGER`] (up to
/// [`BATCH`] records).
async fn next_batch(consumer: &StreamConsumer<Context>, metrics: &Metrics) -> Batch {
    let mut batch = Batch::default();
    loop {
        match consumer.recv().await {
            Ok(m) => {
                batch.add(&m, metrics);
                break;
            }
            Err(e) => {
                consumer.context().broker_down(&e.to_string());
                // Errors come back at once while the broker is away: do not spin on them.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let until = tokio::time::Instant::now() + BATCH_LINGER;
    while batch.records < BATCH {
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => batch.add(&m, metrics),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::HostState;
    use pretty_assertions::assert_eq;

    fn event() -> HostEvent {
        HostEvent {
            deployment: "d-1".into(),
            host: "host-7".into(),
            fabric: "f2".into(),
            seq: 4,
            state: HostState::Installing,
            bytes: 1300,
            timestamp: 1_700_000_000_000,
            reason: None,
        }
    }

    #[test]
    fn what_the_agent_produces_decodes_to_the_same_event() {
        // One type on both sides (the contract); the bytes are what the agent writes.
        let sent = event();
        let key = agent::report::kafka::record_key(&sent);
        let value = agent::report::kafka::record_value(&sent);
        assert_eq!(
            decode_record(Some(key.as_bytes()), Some(&value)),
            Ok(event())
        );
        let mut failed = sent.clone();
        failed.state = agent::report::HostState::Failure;
        failed.reason = Some("health hook: exit 1".into());
        let got = decode_record(
            Some(agent::report::kafka::record_key(&failed).as_bytes()),
            Some(&agent::report::kafka::record_value(&failed)),
        )
        .unwrap();
        assert_eq!(
            (got.state, got.reason.as_deref()),
            (HostState::Failure, Some("health hook: exit 1"))
        );
    }

    #[test]
    fn records_without_a_key_decode_too() {
        let value = serde_json::to_vec(&event()).unwrap();
        assert_eq!(decode_record(None, Some(&value)), Ok(event()));
    }

    #[test]
    fn malformed_records_are_named_not_panicked_on() {
        let good = serde_json::to_vec(&event()).unwrap();
        assert_eq!(
            decode_record(Some(b"d-1/host-7"), None),
            Err(RecordError::NoValue)
        );
        assert_eq!(
            decode_record(Some(b"d-1/host-8"), Some(&good)),
            Err(RecordError::KeyMismatch {
                key: "d-1/host-8".into(),
                expected: "d-1/host-7".into()
            })
        );
        let big = vec![b' '; MAX_RECORD + 1];
        assert_eq!(
            decode_record(None, Some(&big)),
            Err(RecordError::TooLarge {
                len: MAX_RECORD + 1,
                max: MAX_RECORD
            })
        );
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            br#"{"deployment":"d-1"}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    decode_record(None, Some(junk)),
                    Err(RecordError::NotAnEvent(_))
                ),
                "{junk:?}"
            );
        }
        // Every prefix of a good record fails cleanly.
        for n in 0..good.len() {
            assert!(decode_record(None, Some(&good[..n])).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn options_must_be_key_value_and_brokers_are_required() {
        let args = KafkaArgs {
            brokers: Some("127.0.0.1:9092".into()),
            topic: DEFAULT_TOPIC.into(),
            group: DEFAULT_GROUP.into(),
            partitions: 0,
            options: vec!["session.timeout.ms = 2000".into()],
        };
        let cfg = args.config().unwrap();
        assert_eq!(cfg.partitions, 1, "at least one partition");
        assert_eq!(
            cfg.options,
            vec![("session.timeout.ms".to_string(), "2000".to_string())]
        );
        let bad = KafkaArgs {
            options: vec!["session.timeout.ms".into()],
            ..args.clone()
        };
        assert!(bad.config().unwrap_err().to_string().contains("KEY=VALUE"));
        let none = KafkaArgs {
            brokers: None,
            ..args
        };
        assert!(
            none.config()
                .unwrap_err()
                .to_string()
                .contains("--kafka BROKERS")
        );
    }
}
