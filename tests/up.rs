//! `instream up` with small settings: the whole system comes up from the binaries beside
//! `instream`, deploys to every host, prints the contract's status line and the fanout time
//! with its lower bound, and leaves no process behind. With `--keep`, a second shell drives
//! the running fleet with no flags at all: publish, deploy, status, rollback.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{engine_bin, poll_for, wait_for};

const T: Duration = Duration::from_secs(180);

/// PIDs of live processes whose command line mentions `needle` (the run's work dir).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn up(config: &Path, args: &[&str]) -> Command {
    // The sibling binaries `up` looks for.
    engine_bin("instream-peer");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
    cmd.arg("up")
        .args(args)
        .env("INSTREAM_CONFIG_DIR", config)
        .env_remove("INSTREAM_SERVER")
        .env_remove("INSTREAM_TOKEN")
        .stdin(Stdio::null());
    cmd
}

/// Waits (bounded) for `child` to exit; kills it and panics on timeout.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    poll_for(within, Duration::from_millis(50), || {
        child.try_wait().unwrap()
    })
    .unwrap_or_else(|| {
        let _ = child.kill();
        panic!("instream up did not exit within {within:?}");
    })
}

#[test]
fn up_with_small_settings_deploys_everywhere_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let mut child = up(
        &tmp.path().join("config"),
        &["--hosts", "4", "--fabrics", "2", "--size", "4MiB", "--dir"],
    )
    .arg(&work)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let st = wait_exit(&mut child, T);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(st.success(), "instream up failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0], "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0",
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("fanout: 4 hosts x 4.00 MiB in "),
        "{stdout}"
    );
    assert!(lines[2].starts_with("lower bound: "), "{stdout}");
    assert!(lines[2].contains("measured"), "{stdout}");
    // Progress went to stderr, in plain lines (not a terminal).
    assert!(stderr.contains("hosts done"), "{stderr}");
    // The embedded default is TLS: the control server, hence the CLI and the agents.
    assert!(
        stderr.contains("control server https://127.0.0.1:"),
        "{stderr}"
    );
    // Every host runs the product; its hooks ran with the contract's environment.
    for i in 1..=4 {
        let product = work.join(format!("hosts/host-{i}/products/demo"));
        assert_eq!(
            std::fs::read_link(product.join("current")).unwrap(),
            Path::new("versions/1")
        );
        let hooks = std::fs::read_to_string(product.join("hooks.log")).unwrap();
        assert!(
            hooks.contains(&format!("start demo 1 on host-{i} (f{})", (i - 1) % 2 + 1)),
            "{hooks}"
        );
    }
    let needle = work.to_string_lossy().into_owned();
    assert_eq!(
        processes_mentioning(&needle),
        Vec::<u32>::new(),
        "processes left behind"
    );
    assert!(
        !tmp.path().join("config/server").exists(),
        "no --keep, no server file"
    );
}

#[test]
fn up_keep_lets_a_second_shell_publish_deploy_and_roll_back_with_no_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let work = tmp.path().join("work");
    let log = std::fs::File::create(tmp.path().join("up.log")).unwrap();
    let mut child = up(
        &config,
        &[
            "--keep",
            "--hosts",
            "2",
            "--fabrics",
            "1",
            "--size",
            "1MiB",
            "--dir",
        ],
    )
    .arg(&work)
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap();
    let up_log = || std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default();
    let server = poll_for(T, Duration::from_millis(50), || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "instream up exited:\n{}",
            up_log()
        );
        config.join("server").exists()
    });
    assert!(
        server.is_some(),
        "no server file within {T:?}:\n{}",
        up_log()
    );

    // The second shell: nothing but the config dir up wrote into (its CA among it).
    let server_url = wait_for(T, "the server file's URL", || {
        std::fs::read_to_string(config.join("server"))
            .ok()
            .filter(|u| !u.trim().is_empty())
    });
    assert!(server_url.starts_with("https://"), "{server_url}");
    assert!(config.join("ca.pem").exists());
    // The origin's /metrics: every piece of the first deployment left it at least once.
    let metrics = up_log()
        .lines()
        .find_map(|l| {
            l.split_once("origin metrics ")
                .map(|(_, u)| u.trim().to_string())
        })
        .unwrap_or_else(|| panic!("up printed no origin metrics URL:\n{}", up_log()));
    let text = reqwest::blocking::get(&metrics)
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {metrics}: {e}"));
    let served: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("instream_seed_uploaded_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instream_seed_uploaded_bytes_total in:\n{text}"));
    assert!(
        served >= 1024 * 1024,
        "the origin served {served} bytes of 1 MiB"
    );
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_instream"))
            .args(args)
            .env("INSTREAM_CONFIG_DIR", &config)
            .env_remove("INSTREAM_SERVER")
            .env_remove("INSTREAM_TOKEN")
            .env_remove("INSTREAM_CA")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "instream {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            up_log()
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id_of = |out: String| -> String {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "submitted", "{out}");
        v["id"].as_str().unwrap().to_string()
    };
    let done = |id: &str| {
        wait_for(T, &format!("deployment {id} done"), || {
            let v: serde_json::Value =
                serde_json::from_str(&cli(&["status", "-t", id, "--json"])).unwrap();
            (v["state"] == "done").then_some(v)
        })
    };
    let v2 = tmp.path().join("v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("payload.bin"), vec![7u8; 300_000]).unwrap();
    let reg: serde_json::Value = serde_json::from_str(&cli(&[
        "publish",
        "-p",
        "demo",
        "-v",
        "2",
        v2.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(reg["status"], "registered");
    let d = id_of(cli(&[
        "deploy",
        "-p",
        "demo",
        "-v",
        "2",
        "-f",
        "f1",
        "-H",
        "*",
        "--canary",
        "1",
        "--auto-promote",
    ]));
    done(&d);
    assert_eq!(
        cli(&["status", "-t", &d]).trim(),
        "Success Percentage: 100 Failure Percentage: 0 Pending Percentage: 0"
    );
    let r = id_of(cli(&["rollback", "-p", "demo", "-f", "f1"]));
    done(&r);
    let hosts: Vec<serde_json::Value> =
        serde_json::from_str(&cli(&["status", "-t", &r, "-m", "success", "--json"])).unwrap();
    assert_eq!(hosts.len(), 2);
    for h in &hosts {
        assert_eq!(
            (h["version"].as_str(), h["bytes"].as_u64()),
            (Some("1"), Some(0)),
            "{h}"
        );
    }

    // Ctrl-C stops everything and forgets the server.
    // SAFETY: signalling the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let st = wait_exit(&mut child, Duration::from_secs(60));
    assert!(st.success(), "{}", up_log());
    assert!(!config.join("server").exists());
    assert!(
        !config.join("ca.pem").exists(),
        "the run's CA is forgotten too"
    );
    assert!(config.join("token").exists(), "the operator's token stays");
    assert_eq!(
        processes_mentioning(&work.to_string_lossy()),
        Vec::<u32>::new(),
        "processes left behind"
    );
}
