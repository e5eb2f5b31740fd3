//! The Kafka transport of status events: one record per event on the status topic, which
//! the control server consumes (`instream serve --reporter kafka`).
//!
//! A record's key is `deployment/host`, so one host's events land in one partition and keep
//! their order there; its value is the event as JSON, exactly the shape one element of an
//! HTTP batch has. The producer is idempotent with `acks=all`: librdkafka retries a record
//! on its own, without duplicating it, for at most [`KafkaReportConfig::delivery_timeout`];
//! after that the record goes back to the reporter, which sends it again after a back-off
//! (a new record, which the server's store drops as a duplicate if the first one did land
//! after all). Sending only enqueues in librdkafka's memory, so it never waits on the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use thiserror::Error;

use super::{HostEvent, Sent};

/// The topic agents produce to and the control server consumes, unless told otherwise.
pub const DEFAULT_TOPIC: &str = "instream-status";

/// Where the agent produces its status events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaReportConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Status topic.
    pub topic: String,
    /// How long librdkafka retries one record (through broker restarts) before the reporter
    /// takes it back; default 10 s.
    pub delivery_timeout: Duration,
    /// The operator's librdkafka settings (`security.protocol`, `sasl.*`), the same the
    /// control server's clients get; set after ours, so they win.
    pub options: Vec<(String, String)>,
}

impl KafkaReportConfig {
    /// Brokers and topic, with the default delivery timeout.
    pub fn new(brokers: &str, topic: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            delivery_timeout: Duration::from_secs(10),
            options: Vec::new(),
        }
    }
}

/// Parses `KEY=VALUE` librdkafka settings (one per item; blank items are skipped).
pub fn parse_options<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, String> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| match o.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("Kafka option {o:?} is not KEY=VALUE")),
        })
        .collect()
}

/// The producer could not be created (a bad broker list or option).
#[derive(Debug, Error)]
#[error("create a Kafka producer for {brokers}")]
pub struct KafkaSinkError {
    brokers: String,
    #[source]
    source: KafkaError,
}

/// The record key (`deployment/host`), as the control server's consumer checks it.
pub use contract::record_key;

/// The record value of an event: its JSON, as in an HTTP batch.
pub fn record_value(e: &HostEvent) -> Vec<u8> {
    serde_json::to_vec(e).expect("a HostEvent always serializes")
}

/// Routes librdkafka's complaints to `tracing`: one line when the broker goes away and one
/// when it is back, not one per reconnect attempt.
struct Context {
    /// Shared with the sink, which sees deliveries succeed again.
    down: Arc<AtomicBool>,
}

/// librdkafka's log lines into `tracing`: warnings as warnings, except connection failures
/// (`FAIL`), which [`broker_unreachable`] errors sum up once per outage; the rest at debug.
/// Shared with the control server's consumer.
pub fn route_librdkafka_log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    if fac == "FAIL" || level as i32 > RDKafkaLogLevel::Warning as i32 {
        tracing::debug!(target: "librdkafka", "{fac} {log_message}");
    } else {
        tracing::warn!(target: "librdkafka", "{fac} {log_message}");
    }
}

/// True for the errors that mean "no broker reachable" (as opposed to a bad request).
pub fn broker_unreachable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve,
        )
    )
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        route_librdkafka_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !broker_unreachable(&error) {
            tracing::warn!(%error, %reason, "kafka producer error");
        } else if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(%reason, "kafka broker unreachable; status events are kept and retried");
        }
    }
}

/// An idempotent producer bound to the status topic.
pub struct KafkaSink {
    producer: FutureProducer<Context>,
    cfg: KafkaReportConfig,
    client_id: String,
    down: Arc<AtomicBool>,
}

impl KafkaSink {
    /// Creates the producer; it connects in the background (no broker needs to be up yet).
    pub fn new(cfg: &KafkaReportConfig, client_id: &str) -> Result<Self, KafkaSinkError> {
        let down = Arc::new(AtomicBool::new(false));
        Ok(Self {
            producer: Self::producer(cfg, client_id, down.clone())?,
            cfg: cfg.clone(),
            client_id: client_id.to_string(),
            down,
        })
    }

