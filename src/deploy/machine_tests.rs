//! Unit tests of every transition of the deployment machine, and the replay property:
//! duplicated events never change the outcome.

use super::*;
use crate::deploy::model::{Canary, DeploymentKind, Gate};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

const T0: Millis = 1_000_000;

fn spec(canary: Option<Canary>, auto_promote: bool) -> DeploymentSpec {
    DeploymentSpec {
        kind: DeploymentKind::Deploy,
        product: "app".into(),
        version: "2".into(),
        variant: None,
        fabrics: vec!["f1".into(), "f2".into()],
        hosts: "*".into(),
        canary,
        auto_promote,
        parallel_fabrics: false,
        gate: Gate {
            min_success_ratio: 1.0,
            max_failures: 0,
            timeout_ms: 60_000,
        },
        report_deadline_ms: 10_000,
        splay_secs: None,
        batch: None,
    }
}

/// f1: a1 a2 a3, f2: b1 b2; everyone ran version 1 before.
fn targets() -> Vec<Target> {
    [
        ("a1", "f1"),
        ("a2", "f1"),
        ("a3", "f1"),
        ("b1", "f2"),
        ("b2", "f2"),
    ]
    .iter()
    .map(|(h, f)| Target {
        host: h.to_string(),
        fabric: f.to_string(),
        version: "2".into(),
        previous: Some("1".into()),
    })
    .collect()
}

fn machine(canary: Option<Canary>, auto: bool) -> Machine {
    Machine::new("d1".into(), spec(canary, auto), targets(), T0)
}

fn ev(host: &str, seq: u64, state: HostState) -> HostEvent {
    HostEvent {
        deployment: "d1".into(),
        host: host.into(),
        fabric: String::new(),
        seq,
        state,
        bytes: 0,
        timestamp: T0 + seq,
        reason: (state == HostState::Failure).then(|| "health check failed".to_string()),
    }
}

fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn dispatched(actions: &[Action]) -> Vec<(usize, Vec<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch { step, hosts } => {
                Some((*step, hosts.iter().map(|t| t.host.clone()).collect()))
            }
            _ => None,
        })
        .collect()
}

fn succeed(m: &mut Machine, now: Millis, hosts: &[&str]) -> Vec<Action> {
    for h in hosts {
        m.handle_event(now, &ev(h, 1, HostState::Downloading));
        m.handle_event(now, &ev(h, 2, HostState::Success));
    }
    drain(m)
}

#[test]
fn first_timeout_saves_phase_then_dispatches_canary() {
    let mut m = machine(Some(Canary::Hosts(1)), false);
    assert_eq!(m.poll_timeout(), Some(0));
    m.handle_timeout(T0);
    let a = drain(&mut m);
    assert!(
        matches!(a[0], Action::SavePhase(ref p) if p.step == Some(0)),
        "{a:?}"
    );
    assert_eq!(dispatched(&a), vec![(0, vec!["a1".into(), "b1".into()])]);
    assert_eq!(m.state(), DeploymentState::Running);
}

