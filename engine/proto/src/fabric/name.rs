//! Fabric names: the one rule for what may name a fabric, and the [`FabricName`] newtype
//! that carries a checked one.

use thiserror::Error;

/// Longest fabric name, in bytes.
pub const MAX_FABRIC_NAME_LEN: usize = 64;

/// True if `name` can name a fabric: 1 to [`MAX_FABRIC_NAME_LEN`] ASCII letters, digits,
/// `-`, `_` or `.`. Names travel in URLs, handshakes, logs and file names, so they stay plain.
/// The one rule for fabric names: map files, tracker announces (`fabric=`, BEP 41 URL
/// data) and extension handshakes all check it here, on text or on raw network bytes.
pub fn is_valid_fabric_name(name: impl AsRef<[u8]>) -> bool {
    let name = name.as_ref();
    (1..=MAX_FABRIC_NAME_LEN).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A fabric name known to pass [`is_valid_fabric_name`]: built only by [`FabricName::new`]
/// (or `parse`), so a value of this type needs no second check. Used where names enter
/// (command lines), where the rule is checked once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FabricName(String);

/// A string that is not a fabric name; says the rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "{0:?} is not a valid fabric name (1-{MAX_FABRIC_NAME_LEN} letters, digits, '-', '_', '.')"
)]
pub struct InvalidFabricName(pub String);

impl FabricName {
    /// Checks `name` against the one rule.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidFabricName> {
        let name = name.into();
        if is_valid_fabric_name(&name) {
            Ok(Self(name))
        } else {
            Err(InvalidFabricName(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for FabricName {
    type Err = InvalidFabricName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl std::fmt::Display for FabricName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FabricName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<FabricName> for String {
    fn from(name: FabricName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fabric_name_is_built_only_from_valid_names() {
        let ok: FabricName = "dc-1.eu_2".parse().unwrap();
        assert_eq!(ok.as_str(), "dc-1.eu_2");
        assert_eq!(String::from(ok), "dc-1.eu_2");
        let long = "x".repeat(MAX_FABRIC_NAME_LEN + 1);
        for bad in ["", "a b", "dc/east", long.as_str()] {
            let e = FabricName::new(bad).unwrap_err();
            assert_eq!(e, InvalidFabricName(bad.to_owned()));
            assert!(e.to_string().contains("1-64 letters"), "{e}");
        }
    }

    #[test]
    fn fabric_names_are_plain() {
        for ok in ["f1", "dc-east.rack_2", &"x".repeat(MAX_FABRIC_NAME_LEN)] {
            assert!(is_valid_fabric_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "é",
            "a#",
            &"x".repeat(MAX_FABRIC_NAME_LEN + 1),
        ] {
            assert!(!is_valid_fabric_name(bad), "{bad}");
        }
        // Raw network bytes get the same rule (a tracker checks `fabric=` before decoding).
        assert!(is_valid_fabric_name(b"dc-1.eu_west"));
        assert!(!is_valid_fabric_name(b"x&y"));
        assert!(!is_valid_fabric_name([0xffu8, b'a']));
    }
}
