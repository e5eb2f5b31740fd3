//! The status page in a real browser: headless Chromium (Debian `chromium`, installed by
//! `.ci/run`) loads `/` from a real `instream serve` while a deployment to real hosts runs,
//! and the test reads the page the script rendered (`--dump-dom`), not the HTML the server
//! sent: per-fabric progress and a failed host's reason while the deployment runs, then the
//! later state (other hosts done, the deployment halted, what runs where) in a second load.
//! Each load polls several times without a reload (the body's `data-ticks`). Screenshots
//! go to the cargo target directory (`status-page-running.png`, `status-page.png`).
//!
//! Without chromium the test is skipped with a message, unless `CI` is set (`CI=true`),
//! where it fails.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Env, TOKEN, poll_for, wait_for};

const T: Duration = Duration::from_secs(90);
/// The reason host-2's health hook gives (its last line of standard error).
const REASON: &str = "app did not answer on port 8080";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Loads `url` in a fresh headless Chromium, lets the page's script run for `budget` of
/// virtual time (timers advance, fetches are waited for), and returns the rendered DOM;
/// also saves a screenshot to `shot`.
fn render(chromium: &Path, url: &str, profile: &Path, shot: &Path) -> String {
    let _ = std::fs::remove_dir_all(profile);
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,900",
            // Five polls at one a second.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let status = poll_for(Duration::from_secs(60), Duration::from_millis(50), || {
        child.try_wait().unwrap()
    })
    .unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish rendering {url} within 60 s");
    });
    assert!(status.success(), "chromium failed ({status}) on {url}");
    let dom = reader.join().unwrap().expect("read chromium's output");
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot at {}",
        shot.display()
    );
    dom
}

/// The attributes of the first `<tag ...>` that has `attr="value"`.
fn element(dom: &str, tag: &str, attr: &str, value: &str) -> Option<HashMap<String, String>> {
    let needle = format!("{attr}=\"{value}\"");
    dom.split('<')
        .filter_map(|piece| piece.strip_prefix(tag)?.strip_prefix(' '))
        .map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())])
        .find(|attrs| attrs.split(' ').any(|a| a == needle))
        .map(|attrs| {
            attrs
                .split(' ')
                .filter_map(|a| a.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
}

/// The markup from the `<tag ...>` with `attr="value"` to its first `</tag>`.
fn element_text<'a>(dom: &'a str, tag: &str, attr: &str, value: &str) -> Option<&'a str> {
    let start = dom.find(&format!("<{tag} {attr}=\"{value}\""))?;
    let end = dom[start..].find(&format!("</{tag}>"))?;
    Some(&dom[start..start + end])
}

fn fabric(dom: &str, f: &str) -> (String, String, String) {
    let a = element(dom, "tr", "data-fabric", f)
        .unwrap_or_else(|| panic!("no row for fabric {f} in the rendered page:\n{dom}"));
    (
        a["data-total"].clone(),
        a["data-success"].clone(),
        a["data-failure"].clone(),
    )
}

/// How many polls the page's script completed (`<body data-ticks="N">`).
fn ticks(dom: &str) -> u32 {
    let key = "<body data-ticks=\"";
    dom.find(key)
        .and_then(|i| dom[i + key.len()..].split('"').next()?.parse().ok())
        .unwrap_or(0)
}

