//! Where a host stands in a deployment and the event that says so (docs/ARCHITECTURE.md,
//! "status model"): agents send [`HostEvent`]s, the control server stores them.
//!
//! Invariant: an event is named by `(deployment, host, seq)`, and a host's status is the
//! maximum of its events by `(state rank, seq)` ([`HostState::rank`]), so re-delivered and
//! reordered events change nothing. Sequence number [`SERVER_SEQ`] is the server's own.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Where one host stands in one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Not heard from yet (the server's state for a target; agents never send it).
    Pending,
    /// Fetching the payload.
    Downloading,
    /// Checking the payload against the manifest.
    Verifying,
    /// Installing and activating.
    Installing,
    /// Active and healthy.
    Success,
    /// Failed; the event's `reason` says why.
    Failure,
}

impl HostState {
    /// Every state, in rank order.
    pub const ALL: [HostState; 6] = [
        HostState::Pending,
        HostState::Downloading,
        HostState::Verifying,
        HostState::Installing,
        HostState::Success,
        HostState::Failure,
    ];

    /// Progress rank: later states win over earlier ones whatever order events arrive in.
    /// Success and failure share the top rank; between them the higher sequence number wins.
    pub fn rank(self) -> u8 {
        match self {
            HostState::Pending => 0,
            HostState::Downloading => 1,
            HostState::Verifying => 2,
            HostState::Installing => 3,
            HostState::Success | HostState::Failure => 4,
        }
    }

    /// Success or failure: nothing follows in this deployment.
    pub fn is_terminal(self) -> bool {
        self.rank() == 4
    }

    /// The word used on the wire, in the store and by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Downloading => "downloading",
            HostState::Verifying => "verifying",
            HostState::Installing => "installing",
            HostState::Success => "success",
            HostState::Failure => "failure",
        }
    }

    /// The state named by its word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sequence number 0 is reserved for events the server itself records about a host (report
/// deadline passed, dispatch failed). Agents number their events from 1 (in practice from the
/// wall clock in microseconds), so any real terminal report outranks a server-made failure.
pub const SERVER_SEQ: u64 = 0;

/// One status report from a host (or, with [`SERVER_SEQ`], about it). Keyed by
/// `(deployment, host, seq)`: a key names one event, and a second event under the same key is
/// a duplicate and is dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEvent {
    /// Deployment id.
    pub deployment: String,
    /// Host name.
    pub host: String,
    /// The host's fabric.
    #[serde(default)]
    pub fabric: String,
    /// Orders one host's events in one deployment; see [`SERVER_SEQ`].
    pub seq: u64,
    /// The state reached.
    pub state: HostState,
    /// Payload bytes received so far (downloads) or in total.
    #[serde(default)]
    pub bytes: u64,
    /// When the host observed the state, in its own clock.
    pub timestamp: Millis,
    /// Why, for a failure (and what a success recovered or ran, for some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The Kafka record key of an event: `deployment/host`, so one host's events share a
/// partition. The record's value is the event's JSON, as in an HTTP batch.
pub fn record_key(e: &HostEvent) -> String {
    format!("{}/{}", e.deployment, e.host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn event() -> HostEvent {
        HostEvent {
            deployment: "d-1".into(),
            host: "host-7".into(),
            fabric: "f2".into(),
            seq: 4,
            state: HostState::Installing,
            bytes: 1300,
            timestamp: 1_700_000_000_000,
            reason: None,
        }
    }

    #[test]
    fn an_event_is_the_json_both_sides_agree_on() {
        let text = serde_json::to_string(&event()).unwrap();
        assert_eq!(
            text,
            r#"{"deployment":"d-1","host":"host-7","fabric":"f2","seq":4,"state":"installing","bytes":1300,"timestamp":1700000000000}"#
        );
        assert_eq!(serde_json::from_str::<HostEvent>(&text).unwrap(), event());
        assert_eq!(record_key(&event()), "d-1/host-7");
    }

    #[test]
    fn every_state_parses_back_and_terminal_states_share_the_top_rank() {
        for st in HostState::ALL {
            assert_eq!(HostState::parse(st.as_str()), Some(st));
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!(HostState::Success.is_terminal() && HostState::Failure.is_terminal());
        assert_eq!(HostState::Success.rank(), HostState::Failure.rank());
        assert!(HostState::Installing.rank() < HostState::Success.rank());
    }
}
