//! The host agent SIGKILLed during activation, at a different step on each host, then run
//! again with the same command line (as a dispatcher retry or a reboot would): every host
//! ends on the new version, verified, with its service running that version, `instream
//! status` shows it as a success, and the success says what the re-run finished.
//!
//! The kill is real: the product's own hooks `kill -9` their parent (the agent) once, after
//! saving its command line and environment from /proc, which the test then runs again.
//!   host-1: in the old version's `stop`  (journal: `verified`)
//!   host-2: in the new version's `start` (journal: `switched`)
//!   host-3: in the new version's `health` (journal: `started`)
//!   host-4: never (the control)

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Env, Server, wait_for};

const T: Duration = Duration::from_secs(90);

/// Hook bodies shared by both versions. `crash HOST` kills the agent when this is HOST's
/// first activation of version 2. The service is the file `running` (the version that
/// runs); `health` checks that it is this version.
const CRASH: &str = r#"crash() {
  if [ "$INSTREAM_HOST" = "$1" ] && [ "$INSTREAM_TARGET_VERSION" = 2 ] && [ ! -f ../../crashed ]; then
    tr '\0' '\n' < /proc/$PPID/cmdline > ../../agent.cmdline
    tr '\0' '\n' < /proc/$PPID/environ > ../../agent.environ
    touch ../../crashed
    kill -9 $PPID
    exit 1
  fi
}"#;

fn publish(env: &Env, srv: &Server, version: &str) {
    let src = env.path().join(format!("src-{version}"));
    let hooks = src.join(".instream/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(
        src.join("payload"),
        format!("app {version}\n").repeat(100_000),
    )
    .unwrap();
    for (name, body) in [
        (
            "stop",
            "crash host-1\necho \"stop $INSTREAM_VERSION\" >> ../../service.log\nrm -f ../../running",
        ),
        (
            "start",
            "crash host-2\necho \"$INSTREAM_VERSION\" > ../../running\necho \"start $INSTREAM_VERSION\" >> ../../service.log",
        ),
        (
            "health",
            "crash host-3\n[ \"$(cat ../../running 2>/dev/null)\" = \"$INSTREAM_VERSION\" ] || { echo \"service not running $INSTREAM_VERSION\" >&2; exit 1; }",
        ),
    ] {
        let p = hooks.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{CRASH}\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = env.ok(
        srv,
        &["publish", "-p", "app", "-v", version, src.to_str().unwrap()],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "registered", "{out}");
}

/// Runs the agent again exactly as the killed one was started; its exit status.
fn rerun(app: &Path) -> std::process::ExitStatus {
    let lines = |f: &str| -> Vec<String> {
        std::fs::read_to_string(app.join(f))
            .unwrap_or_else(|e| panic!("{f} saved by the hook: {e}"))
            .lines()
            .map(str::to_string)
            .collect()
    };
    let argv = lines("agent.cmdline");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().stdin(Stdio::null());
    for kv in lines("agent.environ") {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let log = std::fs::File::create(app.join("rerun.log")).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    let mut child = cmd.spawn().expect("re-run the agent");
    wait_for(T, "the re-run agent to exit", || child.try_wait().unwrap())
}

#[test]
fn an_agent_killed_at_any_activation_step_is_finished_by_its_rerun() {
    let env = Env::fleet(4, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    publish(&env, &srv, "1");
    publish(&env, &srv, "2");
    let first = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);
    env.wait_state(&srv, &first, "done", T);

    let id = env.deploy(&srv, &["-p", "app", "-v", "2", "-f", "f1", "-H", "*"]);
    let crashed = ["host-1", "host-2", "host-3"];
    for host in crashed {
        let app = env.host_root(host).join("products/app");
        wait_for(T, &format!("{host}'s hook to kill its agent"), || {
            app.join("crashed").exists().then_some(())
        });
    }
    // host-4 finishes on its own.
    wait_for(T, "host-4 to succeed", || {
        env.hosts_json(&srv, &id, "success")
            .iter()
            .any(|h| h["host"] == "host-4")
            .then_some(())
    });

    for (host, step) in crashed.iter().zip(["verified", "switched", "started"]) {
        let app = env.host_root(host).join("products/app");
        let st = rerun(&app);
        assert!(
            st.success(),
            "{host}: the re-run failed ({st}): {}",
            std::fs::read_to_string(app.join("rerun.log")).unwrap_or_default()
        );
        let journal: Value =
            serde_json::from_slice(&std::fs::read(app.join("activation.json")).unwrap()).unwrap();
        assert_eq!(journal["step"], "healthy", "{host}: {journal}");
        assert_eq!(journal["target"], "2", "{host}: {journal}");
        let success = wait_for(T, &format!("{host}'s success in status"), || {
            env.hosts_json(&srv, &id, "success")
                .into_iter()
                .find(|h| h["host"] == *host)
        });
        let reason = success["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("interrupted after `{step}`")),
            "{host}: the success must say what the re-run finished: {success}"
        );
    }
    let done = env.wait_state(&srv, &id, "done", T);
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0",
        "{done}"
    );
    for host in ["host-1", "host-2", "host-3", "host-4"] {
        assert_eq!(env.current(host).as_deref(), Some("2"), "{host}");
        let app = env.host_root(host).join("products/app");
        assert_eq!(
            std::fs::read_to_string(app.join("running")).unwrap().trim(),
            "2",
            "{host}: the service runs the new version"
        );
        // Exactly one version is active; the old one was stopped before the new started.
        let log = std::fs::read_to_string(app.join("service.log")).unwrap();
        let last_two: Vec<&str> = log.lines().rev().take(2).collect();
        assert_eq!(last_two, ["start 2", "stop 1"], "{host}: {log}");
        assert!(
            !app.join("staging").exists()
                || std::fs::read_dir(app.join("staging"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{host}: nothing left in staging"
        );
    }
    support::reliability_row(
        "host agent SIGKILLed during activation (after verified, switched, started), then re-run",
        "each re-run completes the activation (start, health); every host on the new version, service running, 100% success",
        "nothing: no event, no version, no service",
    );
}
