//! Status through Kafka, end to end: `instream serve --reporter kafka` with the local
//! dispatcher, real agents (`instream-peer deploy --report-kafka`) producing their events to
//! a real Kafka-protocol broker (tansu, see support/kafka.rs), the server consuming them.
//! Also: the broker SIGKILLed and started again mid-deployment, and the control server
//! SIGKILLed while events wait in Kafka; in both, no event is lost and none counts twice.

mod support;

#[path = "support/kafka.rs"]
mod kafka;

use instream::deploy::model::{HostEvent, HostState};
use kafka::{Broker, events_in_topic};
use std::time::Duration;
use support::{Env, Server, TOKEN, wait_for};

const T: Duration = Duration::from_secs(120);
const TOPIC: &str = "instream-status";

/// `serve` arguments for the Kafka reporter. Tansu answers a JoinGroup only after half the
/// session timeout: keep it short so a (re)started server joins its group quickly.
fn kafka_args(broker: &Broker, group: &str) -> Vec<String> {
    [
        "--reporter",
        "kafka",
        "--kafka",
        &broker.bootstrap(),
        "--kafka-topic",
        TOPIC,
        "--kafka-group",
        group,
        "--kafka-option",
        "session.timeout.ms=2000",
        "--kafka-option",
        "heartbeat.interval.ms=500",
    ]
    .map(String::from)
    .to_vec()
}

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("host-{i}")).collect()
}

/// Each host's stored events are numbered 1..=n with none missing and end in success, and
/// the topic holds exactly those events (the store took them from Kafka, not elsewhere).
/// Returns the number of stored events.
fn check_events(env: &Env, broker: &Broker, id: &str, n_hosts: usize) -> usize {
    let store = instream::store::Store::open(&env.path().join("instream.db"), false).unwrap();
    let in_topic: Vec<HostEvent> = events_in_topic(&broker.bootstrap(), TOPIC)
        .into_iter()
        .filter(|e| e.deployment == id)
        .collect();
    let mut total = 0;
    for host in hosts(n_hosts) {
        let evs = store.events_of(id, &host).unwrap();
        let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            seqs.first()
                .map_or(vec![], |&f| (f..f + seqs.len() as u64).collect::<Vec<_>>()),
            "{host}: every event the agent numbered arrived, once"
        );
        assert!(seqs.len() >= 4, "{host}: {seqs:?}");
        assert_eq!(evs.last().unwrap().state, HostState::Success, "{host}");
        let mut from_kafka: Vec<u64> = in_topic
            .iter()
            .filter(|e| e.host == host)
            .map(|e| e.seq)
            .collect();
        from_kafka.sort_unstable();
        from_kafka.dedup();
        assert_eq!(
            from_kafka, seqs,
            "{host}: the store holds exactly the events produced to Kafka"
        );
        total += seqs.len();
    }
    total
}

