//! `instream service start|stop|restart|status|check` with real hosts (tracker, origin,
//! `instream-peer deploy --service`): each runs the product's hooks on the active version,
//! is tracked like a deployment (own id, per-host results with the hook's last line in
//! `status --json`), never changes what runs where, and `status`/`check` ask every host
//! without halting on the ones that answer badly.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(60);

/// Publishes `svc` 1 whose hooks keep the service's state in `products/svc/state`.
fn publish_service(env: &Env, srv: &support::Server) {
    let src = env.path().join("src-svc-1");
    let hooks = src.join(".instream/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(src.join("payload"), "svc 1\n".repeat(50_000)).unwrap();
    for (name, body) in [
        (
            "start",
            "echo \"$INSTREAM_VERSION\" >> ../../history\necho started > ../../state\necho \"started $INSTREAM_VERSION\"",
        ),
        (
            "stop",
            "echo stopped > ../../state\necho \"stopped $INSTREAM_VERSION\"",
        ),
        (
            "status",
            "s=$(cat ../../state)\necho \"$s\"\n[ \"$s\" = started ] || exit 3",
        ),
        (
            "health",
            "[ \"$(cat ../../state)\" = started ] || { echo 'not running' >&2; exit 1; }\necho healthy",
        ),
    ] {
        let p = hooks.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = env.ok(
        srv,
        &["publish", "-p", "svc", "-v", "1", src.to_str().unwrap()],
    );
    assert!(out.contains("registered"), "{out}");
}

fn service(env: &Env, srv: &support::Server, args: &[&str]) -> String {
    let mut all = vec!["service"];
    all.extend_from_slice(args);
    let out = env.ok(srv, &all);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "submitted", "{out}");
    v["id"].as_str().unwrap().to_string()
}

/// Each host's (state, reason) in a finished service command.
fn results(env: &Env, srv: &support::Server, id: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for state in ["success", "failure"] {
        for h in env.hosts_json(srv, id, state) {
            out.push((
                h["host"].as_str().unwrap().to_string(),
                state.to_string(),
                h["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out.sort();
    out
}

fn state_of(env: &Env, host: &str) -> String {
    std::fs::read_to_string(env.host_root(host).join("products/svc/state"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn service_commands_run_the_hooks_of_the_active_version_and_report_each_host() {
    let env = Env::fleet(3, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    publish_service(&env, &srv);
    let dep = env.deploy(&srv, &["-p", "svc", "-v", "1", "-f", "*", "-H", "*"]);
    env.wait_state(&srv, &dep, "done", T);
    let hosts = ["host-1", "host-2", "host-3"];
    for h in hosts {
        assert_eq!(state_of(&env, h), "started", "{h}");
    }
    let before = env.ok(&srv, &["versions", "-p", "svc"]);

    // stop on one host: only its service stops; its result carries the hook's last line.
    let id = service(
        &env,
        &srv,
        &["stop", "-p", "svc", "-f", "*", "-H", "host-1"],
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(
        (v["kind"].as_str(), v["action"].as_str()),
        (Some("service"), Some("stop")),
        "{v}"
    );
    assert_eq!(
        results(&env, &srv, &id),
        [(
            "host-1".into(),
            "success".into(),
            "stop 1: stopped 1".into()
        )]
    );
    assert_eq!(
        hosts.map(|h| state_of(&env, h)),
        ["stopped", "started", "started"]
    );

    // status asks every host and does not halt on the stopped one.
    let id = service(&env, &srv, &["status", "-p", "svc", "-f", "*", "-H", "*"]);
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["total"], 3, "{v}");
    let r = results(&env, &srv, &id);
    assert_eq!(r[0].0, "host-1");
    assert_eq!(r[0].1, "failure", "{r:?}");
    assert!(r[0].2.contains("status hook of 1 failed"), "{r:?}");
    assert_eq!(
        r[1],
        (
            "host-2".into(),
            "success".into(),
            "status 1: started".into()
        )
    );
    assert_eq!(
        r[2],
        (
            "host-3".into(),
            "success".into(),
            "status 1: started".into()
        )
    );

    // A rolling restart, one host at a time: without a restart hook it is stop, then start.
    let id = service(
        &env,
        &srv,
        &["restart", "-p", "svc", "-f", "*", "-H", "*", "--batch", "1"],
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(
        v["steps"].as_array().unwrap().len(),
        3,
        "one host per step: {v}"
    );
    for h in hosts {
        assert_eq!(state_of(&env, h), "started", "{h}");
        let starts =
            std::fs::read_to_string(env.host_root(h).join("products/svc/history")).unwrap();
        assert_eq!(
            starts.lines().collect::<Vec<_>>(),
            ["1", "1"],
            "{h}: started by deploy, then by restart"
        );
    }

    // check is the health hook.
    let id = service(&env, &srv, &["check", "-p", "svc", "-f", "*", "-H", "*"]);
    env.wait_state(&srv, &id, "done", T);
    assert!(
        results(&env, &srv, &id)
            .iter()
            .all(|(_, s, r)| s == "success" && r == "check 1: healthy")
    );

    // Service commands never change what runs where.
    assert_eq!(env.ok(&srv, &["versions", "-p", "svc"]), before);

    // Targets that are wrong change nothing and say why.
    let e = env.fails(
        &srv,
        &["service", "start", "-p", "nope", "-f", "*", "-H", "*"],
    );
    assert!(e.contains(r#"unknown product "nope""#), "{e}");
    let e = env.fails(
        &srv,
        &["service", "start", "-p", "svc", "-f", "f1", "-H", "zzz*"],
    );
    assert!(e.contains("matches no host"), "{e}");
}
