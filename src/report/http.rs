//! The HTTP shape of event reporting: what `POST /api/v1/events` takes and answers. Agents
//! batch events, retry with back-off on any failure, and may resend a whole batch: the
//! answer tells them nothing needs resending once it is 200.

use crate::deploy::model::HostEvent;
use crate::store::IngestOutcome;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<HostEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// Answer to a batch: counts, and which events were refused (never worth resending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    pub stored: usize,
    pub duplicates: u64,
    pub rejected: Vec<Rejected>,
}

impl From<IngestOutcome> for IngestReply {
    fn from(o: IngestOutcome) -> Self {
        Self {
            stored: o.new.len(),
            duplicates: o.duplicates,
            rejected: o
                .rejected
                .into_iter()
                .map(|(index, reason)| Rejected { index, reason })
                .collect(),
        }
    }
}
