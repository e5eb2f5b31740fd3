//! The interop matrix harness (engine/tests/interop_matrix.rs): a network namespace with one
//! address per host ([`netns`]), the trackers ([`trackers`]), the clients ([`clients`]), one
//! cell's run ([`cell`]), the table the suite writes ([`table`]) and the HTTP client of the
//! clients driven through a Web API ([`webapi`]).

pub mod cell;
pub mod clients;
pub mod netns;
pub mod table;
pub mod trackers;
pub mod webapi;
