//! Deploy through the local dispatcher and read status through the CLI: contract wording,
//! per-host lines with timestamps, `--json`, per-fabric filters (with real hosts: tracker,
//! origin, `instream-peer deploy`), duplicate events and hosts that never answer (with the
//! fake agent, which can misbehave on purpose).

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Env, TOKEN};

const T: Duration = Duration::from_secs(60);

fn is_rfc3339(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && &s[4..5] == "-" && &s[10..11] == "T"
}

#[test]
fn deploy_to_fabrics_reaches_full_success_with_timestamped_host_lines() {
    let env = Env::fleet(6, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "host-*"],
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["total"], 6);
    assert_eq!(
        v["steps"],
        serde_json::json!([{"kind":"fabric","fabric":"f1"},{"kind":"fabric","fabric":"f2"}])
    );

    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "-m", "progress"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let lines = env.ok(&srv, &["status", "-t", &id, "-m", "success"]);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 6);
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "{l}");
        assert_eq!(f[0], "success");
        assert!(is_rfc3339(f[1]), "{l}");
        assert!(f[2].starts_with("host-"), "{l}");
    }
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "--watch", "--interval", "0.1"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0",
        "--watch ends at a finished deployment and prints the final line only on stdout"
    );
    assert_eq!(env.ok(&srv, &["status", "-t", &id, "-m", "failure"]), "");
    assert_eq!(env.ok(&srv, &["status", "-t", &id, "-m", "pending"]), "");

    // Per fabric, and JSON that parses.
    let f2 = env.ok(
        &srv,
        &["status", "-t", &id, "-f", "f2", "-m", "success", "--json"],
    );
    let hosts: Vec<Value> = serde_json::from_str(&f2).unwrap();
    assert_eq!(hosts.len(), 3);
    assert!(hosts.iter().all(|h| h["fabric"] == "f2"
        && h["state"] == "success"
        && is_rfc3339(h["timestamp"].as_str().unwrap())));
    let p: Value =
        serde_json::from_str(&env.ok(&srv, &["status", "-t", &id, "-f", "f1", "--json"])).unwrap();
    assert_eq!(p["progress"]["total"], 3);
    assert_eq!(p["by_fabric"]["f2"]["success"], 3);
    assert!(
        env.fails(&srv, &["status", "-t", &id, "-f", "f7"])
            .contains("no host in fabric")
    );
    assert!(
        env.fails(&srv, &["status", "-t", "d-000000000000"])
            .contains("no deployment d-000000000000")
    );

    // Every host fetched the whole payload through the swarm and runs it: the version
    // directory holds the published files, `current` points at it, the start hook ran.
    let published = std::fs::read(env.path().join("src-app-1/bin/app")).unwrap();
    for h in &hosts {
        // At least the payload, and not wildly more (end-game duplicates are few).
        let b = h["bytes"].as_u64().unwrap();
        assert!(b >= published.len() as u64, "{h}");
        assert!(b <= 2 * (published.len() as u64 + 4096), "{h}");
    }
    for i in 1..=6 {
        let host = format!("host-{i}");
        assert_eq!(env.current(&host).as_deref(), Some("1"), "{host}");
        assert_eq!(
            std::fs::read(env.host_root(&host).join("products/app/current/bin/app")).unwrap(),
            published,
            "{host}"
        );
        assert_eq!(env.history(&host), ["1"], "{host}: start hook ran once");
    }
    // Status events are idempotent per (deployment, host, seq): each host's sequence is
    // complete and ends in success.
    let store = instream::store::Store::open(&env.path().join("instream.db"), false).unwrap();
    for i in 1..=6 {
        let host = format!("host-{i}");
        let evs = store.events_of(&id, &host).unwrap();
        let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            seqs.first()
                .map_or(vec![], |&f| (f..f + seqs.len() as u64).collect::<Vec<_>>()),
            "{host}"
        );
        let states: Vec<&str> = evs.iter().map(|e| e.state.as_str()).collect();
        for s in ["downloading", "verifying", "installing", "success"] {
            assert!(states.contains(&s), "{host}: {states:?}");
        }
        assert_eq!(*states.last().unwrap(), "success", "{host}");
    }
    let (_, metrics) = srv.http("GET", "/metrics", Some(TOKEN), None);
    assert!(
        metrics.contains("instream_events_duplicate_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn redelivered_batches_change_nothing() {
    let env = Env::new(2, 1);
    let srv = env.serve(
        "127.0.0.1:0",
        &[("FAKE_AGENT_SILENT", "host-1,host-2".into())],
    );
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);
    let ev = |seq: u64, state: &str| serde_json::json!({"deployment": id, "host": "host-1", "fabric": "f1", "seq": seq, "state": state, "bytes": 5, "timestamp": 1_700_000_000_000u64 + seq});
    let batch =
        serde_json::json!({"events": [ev(1, "downloading"), ev(3, "success"), ev(2, "verifying")]})
            .to_string();
    let (code, first) = srv.http("POST", "/api/v1/events", Some(TOKEN), Some(&batch));
    assert_eq!(code, 200, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (first["stored"].clone(), first["duplicates"].clone()),
        (3.into(), 0.into())
    );
    let (_, again) = srv.http("POST", "/api/v1/events", Some(TOKEN), Some(&batch));
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        (again["stored"].clone(), again["duplicates"].clone()),
        (0.into(), 3.into())
    );
    // A late "downloading" never overwrites "success".
    let late = serde_json::json!({"events": [ev(0, "downloading"), ev(9, "installing"), {"deployment": id, "host": "ghost", "seq": 1, "state": "success", "timestamp": 1}]}).to_string();
    let (_, late) = srv.http("POST", "/api/v1/events", Some(TOKEN), Some(&late));
    let late: Value = serde_json::from_str(&late).unwrap();
    assert_eq!(late["rejected"][0]["index"], 2, "{late}");
    let lines = env.ok(&srv, &["status", "-t", &id, "-m", "success"]);
    assert_eq!(lines.lines().count(), 1);
    assert!(
        lines.starts_with("success 2023-11-14T22:13:20.003Z host-1"),
        "{lines}"
    );
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 50 Failure Percentage: 0 Pending Percentage: 50"
    );
}

#[test]
fn hosts_that_never_answer_fail_after_the_report_deadline() {
    let env = Env::new(3, 1);
    let srv = env.serve("127.0.0.1:0", &[("FAKE_AGENT_SILENT", "host-2".into())]);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "1",
            "-f",
            "f1",
            "-H",
            "*",
            "--report-deadline",
            "1",
        ],
    );
    let v = env.wait_state(&srv, &id, "halted", T);
    assert!(
        v["halted_reason"]
            .as_str()
            .unwrap()
            .contains("fabric f1 gate failed: 2 of 3 hosts succeeded, 1 failed"),
        "{v}"
    );
    let fail: Vec<Value> =
        serde_json::from_str(&env.ok(&srv, &["status", "-t", &id, "-m", "failure", "--json"]))
            .unwrap();
    assert_eq!(fail.len(), 1);
    assert_eq!(fail[0]["host"], "host-2");
    assert_eq!(fail[0]["reason"], "no report within 1s");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 66.67 Failure Percentage: 33.33 Pending Percentage: 0"
    );
}
