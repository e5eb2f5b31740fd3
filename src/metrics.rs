//! Process-wide counters for `/metrics` (Prometheus text exposition, hand-rolled). Plain
//! atomics: the hot path (ingest) only does relaxed adds.

use std::fmt::Write;
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
        let mut s = String::new();
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
        for (name, help, c) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP instream_deployments Deployments by state.\n# TYPE instream_deployments gauge"
        );
        for (state, n) in deployments_by_state {
            let _ = writeln!(s, "instream_deployments{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP instream_active_deployments Deployments the driver is working on.\n# TYPE instream_active_deployments gauge\ninstream_active_deployments {active_machines}"
        );
        s
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
