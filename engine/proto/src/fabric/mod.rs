//! Fabrics: the validated name a host or peer carries ([`FabricName`], in `name`), and the
//! CIDR -> fabric map the tracker uses to place peers that do not say which fabric they are
//! in ([`FabricMap`], in `map`).

mod map;
mod name;

pub use map::{FabricMap, FabricMapError, FabricMapErrorKind};
pub use name::{FabricName, InvalidFabricName, MAX_FABRIC_NAME_LEN, is_valid_fabric_name};
