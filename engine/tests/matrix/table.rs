//! The matrix as a Markdown table (client × direction × tracker: pass/fail, MB/s), written
//! to `<target dir>/interop-matrix.md` and printed; docs/INTEROP.md shows a copy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::cell::{Failure, Measured, PAYLOAD_LEN, PIECE_LEN};

/// One row: a cell and how it went.
pub struct Row {
    pub id: String,
    pub client: String,
    pub flow: String,
    pub tracker: String,
    pub proto: &'static str,
    pub result: Result<Measured, Failure>,
}

/// `<target dir>/interop-matrix.md` (the parent of cargo's per-test scratch dir).
pub fn path() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("interop-matrix.md")
}

/// The table, with a header saying what a cell moved and how MB/s is taken.
pub fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Payload {:.1} MiB ({} pieces of {} KiB, the last one short), each host on its own \
         address in one network namespace; MB/s is the payload over the wall time from the \
         leecher's start to its last verified byte, start-up and announce included.\n",
        PAYLOAD_LEN as f64 / (1024.0 * 1024.0),
        PAYLOAD_LEN.div_ceil(PIECE_LEN),
        PIECE_LEN / 1024
    );
    let _ = writeln!(
        s,
        "| client | direction | tracker | protocol | result | MB/s |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let (result, rate) = match &r.result {
            Ok(m) => ("pass".to_string(), format!("{:.1}", m.mb_per_s())),
            Err(f) => (format!("FAIL: {}", one_line(&f.reason)), "–".to_string()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.client, r.flow, r.tracker, r.proto, result, rate
        );
    }
    s
}

/// A reason fit for a table cell: one line, no pipes, at most 200 characters.
fn one_line(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or("").replace('|', "/");
    if line.chars().count() > 200 {
        line.chars().take(197).collect::<String>() + "..."
    } else {
        line
    }
}
