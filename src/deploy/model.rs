//! The deployment vocabulary shared by the state machine, the store, the API and the CLI:
//! host states, host events, deployment specs and the small records the store keeps so that
//! a restarted server can rebuild a machine exactly where it stopped.
//!
//! Invariant: a host's current status is the *maximum* of the events received for it under
//! [`HostStatus::order_key`] (state rank, then sequence number). A maximum over a set does not
//! depend on arrival order or on duplicates, which is what makes ingest idempotent: the SQL
//! upsert in `store::sqlite` and [`HostStatus::apply`] implement the same rule.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The host states, the event and [`SERVER_SEQ`] are the contract with the agents
/// (`instream-agent-contract`): one definition, which both sides import. Time is always an
/// argument of the machine; the edge reads the clock ([`now_millis`]) and hands it in.
pub use contract::{HostEvent, HostState, Millis, SERVER_SEQ};

/// The wall clock in [`Millis`]; only edges (driver, API, CLI) call this.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A host's current status in a deployment: the winning event so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub state: HostState,
    /// Sequence number of the winning event; 0 with `Pending` means "never heard from".
    pub seq: u64,
    pub timestamp: Millis,
    /// Largest byte count ever reported (monotone, independent of which event wins).
    pub bytes: u64,
    pub reason: Option<String>,
}

impl HostStatus {
    /// A host nobody has heard from yet; `since` is when it became a target.
    pub fn pending(since: Millis) -> Self {
        Self {
            state: HostState::Pending,
            seq: 0,
            timestamp: since,
            bytes: 0,
            reason: None,
        }
    }

    /// The total order on which the winner is chosen.
    pub fn order_key(state: HostState, seq: u64) -> (u8, u64) {
        (state.rank(), seq)
    }

    /// Did any real report (from the host itself) ever arrive?
    pub fn heard(&self) -> bool {
        self.seq > SERVER_SEQ
    }

    /// Applies an event under the maximum rule; returns whether the winner changed.
    pub fn apply(&mut self, ev: &HostEvent) -> bool {
        self.bytes = self.bytes.max(ev.bytes);
        if Self::order_key(ev.state, ev.seq) > Self::order_key(self.state, self.seq) {
            self.state = ev.state;
            self.seq = ev.seq;
            self.timestamp = ev.timestamp;
            self.reason = ev.reason.clone();
            true
        } else {
            false
        }
    }
}

/// How many hosts the canary step takes from each fabric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Canary {
    /// N hosts of each fabric (fewer if the fabric is smaller).
    Hosts(u32),
    /// P percent of each fabric, rounded up, at least one host.
    Percent(f64),
}

impl Canary {
    /// Parses `N` or `P%`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("canary percentage {s:?} is not a number"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("canary percentage {s:?} must be in (0, 100]"));
            }
            Ok(Canary::Percent(p))
        } else {
            let n: u32 = s.parse().map_err(|_| {
                format!("canary {s:?} is neither a host count N nor a percentage P%")
            })?;
            if n == 0 {
                return Err("canary host count must be at least 1".into());
            }
            Ok(Canary::Hosts(n))
        }
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Canary::Hosts(n) => write!(f, "{n}"),
            Canary::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The rule a step must pass before the deployment moves on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    /// Fraction of the step's hosts that must succeed, 0.0..=1.0. Default 1.0.
    pub min_success_ratio: f64,
    /// Most failures a step may have and still pass. Default 0.
    pub max_failures: u32,
    /// Milliseconds from a step's start until its unfinished hosts count as failures.
    /// Default 30 minutes; 0 means no limit.
    pub timeout_ms: u64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_success_ratio: 1.0,
            max_failures: 0,
            timeout_ms: 30 * 60 * 1000,
        }
    }
}

impl Gate {
    /// Does a finished step with these counts pass?
    pub fn passes(&self, total: u64, success: u64, failure: u64) -> bool {
        if failure > u64::from(self.max_failures) {
            return false;
        }
        if total == 0 {
            return true;
        }
        // Compare in integers scaled by 1e6 so 1.0 means "all" exactly.
        let need = (self.min_success_ratio.clamp(0.0, 1.0) * 1_000_000.0).round() as u128;
        u128::from(success) * 1_000_000 >= need * u128::from(total)
    }
}

