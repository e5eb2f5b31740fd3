//! How status reads on a terminal and in scripts: the contract lines of docs/ARCHITECTURE.md
//! (`Success Percentage: S Failure Percentage: F Pending Percentage: P`; per-host lines
//! `state timestamp host`), JSON as the API gives it, and a progress bar only on a TTY.

use crate::api::views::{CountsView, HostView};
use std::io::Write;

/// `100`, `66.67`, `0`: integers stay integers, others get two decimals.
pub fn pct(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.2}")
    }
}

pub fn progress_line(c: &CountsView) -> String {
    format!(
        "Success Percentage: {} Failure Percentage: {} Pending Percentage: {}",
        pct(c.success_pct),
        pct(c.failure_pct),
        pct(c.pending_pct)
    )
}

pub fn host_line(h: &HostView) -> String {
    format!("{} {} {}", h.state, h.timestamp, h.host)
}

/// Prints a line to stdout; a closed pipe (`| head`) ends the program quietly.
pub fn println_or_exit(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_wording() {
        let c = CountsView {
            total: 3,
            pending: 0,
            downloading: 1,
            verifying: 0,
            installing: 0,
            success: 2,
            failure: 0,
            success_pct: 200.0 / 3.0,
            failure_pct: 0.0,
            pending_pct: 100.0 / 3.0,
        };
        assert_eq!(
            progress_line(&c),
            "Success Percentage: 66.67 Failure Percentage: 0 Pending Percentage: 33.33"
        );
        assert_eq!(pct(100.0), "100");
    }
}
