//! Status store benchmarks (issue 5 bars): ingest of host events in batches (bar: 20,000
//! events/s) and the `status` query for a 100,000-host deployment (bar: under 100 ms).
//!
//! The store is a real WAL file in a temp dir with the server's settings
//! (`synchronous=NORMAL`), so commits pay the WAL write. Run:
//! `cargo bench -p instream-bench --bench status_store`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use instream::deploy::model::{
    DeploymentKind, DeploymentSpec, Gate, HostEvent, HostState, StepKind, Target,
};
use instream::store::{HostFilter, Store};
use std::cell::Cell;
use std::time::Duration;

const HOSTS: usize = 100_000;
const FABRICS: usize = 10;
const BATCH: usize = 1_000;

fn spec() -> DeploymentSpec {
    DeploymentSpec {
        kind: DeploymentKind::Deploy,
        product: "app".into(),
        version: "2".into(),
        variant: None,
        fabrics: (1..=FABRICS).map(|f| format!("f{f}")).collect(),
        hosts: "*".into(),
        canary: None,
        auto_promote: true,
        parallel_fabrics: true,
        gate: Gate::default(),
        report_deadline_ms: 120_000,
        splay_secs: None,
        batch: None,
    }
}

/// A store holding one deployment `d1` of `HOSTS` hosts.
fn store_with_deployment(dir: &std::path::Path) -> Store {
    let mut s = Store::open(&dir.join("bench.db"), false).unwrap();
    let hosts: Vec<(Target, usize)> = (0..HOSTS)
        .map(|i| {
            (
                Target {
                    host: format!("host-{i}"),
                    fabric: format!("f{}", i % FABRICS + 1),
                    version: "2".into(),
                    previous: Some("1".into()),
                },
                0,
            )
        })
        .collect();
    s.create_deployment("d1", &spec(), &[StepKind::All], &hosts, 1)
        .unwrap();
    s
}

fn event(host: usize, seq: u64, state: HostState) -> HostEvent {
    HostEvent {
        deployment: "d1".into(),
        host: format!("host-{host}"),
        fabric: String::new(),
        seq,
        state,
        bytes: seq * 1000,
        timestamp: 1_700_000_000_000 + seq,
        reason: (state == HostState::Failure).then(|| "health check failed".into()),
    }
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with_deployment(dir.path());
    let round = Cell::new(0u64);
    let mut g = c.benchmark_group("status_store");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("ingest_batch_1000_events", |b| {
        b.iter_batched(
            || {
                // Fresh keys every batch: 1,000 consecutive hosts, a new sequence number each
                // time the host range wraps, states moving forward as agents' do.
                let r = round.get();
                round.set(r + 1);
                let base = (r as usize * BATCH) % HOSTS;
                let seq = r * BATCH as u64 / HOSTS as u64 + 1;
                let state = [
                    HostState::Downloading,
                    HostState::Verifying,
                    HostState::Installing,
                    HostState::Success,
                ][(seq as usize - 1) % 4];
                (0..BATCH)
                    .map(|j| event(base + j, seq, state))
                    .collect::<Vec<_>>()
            },
            |batch| {
                let out = store.ingest(&batch, 1).unwrap();
                assert_eq!(out.new.len(), BATCH);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn status(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_with_deployment(dir.path());
    // A realistic mid-deployment mix: 70% success, 1% failure, the rest in flight.
    let evs: Vec<HostEvent> = (0..HOSTS)
        .map(|i| {
            let st = match i % 100 {
                0 => HostState::Failure,
                1..=70 => HostState::Success,
                71..=80 => HostState::Installing,
                81..=90 => HostState::Downloading,
                _ => HostState::Pending,
            };
            event(i, 1, st)
        })
        .collect();
    for chunk in evs.chunks(10_000) {
        store.ingest(chunk, 1).unwrap();
    }
    let mut g = c.benchmark_group("status_store");
    g.sample_size(30);
    g.bench_function("status_progress_100k_hosts", |b| {
        b.iter(|| {
            let d = store.deployment("d1").unwrap().unwrap();
            let p = store.progress("d1").unwrap();
            assert_eq!(p.all.total, HOSTS as u64);
            assert_eq!(p.fabrics.len(), FABRICS);
            (d.id.len(), p.all.success)
        })
    });
    g.bench_function("status_failure_list_100k_hosts", |b| {
        b.iter(|| {
            let l = store.host_lines("d1", HostFilter::Failure, None).unwrap();
            assert_eq!(l.len(), HOSTS / 100);
            l.len()
        })
    });
    g.finish();
}

criterion_group!(benches, ingest, status);
criterion_main!(benches);
