//! Transports: TCP dialling and socket options ([`tcp`]), the listener that routes incoming
//! connections to torrents by info-hash ([`listen`]), MSE/PE encryption over either
//! ([`mse`]), our own addresses ([`own`]), capped HTTP bodies ([`body`]), and QUIC between
//! instream peers ([`quic`]), dialled first under `--transport quic` with TCP as the fallback,
//! and moved to under `--transport auto` on WAN-like paths ([`auto`]).

pub mod auto;
pub mod body;
pub mod listen;
pub mod mse;
pub mod own;
pub mod quic;
pub mod tcp;

pub use listen::{ListenLimits, Route, Router};
pub use own::OwnAddresses;
pub use quic::{Quic, QuicConfig, QuicIdentity, Transport, TransportCounts};
pub use tcp::SocketOptions;