#[test]
fn passed_canary_waits_for_promote_then_rolls_fabric_by_fabric() {
    let mut m = machine(Some(Canary::Hosts(1)), false);
    m.handle_timeout(T0);
    drain(&mut m);
    let a = succeed(&mut m, T0 + 5, &["a1", "b1"]);
    assert_eq!(dispatched(&a), vec![]);
    assert_eq!(m.state(), DeploymentState::AwaitingPromotion);
    assert_eq!(
        m.poll_timeout(),
        None,
        "nothing is due while waiting for an operator"
    );

    m.handle_command(T0 + 6, Command::Promote).unwrap();
    let a = drain(&mut m);
    assert_eq!(dispatched(&a), vec![(1, vec!["a2".into(), "a3".into()])]);
    let a = succeed(&mut m, T0 + 7, &["a2", "a3"]);
    assert_eq!(dispatched(&a), vec![(2, vec!["b2".into()])]);
    let a = succeed(&mut m, T0 + 8, &["b2"]);
    assert_eq!(m.state(), DeploymentState::Done);
    assert!(
        matches!(a.last(), Some(Action::SavePhase(p)) if p.done && p.finished_at == Some(T0 + 8))
    );
    assert!(m.is_finished());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn auto_promote_does_not_wait() {
    let mut m = machine(Some(Canary::Percent(50.0)), true);
    m.handle_timeout(T0);
    let a = drain(&mut m);
    assert_eq!(
        dispatched(&a),
        vec![(0, vec!["a1".into(), "a2".into(), "b1".into()])]
    );
    let a = succeed(&mut m, T0, &["a1", "a2", "b1"]);
    assert_eq!(dispatched(&a), vec![(1, vec!["a3".into()])]);
}

#[test]
fn promote_during_canary_pre_approves() {
    let mut m = machine(Some(Canary::Hosts(1)), false);
    m.handle_command(T0, Command::Promote).unwrap();
    m.handle_timeout(T0);
    drain(&mut m);
    let a = succeed(&mut m, T0, &["a1", "b1"]);
    assert_eq!(dispatched(&a), vec![(1, vec!["a2".into(), "a3".into()])]);
}

#[test]
fn promote_errors_say_why() {
    let mut m = machine(None, false);
    assert!(matches!(
        m.handle_command(T0, Command::Promote),
        Err(CommandError::NoCanary { .. })
    ));

    let mut m = machine(Some(Canary::Hosts(1)), true);
    m.handle_timeout(T0);
    succeed(&mut m, T0, &["a1", "b1"]);
    assert!(matches!(
        m.handle_command(T0, Command::Promote),
        Err(CommandError::PastCanary { .. })
    ));

    let mut m = machine(Some(Canary::Hosts(1)), false);
    m.handle_timeout(T0);
    m.handle_event(T0, &ev("a1", 1, HostState::Failure));
    m.handle_event(T0, &ev("b1", 1, HostState::Success));
    assert!(matches!(
        m.handle_command(T0, Command::Promote),
        Err(CommandError::Halted { .. })
    ));
}

#[test]
fn failed_canary_halts_and_rolls_canary_hosts_back() {
    let mut m = machine(Some(Canary::Hosts(1)), true);
    m.handle_timeout(T0);
    drain(&mut m);
    m.handle_event(T0 + 1, &ev("a1", 1, HostState::Success));
    assert_eq!(drain(&mut m), vec![], "gate waits for every canary host");
    m.handle_event(T0 + 2, &ev("b1", 1, HostState::Failure));
    let a = drain(&mut m);
    assert_eq!(m.state(), DeploymentState::Halted);
    assert_eq!(dispatched(&a), vec![], "the rest never changes");
    let Some(Action::Rollback { hosts }) = a.last() else {
        panic!("no rollback: {a:?}")
    };
    let back: Vec<_> = hosts
        .iter()
        .map(|t| (t.host.as_str(), t.version.as_str()))
        .collect();
    assert_eq!(back, vec![("a1", "1"), ("b1", "1")]);
    assert!(
        !m.is_finished(),
        "finished only once the rollback is recorded"
    );
    m.handle_command(T0 + 3, Command::RollbackStarted("r1".into()))
        .unwrap();
    assert!(
        matches!(drain(&mut m)[..], [Action::SavePhase(ref p)] if p.rollback_id.as_deref() == Some("r1"))
    );
    assert!(m.is_finished());
}

#[test]
fn failed_fabric_step_halts_without_rollback() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    succeed(&mut m, T0, &["a1", "a2"]);
    m.handle_event(T0, &ev("a3", 1, HostState::Failure));
    let a = drain(&mut m);
    assert_eq!(m.state(), DeploymentState::Halted);
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Rollback { .. } | Action::Dispatch { .. }))
    );
    assert!(
        m.phase()
            .halted
            .as_deref()
            .unwrap()
            .contains("fabric f1 gate failed: 2 of 3")
    );
}