fn metric(srv: &Server, name: &str) -> u64 {
    let (code, text) = srv.http("GET", "/metrics", Some(TOKEN), None);
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Waits until every host of `hosts` of fabric `fabric` is `installing` (held by the gate).
fn wait_installing(env: &Env, srv: &Server, id: &str, fabric: &str, n: usize) {
    wait_for(T, &format!("{fabric} hosts installing"), || {
        let out = env.ok(srv, &["status", "-t", id, "-m", "pending", "-f", fabric]);
        (out.lines().filter(|l| l.starts_with("installing ")).count() == n).then_some(())
    });
}

#[test]
fn status_through_kafka_reaches_success_on_every_host() {
    let env = Env::fleet(4, 2);
    let broker = Broker::start(&env.path().join("kafka"));
    let srv = env.serve_with_args("127.0.0.1:0", &[], &kafka_args(&broker, "instream-control"));
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*"]);
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["success"], 4, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let stored = check_events(&env, &broker, &id, 4);
    assert_eq!(metric(&srv, "instream_events_stored_total"), stored as u64);
    assert_eq!(metric(&srv, "instream_events_malformed_total"), 0);
    assert!(
        env.log().contains("consuming status events from kafka"),
        "{}",
        env.log()
    );
}

#[test]
fn broker_killed_and_restarted_mid_deployment_loses_no_event() {
    let env = Env::fleet(4, 2);
    let mut broker = Broker::start(&env.path().join("kafka"));
    let gate = env.path().join("gate");
    // The product's start hook waits for this file: f1's hosts stay "installing".
    let agent_env = [("INSTREAM_HOOK_GATE", gate.display().to_string())];
    let srv = env.serve_with_args(
        "127.0.0.1:0",
        &agent_env,
        &kafka_args(&broker, "instream-control"),
    );
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*"]);
    wait_installing(&env, &srv, &id, "f1", 2);

    broker.kill9();
    // f1's agents finish while no broker runs: their success events wait in the agents.
    std::fs::write(&gate, "go").unwrap();
    wait_for(
        T,
        "f1 hosts' start hooks done while the broker is down",
        || {
            ["host-1", "host-3"]
                .iter()
                .all(|h| env.history(h) == ["1"])
                .then_some(())
        },
    );
    broker.start_again();

    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["success"], 4, "{v}");
    check_events(&env, &broker, &id, 4);
    assert_eq!(metric(&srv, "instream_events_malformed_total"), 0);
    let log = env.log();
    assert!(
        log.contains("kafka broker unreachable") && log.contains("kafka broker reachable again"),
        "the outage is logged, and the recovery: {log}"
    );
    support::reliability_row(
        "Kafka broker SIGKILLed and restarted mid-deployment",
        "status is delayed, then complete",
        "nothing: every event the agents numbered arrived once",
    );
}

#[test]
fn server_killed_while_events_wait_in_kafka_loses_none_and_counts_none_twice() {
    let env = Env::fleet(4, 2);
    let broker = Broker::start(&env.path().join("kafka"));
    let gate = env.path().join("gate");
    let agent_env = [("INSTREAM_HOOK_GATE", gate.display().to_string())];
    let args = kafka_args(&broker, "instream-control");
    let srv = env.serve_with_args("127.0.0.1:0", &agent_env, &args);
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*"]);
    wait_installing(&env, &srv, &id, "f1", 2);
    let addr = srv.addr();
    srv.kill9();

    // f1's agents finish while the server is down: their events land in Kafka only.
    std::fs::write(&gate, "go").unwrap();
    wait_for(T, "f1 hosts' success events in kafka", || {
        let done = events_in_topic(&broker.bootstrap(), TOPIC)
            .into_iter()
            .filter(|e| e.deployment == id && e.state == HostState::Success)
            .count();
        (done == 2).then_some(())
    });
    let srv = env.serve_with_args(&addr, &agent_env, &args);
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["success"], 4, "{v}");
    let stored = check_events(&env, &broker, &id, 4);
    assert!(
        env.log().contains("resuming deployment"),
        "restart resumed the driver"
    );
    srv.kill9();

    // A server in a new consumer group reads the whole topic again: every record is a
    // duplicate of a stored event, and nothing changes.
    let records = events_in_topic(&broker.bootstrap(), TOPIC).len();
    assert!(
        records >= stored,
        "{records} records, {stored} stored events"
    );
    let srv = env.serve_with_args(
        "127.0.0.1:0",
        &agent_env,
        &kafka_args(&broker, "instream-replay"),
    );
    wait_for(T, "the whole topic replayed as duplicates", || {
        (metric(&srv, "instream_events_received_total") >= records as u64).then_some(())
    });
    assert_eq!(
        metric(&srv, "instream_events_duplicate_total"),
        records as u64
    );
    assert_eq!(metric(&srv, "instream_events_stored_total"), 0);
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    assert_eq!(check_events(&env, &broker, &id, 4), stored);
    support::reliability_row(
        "control server SIGKILLed while events wait in Kafka",
        "the restarted server re-reads the topic and finishes",
        "nothing: replayed events counted only as duplicates",
    );
}
