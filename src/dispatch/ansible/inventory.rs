//! The fleet as Ansible knows it: the JSON of `ansible-inventory -i INV --list`, pure.
//!
//! One group per fabric: a host's fabric is the group that lists it directly (`hosts`, not
//! through `children`), or its `fabric` host variable (name configurable) when it is in
//! several groups or the inventory groups hosts some other way. Scalar host variables are
//! the host's grains, so `--variant` compares with `osmajorrelease` (or the configured
//! grain) exactly as under the local and Salt dispatchers. Hosts without a fabric, or with
//! a name the control plane refuses, are left out with the reason, never guessed.

use super::super::HostInfo;
use super::super::inventory::Inventory;
use crate::deploy::model::validate_name;
use serde_json::Value;
use std::collections::BTreeMap;

/// Groups every Ansible inventory has; they are never fabrics.
const IMPLICIT_GROUPS: [&str; 2] = ["all", "ungrouped"];

/// Parses `ansible-inventory --list` output. Returns the fleet in host-name order and the
/// hosts left out, each with why.
pub fn parse_list(
    json: &str,
    fabric_var: &str,
) -> Result<(Inventory, Vec<(String, String)>), String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let root = v.as_object().ok_or("not a JSON object")?;
    let mut direct: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, body) in root {
        if group == "_meta" || IMPLICIT_GROUPS.contains(&group.as_str()) {
            continue;
        }
        for h in body
            .get("hosts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(h) = h.as_str() {
                direct.entry(h.to_string()).or_default().push(group.clone());
            }
        }
    }
    let hostvars = root
        .get("_meta")
        .and_then(|m| m.get("hostvars"))
        .and_then(Value::as_object);
    // Hosts that are only in `ungrouped` or have only host variables count too: their
    // fabric variable may name their fabric.
    let mut names: Vec<String> = direct.keys().cloned().collect();
    for h in hostvars.into_iter().flat_map(|m| m.keys()) {
        if !direct.contains_key(h) {
            names.push(h.clone());
        }
    }
    for h in root
        .get("ungrouped")
        .and_then(|g| g.get("hosts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    names.sort();
    names.dedup();

    let mut hosts = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        let vars = hostvars
            .and_then(|m| m.get(&name))
            .and_then(Value::as_object);
        let mut grains = BTreeMap::new();
        for (k, val) in vars.into_iter().flatten() {
            let s = match val {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            grains.insert(k.clone(), s);
        }
        let groups = direct.get(&name).map(Vec::as_slice).unwrap_or(&[]);
        let fabric = match (grains.get(fabric_var), groups) {
            (Some(f), _) => f.clone(),
            (None, [one]) => one.clone(),
            (None, []) => {
                skipped.push((name, format!("in no group and no {fabric_var} variable")));
                continue;
            }
            (None, many) => {
                skipped.push((
                    name,
                    format!(
                        "in groups {} and no {fabric_var} variable says which is its fabric",
                        many.join(",")
                    ),
                ));
                continue;
            }
        };
        if let Err(e) = validate_name("host name", &name).and(
            crate::deploy::model::validate_fabric("fabric name", &fabric),
        ) {
            skipped.push((name, e));
            continue;
        }
        hosts.push(HostInfo {
            name,
            fabric,
            grains,
        });
    }
    Ok((Inventory { hosts }, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
        "_meta": {"hostvars": {
            "host-1": {"ansible_connection": "local", "osmajorrelease": 12},
            "host-2": {"osmajorrelease": "12", "role": "web", "nested": {"a": 1}},
            "host-3": {"osmajorrelease": 11},
            "both": {},
            "pinned": {"fabric": "f9"},
            "bad name": {}
        }},
        "all": {"children": ["ungrouped", "f1", "f2", "web"]},
        "ungrouped": {"hosts": ["pinned", "loose"]},
        "f1": {"hosts": ["host-1", "host-2", "both", "bad name"]},
        "f2": {"hosts": ["host-3"], "children": ["web"]},
        "web": {"hosts": ["both"]}
    }"#;

    #[test]
    fn groups_are_fabrics_and_scalar_host_variables_are_grains() {
        let (inv, skipped) = parse_list(LIST, "fabric").unwrap();
        let got: Vec<(&str, &str)> = inv
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.fabric.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("host-1", "f1"),
                ("host-2", "f1"),
                ("host-3", "f2"),
                ("pinned", "f9")
            ]
        );
        let h2 = &inv.hosts[1];
        assert_eq!(
            h2.grains.get("osmajorrelease").map(String::as_str),
            Some("12")
        );
        assert_eq!(h2.grains.get("role").map(String::as_str), Some("web"));
        assert!(!h2.grains.contains_key("nested"), "only scalars are grains");
        assert_eq!(
            inv.hosts[0].grains["osmajorrelease"], "12",
            "numbers as text"
        );
        let why: BTreeMap<_, _> = skipped.into_iter().collect();
        assert!(why["both"].contains("in groups f1,web"), "{why:?}");
        assert!(why["loose"].contains("in no group"), "{why:?}");
        assert!(why.contains_key("bad name"), "{why:?}");
        assert_eq!(why.len(), 3, "{why:?}");
    }

    #[test]
    fn resolution_is_the_local_dispatchers() {
        let (inv, _) = parse_list(LIST, "fabric").unwrap();
        let q = crate::dispatch::TargetQuery {
            fabrics: vec!["f1".into(), "f2".into()],
            hosts: "host-*".into(),
            variant: Some("12".into()),
        };
        let names: Vec<String> = inv
            .resolve(&q, "osmajorrelease")
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["host-1", "host-2"]);
    }

    #[test]
    fn refuses_what_is_not_an_inventory_listing() {
        assert!(parse_list("[", "fabric").unwrap_err().contains("not JSON"));
        assert!(parse_list("[]", "fabric").unwrap_err().contains("object"));
    }
}
