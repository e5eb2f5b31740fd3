//! A host never activates what does not verify. The control server's copy of a version is
//! tampered with behind its back (in its database, as an intruder on the control host
//! would): a manifest altered after signing, one with its signature stripped, and one
//! re-signed with the publisher's key over a payload digest the payload does not have. In
//! every case each host refuses, reports a failure with the reason, and keeps running the
//! previous version.

mod support;

use proto::manifest::{Manifest, SignedManifest};
use serde_json::Value;
use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(90);

/// Replaces the stored manifest of `app` `version` with what `f` makes of it.
fn tamper(env: &Env, version: &str, f: impl FnOnce(SignedManifest) -> Vec<u8>) {
    let db = rusqlite::Connection::open(env.path().join("instream.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let bytes: Vec<u8> = db
        .query_row(
            "SELECT manifest FROM versions WHERE product='app' AND version=?1",
            [version],
            |r| r.get(0),
        )
        .unwrap();
    let envelope: SignedManifest = serde_json::from_slice(&bytes).unwrap();
    let changed = f(envelope);
    assert_ne!(changed, bytes);
    let n = db
        .execute(
            "UPDATE versions SET manifest=?1 WHERE product='app' AND version=?2",
            rusqlite::params![changed, version],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// Deploys `version` to both hosts and checks that both refused it with `reason` (a
/// prefix) and still run version 1. Returns the failed host lines.
fn deploy_refused(env: &Env, srv: &support::Server, version: &str, reason: &str) -> Vec<Value> {
    let id = env.deploy(srv, &["-p", "app", "-v", version, "-f", "f1", "-H", "*"]);
    let v = env.wait_state(srv, &id, "halted", T);
    assert!(
        v["halted_reason"]
            .as_str()
            .unwrap()
            .starts_with("fabric f1 gate failed: 0 of 2 hosts succeeded, 2 failed"),
        "{v}"
    );
    let failed = env.hosts_json(srv, &id, "failure");
    assert_eq!(failed.len(), 2, "{failed:?}");
    for h in &failed {
        let r = h["reason"].as_str().unwrap();
        assert!(r.starts_with(reason), "{}: {r}", h["host"]);
    }
    for host in ["host-1", "host-2"] {
        assert_eq!(
            env.current(host).as_deref(),
            Some("1"),
            "{host} kept version 1"
        );
        assert_eq!(env.history(host), ["1"], "{host}: nothing else was started");
        assert!(
            !env.host_root(host)
                .join(format!("products/app/versions/{version}"))
                .exists(),
            "{host}: version {version} was not installed"
        );
    }
    failed
}

#[test]
fn hosts_refuse_tampered_manifests_and_payload_digests_and_keep_the_old_version() {
    let env = Env::fleet(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);
    env.wait_state(&srv, &id, "done", T);

    // 1. The signed text changed after signing: the signature no longer matches.
    env.publish(&srv, "app", "2");
    tamper(&env, "2", |mut e| {
        let mut m: Manifest = serde_json::from_str(&e.payload).unwrap();
        m.hooks.clear();
        e.payload = serde_json::to_string(&m).unwrap();
        serde_json::to_vec(&e).unwrap()
    });
    let failed = deploy_refused(
        &env,
        &srv,
        "2",
        "refused: manifest signature does not match its contents",
    );
    for h in &failed {
        assert_eq!(h["bytes"], 0, "refused before any download: {h}");
    }

    // 2. The signature stripped.
    tamper(&env, "2", |mut e| {
        e.signature = None;
        serde_json::to_vec(&e).unwrap()
    });
    deploy_refused(&env, &srv, "2", "refused: manifest is not signed");

    // 3. Validly signed (the publisher's key leaked, say) but for a payload with another
    //    BLAKE3: the download completes and verifies piece by piece, and the whole-payload
    //    digest check refuses it before activation.
    env.publish(&srv, "app", "3");
    let key = instream::cli::publish::load_or_create_key(&env.path().join("config/publisher.key"))
        .unwrap();
    tamper(&env, "3", |e| {
        let mut m: Manifest = serde_json::from_str(&e.payload).unwrap();
        m.blake3 = [0x42; 32];
        proto::manifest::sign(&m, &key).unwrap()
    });
    let failed = deploy_refused(
        &env,
        &srv,
        "3",
        &format!(
            "refused: payload BLAKE3 is {}",
            blake3_of_version(&env, "3")
        ),
    );
    for h in &failed {
        let r = h["reason"].as_str().unwrap();
        assert!(
            r.ends_with(&format!("the manifest says {}", "42".repeat(32))),
            "{r}"
        );
        assert!(h["bytes"].as_u64().unwrap() > 0, "it was downloaded: {h}");
        let host = h["host"].as_str().unwrap();
        let downloads = env.host_root(host).join("downloads");
        let left: Vec<_> = std::fs::read_dir(&downloads)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{host}: refused download removed: {left:?}"
        );
    }
}

/// BLAKE3 of the published files of `version`, in torrent order (sorted paths).
fn blake3_of_version(env: &Env, version: &str) -> String {
    let src = env.path().join(format!("src-app-{version}"));
    let mut h = blake3::Hasher::new();
    for rel in [
        ".instream/hooks/health",
        ".instream/hooks/start",
        "README",
        "bin/app",
    ] {
        h.update(&std::fs::read(src.join(rel)).unwrap());
    }
    h.finalize().to_hex().to_string()
}
