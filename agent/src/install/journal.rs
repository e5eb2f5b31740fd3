//! The activation journal: `<root>/products/<product>/activation.json`, one record of the
//! activation in progress (or the last one), rewritten atomically and fsynced *before* each
//! step starts, so that whatever kills the agent, the next run knows exactly how far the
//! host got: `verified` (the version is on disk and verified; the old one may be stopping),
//! `stopped_old`, `switched` (the link names the new version; its `start` may not have run),
//! `started`, `healthy` (done), and on failure `rolling_back` then `rolled_back`.
//!
//! Only [`super::Installer`]'s activation writes it, under the product lock.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{InstallError, Result, io_err, write_atomic};

/// How far an activation got. Each step is recorded before the work that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStep {
    /// The target is on disk and verified; next: `stop` of the old version.
    Verified,
    /// The old version's `stop` ran; next: the link switch.
    StoppedOld,
    /// `current` names the target; next: its `start`.
    Switched,
    /// The target's `start` ran; next: `health`.
    Started,
    /// `health` passed: the activation is complete.
    Healthy,
    /// The activation failed (`reason`); next: stop the target, switch back, start the old.
    RollingBack,
    /// The old version is active (and started) again: complete.
    RolledBack,
}

impl JournalStep {
    /// Nothing is left to do after this step.
    pub fn is_final(self) -> bool {
        matches!(self, JournalStep::Healthy | JournalStep::RolledBack)
    }

    /// The journal's name for the step (as in the file).
    pub fn as_str(self) -> &'static str {
        match self {
            JournalStep::Verified => "verified",
            JournalStep::StoppedOld => "stopped_old",
            JournalStep::Switched => "switched",
            JournalStep::Started => "started",
            JournalStep::Healthy => "healthy",
            JournalStep::RollingBack => "rolling_back",
            JournalStep::RolledBack => "rolled_back",
        }
    }
}

/// One activation's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The version being activated.
    pub target: String,
    /// The version active when it began (None on a first install).
    pub previous: Option<String>,
    /// The last step recorded.
    pub step: JournalStep,
    /// Why it is rolling back (with `rolling_back` and `rolled_back`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the step was recorded, Unix seconds.
    pub at_unix: u64,
}

/// The journal file of the product directory `pdir`.
pub(super) fn path(pdir: &Path) -> PathBuf {
    pdir.join("activation.json")
}

/// Reads the journal; None if there is none.
pub(super) fn load(pdir: &Path) -> Result<Option<Journal>> {
    let p = path(pdir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| InstallError::Corrupt {
                path: p,
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &p)(e)),
    }
}

/// Records `j` durably (write to a temporary file, fsync, rename).
pub(super) fn record(pdir: &Path, j: &Journal) -> Result<()> {
    write_atomic(
        &path(pdir),
        &serde_json::to_vec_pretty(j).expect("journal serializes"),
    )?;
    super::sync_dir(pdir);
    Ok(())
}
