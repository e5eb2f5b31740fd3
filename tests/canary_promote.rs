//! Canaries with real hosts: a passing canary waits for `promote` and then rolls out fabric
//! by fabric; a canary whose health check fails on a host halts the deployment, that host
//! switches itself back, the other canary hosts are rolled back to their previous version
//! (from disk), and the rest never change.

mod support;

use std::time::Duration;
use support::{Env, wait_for};

const T: Duration = Duration::from_secs(90);

#[test]
fn passed_canary_waits_for_promote() {
    let env = Env::fleet(6, 2);
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
    let canaries = env.hosts_json(&srv, &id, "success");
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
    assert_eq!(env.current("host-1").as_deref(), Some("1"));
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
    for i in 1..=6 {
        assert_eq!(env.current(&format!("host-{i}")).as_deref(), Some("1"));
    }
    assert!(env.fails(&srv, &["promote", "-t", &id]).contains("is done"));
}

#[test]
fn canary_failing_its_health_check_halts_and_returns_canaries_to_the_previous_version() {
    let env = Env::fleet(6, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    // Version 2's health check fails on host-2 only, with a reason on its last stderr line.
    env.publish_with(
        &srv,
        "app",
        "2",
        "if [ \"$INSTREAM_HOST\" = host-2 ]; then echo probing >&2; echo \"health check failed on $INSTREAM_HOST\" >&2; exit 1; fi",
    );
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
    let failed = env.hosts_json(&srv, &v2, "failure");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["host"], "host-2");
    assert_eq!(
        failed[0]["reason"], "health check failed on host-2",
        "the health hook's last stderr line"
    );
    // The remaining hosts were never dispatched: they stay pending in the halted deployment.
    let pending: Vec<String> = env
        .hosts_json(&srv, &v2, "pending")
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pending, ["host-5", "host-6"]);

    // The halt is saved first and the rollback it starts is recorded just after: wait for it.
    let rb = wait_for(
        T,
        "the halted deployment to record the rollback it started",
        || {
            env.status_json(&srv, &v2)["rollback_id"]
                .as_str()
                .map(str::to_string)
        },
    );
    let r = env.wait_state(&srv, &rb, "done", T);
    assert_eq!(r["kind"], "rollback");
    assert_eq!(r["parent"], v2.as_str());
    assert_eq!(r["progress"]["total"], 4, "every canary host had version 1");
    for h in env.hosts_json(&srv, &rb, "success") {
        assert_eq!(h["bytes"], 0, "rolled back from disk: {h}");
    }

    for h in ["host-1", "host-2", "host-3", "host-4"] {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h} back on 1");
        assert_eq!(env.history(h), ["1", "2", "1"], "{h}");
    }
    for h in ["host-5", "host-6"] {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h}");
        assert_eq!(env.history(h), ["1"], "{h} never changed");
        assert!(
            !env.host_root(h).join("products/app/versions/2").exists(),
            "{h} never fetched version 2"
        );
    }

    // What runs where agrees with the hosts' disks, and says how each got there.
    let out = env.ok(&srv, &["versions", "-p", "app", "--json"]);
    let lines: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    let by_host = |h: &str| {
        lines
            .iter()
            .find(|l| l["host"] == h)
            .unwrap_or_else(|| panic!("{h} in versions: {out}"))
            .clone()
    };
    assert_eq!(lines.len(), 6, "{out}");
    for h in ["host-1", "host-3", "host-4"] {
        let l = by_host(h);
        assert_eq!(
            (l["version"].as_str(), l["previous"].as_str()),
            (Some("1"), Some("2")),
            "{l}"
        );
        assert_eq!(
            (l["kind"].as_str(), l["deployment"].as_str()),
            (Some("rollback"), Some(rb.as_str())),
            "{l}"
        );
    }
    assert_eq!(
        by_host("host-2")["version"],
        "1",
        "its 2 never verified healthy"
    );
    for h in ["host-5", "host-6"] {
        let l = by_host(h);
        assert_eq!(
            (
                l["version"].as_str(),
                l["kind"].as_str(),
                l["deployment"].as_str()
            ),
            (Some("1"), Some("deploy"), Some(v1.as_str())),
            "{l}"
        );
    }
    let text = env.ok(&srv, &["versions", "-p", "app", "-f", "f1"]);
    let first = text.lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("host-1 f1 1 ") && first.ends_with(&format!(" {rb} rollback")),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        3,
        "f1 holds host-1, host-3, host-5: {text}"
    );
}