#[test]
fn silent_hosts_fail_at_report_deadline_but_talking_ones_do_not() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    m.handle_event(T0 + 1, &ev("a1", 1, HostState::Downloading));
    assert_eq!(m.poll_timeout(), Some(T0 + 10_000));
    m.handle_timeout(T0 + 9_999);
    assert_eq!(drain(&mut m), vec![]);
    m.handle_timeout(T0 + 10_000);
    let a = drain(&mut m);
    let failed: Vec<_> = a
        .iter()
        .filter_map(|a| match a {
            Action::RecordEvent(e) => Some((e.host.as_str(), e.seq, e.reason.clone().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            ("a2", 0, "no report within 10s".to_string()),
            ("a3", 0, "no report within 10s".to_string())
        ]
    );
    // a1 still downloads; the gate timeout is next.
    assert_eq!(m.poll_timeout(), Some(T0 + 60_000));
    m.handle_timeout(T0 + 60_000);
    let a = drain(&mut m);
    assert!(a.iter().any(|a| matches!(a, Action::RecordEvent(e) if e.host == "a1" && e.reason.as_deref() == Some("not finished within 60s"))));
    assert_eq!(m.state(), DeploymentState::Halted);
}

#[test]
fn splay_moves_the_deadlines_and_batches_run_one_after_another() {
    let mut sp = spec(None, false);
    sp.splay_secs = Some(30);
    sp.batch = Some(2);
    let mut m = Machine::new("d1".into(), sp, targets(), T0);
    m.handle_timeout(T0);
    // f1 has 3 hosts: batches a1 a2 | a3, then f2's b1 b2.
    assert_eq!(
        dispatched(&drain(&mut m)),
        vec![(0, vec!["a1".into(), "a2".into()])]
    );
    // Silent hosts get the splay window on top of the report deadline.
    assert_eq!(m.poll_timeout(), Some(T0 + 30_000 + 10_000));
    m.handle_timeout(T0 + 39_999);
    assert_eq!(drain(&mut m), vec![]);
    let a = succeed(&mut m, T0 + 5_000, &["a1", "a2"]);
    assert_eq!(dispatched(&a), vec![(1, vec!["a3".into()])]);
    let a = succeed(&mut m, T0 + 6_000, &["a3"]);
    assert_eq!(dispatched(&a), vec![(2, vec!["b1".into(), "b2".into()])]);
}

#[test]
fn late_real_success_replaces_server_made_failure() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    m.handle_timeout(T0 + 10_000);
    drain(&mut m);
    assert_eq!(m.step_counts(0).unwrap().failure, 3);
    assert!(m.handle_event(T0 + 10_001, &ev("a2", 4, HostState::Success)));
    assert!(!m.handle_event(T0 + 10_002, &ev("a2", 2, HostState::Downloading)));
    let c = m.step_counts(0).unwrap();
    assert_eq!((c.success, c.failure), (1, 2));
}

#[test]
fn events_for_strangers_are_ignored() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    assert!(!m.handle_event(T0, &ev("zz", 1, HostState::Success)));
    let mut other = ev("a1", 1, HostState::Success);
    other.deployment = "d2".into();
    assert!(!m.handle_event(T0, &other));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn duplicates_produce_no_actions() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    m.handle_event(T0, &ev("a1", 1, HostState::Success));
    assert!(!m.handle_event(T0, &ev("a1", 1, HostState::Success)));
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn events_before_a_step_starts_count_when_it_starts() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    // f2 hosts report (e.g. a duplicate agent) before their step.
    succeed(&mut m, T0, &["b1", "b2"]);
    let a = succeed(&mut m, T0, &["a1", "a2", "a3"]);
    assert_eq!(dispatched(&a), vec![(1, vec!["b1".into(), "b2".into()])]);
    assert_eq!(m.state(), DeploymentState::Done);
}

#[test]
fn restore_resumes_mid_step() {
    let mut m = machine(None, false);
    m.handle_timeout(T0);
    drain(&mut m);
    succeed(&mut m, T0 + 1, &["a1", "a2"]);
    let mut r = Machine::restore(
        "d1".into(),
        m.spec().clone(),
        m.steps().to_vec(),
        m.hosts().to_vec(),
        m.phase().clone(),
    );
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.poll_timeout(), m.poll_timeout());
    let a = succeed(&mut r, T0 + 2, &["a3"]);
    assert_eq!(dispatched(&a), vec![(1, vec!["b1".into(), "b2".into()])]);
}

