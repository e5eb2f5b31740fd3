//! Each host's fabric share (`--fabric-share RANK/OF`): its rank by name among the job's hosts
//! of its fabric, so that together they bring each piece into the fabric about once
//! (`proto::picker::FabricShare`). Every dispatcher hands out the same shares for the same job.

use std::collections::BTreeMap;

use proto::picker::FabricShare;

/// The share of every host of a job, given as `(host, fabric)` pairs; a host alone in its
/// fabric gets none (it brings in everything anyway). Ranks follow the host names' order,
/// so the result does not depend on the order of `hosts`.
pub fn fabric_shares<'a>(
    hosts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<&'a str, FabricShare> {
    let mut by_fabric: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (host, fabric) in hosts {
        by_fabric.entry(fabric).or_default().push(host);
    }
    let mut out = BTreeMap::new();
    for names in by_fabric.values_mut() {
        names.sort_unstable();
        names.dedup();
        let Ok(of) = u32::try_from(names.len()) else {
            continue;
        };
        if of < 2 {
            continue;
        }
        for (rank, host) in (0..of).zip(names.iter()) {
            out.insert(*host, FabricShare { rank, of });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_rank_by_name_within_their_fabric_and_a_lone_host_has_no_share() {
        let shares = fabric_shares([("h3", "f1"), ("h1", "f1"), ("x9", "f2"), ("h2", "f1")]);
        let got: Vec<(&str, String)> = shares.iter().map(|(h, s)| (*h, s.to_string())).collect();
        assert_eq!(
            got,
            [
                ("h1", "0/3".into()),
                ("h2", "1/3".into()),
                ("h3", "2/3".into())
            ]
        );
        assert!(!shares.contains_key("x9"), "alone in its fabric");
    }
}
