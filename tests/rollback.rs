//! `instream rollback`: a deployment of its own that switches a fabric's hosts back to their
//! previous (or a named) version, with no download when the version is still on the host.

mod support;

use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(60);

#[test]
fn rollback_switches_a_fabric_back_without_downloading() {
    let env = Env::new(4, 2);
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
    for h in ["host-1", "host-3"] {
        assert_eq!(env.current(h).as_deref(), Some("1"), "{h} (f1) back on 1");
        assert_eq!(
            env.lines_of(h, "downloads"),
            ["1", "2"],
            "{h}: nothing downloaded for the rollback"
        );
    }
    for h in ["host-2", "host-4"] {
        assert_eq!(env.current(h).as_deref(), Some("2"), "{h} (f2) untouched");
    }
    // Named target: forward again to 2.
    let out = env.ok(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "2"]);
    let rb2: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    env.wait_state(&srv, rb2["id"].as_str().unwrap(), "done", T);
    assert_eq!(env.current("host-1").as_deref(), Some("2"));
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "2"])
            .contains("other than version 2")
    );
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f1", "--to", "7"])
            .contains("unknown version \"7\"")
    );
}
