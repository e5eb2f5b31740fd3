//! Transports: TCP dialling and socket options ([`tcp`]), the listener that routes incoming
//! connections to torrents by info-hash ([`listen`]), MSE/PE encryption over either
//! ([`mse`]), our own addresses ([`own`]). QUIC (feature `quic`) will sit beside them.

pub mod listen;
pub mod mse;
pub mod own;
pub mod tcp;

pub use listen::{Route, Router};
pub use own::OwnAddresses;
pub use tcp::SocketOptions;
