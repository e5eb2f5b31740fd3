//! TLS on the control API, end to end: `instream serve --tls-cert --tls-key` with a
//! certificate from a test CA, the CLI and the host agents (`instream-peer deploy --ca`,
//! handed the CA by `--agent-ca`) checking it against that CA only. A deployment over TLS
//! reaches every host; a client with another CA, with none, or speaking plain HTTP is
//! refused; a client that never finishes its TLS handshake is cut off at the header
//! timeout and gives its connection slot back.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Env, TOKEN, wait_for};

const T: Duration = Duration::from_secs(90);

/// Whether an operator command gets the server's own answer (the product is unknown to
/// it: a 404 that only the server, reached over TLS, can give).
fn answered(env: &Env, srv: &support::Server) -> Result<(), String> {
    let out = env.cli(srv, &["versions", "-p", "app"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if err.trim() == "error: unknown product \"app\" (HTTP 404)" {
        Ok(())
    } else {
        Err(err)
    }
}

/// Runs the CLI against `url` with `ca` (or none) and expects one `error: ` line.
fn cli_fails(env: &Env, url: &str, ca: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
    match ca {
        Some(ca) => cmd.env("INSTREAM_CA", ca),
        None => cmd.env_remove("INSTREAM_CA"),
    };
    let out = cmd
        .args(args)
        .env("INSTREAM_SERVER", url)
        .env("INSTREAM_TOKEN", TOKEN)
        .env("INSTREAM_CONFIG_DIR", env.path().join("config"))
        .stdin(Stdio::null())
        .output()
        .expect("run instream");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "instream {args:?} against {url} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

#[test]
fn a_deployment_over_tls_reaches_every_host() {
    let env = Env::fleet(4, 2);
    let tls = instream::up::ca::make(&env.path().join("tls")).unwrap();
    let srv = env.serve_tls(&tls, &[]);
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    env.publish(&srv, "app", "1");
    let id = env.deploy(
        &srv,
        &["-p", "app", "-v", "1", "-f", "f1,f2", "-H", "host-*"],
    );
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["total"], 4, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "-m", "progress"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0",
        "agents:\n{}",
        env.agent_logs()
    );
    // Every agent fetched its manifest and torrent and posted its events over https,
    // checked against the CA it was handed (without it, none could have reported).
    for i in 1..=4 {
        assert_eq!(env.current(&format!("host-{i}")).as_deref(), Some("1"));
    }
}

#[test]
fn clients_without_the_servers_ca_are_refused_with_one_line() {
    let env = Env::new(1, 1);
    let tls = instream::up::ca::make(&env.path().join("tls")).unwrap();
    let srv = env.serve_tls(&tls, &[]);
    // The right CA works.
    answered(&env, &srv).unwrap();

    // Another CA: the certificate problem is named, and which CA it was checked with.
    let other = instream::up::ca::make(&env.path().join("other")).unwrap();
    let e = cli_fails(&env, &srv.url, Some(&other.ca), &["versions", "-p", "app"]);
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
    assert!(e.contains(&other.ca.display().to_string()), "{e}");
    // A CA that the server's certificate is not for (it names localhost only, and the
    // certificate 127.0.0.1): the same CA file cannot vouch for a server of another name.
    let g = instream::up::ca::generate("test CA", &["localhost"]).unwrap();
    let env2 = Env::new(1, 1);
    let dir = env2.path().join("named");
    std::fs::create_dir_all(&dir).unwrap();
    let named = instream::up::ca::LocalCa {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    for (p, t) in [
        (&named.ca, &g.ca_pem),
        (&named.cert, &g.cert_pem),
        (&named.key, &g.key_pem),
    ] {
        support::write_private(p, t);
    }
    let by_name = env2.serve_tls(&named, &[]);
    let e = cli_fails(
        &env,
        &by_name.url,
        Some(&named.ca),
        &["versions", "-p", "app"],
    );
    assert!(
        e.contains("invalid peer certificate") && e.contains("not valid for name"),
        "{e}"
    );

    // No CA at all: said before any connection.
    let e = cli_fails(&env, &srv.url, None, &["versions", "-p", "app"]);
    assert!(e.contains("is https: pass --ca FILE"), "{e}");

    // A CA file that is not one.
    let junk = env.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = cli_fails(&env, &srv.url, Some(&junk), &["versions", "-p", "app"]);
    assert!(e.contains(&format!("CA file {}", junk.display())), "{e}");
}

#[test]
fn plain_http_to_the_tls_port_gets_no_answer() {
    let env = Env::new(1, 1);
    let tls = instream::up::ca::make(&env.path().join("tls")).unwrap();
    let srv = env.serve_tls(&tls, &[]);
    let plain = format!("http://{}", srv.addr());
    let e = cli_fails(&env, &plain, None, &["versions", "-p", "app"]);
    assert!(e.contains(&format!("reach control server {plain}")), "{e}");

    // A raw plain request: whatever comes back (a TLS alert, or nothing) is no HTTP answer.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        format!(
            "GET /api/v1/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after its alert: read to the end (bounded above).
    let _ = s.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_cut_off_and_frees_its_slot() {
    let env = Env::new(1, 1);
    let tls = instream::up::ca::make(&env.path().join("tls")).unwrap();
    let srv = env.serve_tls(
        &tls,
        &[
            "--http-header-timeout".into(),
            "4".into(),
            "--http-max-connections".into(),
            "2".into(),
        ],
    );
    // Two slow clients take both slots: one silent, one that sends the first bytes of a
    // ClientHello record (handshake, TLS 1.0 record version) and stops.
    let silent = TcpStream::connect(srv.addr()).unwrap();
    let mut partial = TcpStream::connect(srv.addr()).unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let e = cli_fails(
        &env,
        &srv.url,
        srv.ca.as_deref(),
        &["versions", "-p", "app"],
    );
    assert!(e.contains("reach control server"), "both slots held: {e}");

    // The server hangs up on both within its header timeout (bounded wait, not a sleep).
    for (name, mut s) in [("silent", silent), ("partial", partial)] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{name} client still connected after 30s: {other:?}"),
        }
    }
    // Their slots are free again.
    wait_for(T, "an authenticated request to be answered again", || {
        answered(&env, &srv).ok()
    });
}

#[test]
fn serve_is_tls_or_plain_by_name_never_plain_by_omission() {
    let env = Env::new(1, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_instream"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(env.path().join("refused.db"))
        .arg("--inventory")
        .arg(env.path().join("inventory.toml"))
        .arg("--token-file")
        .arg(env.path().join("token"))
        .env("INSTREAM_CONFIG_DIR", env.path().join("config"))
        .stdin(Stdio::null())
        .output()
        .expect("run instream serve");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "never listened");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the control API needs --tls-cert FILE --tls-key FILE (PEM), or --insecure-http to serve plain HTTP"
    );

    // Plain HTTP when asked for, and the log says so.
    let srv = env.serve("127.0.0.1:0", &[]);
    assert!(srv.url.starts_with("http://"), "{}", srv.url);
    assert!(
        env.log()
            .contains("--insecure-http: the control API is plain HTTP"),
        "{}",
        env.log()
    );
}
