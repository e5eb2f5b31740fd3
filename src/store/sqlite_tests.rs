//! Store tests: registry, idempotent ingest, the maximum rule in SQL agreeing with the
//! machine's, progress and host lists, restore after reopen.

use super::*;
use crate::deploy::canary;
use crate::deploy::model::{Canary, Gate};
use pretty_assertions::assert_eq;

fn spec() -> DeploymentSpec {
    DeploymentSpec {
        kind: DeploymentKind::Deploy,
        product: "app".into(),
        version: "2".into(),
        variant: None,
        fabrics: vec!["f1".into(), "f2".into()],
        hosts: "*".into(),
        canary: Some(Canary::Hosts(1)),
        auto_promote: false,
        parallel_fabrics: false,
        gate: Gate::default(),
        report_deadline_ms: 1000,
        splay_secs: None,
        batch: None,
    }
}

fn targets() -> Vec<Target> {
    [("h1", "f1"), ("h2", "f1"), ("h3", "f2")]
        .iter()
        .map(|(h, f)| Target {
            host: h.to_string(),
            fabric: f.to_string(),
            version: "2".into(),
            previous: None,
        })
        .collect()
}

fn setup(store: &mut Store) {
    let t = targets();
    let plan = canary::plan(&t, &spec().fabrics, spec().canary, false, None);
    let hosts: Vec<_> = t.into_iter().zip(plan.step_of).collect();
    store
        .create_deployment("d1", &spec(), &plan.steps, &hosts, 100)
        .unwrap();
}

fn ev(host: &str, seq: u64, state: HostState) -> HostEvent {
    HostEvent {
        deployment: "d1".into(),
        host: host.into(),
        fabric: "ignored".into(),
        seq,
        state,
        bytes: seq * 100,
        timestamp: 1000 + seq,
        reason: (state == HostState::Failure).then(|| "boom".into()),
    }
}

fn nv(version: &str, hash: &str) -> NewVersion {
    NewVersion {
        product: "app".into(),
        version: version.into(),
        variant: String::new(),
        info_hash: hash.into(),
        size: 10,
        manifest: b"m".to_vec(),
        torrent: b"t".to_vec(),
    }
}

#[test]
fn register_is_idempotent_and_conflicts_on_other_hash() {
    let mut s = Store::open_in_memory().unwrap();
    assert!(s.register_version(&nv("1", &"a".repeat(40)), 1).unwrap());
    assert!(!s.register_version(&nv("1", &"A".repeat(40)), 2).unwrap());
    let err = s
        .register_version(&nv("1", &"b".repeat(40)), 3)
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(s.products().unwrap(), vec!["app".to_string()]);
    assert_eq!(s.versions("app").unwrap().len(), 1);
    assert_eq!(
        s.version_blob("app", "1", Some("12"), Blob::Torrent)
            .unwrap(),
        Some(b"t".to_vec()),
        "a variant falls back to the variant-less build"
    );
    assert_eq!(s.version("app", "9", None).unwrap(), None);
}

#[test]
fn ingest_dedupes_and_keeps_the_maximum() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    let batch = vec![
        ev("h1", 3, HostState::Success),
        ev("h1", 1, HostState::Downloading),
        ev("h1", 3, HostState::Success),
        ev("nope", 1, HostState::Success),
    ];
    let out = s.ingest(&batch, 5).unwrap();
    assert_eq!(out.new, vec![0, 1]);
    assert_eq!(out.duplicates, 1);
    assert_eq!(out.rejected.len(), 1);
    assert!(out.rejected[0].1.contains("not a target"));
    // Re-delivery of the whole batch changes nothing.
    let again = s.ingest(&batch, 6).unwrap();
    assert_eq!(again.new, Vec::<usize>::new());
    assert_eq!(again.duplicates, 3);

    let rec = s.host_records("d1").unwrap();
    let h1 = rec.iter().find(|r| r.target.host == "h1").unwrap();
    assert_eq!(h1.status.state, HostState::Success);
    assert_eq!(h1.status.seq, 3);
    assert_eq!(h1.status.bytes, 300);
    assert_eq!(s.event_count("d1").unwrap(), 2);
    assert_eq!(
        s.events_of("d1", "h1").unwrap()[0].fabric,
        "f1",
        "fabric comes from the target"
    );
}

#[test]
fn sql_rule_matches_machine_rule() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    let evs = [
        ev("h2", 2, HostState::Verifying),
        ev("h2", 0, HostState::Failure),
        ev("h2", 1, HostState::Downloading),
        ev("h2", 5, HostState::Success),
        ev("h2", 4, HostState::Installing),
        ev("h2", 6, HostState::Downloading),
    ];
    let mut model = HostStatus::pending(100);
    for e in &evs {
        s.ingest(std::slice::from_ref(e), 1).unwrap();
        model.apply(e);
        let rec = s.host_records("d1").unwrap();
        let h2 = &rec.iter().find(|r| r.target.host == "h2").unwrap().status;
        assert_eq!(h2, &model, "after {e:?}");
    }
}

