//! A real Kafka-protocol broker for the tests: tansu 0.6.0 on 127.0.0.1 (a free port), its
//! log in SQLite under a test directory, so a broker killed with SIGKILL and started again
//! on the same directory keeps every acknowledged record. Started and stopped by PID (a
//! `testkit::Proc`: its group is killed on Drop).
//!
//! The binary is `tansu-0.6.0/bin/tansu` in the CI cache (installed by `.ci/run`) or `$TANSU_BIN`.
#![allow(dead_code)]

use crate::support::{Proc, free_port, wait_for};
use instream::deploy::model::HostEvent;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The tansu binary, or a panic that says how to get it.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return p.into();
    }
    let root = crate::support::ci_cache().join("tansu-0.6.0");
    let p = root.join("bin/tansu");
    assert!(
        p.is_file(),
        "the Kafka-protocol broker is missing: {} does not exist. Install it (about 10 minutes) \
with `cargo install tansu@0.6.0 --locked --no-default-features --features libsql --root {}` \
(what .ci/run does), or point TANSU_BIN at a tansu 0.6.0 binary",
        p.display(),
        root.display()
    );
    p
}

/// One tansu broker; killed on Drop.
pub struct Broker {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Proc>,
}

impl Broker {
    /// Starts a broker whose storage lives in `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Broker {
            bin: tansu_bin(),
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let url = self.url();
        let child = Command::new(&self.bin)
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            // Relative to the working directory: tansu 0.6.0 mangles an absolute sqlite:/// path.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(Proc::adopt("tansu", child));
        // Ready means a real Kafka round trip (ApiVersions + Metadata) works.
        wait_for(Duration::from_secs(30), "tansu to answer", || {
            if let Some(st) = self.child.as_mut().unwrap().try_wait() {
                panic!("tansu exited ({st}); its log:\n{}", self.log());
            }
            Command::new(&self.bin)
                .args(["topic", "list", "--broker", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
                .map(|_| ())
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Starts the broker again on the same directory and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        self.spawn();
    }
}

/// Every record of `topic` (all partitions, from the start), decoded as host events.
pub fn events_in_topic(bootstrap: &str, topic: &str) -> Vec<HostEvent> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "instream-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a test consumer");
    let t = Duration::from_secs(10);
    let md = c
        .fetch_metadata(Some(topic), t)
        .expect("fetch topic metadata");
    let mut tpl = TopicPartitionList::new();
    let mut want = 0;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = c
            .fetch_watermarks(topic, p.id(), t)
            .expect("fetch watermarks");
        if hi > lo {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))
                .unwrap();
            want += (hi - lo) as usize;
        }
    }
    let mut out = Vec::new();
    if want == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign partitions");
    wait_for(
        Duration::from_secs(30),
        &format!("{want} records of {topic}"),
        || {
            while let Some(r) = c.poll(Duration::from_millis(100)) {
                let m = r.expect("read a record");
                out.push(
                    instream::report::kafka::decode_record(m.key(), m.payload())
                        .expect("every record in the topic decodes"),
                );
            }
            (out.len() >= want).then_some(())
        },
    );
    out
}