/// A version of product `app` whose `start` hook waits for `$INSTREAM_HOOK_GATE` on every
/// host but host-2, and whose `health` hook fails on host-2 with [`REASON`].
fn publish(env: &Env, srv: &support::Server) {
    let src = env.path().join("src-app-1");
    std::fs::create_dir_all(src.join(".instream/hooks")).unwrap();
    std::fs::write(src.join("app"), "app 1\n".repeat(50_000)).unwrap();
    let hooks = [
        (
            "start",
            "#!/bin/sh\n\
             if [ \"$INSTREAM_HOST\" != host-2 ]; then i=0; while [ ! -f \"$INSTREAM_HOOK_GATE\" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done; fi\n\
             echo \"$INSTREAM_VERSION\" >> ../../history\n"
                .to_string(),
        ),
        (
            "health",
            format!(
                "#!/bin/sh\nif [ \"$INSTREAM_HOST\" = host-2 ]; then echo 'probing :8080' >&2; echo '{REASON}' >&2; exit 1; fi\n"
            ),
        ),
    ];
    for (name, body) in hooks {
        let p = src.join(".instream/hooks").join(name);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env.ok(
        srv,
        &["publish", "-p", "app", "-v", "1", src.to_str().unwrap()],
    );
}

#[test]
fn the_status_page_shows_live_progress_and_failures_in_a_browser() {
    let Some(chromium) = chromium() else {
        // Under CI (CI set, as CI=true), a missing browser is a broken machine, not a skip.
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty(),
            "chromium is not installed, and CI={ci}: .ci/run installs it (Debian package chromium)"
        );
        eprintln!(
            "skipping the status page browser test: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let env = Env::fleet(4, 2);
    let gate = env.path().join("gate");
    let srv = env.serve(
        "127.0.0.1:0",
        &[("INSTREAM_HOOK_GATE", gate.display().to_string())],
    );
    publish(&env, &srv);
    // Both fabrics at once: f2 (host-2, host-4) has its failure while f1 still runs.
    let id = env.deploy(
        &srv,
        &[
            "-p",
            "app",
            "-v",
            "1",
            "-f",
            "*",
            "-H",
            "*",
            "--parallel-fabrics",
        ],
    );
    let reason = wait_for(T, "host-2 to fail and the others to wait in start", || {
        let fail = env.hosts_json(&srv, &id, "failure");
        let pending = env.hosts_json(&srv, &id, "pending");
        let installing = pending
            .iter()
            .filter(|h| h["state"] == "installing")
            .count();
        (fail.len() == 1 && installing == 3)
            .then(|| fail[0]["reason"].as_str().unwrap().to_string())
    });
    assert!(reason.contains(REASON), "{reason}");

    // What the server sends holds no data: whatever the browser shows, the script fetched.
    let (code, html) = srv.http("GET", "/", None, None);
    assert_eq!(code, 200);
    for absent in ["host-2", REASON, "data-fabric=\"", id.as_str()] {
        assert!(
            !html.contains(absent),
            "the served HTML contains {absent:?}"
        );
    }

    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let url = format!("{}/#token={TOKEN}", srv.url);
    let profile = env.path().join("chromium");
    let running = render(
        &chromium,
        &url,
        &profile,
        &target.join("status-page-running.png"),
    );
    assert!(
        ticks(&running) >= 3,
        "the page polled {} times in 5 s of virtual time, without reloading",
        ticks(&running)
    );
    let dep = element(&running, "tr", "data-deployment", &id)
        .unwrap_or_else(|| panic!("deployment {id} not listed:\n{running}"));
    assert_eq!(dep["data-state"], "running");
    assert_eq!(fabric(&running, "f1"), ("2".into(), "0".into(), "0".into()));
    assert_eq!(fabric(&running, "f2"), ("2".into(), "0".into(), "1".into()));
    let failed = element_text(&running, "tr", "data-failed-host", "host-2")
        .unwrap_or_else(|| panic!("host-2 not among the failed hosts:\n{running}"));
    assert!(failed.contains(REASON), "{failed}");
    assert!(
        element(&running, "tr", "data-failed-host", "host-4").is_none(),
        "host-4 has not failed"
    );

    // The other hosts finish; the deployment's gate fails on host-2.
    std::fs::write(&gate, "go").unwrap();
    let done = env.wait_state(&srv, &id, "halted", T);
    assert_eq!(done["progress"]["success"], 3, "{done}");
    let after = render(&chromium, &url, &profile, &target.join("status-page.png"));
    assert_ne!(after, running);
    let dep = element(&after, "tr", "data-deployment", &id).unwrap();
    assert_eq!(dep["data-state"], "halted");
    assert_eq!(fabric(&after, "f1"), ("2".into(), "2".into(), "0".into()));
    assert_eq!(fabric(&after, "f2"), ("2".into(), "1".into(), "1".into()));
    let halted = done["halted_reason"].as_str().unwrap();
    assert!(
        after.contains(halted),
        "the halted reason {halted:?} is not shown:\n{after}"
    );
    assert!(
        element_text(&after, "tr", "data-failed-host", "host-2")
            .is_some_and(|r| r.contains(REASON))
    );
    // What runs where: the version on the three hosts that took it, unknown on host-2.
    for (host, version) in [
        ("host-1", "1"),
        ("host-2", ""),
        ("host-3", "1"),
        ("host-4", "1"),
    ] {
        let row = element(&after, "tr", "data-running-host", host)
            .unwrap_or_else(|| panic!("{host} missing from what runs where:\n{after}"));
        assert_eq!(row["data-version"], version, "{host}");
    }
    eprintln!(
        "screenshots: {} and {}",
        target.join("status-page-running.png").display(),
        target.join("status-page.png").display()
    );
}
