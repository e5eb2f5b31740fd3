//! The HTTP transport of status events: one `POST /api/v1/events` per batch. The control
//! client retries transient failures for its own (short) budget; a 4xx is final and the
//! batch is dropped, anything else is retried whole by the reporter (the server dedupes).

use serde::Serialize;

use super::{HostEvent, Sent};
use crate::control::{ControlClient, ControlError};

#[derive(Serialize)]
struct Batch<'a> {
    events: &'a [HostEvent],
}

pub(super) async fn deliver(client: &ControlClient, batch: &[HostEvent]) -> Sent {
    match client
        .post_json(
            "/api/v1/events",
            &Batch { events: batch },
            "post status events",
        )
        .await
    {
        Ok(body) => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && let Some(rej) = v.get("rejected").and_then(|r| r.as_array())
                && !rej.is_empty()
            {
                tracing::warn!(rejected = %serde_json::Value::Array(rej.clone()), "server rejected status events");
            }
            Sent::All
        }
        // A refused certificate stays refused: retrying the batch would only hold the agent.
        Err(e @ (ControlError::Refused { .. } | ControlError::Tls { .. })) => {
            Sent::Refused(e.to_string())
        }
        Err(e) => Sent::Retry {
            undelivered: (0..batch.len()).collect(),
            error: e.to_string(),
        },
    }
}
