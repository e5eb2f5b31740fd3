//! Auth and bad requests: 401 without or with a wrong token, JSON 4xx with a message for
//! malformed input, and one-line CLI errors for deploys that name unknown things — which
//! change nothing.

mod support;

use serde_json::Value;
use support::{Env, TOKEN};

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    v["error"].as_str().expect("error message").to_string()
}

#[test]
fn requests_without_or_with_a_wrong_token_get_401() {
    let env = Env::new(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    for path in [
        "/api/v1/products",
        "/api/v1/deployments",
        "/metrics",
        "/api/v1/deployments/x/hosts",
    ] {
        let (code, body) = srv.http("GET", path, None, None);
        assert_eq!(code, 401, "{path}");
        assert!(error_of(&body).contains("missing bearer token"), "{body}");
        let (code, body) = srv.http("GET", path, Some("wrong"), None);
        assert_eq!(code, 401, "{path}");
        assert_eq!(error_of(&body), "wrong bearer token");
    }
    let (code, _) = srv.http("POST", "/api/v1/events", None, Some(r#"{"events":[]}"#));
    assert_eq!(code, 401);
    // The right token works; the page loads without one but carries no data.
    assert_eq!(
        srv.http("GET", "/api/v1/products", Some(TOKEN), None).0,
        200
    );
    let (code, page) = srv.http("GET", "/", None, None);
    assert_eq!(code, 200);
    assert!(page.contains("#token=") && page.contains("Authorization"));
    // The CLI with a wrong token: one line, non-zero.
    let out = env.cli_with(&srv, "nope", &["status", "-t", "d-x"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: wrong bearer token (HTTP 401)"
    );
    let (_, metrics) = srv.http("GET", "/metrics", Some(TOKEN), None);
    assert!(
        metrics.contains("instream_http_unauthorized_total 10"),
        "{metrics}"
    );
}

#[test]
fn malformed_requests_get_4xx_with_a_message() {
    let env = Env::new(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("POST", "/api/v1/deployments", Some("{not json")),
        ("POST", "/api/v1/deployments", Some(r#"{"product":"a"}"#)),
        (
            "POST",
            "/api/v1/deployments",
            Some(r#"{"product":"a","version":"1","fabrics":["f1"],"hosts":"*","bogus":1}"#),
        ),
        (
            "POST",
            "/api/v1/deployments",
            Some(r#"{"product":"../x","version":"1","fabrics":["f1"],"hosts":"*"}"#),
        ),
        (
            "POST",
            "/api/v1/deployments",
            Some(r#"{"product":"a","version":"1","fabrics":["f1"],"hosts":"*","canary":"0%"}"#),
        ),
        (
            "POST",
            "/api/v1/events",
            Some(
                r#"{"events":[{"deployment":"d","host":"h","seq":1,"state":"exploded","timestamp":1}]}"#,
            ),
        ),
        (
            "POST",
            "/api/v1/products/app/versions",
            Some(r#"{"version":"1","torrent_hex":"zz","manifest_hex":"00"}"#),
        ),
        (
            "POST",
            "/api/v1/products/app/versions",
            Some(r#"{"version":"1","torrent_hex":"00","manifest_hex":"00"}"#),
        ),
        ("GET", "/api/v1/deployments/d-1/hosts?state=sideways", None),
        ("GET", "/api/v1/deployments/d-1?limit=x", None),
        ("GET", "/api/v1/nothing-here", None),
    ];
    for (method, path, body) in cases {
        let (code, text) = srv.http(method, path, Some(TOKEN), *body);
        assert!(
            (400..500).contains(&code),
            "{method} {path} {body:?} -> {code} {text}"
        );
        assert!(
            !error_of(&text).is_empty(),
            "{method} {path}: empty message"
        );
    }
}

#[test]
fn deploys_naming_unknown_things_fail_in_one_line_and_change_nothing() {
    let env = Env::new(4, 2);
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    let cases: &[(&[&str], &str)] = &[
        (
            &["-p", "nope", "-v", "1", "-f", "f1", "-H", "*"],
            "error: unknown product \"nope\" (HTTP 404)",
        ),
        (
            &["-p", "app", "-v", "9", "-f", "f1", "-H", "*"],
            "error: unknown version \"9\" of product \"app\" (HTTP 404)",
        ),
        (
            &["-p", "app", "-v", "1", "-f", "f9", "-H", "*"],
            "error: unknown fabric \"f9\" (known: f1,f2) (HTTP 422)",
        ),
        (
            &["-p", "app", "-v", "1", "-f", "f1", "-H", "web-*"],
            "error: host pattern \"web-*\" matches no host in fabric f1 (HTTP 422)",
        ),
        (
            &[
                "-p",
                "app",
                "-v",
                "1",
                "-f",
                "f1",
                "-H",
                "*",
                "--variant",
                "99",
            ],
            "error: host pattern \"*\" matches no host in fabric f1 with variant 99 (HTTP 422)",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["deploy"];
        all.extend_from_slice(args);
        assert_eq!(env.fails(&srv, &all), *want);
    }
    let (_, body) = srv.http("GET", "/api/v1/deployments", Some(TOKEN), None);
    assert_eq!(body, "[]", "nothing was created");
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f9"])
            .contains("unknown fabric")
    );
    assert!(
        env.fails(&srv, &["rollback", "-p", "app", "-f", "f1"])
            .contains("no host of fabric f1 has a previous version")
    );
}

#[test]
fn a_manifest_that_does_not_describe_the_registration_is_refused() {
    let env = Env::new(1, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    let src = env.path().join("payload");
    std::fs::write(&src, b"payload bytes").unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let built =
        instream::cli::publish::build(&src, "app", "1", None, None, &[], &key, None).unwrap();
    let body = |version: &str, torrent: &[u8]| {
        serde_json::json!({"version": version, "torrent_hex": hex::encode(torrent), "manifest_hex": hex::encode(&built.manifest)}).to_string()
    };
    let (code, text) = srv.http(
        "POST",
        "/api/v1/products/app/versions",
        Some(TOKEN),
        Some(&body("2", &built.torrent)),
    );
    assert_eq!(code, 400);
    assert_eq!(
        error_of(&text),
        "invalid manifest: it describes app 1 but app 2 is being registered"
    );
    let (code, text) = srv.http(
        "POST",
        "/api/v1/products/app/versions",
        Some(TOKEN),
        Some(&body("1", &built.torrent)),
    );
    assert_eq!(code, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["info_hash"], built.info_hash.to_hex());
    assert_eq!(v["size"], 13);
    // Same build again is a no-op; the blobs come back byte for byte.
    assert_eq!(
        srv.http(
            "POST",
            "/api/v1/products/app/versions",
            Some(TOKEN),
            Some(&body("1", &built.torrent))
        )
        .0,
        200
    );
    let t = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/v1/products/app/versions/1/torrent",
            srv.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&t[..], &built.torrent[..]);
}
