//! `instream rollback` with real hosts: a deployment of its own that switches a fabric's
//! hosts back to their previous (or a named) version: a link switch and the hooks, with zero
//! payload bytes downloaded while the version is still on the host.

mod support;

use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(90);

#[test]
fn rollback_switches_a_fabric_back_without_downloading() {
    let env = Env::fleet(4, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    env.publish(&srv, "app", "2");
    for v in ["1", "2"] {
        let id = env.deploy(
            &srv,
            &[
                "-p",
                "app",
                "-v",
                v,
                "-f",
                "*",
                "-H",
                "*",
                "--parallel-fabrics",
            ],
        );
        env.wait_state(&srv, &id, "done", T);
        for h in env.hosts_json(&srv, &id, "success") {
            assert!(
                h["bytes"].as_u64().unwrap() > 0,
                "version {v} was downloaded: {h}"
            );
        }
    }
    let out = env.ok(&srv, &["rollback", "-p", "app", "-f", "f1"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "submitted");
    let rb = v["id"].as_str().unwrap();
    let r = env.wait_state(&srv, rb, "done", T);
    assert_eq!(
        (r["kind"].as_str(), r["version"].as_str()),
        (Some("rollback"), Some("previous"))
    );
    assert_eq!(
        env.ok(&srv, &["status", "-t", rb]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let hosts = env.hosts_json(&srv, rb, "success");
    assert_eq!(hosts.len(), 2);
    for h in &hosts {
        assert_eq!(h["version"], "1");
        assert_eq!(h["bytes"], 0, "zero payload bytes downloaded: {h}");
    }
    for h in ["host-1", "host-3"] {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h} (f1) back on 1");
        assert_eq!(env.history(h), ["1", "2", "1"], "{h}: hooks ran again");
        assert!(
            env.lines_of(h, "agent.log")
                .iter()
                .any(|l| l.contains("success app 1") && l.contains("0 bytes downloaded, from disk")),
            "{h}: {:?}",
            env.lines_of(h, "agent.log")
        );
    }
    for h in ["host-2", "host-4"] {
        assert_eq!(env.current(h).as_deref(), Some("2"), "{h} (f2) untouched");
        assert_eq!(env.history(h), ["1", "2"], "{h}");
    }
    // Named target: forward again to 2, also from disk.
    let out = env.ok(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "2"]);
    let rb2: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rb2 = rb2["id"].as_str().unwrap();
    env.wait_state(&srv, rb2, "done", T);
    assert_eq!(env.current("host-1").as_deref(), Some("2"));
    for h in env.hosts_json(&srv, rb2, "success") {
        assert_eq!(h["bytes"], 0, "{h}");
    }
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "2"])
            .contains("other than version 2")
    );
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "7"])
            .contains("unknown version \"7\"")
    );
}
