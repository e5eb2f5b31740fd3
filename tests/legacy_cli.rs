//! The command-line spelling of the system instream descends from, run for real: `instream
//! -p P -v V -f F -ho HOSTS -m torrent` deploys and answers with the contract's line plus
//! `torrentid`; `-ho` inside `deploy` means hosts; and `-h` mixed with other arguments is a
//! usage error (exit 2, one line), never help with exit 0 that a script would take for a
//! deployment (issue 9).

mod support;

use serde_json::Value;
use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(90);

#[test]
fn r9_the_old_spelling_deploys_and_answers_with_torrentid() {
    let env = Env::fleet(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let out = env.ok(
        &srv,
        &[
            "-p", "app", "-v", "1", "-f", "f1", "-ho", "*", "-m", "torrent",
        ],
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "submitted", "{out}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["torrentid"],
        id.as_str(),
        "old scripts read torrentid: {out}"
    );
    env.wait_state(&srv, &id, "done", T);
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );

    // `-ho` inside `deploy` is hosts too, and the answer is the contract's line alone.
    env.publish(&srv, "app", "2");
    let id2 = env.deploy(&srv, &["-p", "app", "-v", "2", "-f", "f1", "-ho", "*"]);
    env.wait_state(&srv, &id2, "done", T);
    assert_eq!(env.current("host-1").as_deref(), Some("2"));
}

#[test]
fn r9_help_mixed_with_arguments_is_an_error_not_help() {
    let env = Env::new(1, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    for args in [
        &["status", "-t", "d-1", "-ho"][..],
        &[
            "deploy", "-p", "app", "-v", "1", "-f", "f1", "-H", "*", "-h",
        ],
        &["rollback", "-p", "app", "-f", "f1", "--help"],
        &[
            "-p", "app", "-v", "1", "-f", "f1", "-ho", "*", "-m", "rsync",
        ],
    ] {
        let out = env.cli(&srv, args);
        assert_eq!(out.status.code(), Some(2), "instream {args:?} must exit 2");
        assert!(out.stdout.is_empty(), "instream {args:?} printed to stdout");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    // Help alone is still help.
    let out = env.cli(&srv, &["deploy", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--hosts"));
    // Nothing was deployed by any of the above.
    let (code, body) = srv.http("GET", "/api/v1/deployments", Some(support::TOKEN), None);
    assert_eq!(code, 200);
    let list: Vec<Value> = serde_json::from_str(&body).expect("a JSON list of deployments");
    assert!(list.is_empty(), "nothing may have been deployed: {body}");
}