#[test]
fn success_records_installed_versions_and_previous() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    s.ingest(&[ev("h1", 1, HostState::Success)], 1).unwrap();
    let got = s.installed("app", &["h1".into(), "h2".into()]).unwrap();
    assert_eq!(got.get("h1"), Some(&("2".to_string(), None)));
    assert_eq!(got.get("h2"), None);
    // A later deployment of version 3 makes 2 the previous one.
    let mut sp = spec();
    sp.version = "3".into();
    let t = Target {
        host: "h1".into(),
        fabric: "f1".into(),
        version: "3".into(),
        previous: Some("2".into()),
    };
    s.create_deployment("d2", &sp, &[StepKind::All], &[(t, 0)], 5)
        .unwrap();
    let mut e = ev("h1", 1, HostState::Success);
    e.deployment = "d2".into();
    s.ingest(&[e], 6).unwrap();
    assert_eq!(
        s.installed_in_fabric("app", "f1").unwrap(),
        vec![("h1".to_string(), "3".to_string(), Some("2".to_string()))]
    );
}

#[test]
fn progress_and_host_lines_per_fabric() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    s.ingest(
        &[
            ev("h1", 1, HostState::Success),
            ev("h2", 1, HostState::Downloading),
            ev("h3", 2, HostState::Failure),
        ],
        1,
    )
    .unwrap();
    let p = s.progress("d1").unwrap();
    assert_eq!(
        (
            p.all.total,
            p.all.success,
            p.all.failure,
            p.all.unfinished()
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(p.fabrics["f1"].success, 1);
    assert_eq!(p.fabrics["f2"].failure, 1);

    let pending = s.host_lines("d1", HostFilter::Pending, None).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].host.as_str(), pending[0].state),
        ("h2", HostState::Downloading)
    );
    let fail = s.host_lines("d1", HostFilter::Failure, Some("f2")).unwrap();
    assert_eq!(fail[0].reason.as_deref(), Some("boom"));
    assert!(fail[0].canary, "h3 is f2's canary");
    assert!(
        s.host_lines("d1", HostFilter::Failure, Some("f1"))
            .unwrap()
            .is_empty()
    );
    let all = s.host_lines("d1", HostFilter::All, None).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

#[test]
fn deployment_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let mut s = Store::open(&path, false).unwrap();
        setup(&mut s);
        let phase = PhaseRecord {
            step: Some(0),
            step_started_at: 7,
            ..Default::default()
        };
        s.save_phase("d1", &phase, true, 8).unwrap();
        s.ingest(&[ev("h1", 1, HostState::Installing)], 9).unwrap();
    }
    let s = Store::open(&path, false).unwrap();
    let active = s.active_deployments().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].spec, spec());
    assert_eq!(active[0].phase.step_started_at, 7);
    assert_eq!(active[0].steps[0], StepKind::Canary);
    let rec = s.host_records("d1").unwrap();
    assert_eq!(rec.len(), 3);
    assert_eq!(rec[0].status.state, HostState::Installing);
}

#[test]
fn duplicate_deployment_id_is_refused() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    let err = s
        .create_deployment("d1", &spec(), &[StepKind::All], &[], 1)
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateDeployment { .. }));
}

#[test]
fn revocations_survive_reopen_and_never_move_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let mut s = Store::open(&path, false).unwrap();
        s.revoke("h1", "", 100).unwrap();
        s.revoke("h1", "", 50).unwrap();
        s.revoke("h2", "d-1", 7).unwrap();
    }
    let s = Store::open(&path, false).unwrap();
    let mut rows = s.revocations().unwrap();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("h1".to_string(), String::new(), 100),
            ("h2".to_string(), "d-1".to_string(), 7)
        ]
    );
}

#[test]
fn running_lists_active_versions_their_origin_and_unknown_hosts() {
    let mut s = Store::open_in_memory().unwrap();
    setup(&mut s);
    s.ingest(&[ev("h1", 1, HostState::Success)], 10).unwrap();
    let got = s.running("app", None).unwrap();
    let hosts: Vec<_> = got
        .iter()
        .map(|l| (l.host.as_str(), l.version.as_deref()))
        .collect();
    assert_eq!(hosts, vec![("h1", Some("2")), ("h2", None), ("h3", None)]);
    assert_eq!(got[0].since, Some(10));
    assert_eq!(got[0].deployment.as_deref(), Some("d1"));
    assert_eq!(got[0].kind.as_deref(), Some("deploy"));
    assert_eq!(s.running("app", Some("f2")).unwrap().len(), 1);
    // The same version again (a re-delivered or re-run success) keeps `since`.
    s.ingest(&[ev("h1", 2, HostState::Success)], 20).unwrap();
    assert_eq!(s.running("app", Some("f1")).unwrap()[0].since, Some(10));
    // A rollback to 1 moves since, deployment and kind, and adds to the history.
    let mut sp = spec();
    sp.kind = DeploymentKind::Rollback { parent: None };
    sp.version = "1".into();
    let t = Target {
        host: "h1".into(),
        fabric: "f1".into(),
        version: "1".into(),
        previous: Some("2".into()),
    };
    s.create_deployment("r1", &sp, &[StepKind::All], &[(t, 0)], 25)
        .unwrap();
    let mut e = ev("h1", 3, HostState::Success);
    e.deployment = "r1".into();
    s.ingest(&[e], 30).unwrap();
    let h1 = s.running("app", Some("f1")).unwrap().remove(0);
    assert_eq!(
        (
            h1.version.as_deref(),
            h1.previous.as_deref(),
            h1.since,
            h1.kind.as_deref()
        ),
        (Some("1"), Some("2"), Some(30), Some("rollback"))
    );
    let hist: Vec<_> = s
        .version_history("app", "h1")
        .unwrap()
        .into_iter()
        .map(|c| (c.version, c.at, c.deployment))
        .collect();
    assert_eq!(
        hist,
        vec![("2".into(), 10, "d1".into()), ("1".into(), 30, "r1".into())]
    );
}
