//! The BitTorrent peer wire protocol (BEP 3), with the Fast extension (BEP 6) and the
//! extension protocol (BEP 10).

pub mod extension;
pub mod handshake;
pub mod message;

pub use handshake::{HANDSHAKE_LEN, Handshake};
pub use message::{BlockSpec, DecodeError, MAX_MSG_LEN, Message};
