//! The status store: product registry, deployments, host events and per-host state. One
//! implementation today ([`sqlite::Store`]); the types here are what the API, the driver and
//! the CLI see.

pub mod handle;
pub mod migrations;
pub mod sqlite;

pub use handle::Db;
pub use sqlite::Store;

use crate::deploy::machine::HostRecord;
use crate::deploy::model::{DeploymentSpec, HostState, Millis, PhaseRecord, StepKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{product} {version}{} is already registered with another info-hash ({existing})", variant_suffix(.variant))]
    Conflict {
        product: String,
        version: String,
        variant: String,
        existing: String,
    },
    #[error("deployment {id} already exists")]
    DuplicateDeployment { id: String },
    #[error("no deployment {id}")]
    NoDeployment { id: String },
}

fn variant_suffix(v: &str) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(" (variant {v})")
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A product version to register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    pub product: String,
    pub version: String,
    /// '' for a build that serves every variant.
    pub variant: String,
    pub info_hash: String,
    pub size: u64,
    pub manifest: Vec<u8>,
    pub torrent: Vec<u8>,
}

/// A registered version, without its blobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub product: String,
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub variant: String,
    pub info_hash: String,
    pub size: u64,
    pub created_at: Millis,
}

/// Which stored blob of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blob {
    Manifest,
    Torrent,
}

/// A deployment as stored: enough to rebuild its machine.
#[derive(Clone, Debug)]
pub struct StoredDeployment {
    pub id: String,
    pub spec: DeploymentSpec,
    pub steps: Vec<StepKind>,
    pub phase: PhaseRecord,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Host counts by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub pending: u64,
    pub downloading: u64,
    pub verifying: u64,
    pub installing: u64,
    pub success: u64,
    pub failure: u64,
}

impl Counts {
    pub fn add(&mut self, state: HostState, n: u64) {
        self.total += n;
        *match state {
            HostState::Pending => &mut self.pending,
            HostState::Downloading => &mut self.downloading,
            HostState::Verifying => &mut self.verifying,
            HostState::Installing => &mut self.installing,
            HostState::Success => &mut self.success,
            HostState::Failure => &mut self.failure,
        } += n;
    }

    /// Hosts not yet terminal ("Pending Percentage" counts all of them).
    pub fn unfinished(&self) -> u64 {
        self.total - self.success - self.failure
    }

    /// (success, failure, pending) in percent of the total; all 0 for no hosts.
    pub fn percentages(&self) -> (f64, f64, f64) {
        if self.total == 0 {
            return (0.0, 0.0, 0.0);
        }
        let pct = |n: u64| n as f64 * 100.0 / self.total as f64;
        (pct(self.success), pct(self.failure), pct(self.unfinished()))
    }
}

/// Progress of a deployment, overall and per fabric.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub all: Counts,
    pub fabrics: BTreeMap<String, Counts>,
}

/// Which hosts a per-host list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostFilter {
    Success,
    Failure,
    /// Every host not yet terminal (pending, downloading, verifying, installing).
    Pending,
    All,
}

impl HostFilter {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "pending" => Self::Pending,
            "all" => Self::All,
            _ => return None,
        })
    }

    pub fn states(self) -> &'static [HostState] {
        match self {
            Self::Success => &[HostState::Success],
            Self::Failure => &[HostState::Failure],
            Self::Pending => &[
                HostState::Pending,
                HostState::Downloading,
                HostState::Verifying,
                HostState::Installing,
            ],
            Self::All => &HostState::ALL,
        }
    }
}

/// One line of a per-host list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLine {
    pub state: HostState,
    /// Milliseconds since the epoch: when the host reached this state.
    pub timestamp: Millis,
    pub host: String,
    pub fabric: String,
    pub version: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In the canary step?
    #[serde(default)]
    pub canary: bool,
}

/// One host of "what runs where" (`instream versions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningLine {
    pub host: String,
    pub fabric: String,
    /// The active version; `None`: the host never reported a success (unknown).
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Milliseconds since the epoch: when `version` became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Millis>,
    /// The deployment (or rollback) that activated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `deploy` or `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One change of a host's active version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    pub version: String,
    pub at: Millis,
    pub deployment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub fabric: String,
}

/// What an ingest did with each event of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Indices (into the batch) of events stored for the first time.
    pub new: Vec<usize>,
    pub duplicates: u64,
    /// (index, why) of events refused (unknown deployment or host).
    pub rejected: Vec<(usize, String)>,
}

/// Host rows of a deployment, for restoring its machine.
pub type HostRows = Vec<HostRecord>;