#[test]
fn restore_of_halted_canary_without_rollback_asks_again() {
    let mut m = machine(Some(Canary::Hosts(1)), true);
    m.handle_timeout(T0);
    m.handle_event(T0, &ev("a1", 1, HostState::Failure));
    m.handle_event(T0, &ev("b1", 1, HostState::Failure));
    drain(&mut m);
    let mut r = Machine::restore(
        "d1".into(),
        m.spec().clone(),
        m.steps().to_vec(),
        m.hosts().to_vec(),
        m.phase().clone(),
    );
    assert!(matches!(drain(&mut r)[..], [Action::Rollback { .. }]));
}

#[test]
fn empty_plan_is_done_at_once() {
    let mut m = Machine::new("d1".into(), spec(None, false), vec![], T0);
    m.handle_timeout(T0);
    assert_eq!(m.state(), DeploymentState::Done);
}

fn arb_event() -> impl Strategy<Value = (usize, u64, usize)> {
    (0usize..5, 1u64..8, 0usize..6)
}

fn run(m: &mut Machine, events: &[(usize, u64, usize)]) -> Vec<Action> {
    let names = ["a1", "a2", "a3", "b1", "b2"];
    let mut out = Vec::new();
    m.handle_timeout(T0);
    out.extend(drain(m));
    for (k, &(h, seq, st)) in events.iter().enumerate() {
        // The state is a function of seq, as for a real agent: one key, one event.
        let state = HostState::ALL[(st + seq as usize) % 6];
        m.handle_event(T0 + k as u64, &ev(names[h], seq, state));
        out.extend(drain(m));
    }
    out
}

proptest! {
    /// Replaying any event sequence with duplicates inserted anywhere after the original
    /// gives the same final state (host statuses and phase).
    #[test]
    fn duplicates_never_change_the_final_state(
        events in proptest::collection::vec((0usize..5, 1u64..8), 0..40),
        dups in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
        canary in proptest::option::of(1u32..3),
    ) {
        let events: Vec<_> = events.into_iter().map(|(h, s)| (h, s, 0)).collect();
        let mut with_dups = events.clone();
        for (which, at) in dups {
            if events.is_empty() { break; }
            let src = which.index(events.len());
            // position in with_dups after the original's first occurrence
            let first = with_dups.iter().position(|e| *e == events[src]).unwrap();
            let pos = first + 1 + at.index(with_dups.len() - first);
            with_dups.insert(pos.min(with_dups.len()), events[src]);
        }
        let c = canary.map(Canary::Hosts);
        let mut a = machine(c, true);
        let mut b = machine(c, true);
        run(&mut a, &events);
        run(&mut b, &with_dups);
        prop_assert_eq!(a.hosts(), b.hosts());
        prop_assert_eq!(a.phase().state(), b.phase().state());
        prop_assert_eq!(a.phase().step, b.phase().step);
        prop_assert_eq!(&a.phase().halted, &b.phase().halted);
    }

    /// Host statuses do not depend on the order events arrive in.
    #[test]
    fn host_status_is_order_independent(
        events in proptest::collection::vec(arb_event(), 0..40),
        seed in any::<u64>(),
    ) {
        // one event per key, as the store guarantees
        let mut seen = std::collections::HashSet::new();
        let events: Vec<_> = events.into_iter().filter(|(h, s, _)| seen.insert((*h, *s))).collect();
        let mut shuffled = events.clone();
        use rand::{SeedableRng, seq::SliceRandom};
        shuffled.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(seed));
        let mut a = machine(None, true);
        let mut b = machine(None, true);
        a.handle_timeout(T0);
        b.handle_timeout(T0);
        let names = ["a1", "a2", "a3", "b1", "b2"];
        for &(h, seq, st) in &events {
            a.handle_event(T0, &ev(names[h], seq, HostState::ALL[(st + seq as usize) % 6]));
        }
        for &(h, seq, st) in &shuffled {
            b.handle_event(T0, &ev(names[h], seq, HostState::ALL[(st + seq as usize) % 6]));
        }
        let sa: Vec<_> = a.hosts().iter().map(|h| (h.status.state, h.status.seq)).collect();
        let sb: Vec<_> = b.hosts().iter().map(|h| (h.status.state, h.status.seq)).collect();
        prop_assert_eq!(sa, sb);
    }
}
