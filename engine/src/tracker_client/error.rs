//! Why an announce failed, one variant per cause.

use proto::tracker::{http, udp};

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not an `http://` or `udp://` URL we can use.
    #[error("unsupported tracker URL {url:?}")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// Name resolution failed.
    #[error("resolving tracker host {host}")]
    Resolve {
        /// Host name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Socket I/O failed.
    #[error("talking to the tracker")]
    Io(#[source] std::io::Error),
    /// No answer after every retransmission (UDP) or within the timeout (HTTP).
    #[error("tracker did not answer ({attempts} attempts)")]
    Timeout {
        /// Requests sent.
        attempts: u32,
    },
    /// The tracker refused the announce.
    #[error("tracker refused: {reason}")]
    Refused {
        /// BEP 15 error message or HTTP `failure reason`.
        reason: String,
    },
    /// A UDP reply that does not parse or does not fit the request.
    #[error("malformed UDP tracker reply")]
    UdpReply(#[from] udp::ResponseParseError),
    /// A UDP reply of the wrong kind for the request.
    #[error("unexpected UDP tracker reply")]
    UnexpectedReply,
    /// An HTTP reply body that does not parse.
    #[error("malformed HTTP tracker reply")]
    HttpReply(#[from] http::ResponseError),
    /// An HTTP reply that is not 200 or not HTTP.
    #[error("HTTP tracker answered status {status}")]
    HttpStatus {
        /// Status code (0: not an HTTP reply).
        status: u16,
    },
    /// An HTTP reply over the size bound.
    #[error("HTTP tracker reply exceeds {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
}
