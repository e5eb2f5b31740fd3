//! Canaries: a passing canary waits for `promote` and then rolls out fabric by fabric; a
//! failing one halts the deployment and switches the canary hosts back to their previous
//! version, while the rest never change.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(60);

#[test]
fn passed_canary_waits_for_promote() {
    let env = Env::new(6, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &[
            "-p", "app", "-v", "1", "-f", "f1,f2", "-H", "*", "--canary", "1",
        ],
    );
    let v = env.wait_state(&srv, &id, "awaiting_promotion", T);
    assert_eq!(v["progress"]["success"], 2, "one canary per fabric: {v}");
    let canaries: Vec<Value> =
        serde_json::from_str(&env.ok(&srv, &["status", "-t", &id, "-m", "success", "--json"]))
            .unwrap();
    let mut names: Vec<&str> = canaries
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["host-1", "host-2"],
        "first host of each fabric by name"
    );
    assert!(canaries.iter().all(|h| h["canary"] == true));
    assert_eq!(env.current("host-3"), None, "the rest waits");

    let out = env.ok(&srv, &["promote", "-t", &id]);
    assert_eq!(
        out.trim(),
        format!("{{\"status\":\"promoted\",\"id\":\"{id}\"}}")
    );
    env.wait_state(&srv, &id, "done", T);
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    assert!(env.fails(&srv, &["promote", "-t", &id]).contains("is done"));
}

#[test]
fn failed_canary_halts_and_rolls_canary_hosts_back() {
    let env = Env::new(6, 2);
    let srv = env.serve("127.0.0.1:0", &[("FAKE_AGENT_FAIL", "host-2".into())]);
    env.publish(&srv, "app", "1");
    env.publish(&srv, "app", "2");
    // Version 1 everywhere but host-2 (which fails everything): hosts 1,3,4,5,6 run "1".
    let v1 = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "1",
            "-f",
            "*",
            "-H",
            "*",
            "--parallel-fabrics",
            "--max-failures",
            "1",
            "--min-success",
            "50",
        ],
    );
    env.wait_state(&srv, &v1, "done", T);

    // Canary of 2: host-1 and host-3 in f1, host-2 and host-4 in f2; host-2 fails.
    let v2 = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "2",
            "-f",
            "f1,f2",
            "-H",
            "*",
            "--canary",
            "2",
            "--auto-promote",
        ],
    );
    let v = env.wait_state(&srv, &v2, "halted", T);
    assert!(
        v["halted_reason"]
            .as_str()
            .unwrap()
            .starts_with("canary gate failed: 3 of 4 hosts succeeded, 1 failed"),
        "{v}"
    );
    let rb = v["rollback_id"]
        .as_str()
        .expect("a rollback was started")
        .to_string();
    let r = env.wait_state(&srv, &rb, "done", T);
    assert_eq!(r["kind"], "rollback");
    assert_eq!(r["parent"], v2.as_str());
    assert_eq!(
        r["progress"]["total"], 3,
        "the canaries that had a previous version"
    );

    for h in ["host-1", "host-3", "host-4"] {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h} back on 1");
        assert_eq!(env.lines_of(h, "history"), ["1", "2", "1"], "{h}");
        assert_eq!(
            env.lines_of(h, "downloads"),
            ["1", "2"],
            "{h}: rollback downloads nothing"
        );
    }
    for h in ["host-5", "host-6"] {
        assert_eq!(env.lines_of(h, "history"), ["1"], "{h} never changed");
    }
    let failed = env.ok(&srv, &["status", "-t", &v2, "-m", "failure", "--json"]);
    let failed: Vec<Value> = serde_json::from_str(&failed).unwrap();
    assert_eq!(failed[0]["reason"], "health check failed on host-2");
    // The remaining hosts were never dispatched: they stay pending in the halted deployment.
    assert_eq!(
        env.ok(&srv, &["status", "-t", &v2, "-m", "pending"])
            .lines()
            .count(),
        2
    );
}
