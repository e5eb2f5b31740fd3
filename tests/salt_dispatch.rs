//! `instream serve --dispatcher salt` against a real Salt installation on loopback
//! (salt-master, salt-api and two salt-minions from PyPI, see `support/salt_rig.rs`): the
//! agents run on the minions through `local_async`, with the real tracker, origin and
//! `instream-peer deploy`; plus the one-line errors of a target with no minion, a wrong
//! salt secret and an unreachable salt-api.

#[path = "support/salt_rig.rs"]
mod salt_rig;
mod support;

use salt_rig::{SALT_USER, SaltRig};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Env, Proc, Server, poll_for};

const T: Duration = Duration::from_secs(60);

/// Runs `instream serve` with `args`, which must fail at once; returns its one error line.
fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
    cmd.arg("serve")
        .args([
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--dispatcher",
            "salt",
        ])
        .arg("--db")
        .arg(dir.join("refused.db"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .args(args)
        .env("INSTREAM_CONFIG_DIR", dir.join("config"))
        .env("RUST_LOG", "warn");
    // It should fail at once: a server still running after 30 s fails the test (with its
    // output), and is killed with its group.
    let mut serve = Proc::spawn("instream serve (should fail)", cmd);
    let status = serve.wait_exit(Duration::from_secs(30));
    serve.wait_output_closed(Duration::from_secs(10));
    assert!(!status.success(), "instream serve {args:?} should fail");
    assert_eq!(
        serve.stdout_lines(),
        Vec::<String>::new(),
        "no listening line before the dispatcher is ready"
    );
    let err = serve.stderr_lines().join("\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// Waits until the deployment is `done`; on timeout shows the server's and Salt's logs.
fn wait_done(env: &Env, srv: &Server, rig: &SaltRig, id: &str) -> Value {
    let mut last = Value::Null;
    let done = poll_for(T, Duration::from_millis(100), || {
        last = env.status_json(srv, id);
        (last["state"] == "done").then(|| last.clone())
    });
    done.unwrap_or_else(|| {
        panic!(
            "timed out after {T:?} waiting for deployment {id} to be done; it is {last}\nserve log:\n{}\nsalt:\n{}",
            env.log(),
            rig.logs()
        )
    })
}

#[test]
fn deploy_through_salt_minions_installs_on_both_and_reports_clear_errors() {
    let rig = SaltRig::start(&[("host-1", "f1", "12"), ("host-2", "f2", "12")]);
    // Tracker and origin; the inventory Env writes is not used by the salt dispatcher.
    let env = Env::fleet(2, 2);
    let secret_file = rig.secret_file.display().to_string();
    let srv = env.serve(
        "127.0.0.1:0",
        &[
            ("INSTREAM_DISPATCHER", "salt".into()),
            ("SALTAPI_URL", rig.api_url.clone()),
            ("SALTAPI_USER", SALT_USER.into()),
            ("SALTAPI_SECRET_FILE", secret_file.clone()),
        ],
    );
    assert!(env.log().contains("logged in to salt-api"), "{}", env.log());

    // The fleet is what the master knows: fabrics come from the minions' grains.
    let (code, fabrics) = srv.http("GET", "/api/v1/fabrics", Some(support::TOKEN), None);
    assert_eq!((code, fabrics.as_str()), (200, r#"["f1","f2"]"#));

    // A variant version, so the compound target carries `and G@osmajorrelease:12`.
    env.publish(&srv, "app", "1");
    let src = env.path().join("src-app-1");
    let out = env.ok(
        &srv,
        &[
            "publish",
            "-p",
            "app",
            "-v",
            "1",
            "--variant",
            "12",
            src.to_str().unwrap(),
        ],
    );
    assert!(out.contains("registered"), "{out}");
    let id = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "1",
            "--variant",
            "12",
            "-f",
            "f1,f2",
            "-H",
            "host-*",
            // Salt's own splay executor delays each minion's run within 1 s.
            "--splay",
            "1",
        ],
    );
    let t0 = Instant::now();
    let v = wait_done(&env, &srv, &rig, &id);
    eprintln!("deployment through salt done in {:.1?}", t0.elapsed());
    assert_eq!(v["progress"]["total"], 2, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "-m", "progress"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let published = std::fs::read(src.join("bin/app")).unwrap();
    for host in ["host-1", "host-2"] {
        assert_eq!(env.current(host).as_deref(), Some("1"), "{host}");
        assert_eq!(
            std::fs::read(env.host_root(host).join("products/app/current/bin/app")).unwrap(),
            published,
            "{host}"
        );
        assert_eq!(env.history(host), ["1"], "{host}: start hook ran once");
    }

    // Each fabric step was one Salt job, and the job ids the server recorded are Salt jids
    // whose returns are the agents' runs on the minions.
    let db = rusqlite::Connection::open(env.path().join("instream.db")).unwrap();
    let mut st = db
        .prepare("SELECT job FROM jobs WHERE deployment = ?1 ORDER BY step")
        .unwrap();
    let jids: Vec<String> = st
        .query_map([&id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(jids.len(), 2, "one job per fabric step: {jids:?}");
    let token = rig.token().expect("log in to salt-api");
    for (jid, host) in jids.iter().zip(["host-1", "host-2"]) {
        assert!(
            jid.len() == 20 && jid.bytes().all(|b| b.is_ascii_digit()),
            "{jid}"
        );
        // The agent seeds for 2 s after success, so its job may still be running.
        let ret = poll_for(T, Duration::from_millis(200), || {
            let r = rig.call(
                &token,
                json!({"client": "runner", "fun": "jobs.lookup_jid", "jid": jid}),
            );
            r.filter(|r| r.get(host).is_some())
        });
        let Some(ret) = ret else {
            panic!("job {jid} has no return from {host}\n{}", rig.logs());
        };
        assert_eq!(
            ret.as_object().unwrap().len(),
            1,
            "job {jid} ran only on {host}: {ret}"
        );
    }

    // Targets that match no minion change nothing and say why.
    let e = env.fails(
        &srv,
        &["deploy", "-p", "app", "-v", "1", "-f", "f1", "-H", "nope-*"],
    );
    assert!(
        e.contains(r#"host pattern "nope-*" matches no host in fabric f1"#),
        "{e}"
    );
    let e = env.fails(
        &srv,
        &["deploy", "-p", "app", "-v", "1", "-f", "f9", "-H", "*"],
    );
    assert!(e.contains(r#"unknown fabric "f9" (known: f1,f2)"#), "{e}");

    // A wrong secret stops `serve` before it listens, with one line naming salt-api.
    let wrong = env.path().join("wrong.secret");
    std::fs::write(&wrong, "not-the-secret\n").unwrap();
    let e = serve_fails(
        env.path(),
        &[
            "--salt-api",
            &rig.api_url,
            "--salt-user",
            SALT_USER,
            "--salt-secret-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(
        e,
        format!(
            "error: salt-api at {} refused the credentials of user \"{SALT_USER}\" (eauth sharedsecret)",
            rig.api_url
        )
    );
    assert!(!e.contains("not-the-secret"));
}

#[test]
fn serve_with_salt_needs_a_reachable_salt_api_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = serve_fails(
        dir.path(),
        &[
            "--salt-api",
            &url,
            "--salt-user",
            "u",
            "--salt-secret-file",
            secret.to_str().unwrap(),
        ],
    );
    assert!(
        e.starts_with(&format!("error: salt-api at {url} is unreachable: ")),
        "{e}"
    );
    let e = serve_fails(dir.path(), &["--salt-user", "u"]);
    assert_eq!(e, "error: --dispatcher salt needs --salt-api URL");
}
