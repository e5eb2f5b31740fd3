//! Transports: TCP dialling and socket options ([`tcp`]), the listener that routes incoming
//! connections to torrents by info-hash ([`listen`]), MSE/PE encryption over either
//! ([`mse`]), our own addresses ([`own`]), capped HTTP bodies ([`body`]). QUIC (feature
//! `quic`) will sit beside them.

pub mod body;
pub mod listen;
pub mod mse;
pub mod own;
pub mod tcp;

pub use listen::{ListenLimits, Route, Router};
pub use own::OwnAddresses;
pub use tcp::SocketOptions;
