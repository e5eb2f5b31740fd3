//! `instream serve --dispatcher ansible` with a real ansible-core from PyPI (the venv
//! `.ci/run` makes in the CI cache): an inventory of three hosts in two groups (= fabrics),
//! each reached with `ansible_connection=local`, the real tracker, origin and `instream-peer
//! deploy` started by Ansible's async wrapper. Checks the fleet, a deploy to every host, the
//! variant and host-pattern rules, the job ids, that no credential file is left behind, and
//! the one-line error of a missing ansible-core.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::Env;

const ANSIBLE_VERSION: &str = "2.19.14";
const T: Duration = Duration::from_secs(90);

/// The venv with ansible-core, created if missing.
fn venv() -> PathBuf {
    let venv = support::ci_cache().join(format!("venv-ansible-core-{ANSIBLE_VERSION}"));
    let ready = |v: &Path| {
        Command::new(v.join("bin/ansible-playbook"))
            .arg("--version")
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).contains(&format!("core {ANSIBLE_VERSION}"))
            })
    };
    if ready(&venv) {
        return venv;
    }
    eprintln!(
        "creating {} (ansible-core=={ANSIBLE_VERSION} from PyPI)",
        venv.display()
    );
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("ansible-core=={ANSIBLE_VERSION}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok && ready(&venv),
        "could not make {} (python3-venv and PyPI are needed; .ci/run installs both)",
        venv.display()
    );
    venv
}

/// Three hosts in two fabric groups; host-3 is on another OS release (the variant grain).
fn inventory(dir: &Path) -> PathBuf {
    let local = "ansible_connection=local ansible_python_interpreter=/usr/bin/python3";
    let text = format!(
        "[f1]\nhost-1 {local} osmajorrelease=12\nhost-2 {local} osmajorrelease=12\n\n[f2]\nhost-3 {local} osmajorrelease=11\n"
    );
    let path = dir.join("hosts.ini");
    std::fs::write(&path, text).unwrap();
    path
}

fn job_ids(env: &Env, id: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(env.path().join("instream.db")).unwrap();
    let mut st = db
        .prepare("SELECT job FROM jobs WHERE deployment = ?1 ORDER BY step")
        .unwrap();
    st.query_map([id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn deploy_through_ansible_reaches_every_host_with_the_same_target_rules() {
    let venv = venv();
    let env = Env::fleet(3, 2);
    let inv = inventory(env.path());
    let ansible_home = env.path().join("ansible");
    let async_dir = ansible_home.join("async");
    let tmp = env.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = venv.join("bin");
    let srv = env.serve_with_args(
        "127.0.0.1:0",
        &[
            ("ANSIBLE_HOME", ansible_home.display().to_string()),
            ("ANSIBLE_ASYNC_DIR", async_dir.display().to_string()),
            ("TMPDIR", tmp.display().to_string()),
        ],
        &[
            "--dispatcher".into(),
            "ansible".into(),
            "--ansible-inventory".into(),
            inv.display().to_string(),
            "--ansible-bin-dir".into(),
            bin.display().to_string(),
        ],
    );
    assert!(
        env.log().contains("ansible inventory read"),
        "{}",
        env.log()
    );

    // The fleet is the inventory's groups.
    let (code, fabrics) = srv.http("GET", "/api/v1/fabrics", Some(support::TOKEN), None);
    assert_eq!((code, fabrics.as_str()), (200, r#"["f1","f2"]"#));

    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "*", "-H", "host-*"]);
    let v = env.wait_state(&srv, &id, "done", T);
    assert_eq!(v["progress"]["total"], 3, "{v}");
    assert_eq!(
        env.ok(&srv, &["status", "-t", &id, "-m", "progress"])
            .trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    for host in ["host-1", "host-2", "host-3"] {
        assert_eq!(env.current(host).as_deref(), Some("1"), "{host}");
        assert_eq!(env.history(host), ["1"], "{host}: start hook ran once");
    }
    // Each step's job id is an Ansible async job id whose results file Ansible keeps.
    let jobs = job_ids(&env, &id);
    assert!(!jobs.is_empty());
    for jid in &jobs {
        let (head, tail) = jid.split_once('.').unwrap_or_else(|| panic!("{jid}"));
        assert!(
            head.starts_with('j')
                && head[1..].bytes().all(|b| b.is_ascii_digit())
                && tail.bytes().all(|b| b.is_ascii_digit()),
            "not an ansible job id: {jid}"
        );
        assert!(
            async_dir.join(jid).exists(),
            "no async results file for {jid}"
        );
    }

    // The variant grain is a host variable: version 2 for OS release 11 reaches host-3 only.
    let src = env.path().join("src-app-1");
    let out = env.ok(
        &srv,
        &[
            "publish",
            "-p",
            "app",
            "-v",
            "2",
            "--variant",
            "11",
            src.to_str().unwrap(),
        ],
    );
    assert!(out.contains("registered"), "{out}");
    let id2 = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "2",
            "--variant",
            "11",
            "-f",
            "*",
            "-H",
            "*",
        ],
    );
    let v = env.wait_state(&srv, &id2, "done", T);
    assert_eq!(v["progress"]["total"], 1, "only host-3 has release 11: {v}");
    assert_eq!(env.current("host-3").as_deref(), Some("2"));
    assert_eq!(env.current("host-1").as_deref(), Some("1"));

    // Targets that match nothing change nothing and say why, as under local and Salt.
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

    // The extra-vars files that carried the credentials are gone.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("instream-ansible-"))
        .collect();
    assert!(left.is_empty(), "job files left behind: {left:?}");
}

#[test]
fn serve_with_ansible_needs_ansible_core_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_instream"))
        .arg("serve")
        .args([
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--dispatcher",
            "ansible",
        ])
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .arg("--token-file")
        .arg(dir.path().join("token"))
        .arg("--ansible-inventory")
        .arg(&inv)
        .arg("--ansible-bin-dir")
        .arg(dir.path().join("no-ansible-here"))
        .env("INSTREAM_CONFIG_DIR", dir.path().join("config"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run instream serve");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "never listened");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: run ")
            && lines[0].contains("ansible-inventory")
            && lines[0].contains("install ansible-core"),
        "{err}"
    );
}