/// What a deployment does: ship a version, or switch hosts back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum DeploymentKind {
    Deploy,
    /// A rollback: each host goes to its own target version (its previous one, or `--to`).
    /// `parent` is the deployment whose failed canary caused it, if any.
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<String>,
    },
    /// A service command (`start`, `stop`, `restart`, `status`, `check`) run by each host's
    /// agent on the version it runs; nothing is installed or switched.
    Service {
        action: String,
    },
}

/// The service commands `instream service` takes.
pub const SERVICE_ACTIONS: [&str; 5] = {
    let all = contract::ServiceAction::ALL;
    [
        all[0].as_str(),
        all[1].as_str(),
        all[2].as_str(),
        all[3].as_str(),
        all[4].as_str(),
    ]
};

/// Everything the operator asked for, as stored with the deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    #[serde(flatten)]
    pub kind: DeploymentKind,
    pub product: String,
    /// The version deployed, or for a rollback `--to` or "previous".
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Fabrics in the order they are rolled out.
    pub fabrics: Vec<String>,
    /// The host glob (`-H`).
    pub hosts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Continue after a passed canary gate without waiting for `instream promote`.
    #[serde(default)]
    pub auto_promote: bool,
    /// Roll out all fabrics' remaining hosts in one wave instead of fabric by fabric.
    #[serde(default)]
    pub parallel_fabrics: bool,
    #[serde(default)]
    pub gate: Gate,
    /// Milliseconds a dispatched host may stay silent before it fails with
    /// "no report within ...". Default 120 s; 0 means wait forever.
    #[serde(default = "default_report_deadline")]
    pub report_deadline_ms: u64,
    /// Spread each step's agent starts over this many seconds (`deploy --splay`); the
    /// report deadline counts from the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splay_secs: Option<u64>,
    /// At most this many hosts of a step at once (`deploy --batch`): the step runs as
    /// consecutive batches, each dispatched once the one before it is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

fn default_report_deadline() -> u64 {
    120_000
}

/// One host a deployment targets, as resolved at creation and kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub host: String,
    pub fabric: String,
    /// The version this host is to run at the end.
    pub version: String,
    /// The version it ran before (for rolling a failed canary back), if known.
    pub previous: Option<String>,
}

/// One step of the rollout plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "fabric")]
pub enum StepKind {
    /// The canary hosts of every fabric.
    Canary,
    /// The remaining hosts of one fabric.
    Fabric(String),
    /// The remaining hosts of every fabric at once.
    All,
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepKind::Canary => f.write_str("canary"),
            StepKind::Fabric(name) => write!(f, "fabric {name}"),
            StepKind::All => f.write_str("all fabrics"),
        }
    }
}

/// The coarse state of a deployment, as status and the page show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Running,
    AwaitingPromotion,
    Done,
    Halted,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Running => "running",
            DeploymentState::AwaitingPromotion => "awaiting_promotion",
            DeploymentState::Done => "done",
            DeploymentState::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeploymentState::Running,
            DeploymentState::AwaitingPromotion,
            DeploymentState::Done,
            DeploymentState::Halted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, DeploymentState::Done | DeploymentState::Halted)
    }
}

/// Where the machine is in its plan: small, persisted at every change (write-ahead, before
/// the actions it implies are carried out), and enough with the host rows to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PhaseRecord {
    /// Index of the step under way (or last run); `None` before the first step starts.
    pub step: Option<usize>,
    /// When that step was dispatched.
    pub step_started_at: Millis,
    /// The canary gate passed and the deployment waits for `promote`.
    pub awaiting_promotion: bool,
    /// `promote` was given (possibly while the canary was still running).
    pub promoted: bool,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// The rollback deployment started for this one's canary hosts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<String>,
    /// When the deployment finished (done or halted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
}

impl PhaseRecord {
    pub fn state(&self) -> DeploymentState {
        if self.halted.is_some() {
            DeploymentState::Halted
        } else if self.done {
            DeploymentState::Done
        } else if self.awaiting_promotion {
            DeploymentState::AwaitingPromotion
        } else {
            DeploymentState::Running
        }
    }
}

