//! The hosts' content cache (docs/ARCHITECTURE.md: the BLAKE3 digest keys each host's local content):
//! a version whose payload is already on a host under another version is copied from
//! there, verified like a download, and installed with zero bytes downloaded.

mod support;

use std::time::Duration;
use support::Env;

const T: Duration = Duration::from_secs(90);

#[test]
fn a_version_with_bytes_already_on_the_host_is_not_downloaded() {
    let env = Env::fleet(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    // Two versions, same bytes (a re-tag), and a third with other bytes.
    let src = env.path().join("src-same");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/app"), "same bytes\n".repeat(150_000)).unwrap();
    std::fs::write(src.join("README"), "hello").unwrap();
    for v in ["1.0", "1.0-retag"] {
        let out = env.ok(
            &srv,
            &["publish", "-p", "app", "-v", v, src.to_str().unwrap()],
        );
        assert!(out.contains("registered"), "{out}");
    }
    env.publish(&srv, "app", "2.0");

    let deploy = |v: &str| {
        let id = env.deploy(&srv, &["-p", "app", "-v", v, "-f", "*", "-H", "*"]);
        env.wait_state(&srv, &id, "done", T);
        let hosts = env.hosts_json(&srv, &id, "success");
        assert_eq!(hosts.len(), 2, "version {v}: {hosts:?}");
        hosts
            .iter()
            .map(|h| h["bytes"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        deploy("1.0").iter().all(|&b| b > 0),
        "1.0 comes over the swarm"
    );
    let retag = deploy("1.0-retag");
    assert_eq!(
        retag,
        [0, 0],
        "the re-tag is copied from disk; agents:\n{}",
        env.agent_logs()
    );
    assert!(
        deploy("2.0").iter().all(|&b| b > 0),
        "other bytes still download"
    );
    for h in ["host-1", "host-2"] {
        assert_eq!(env.current(h).as_deref(), Some("2.0"));
        let copied = env
            .host_root(h)
            .join("products/app/versions/1.0-retag/bin/app");
        assert_eq!(
            std::fs::read(&copied).unwrap(),
            std::fs::read(src.join("bin/app")).unwrap(),
            "{h}: the copy is the payload"
        );
        assert!(
            env.lines_of(h, "agent.log")
                .iter()
                .any(|l| l.contains("same payload on disk: copied") && l.contains("version=1.0")),
            "{h}: {:?}",
            env.lines_of(h, "agent.log")
        );
    }
}
