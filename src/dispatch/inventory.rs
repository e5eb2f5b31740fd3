//! The local dispatcher's inventory file and target resolution over it, pure.
//!
//! ```toml
//! [[host]]
//! name = "host-1"
//! fabric = "f1"
//! grains = { osmajorrelease = "12", role = "web" }
//! ```
//!
//! Resolution mirrors a Salt compound target: fabric filter, then a glob over host names
//! (`glob::Pattern`, like `L@`/glob targets), then `variant` against one grain (default
//! `osmajorrelease`, like `G@osmajorrelease:12`). Host names are unique; the result is in
//! inventory order.

use super::{DispatchError, HostInfo, TargetQuery};
use crate::deploy::model::validate_name;
use serde::{Deserialize, Serialize};

/// The grain `--variant` is compared with unless configured otherwise.
pub const DEFAULT_VARIANT_GRAIN: &str = "osmajorrelease";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostInfo>,
}

impl Inventory {
    /// Parses and checks an inventory: valid names, no duplicate hosts.
    pub fn parse(text: &str, path: &str) -> Result<Self, DispatchError> {
        let bad = |detail: String| DispatchError::Inventory {
            path: path.to_string(),
            detail,
        };
        let inv: Inventory = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for h in &inv.hosts {
            validate_name("host name", &h.name).map_err(&bad)?;
            crate::deploy::model::validate_fabric("fabric name", &h.fabric).map_err(&bad)?;
            if !seen.insert(h.name.as_str()) {
                return Err(bad(format!("host {:?} is listed twice", h.name)));
            }
        }
        Ok(inv)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("inventory serializes")
    }

    /// Fabric names in first-seen order.
    pub fn fabrics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for h in &self.hosts {
            if !out.contains(&h.fabric) {
                out.push(h.fabric.clone());
            }
        }
        out
    }

    pub fn resolve(
        &self,
        q: &TargetQuery,
        variant_grain: &str,
    ) -> Result<Vec<HostInfo>, DispatchError> {
        let known = self.fabrics();
        let all_fabrics = q.fabrics.is_empty() || q.fabrics.iter().any(|f| f == "*");
        if !all_fabrics {
            for f in &q.fabrics {
                if !known.contains(f) {
                    return Err(DispatchError::UnknownFabric {
                        fabric: f.clone(),
                        known: known.join(","),
                    });
                }
            }
        }
        let pattern = glob::Pattern::new(&q.hosts).map_err(|e| DispatchError::BadPattern {
            pattern: q.hosts.clone(),
            detail: e.msg.to_string(),
        })?;
        let out: Vec<HostInfo> = self
            .hosts
            .iter()
            .filter(|h| all_fabrics || q.fabrics.contains(&h.fabric))
            .filter(|h| pattern.matches(&h.name))
            .filter(|h| match &q.variant {
                None => true,
                Some(v) => h.grains.get(variant_grain) == Some(v),
            })
            .cloned()
            .collect();
        if out.is_empty() {
            return Err(DispatchError::NoHosts {
                pattern: q.hosts.clone(),
                fabrics: if all_fabrics {
                    Vec::new()
                } else {
                    q.fabrics.clone()
                },
                variant: q.variant.clone(),
            });
        }
        Ok(out)
    }

    /// A generated inventory: `hosts` hosts named `host-1..` spread round-robin over
    /// fabrics `f1..f<fabrics>` (what `instream up` uses).
    pub fn generated(hosts: usize, fabrics: usize) -> Self {
        let fabrics = fabrics.max(1);
        Self {
            hosts: (1..=hosts)
                .map(|i| HostInfo {
                    name: format!("host-{i}"),
                    fabric: format!("f{}", (i - 1) % fabrics + 1),
                    grains: [(DEFAULT_VARIANT_GRAIN.to_string(), "12".to_string())]
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = r#"
[[host]]
name = "web-1"
fabric = "f1"
grains = { osmajorrelease = "12", role = "web" }

[[host]]
name = "web-2"
fabric = "f2"
grains = { osmajorrelease = "11" }

[[host]]
name = "db-1"
fabric = "f1"
"#;

    fn q(fabrics: &[&str], hosts: &str, variant: Option<&str>) -> TargetQuery {
        TargetQuery {
            fabrics: fabrics.iter().map(|s| s.to_string()).collect(),
            hosts: hosts.into(),
            variant: variant.map(str::to_string),
        }
    }

    fn names(v: Vec<HostInfo>) -> Vec<String> {
        v.into_iter().map(|h| h.name).collect()
    }

    #[test]
    fn resolves_fabric_glob_and_variant() {
        let inv = Inventory::parse(INV, "inv.toml").unwrap();
        let g = DEFAULT_VARIANT_GRAIN;
        assert_eq!(
            names(inv.resolve(&q(&["f1"], "*", None), g).unwrap()),
            ["web-1", "db-1"]
        );
        assert_eq!(
            names(inv.resolve(&q(&["*"], "web-*", None), g).unwrap()),
            ["web-1", "web-2"]
        );
        assert_eq!(
            names(
                inv.resolve(&q(&["f1", "f2"], "web-?", Some("11")), g)
                    .unwrap()
            ),
            ["web-2"]
        );
        assert_eq!(
            names(inv.resolve(&q(&["f1"], "*", Some("web")), "role").unwrap()),
            ["web-1"]
        );
    }

    #[test]
    fn unknown_fabric_and_empty_match_are_errors() {
        let inv = Inventory::parse(INV, "inv.toml").unwrap();
        let g = DEFAULT_VARIANT_GRAIN;
        let e = inv.resolve(&q(&["f9"], "*", None), g).unwrap_err();
        assert_eq!(e.to_string(), "unknown fabric \"f9\" (known: f1,f2)");
        let e = inv.resolve(&q(&["f2"], "db-*", None), g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "host pattern \"db-*\" matches no host in fabric f2"
        );
        let e = inv.resolve(&q(&["f1"], "[", None), g).unwrap_err();
        assert!(matches!(e, DispatchError::BadPattern { .. }));
    }

    #[test]
    fn parse_rejects_duplicates_unknown_keys_and_bad_names() {
        let dup = "[[host]]\nname='a'\nfabric='f'\n[[host]]\nname='a'\nfabric='f'\n";
        assert!(
            Inventory::parse(dup, "x")
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        assert!(Inventory::parse("[[host]]\nname='a'\nfabric='f'\nrack=1\n", "x").is_err());
        assert!(Inventory::parse("[[host]]\nname='../a'\nfabric='f'\n", "x").is_err());
    }

    #[test]
    fn generated_inventory_round_trips() {
        let inv = Inventory::generated(5, 2);
        assert_eq!(inv.fabrics(), ["f1", "f2"]);
        assert_eq!(inv.hosts[4].fabric, "f1");
        assert_eq!(Inventory::parse(&inv.to_toml(), "gen").unwrap(), inv);
    }
}
