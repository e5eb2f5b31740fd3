//! What the engine's fault tests (engine/tests/faults.rs) run against: a [`swarm::Swarm`] of real
//! processes in network namespaces, and two misbehaving peers written here on raw sockets, a
//! [`silent::SilentPeer`] that never answers and a [`liar::Liar`] that serves random bytes.

pub mod liar;
pub mod silent;
pub mod swarm;
