//! Rollout planning, pure: which hosts form the canary and in which steps the rest follow.
//!
//! The canary is the first N hosts (or P percent, rounded up, at least one) of *each* fabric
//! in host-name order, so the choice is deterministic and an operator can predict it. After
//! the canary come the remaining hosts fabric by fabric in the order the operator named the
//! fabrics (or all at once with `parallel_fabrics`). With a batch size N, each of those
//! steps becomes consecutive steps of at most N hosts (the same kind of step repeated; for
//! all fabrics at once, each batch takes hosts from every fabric in turn); the canary is
//! never split. Empty steps are left out, so every step in a plan has at least one host.

use super::model::{Canary, StepKind, Target};
use std::collections::BTreeMap;

/// A rollout plan: the steps in order and, for each target (same index as the input), the
/// step it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<StepKind>,
    pub step_of: Vec<usize>,
}

/// How many of a fabric's `n` hosts the canary takes.
pub fn canary_size(canary: Canary, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let k = match canary {
        Canary::Hosts(k) => k as usize,
        // Round up: 10% of 5 hosts is one host, not zero.
        Canary::Percent(p) => ((p / 100.0) * n as f64 - 1e-9).ceil().max(1.0) as usize,
    };
    k.clamp(1, n)
}

/// Plans the rollout of `targets` over `fabrics` (rollout order). Targets whose fabric is not
/// in `fabrics` are placed after the named ones, in name order, rather than dropped.
pub fn plan(
    targets: &[Target],
    fabrics: &[String],
    canary: Option<Canary>,
    parallel_fabrics: bool,
    batch: Option<usize>,
) -> Plan {
    let batch = batch.unwrap_or(usize::MAX).max(1);
    // fabric -> target indices sorted by host name
    let mut by_fabric: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        by_fabric.entry(t.fabric.as_str()).or_default().push(i);
    }
    for idx in by_fabric.values_mut() {
        idx.sort_by(|&a, &b| targets[a].host.cmp(&targets[b].host));
    }
    let mut order: Vec<&str> = Vec::new();
    for f in fabrics {
        if by_fabric.contains_key(f.as_str()) && !order.contains(&f.as_str()) {
            order.push(f.as_str());
        }
    }
    for f in by_fabric.keys() {
        if !order.contains(f) {
            order.push(f);
        }
    }

    let mut steps = Vec::new();
    let mut step_of = vec![usize::MAX; targets.len()];
    let mut rest: Vec<(&str, &[usize])> = Vec::new();

    if let Some(c) = canary {
        let mut any = false;
        for f in &order {
            let idx = &by_fabric[f];
            let k = canary_size(c, idx.len());
            for &i in &idx[..k] {
                step_of[i] = 0;
                any = true;
            }
            rest.push((f, &idx[k..]));
        }
        if any {
            steps.push(StepKind::Canary);
        }
    } else {
        for f in &order {
            rest.push((f, &by_fabric[f][..]));
        }
    }

    if parallel_fabrics {
        // Round robin over fabrics, so that every batch spreads over all of them.
        let mut interleaved = Vec::new();
        let longest = rest.iter().map(|(_, idx)| idx.len()).max().unwrap_or(0);
        for k in 0..longest {
            for (_, idx) in &rest {
                if let Some(&i) = idx.get(k) {
                    interleaved.push(i);
                }
            }
        }
        for chunk in interleaved.chunks(batch) {
            let n = steps.len();
            for &i in chunk {
                step_of[i] = n;
            }
            steps.push(StepKind::All);
        }
    } else {
        for (f, idx) in rest {
            for chunk in idx.chunks(batch) {
                let n = steps.len();
                for &i in chunk {
                    step_of[i] = n;
                }
                steps.push(StepKind::Fabric(f.to_string()));
            }
        }
    }
    debug_assert!(step_of.iter().all(|&s| s < steps.len()));
    Plan { steps, step_of }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn targets(spec: &[(&str, &str)]) -> Vec<Target> {
        spec.iter()
            .map(|(h, f)| Target {
                host: h.to_string(),
                fabric: f.to_string(),
                version: "2".into(),
                previous: None,
            })
            .collect()
    }

    fn fabrics(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn percent_rounds_up_and_takes_at_least_one() {
        for (p, n, want) in [
            (10.0, 5, 1),
            (10.0, 10, 1),
            (10.0, 11, 2),
            (50.0, 3, 2),
            (100.0, 7, 7),
            (1.0, 1, 1),
        ] {
            assert_eq!(canary_size(Canary::Percent(p), n), want, "{p}% of {n}");
        }
        assert_eq!(canary_size(Canary::Hosts(5), 3), 3);
        assert_eq!(canary_size(Canary::Hosts(2), 0), 0);
    }

    #[test]
    fn canary_takes_first_hosts_of_each_fabric_then_fabric_by_fabric() {
        let t = targets(&[
            ("b2", "b"),
            ("a2", "a"),
            ("a1", "a"),
            ("b1", "b"),
            ("a3", "a"),
        ]);
        let p = plan(
            &t,
            &fabrics(&["b", "a"]),
            Some(Canary::Hosts(1)),
            false,
            None,
        );
        assert_eq!(
            p.steps,
            vec![
                StepKind::Canary,
                StepKind::Fabric("b".into()),
                StepKind::Fabric("a".into())
            ]
        );
        // b2 a2 a1 b1 a3
        assert_eq!(p.step_of, vec![1, 2, 0, 0, 2]);
    }

    #[test]
    fn no_canary_and_parallel_is_one_step() {
        let t = targets(&[("a1", "a"), ("b1", "b")]);
        let p = plan(&t, &fabrics(&["a", "b"]), None, true, None);
        assert_eq!(p.steps, vec![StepKind::All]);
        assert_eq!(p.step_of, vec![0, 0]);
    }

    #[test]
    fn canary_covering_a_whole_fabric_leaves_no_empty_step() {
        let t = targets(&[("a1", "a"), ("b1", "b"), ("b2", "b")]);
        let p = plan(
            &t,
            &fabrics(&["a", "b"]),
            Some(Canary::Hosts(1)),
            false,
            None,
        );
        assert_eq!(
            p.steps,
            vec![StepKind::Canary, StepKind::Fabric("b".into())]
        );
        assert_eq!(p.step_of, vec![0, 0, 1]);
    }

    #[test]
    fn batches_split_each_step_but_never_the_canary() {
        let t = targets(&[
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
            ("a4", "a"),
            ("a5", "a"),
            ("b1", "b"),
            ("b2", "b"),
        ]);
        let p = plan(
            &t,
            &fabrics(&["a", "b"]),
            Some(Canary::Hosts(2)),
            false,
            Some(2),
        );
        let fa = StepKind::Fabric("a".into());
        // Canary: a1 a2 b1 b2 (4 hosts, more than a batch); then a3 a4 | a5 in a; b is empty.
        assert_eq!(p.steps, vec![StepKind::Canary, fa.clone(), fa]);
        assert_eq!(p.step_of, vec![0, 0, 1, 1, 2, 0, 0]);

        // All fabrics at once: batches take hosts from every fabric in turn.
        let p = plan(&t, &fabrics(&["a", "b"]), None, true, Some(3));
        assert_eq!(p.steps, vec![StepKind::All; 3]);
        // a1 b1 a2 | b2 a3 a4 | a5
        assert_eq!(p.step_of, vec![0, 0, 1, 1, 2, 0, 1]);

        // A batch larger than every step changes nothing.
        let big = plan(&t, &fabrics(&["a", "b"]), None, false, Some(100));
        let none = plan(&t, &fabrics(&["a", "b"]), None, false, None);
        assert_eq!(big, none);
        // Batch 1: one host per step.
        let one = plan(&t, &fabrics(&["a", "b"]), None, false, Some(1));
        assert_eq!(one.steps.len(), 7);
    }
}