    fn producer(
        cfg: &KafkaReportConfig,
        client_id: &str,
        down: Arc<AtomicBool>,
    ) -> Result<FutureProducer<Context>, KafkaSinkError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                cfg.delivery_timeout.as_millis().max(1).to_string(),
            )
            // A few events per state change: send them soon, together.
            .set("linger.ms", "5")
            // Find a restarted broker within a second or two, not minutes.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "1000");
        for (k, v) in &cfg.options {
            config.set(k, v);
        }
        config
            .create_with_context(Context { down })
            .map_err(|source| KafkaSinkError {
                brokers: cfg.brokers.clone(),
                source,
            })
    }

    /// Produces the batch and waits for every record's acknowledgement (or its failure).
    pub(super) async fn deliver(&mut self, batch: &[HostEvent]) -> Sent {
        // An idempotent producer that lost its sequence (a broker that forgot it, say)
        // stops for good; a new one starts a new sequence, and the store dedupes.
        if let Some(fatal) = self.producer.client().fatal_error() {
            tracing::warn!(error = ?fatal, "kafka producer failed; starting a new one");
            match Self::producer(&self.cfg, &self.client_id, self.down.clone()) {
                Ok(p) => self.producer = p,
                Err(e) => {
                    return Sent::Retry {
                        undelivered: (0..batch.len()).collect(),
                        error: e.to_string(),
                    };
                }
            }
        }
        let topic = self.cfg.topic.as_str();
        let mut waiting = Vec::with_capacity(batch.len());
        let mut undelivered = Vec::new();
        let mut error = None;
        for (i, e) in batch.iter().enumerate() {
            let (key, value) = (record_key(e), record_value(e));
            let record = FutureRecord::to(topic).key(&key).payload(&value);
            match self.producer.send_result(record) {
                Ok(delivery) => waiting.push((i, delivery)),
                Err((e, _)) => {
                    undelivered.push(i);
                    error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        for (i, delivery) in waiting {
            let failed = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "the producer dropped the record".to_string(),
            };
            undelivered.push(i);
            error.get_or_insert(failed);
        }
        if undelivered.is_empty() {
            if self.down.swap(false, Ordering::Relaxed) {
                tracing::info!("kafka broker reachable again");
            }
            return Sent::All;
        }
        undelivered.sort_unstable();
        Sent::Retry {
            undelivered,
            error: format!(
                "produce to kafka topic {topic}: {}",
                error.unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostState;

    #[test]
    fn options_are_key_value_lines() {
        assert_eq!(
            parse_options([
                "security.protocol = sasl_plaintext",
                "",
                "sasl.password=a=b"
            ]),
            Ok(vec![
                ("security.protocol".into(), "sasl_plaintext".into()),
                ("sasl.password".into(), "a=b".into()),
            ])
        );
        assert_eq!(
            parse_options(["acks"]),
            Err("Kafka option \"acks\" is not KEY=VALUE".into())
        );
    }

    #[test]
    fn records_are_keyed_by_deployment_and_host_and_carry_the_event_json() {
        let e = HostEvent {
            deployment: "d-1".into(),
            host: "host-7".into(),
            fabric: "f2".into(),
            seq: 4,
            state: HostState::Installing,
            bytes: 1300,
            timestamp: 1_700_000_000_000,
            reason: None,
        };
        assert_eq!(record_key(&e), "d-1/host-7");
        assert_eq!(
            String::from_utf8(record_value(&e)).unwrap(),
            r#"{"deployment":"d-1","host":"host-7","fabric":"f2","seq":4,"state":"installing","bytes":1300,"timestamp":1700000000000}"#
        );
    }

    #[test]
    fn a_producer_needs_no_broker_to_start() {
        let cfg = KafkaReportConfig::new("127.0.0.1:1", DEFAULT_TOPIC);
        assert!(KafkaSink::new(&cfg, "test").is_ok());
    }
}
