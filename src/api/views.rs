//! The JSON the API answers with, shared by the server (serializes), the CLI (`status
//! --json` prints it as is) and the status page (reads it): one shape everywhere.

use crate::deploy::model::{DeploymentKind, Millis, StepKind};
use crate::store::{Counts, HostLine, StoredDeployment, VersionInfo};
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountsView {
    pub total: u64,
    pub pending: u64,
    pub downloading: u64,
    pub verifying: u64,
    pub installing: u64,
    pub success: u64,
    pub failure: u64,
    pub success_pct: f64,
    pub failure_pct: f64,
    /// Every host not yet success or failure.
    pub pending_pct: f64,
}

impl From<Counts> for CountsView {
    fn from(c: Counts) -> Self {
        let (s, f, p) = c.percentages();
        Self {
            total: c.total,
            pending: c.pending,
            downloading: c.downloading,
            verifying: c.verifying,
            installing: c.installing,
            success: c.success,
            failure: c.failure,
            success_pct: s,
            failure_pct: f,
            pending_pct: p,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub id: String,
    /// "deploy", "rollback" or "service".
    pub kind: String,
    /// For a rollback of a failed canary: the deployment it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a service command: which (`start`, `stop`, `restart`, `status`, `check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub product: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub fabrics: Vec<String>,
    pub hosts: String,
    /// running | awaiting_promotion | done | halted
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    pub auto_promote: bool,
    pub steps: Vec<StepKind>,
    /// Index into `steps` of the step under way (or the last one run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    pub created_at: String,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<Millis>,
    /// Overall, or of the one fabric asked for.
    pub progress: CountsView,
    pub by_fabric: BTreeMap<String, CountsView>,
}

impl DeploymentView {
    pub fn new(
        d: &StoredDeployment,
        progress: Counts,
        by_fabric: BTreeMap<String, Counts>,
    ) -> Self {
        let (kind, parent, action) = match &d.spec.kind {
            DeploymentKind::Deploy => ("deploy", None, None),
            DeploymentKind::Rollback { parent } => ("rollback", parent.clone(), None),
            DeploymentKind::Service { action } => ("service", None, Some(action.clone())),
        };
        Self {
            id: d.id.clone(),
            kind: kind.into(),
            parent,
            action,
            product: d.spec.product.clone(),
            version: d.spec.version.clone(),
            variant: d.spec.variant.clone(),
            fabrics: d.spec.fabrics.clone(),
            hosts: d.spec.hosts.clone(),
            state: d.phase.state().as_str().into(),
            halted_reason: d.phase.halted.clone(),
            rollback_id: d.phase.rollback_id.clone(),
            canary: d.spec.canary.map(|c| c.to_string()),
            auto_promote: d.spec.auto_promote,
            steps: d.steps.clone(),
            step: d.phase.step,
            created_at: rfc3339(d.created_at),
            created_at_ms: d.created_at,
            updated_at_ms: d.updated_at,
            finished_at_ms: d.phase.finished_at,
            progress: progress.into(),
            by_fabric: by_fabric.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.state == "done" || self.state == "halted"
    }
}

/// One host of a per-host list: state, timestamp, host (what `status -m` prints), and more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub state: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub timestamp_ms: Millis,
    pub host: String,
    pub fabric: String,
    pub version: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub canary: bool,
}

impl From<HostLine> for HostView {
    fn from(h: HostLine) -> Self {
        Self {
            state: h.state.as_str().into(),
            timestamp: rfc3339(h.timestamp),
            timestamp_ms: h.timestamp,
            host: h.host,
            fabric: h.fabric,
            version: h.version,
            bytes: h.bytes,
            reason: h.reason,
            canary: h.canary,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsView {
    pub hosts: Vec<HostView>,
}

/// Body of `POST /api/v1/products/{product}/versions`. Blobs are hex (the workspace carries
/// `hex`, and a torrent is small); the server derives info-hash and size from the torrent
/// itself rather than trusting the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub torrent_hex: String,
    pub manifest_hex: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// "registered", or "unchanged" when the same build was registered before.
    pub status: String,
    pub product: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub info_hash: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    pub name: String,
    pub versions: Vec<VersionInfo>,
}

/// `{"status":"submitted","id":"<id>"}`: the answer to deploy and rollback, printed by the
/// CLI exactly as the contract says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub status: String,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Answer of `POST /api/v1/revocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeReply {
    pub status: String,
    pub host: String,
    /// The one deployment revoked, or none for every deployment of the host.
    pub deployment: Option<String>,
    /// Credentials issued before this instant (ms since the epoch) are refused.
    pub revoked_before_ms: u64,
}
