//! Process-wide counters for `/metrics` (Prometheus text, through `proto::prometheus`). Plain
//! atomics: the hot path (ingest) only does relaxed adds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub struct Metrics {
    pub events_received: AtomicU64,
    pub events_new: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    pub events_malformed: AtomicU64,
    pub ingest_batches: AtomicU64,
    pub deployments_created: AtomicU64,
    pub rollbacks_created: AtomicU64,
    pub dispatch_jobs: AtomicU64,
    pub dispatch_errors: AtomicU64,
    pub hosts_timed_out: AtomicU64,
    pub http_unauthorized: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Renders the counters plus gauges computed by the caller (deployments by state).
    pub fn render(&self, deployments_by_state: &[(String, u64)], active_machines: u64) -> String {
        let counters: [(&str, &str, &AtomicU64); 12] = [
            (
                "instream_events_received_total",
                "Host events received (all, including duplicates).",
                &self.events_received,
            ),
            (
                "instream_events_stored_total",
                "Host events stored for the first time.",
                &self.events_new,
            ),
            (
                "instream_events_duplicate_total",
                "Host events dropped as duplicates of a stored key.",
                &self.events_duplicate,
            ),
            (
                "instream_events_rejected_total",
                "Host events refused (unknown deployment or host).",
                &self.events_rejected,
            ),
            (
                "instream_events_malformed_total",
                "Status records skipped because they do not decode (Kafka reporter).",
                &self.events_malformed,
            ),
            (
                "instream_ingest_batches_total",
                "Event batches ingested.",
                &self.ingest_batches,
            ),
            (
                "instream_deployments_created_total",
                "Deployments created (rollbacks included).",
                &self.deployments_created,
            ),
            (
                "instream_rollbacks_created_total",
                "Rollback deployments created.",
                &self.rollbacks_created,
            ),
            (
                "instream_dispatch_jobs_total",
                "Dispatcher jobs submitted.",
                &self.dispatch_jobs,
            ),
            (
                "instream_dispatch_errors_total",
                "Dispatcher jobs that failed to start.",
                &self.dispatch_errors,
            ),
            (
                "instream_hosts_timed_out_total",
                "Hosts failed by a report deadline or gate timeout.",
                &self.hosts_timed_out,
            ),
            (
                "instream_http_unauthorized_total",
                "API requests refused for a missing or wrong token.",
                &self.http_unauthorized,
            ),
        ];
        let mut out = proto::prometheus::Exposition::new();
        for (name, help, c) in counters {
            out.counter(name, help, c.load(Relaxed));
        }
        let by_state: Vec<([(&str, &str); 1], u64)> = deployments_by_state
            .iter()
            .map(|(state, n)| ([("state", state.as_str())], *n))
            .collect();
        let samples: Vec<(&[(&str, &str)], u64)> =
            by_state.iter().map(|(l, n)| (&l[..], *n)).collect();
        out.family(
            "instream_deployments",
            "Deployments by state.",
            "gauge",
            &samples,
        )
        .gauge(
            "instream_active_deployments",
            "Deployments the driver is working on.",
            active_machines,
        )
        .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_values() {
        let m = Metrics::default();
        Metrics::inc(&m.events_new, 3);
        let text = m.render(&[("done".into(), 2)], 1);
        assert!(text.contains(
            "# TYPE instream_events_stored_total counter\ninstream_events_stored_total 3\n"
        ));
        assert!(text.contains("instream_deployments{state=\"done\"} 2\n"));
        assert!(text.contains("instream_active_deployments 1\n"));
        // Every sample line is `name[{labels}] value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
    }
}