/// Checks a name that ends up in paths and URLs on hosts (product, version, variant,
/// fabric, host): 1..=128 characters of `[A-Za-z0-9._+-]`, not starting with `.` or `-`.
pub fn validate_name(what: &str, s: &str) -> Result<(), String> {
    let ok_len = !s.is_empty() && s.len() <= 128;
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    let ok_start = !s.starts_with('.') && !s.starts_with('-');
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {s:?}: use 1 to 128 of A-Z a-z 0-9 . _ + -, not starting with . or -"
        ))
    }
}

/// A fabric name the control plane accepts is one the tracker and the engine accept too
/// (`proto::fabric`, the one rule: up to 64 of A-Z a-z 0-9 . _ -), so an inventory never
/// names a fabric whose hosts' announces would be refused.
pub fn validate_fabric(what: &str, s: &str) -> Result<(), String> {
    validate_name(what, s)?;
    if proto::fabric::is_valid_fabric_name(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {s:?}: use 1 to {} of A-Z a-z 0-9 . _ -",
            proto::fabric::MAX_FABRIC_NAME_LEN
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fabric_names_follow_the_trackers_rule() {
        assert!(validate_fabric("fabric", "dc-1.eu_2").is_ok());
        assert!(
            validate_name("fabric", "dc+1").is_ok(),
            "a valid product-style name"
        );
        assert!(
            validate_fabric("fabric", "dc+1")
                .unwrap_err()
                .contains("invalid fabric")
        );
        assert!(validate_fabric("fabric", &"f".repeat(65)).is_err());
    }

    fn ev(state: HostState, seq: u64) -> HostEvent {
        HostEvent {
            deployment: "d".into(),
            host: "h".into(),
            fabric: "f".into(),
            seq,
            state,
            bytes: seq * 10,
            timestamp: 1000 + seq,
            reason: None,
        }
    }

    #[test]
    fn late_downloading_never_overwrites_success() {
        let mut st = HostStatus::pending(0);
        assert!(st.apply(&ev(HostState::Success, 5)));
        assert!(!st.apply(&ev(HostState::Downloading, 2)));
        assert!(!st.apply(&ev(HostState::Downloading, 9)));
        assert_eq!(st.state, HostState::Success);
        assert_eq!(st.bytes, 90, "bytes stay the maximum ever seen");
    }

    #[test]
    fn real_terminal_report_beats_server_made_failure() {
        let mut st = HostStatus::pending(0);
        let mut timeout = ev(HostState::Failure, SERVER_SEQ);
        timeout.reason = Some("no report within 1s".into());
        assert!(st.apply(&timeout));
        assert!(!st.heard());
        assert!(!st.apply(&ev(HostState::Installing, 3)));
        assert!(st.apply(&ev(HostState::Success, 4)));
        assert_eq!(st.state, HostState::Success);
        assert!(st.heard());
    }

    #[test]
    fn duplicate_event_changes_nothing() {
        let mut st = HostStatus::pending(0);
        assert!(st.apply(&ev(HostState::Verifying, 3)));
        let before = st.clone();
        assert!(!st.apply(&ev(HostState::Verifying, 3)));
        assert_eq!(st, before);
    }

    #[test]
    fn canary_parses_count_and_percent() {
        assert_eq!(Canary::parse("3"), Ok(Canary::Hosts(3)));
        assert_eq!(Canary::parse("10%"), Ok(Canary::Percent(10.0)));
        assert!(Canary::parse("0").is_err());
        assert!(Canary::parse("0%").is_err());
        assert!(Canary::parse("101%").is_err());
        assert!(Canary::parse("x").is_err());
    }

    #[test]
    fn gate_counts() {
        let g = Gate::default();
        assert!(g.passes(3, 3, 0));
        assert!(!g.passes(3, 2, 1));
        let lax = Gate {
            min_success_ratio: 0.5,
            max_failures: 2,
            timeout_ms: 0,
        };
        assert!(lax.passes(4, 2, 2));
        assert!(!lax.passes(4, 1, 3));
        assert!(!lax.passes(5, 2, 2), "2/5 is below one half");
        assert!(g.passes(0, 0, 0));
    }

    #[test]
    fn names_reject_paths() {
        assert!(validate_name("version", "1.2.3+build-4").is_ok());
        for bad in ["", "..", "a/b", ".hidden", "-x", "a b", &"x".repeat(129)] {
            assert!(validate_name("version", bad).is_err(), "{bad:?}");
        }
    }
}
