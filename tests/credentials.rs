//! Scoped credentials of the control API (issue 15): each host's agent gets its own
//! credential at dispatch, which may read manifests and torrents and post that host's own
//! events for that deployment, and nothing else; `instream revoke -H HOST` refuses it from
//! then on. The operator's token still does everything; the tracker's token does nothing
//! here. Hosts are the fake agent told to stay silent, so the test posts their events
//! itself, with their credentials.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Env, Server, TOKEN, TRACKER_TOKEN, wait_for};

const T: Duration = Duration::from_secs(30);

/// The credential the local dispatcher wrote for `host`'s agent in deployment `id`, once
/// it exists; checks that only its owner may read it.
fn credential(env: &Env, host: &str, id: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let f = env.host_root(host).join("credentials").join(id);
    let text = wait_for(T, &format!("the credential file {}", f.display()), || {
        std::fs::read_to_string(&f)
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is mode {mode:o}", f.display());
    let cred = text.trim().to_string();
    assert!(
        cred.starts_with(&format!("agent:{host}:{id}:")),
        "credential of {host}: {cred}"
    );
    cred
}

fn event(id: &str, host: &str, seq: u64, state: &str) -> Value {
    json!({"deployment": id, "host": host, "fabric": "f1", "seq": seq, "state": state,
           "bytes": 5, "timestamp": 1_700_000_000_000u64 + seq})
}

fn post_events(srv: &Server, token: &str, events: &[Value]) -> (u16, String) {
    let body = json!({ "events": events }).to_string();
    srv.http("POST", "/api/v1/events", Some(token), Some(&body))
}

/// Every host of a deployment, as the API lists them (operator token).
fn hosts(srv: &Server, id: &str) -> Vec<Value> {
    let (code, body) = srv.http(
        "GET",
        &format!("/api/v1/deployments/{id}/hosts"),
        Some(TOKEN),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["hosts"].as_array().unwrap().clone()
}

/// What must not change when a forged request is refused: state, progress, hosts.
fn snapshot(env: &Env, srv: &Server, id: &str) -> (Value, Value, Vec<Value>) {
    let v = env.status_json(srv, id);
    (v["state"].clone(), v["progress"].clone(), hosts(srv, id))
}

fn deployment_count(srv: &Server) -> usize {
    let (code, body) = srv.http("GET", "/api/v1/deployments?limit=500", Some(TOKEN), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Vec<Value>>(&body).unwrap().len()
}

#[test]
fn agent_credential_can_only_read_blobs_and_post_its_own_hosts_events() {
    let env = Env::new(3, 1);
    let srv = env.serve(
        "127.0.0.1:0",
        &[("FAKE_AGENT_SILENT", "host-1,host-2,host-3".into())],
    );
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &[
            "-p", "app", "-v", "1", "-f", "f1", "-H", "*", "--canary", "1",
        ],
    );
    let c1 = credential(&env, "host-1", &id);
    let before = snapshot(&env, &srv, &id);
    let deployments = deployment_count(&srv);

    let forbidden = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        let (code, text) = srv.http(method, path, Some(&c1), body.as_deref());
        assert_eq!(
            code, 403,
            "{method} {path} with an agent credential: {text}"
        );
        assert!(text.contains("operator token"), "{text}");
    };
    forbidden(
        "POST",
        "/api/v1/deployments",
        Some(json!({"product": "app", "version": "1", "fabrics": ["f1"], "hosts": "*"})),
    );
    forbidden(
        "POST",
        "/api/v1/rollbacks",
        Some(json!({"product": "app", "fabric": "f1"})),
    );
    forbidden("POST", &format!("/api/v1/deployments/{id}/promote"), None);
    forbidden(
        "POST",
        "/api/v1/products/app/versions",
        Some(json!({"version": "9", "torrent_hex": "00", "manifest_hex": "00"})),
    );
    forbidden(
        "POST",
        "/api/v1/revocations",
        Some(json!({"host": "host-2"})),
    );
    for read in [
        "/api/v1/deployments".to_string(),
        format!("/api/v1/deployments/{id}"),
        "/api/v1/products".into(),
        "/metrics".into(),
    ] {
        forbidden("GET", &read, None);
    }

    // Events of another host, of another deployment, or a batch with one such event.
    let other_host = post_events(&srv, &c1, &[event(&id, "host-2", 1, "success")]);
    let other_dep = post_events(&srv, &c1, &[event("dep-other", "host-1", 1, "success")]);
    let mixed = post_events(
        &srv,
        &c1,
        &[
            event(&id, "host-1", 1, "success"),
            event(&id, "host-3", 1, "success"),
        ],
    );
    for (what, (code, text)) in [
        ("another host", other_host),
        ("another deployment", other_dep),
        ("a batch with another host", mixed),
    ] {
        assert_eq!(code, 403, "events of {what}: {text}");
    }

    assert_eq!(
        snapshot(&env, &srv, &id),
        before,
        "refused requests changed nothing"
    );
    assert_eq!(deployment_count(&srv), deployments, "no deployment created");
    let (code, versions) = srv.http("GET", "/api/v1/products/app/versions", Some(TOKEN), None);
    assert_eq!(code, 200, "{versions}");
    assert!(
        !versions.contains("\"9\""),
        "no version registered: {versions}"
    );

    // What an agent needs: the signed manifest, the torrent, its own events.
    for blob in ["manifest", "torrent"] {
        let (code, text) = srv.http(
            "GET",
            &format!("/api/v1/products/app/versions/1/{blob}"),
            Some(&c1),
            None,
        );
        assert_eq!(code, 200, "{blob} with the agent credential: {text}");
    }
    let (code, text) = post_events(&srv, &c1, &[event(&id, "host-1", 1, "downloading")]);
    assert_eq!(code, 200, "own event: {text}");
    let hosts = hosts(&srv, &id);
    let h1 = hosts.iter().find(|h| h["host"] == "host-1").unwrap();
    assert_eq!(h1["state"], "downloading", "{hosts:?}");

    // The tracker's token is not a token of this API.
    let (code, text) = post_events(&srv, TRACKER_TOKEN, &[event(&id, "host-2", 1, "success")]);
    assert_eq!(code, 401, "{text}");

    // The operator's token still does everything: another host's events, promote.
    let (code, text) = post_events(&srv, TOKEN, &[event(&id, "host-2", 1, "downloading")]);
    assert_eq!(code, 200, "{text}");
    let (code, text) = srv.http(
        "POST",
        &format!("/api/v1/deployments/{id}/promote"),
        Some(TOKEN),
        Some("{}"),
    );
    assert!(
        code == 200 || code == 409,
        "promote with the operator token: {code} {text}"
    );
}

#[test]
fn revoked_host_is_refused_while_other_hosts_are_unaffected() {
    let env = Env::new(3, 1);
    let silent = [("FAKE_AGENT_SILENT", "host-1,host-2,host-3".to_string())];
    let srv = env.serve("127.0.0.1:0", &silent);
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);
    let (c1, c2, c3) = (
        credential(&env, "host-1", &id),
        credential(&env, "host-2", &id),
        credential(&env, "host-3", &id),
    );
    let (code, text) = post_events(&srv, &c1, &[event(&id, "host-1", 1, "downloading")]);
    assert_eq!(code, 200, "{text}");

    let out = env.ok(&srv, &["revoke", "-H", "host-1"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "revoked", "{out}");
    assert_eq!(v["host"], "host-1", "{out}");
    // Only one deployment of host-3: its other credentials stay good.
    let out = env.ok(
        &srv,
        &["revoke", "-H", "host-3", "--deployment", "dep-not-this-one"],
    );
    assert!(out.contains("\"revoked\""), "{out}");

    let (code, text) = post_events(&srv, &c1, &[event(&id, "host-1", 2, "success")]);
    assert_eq!(code, 403, "revoked credential posting: {text}");
    assert!(text.contains("revoked"), "{text}");
    let (code, _) = srv.http(
        "GET",
        "/api/v1/products/app/versions/1/manifest",
        Some(&c1),
        None,
    );
    assert_eq!(code, 403, "revoked credential reading a manifest");
    for (host, cred) in [("host-2", &c2), ("host-3", &c3)] {
        let (code, text) = post_events(&srv, cred, &[event(&id, host, 1, "success")]);
        assert_eq!(code, 200, "{host} after host-1's revocation: {text}");
    }
    let state_of = |srv: &Server, host: &str| {
        let hosts = hosts(srv, &id);
        hosts.iter().find(|h| h["host"] == host).unwrap()["state"].clone()
    };
    assert_eq!(
        state_of(&srv, "host-1"),
        "downloading",
        "its later event refused"
    );
    assert_eq!(state_of(&srv, "host-2"), "success");

    // The revocation is stored: a restarted server still refuses it.
    srv.kill9();
    let srv = env.serve("127.0.0.1:0", &silent);
    let (code, text) = post_events(&srv, &c1, &[event(&id, "host-1", 3, "success")]);
    assert_eq!(code, 403, "after a restart: {text}");
    let (code, text) = post_events(&srv, &c3, &[event(&id, "host-3", 2, "success")]);
    assert_eq!(code, 200, "{text}");

    // A later dispatch issues host-1 a fresh credential, which works.
    let id2 = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "host-1"]);
    let fresh = credential(&env, "host-1", &id2);
    let (code, text) = post_events(&srv, &fresh, &[event(&id2, "host-1", 1, "success")]);
    assert_eq!(code, 200, "fresh credential: {text}");
}

#[test]
fn serve_refuses_a_tracker_token_that_is_the_operator_token() {
    let env = Env::new(1, 1);
    let token = env.path().join("token");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_instream"))
        .arg("serve")
        .args([
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--tracker",
            "http://127.0.0.1:9/announce",
        ])
        .arg("--db")
        .arg(env.path().join("refused.db"))
        .arg("--inventory")
        .arg(env.path().join("inventory.toml"))
        .arg("--token-file")
        .arg(&token)
        .arg("--tracker-token-file")
        .arg(&token)
        .env("INSTREAM_CONFIG_DIR", env.path().join("config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run instream serve");
    let status = wait_for(T, "instream serve to refuse to start", || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    assert!(!status.success(), "serve must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the tracker's admin token") && err.contains("is the operator's API token"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "never listened");
}
