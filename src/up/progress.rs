//! Live progress of `instream up`'s deployment: a progress bar on a terminal (hosts done
//! of total, hosts per state, bytes received and the aggregate rate), plain lines on
//! stderr otherwise (at most one a second, only when something changed).

use crate::api::views::{DeploymentView, HostsView};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    last_line: String,
    last_print: Option<Instant>,
    started: Instant,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.green/red} {pos}/{len} hosts {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Self {
            bar,
            last_line: String::new(),
            last_print: None,
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, view: &DeploymentView, hosts: &HostsView) {
        let c = &view.progress;
        let bytes: u64 = hosts.hosts.iter().map(|h| h.bytes).sum();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let step = match (view.step, view.steps.get(view.step.unwrap_or(0))) {
            (Some(_), Some(s)) => s.to_string(),
            _ => "starting".into(),
        };
        let msg = format!(
            "{step}: {} downloading, {} verifying, {} installing, {} failed; {} received ({}/s)",
            c.downloading,
            c.verifying,
            c.installing,
            c.failure,
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / secs) as u64),
        );
        if let Some(b) = &self.bar {
            b.set_length(c.total);
            b.set_position(c.success + c.failure);
            b.set_message(msg);
            return;
        }
        let line = format!("{}/{} hosts done, {msg}", c.success + c.failure, c.total);
        let due = self
            .last_print
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        // Compare without the rate, which changes every poll.
        let key = line.rsplit_once(" (").map(|(a, _)| a).unwrap_or(&line);
        if due && key != self.last_line {
            eprintln!("[{:6.1}s] {line}", secs);
            self.last_line = key.to_string();
            self.last_print = Some(Instant::now());
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
