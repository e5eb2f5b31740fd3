//! `instream publish` from remote data sources, with real servers: an HTTP archive served by
//! Python's http.server (pinned by sha256; a wrong pin and an unreachable server publish
//! nothing and leave nothing behind), and a Git repository made with `git` (the tree at a tag,
//! without `.git`, its commit in the signed manifest). Both versions deploy to real hosts.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Env, Proc};

const T: Duration = Duration::from_secs(90);

fn sh(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A product tree: a payload over several pieces, a README and a start hook.
fn make_tree(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join(".instream/hooks")).unwrap();
    std::fs::write(dir.join("bin/app"), format!("app {tag}\n").repeat(100_000)).unwrap();
    std::fs::write(dir.join("README"), format!("readme {tag}")).unwrap();
    let hook = dir.join(".instream/hooks/start");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"$INSTREAM_VERSION\" >> ../../history\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `python3 -m http.server` on an ephemeral port serving `dir`; returns it and its base URL.
fn http_server(dir: &Path) -> (Proc, String) {
    let mut child = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 -m http.server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
            if let Some(port) = line
                .split(" port ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
            {
                let _ = tx.send(port.to_string());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("http.server printed its port within 30 s");
    (
        Proc::adopt("http.server", child),
        format!("http://127.0.0.1:{port}"),
    )
}

/// `instream publish -p app -v 1 SOURCE`, which must fail: its one error line.
fn publish_fails(env: &Env, srv: &support::Server, source: &str) -> String {
    env.fails(srv, &["publish", "-p", "app", "-v", "1", source])
}

fn origin_leftovers(env: &Env) -> Vec<String> {
    let dir = &env.fleet.as_ref().unwrap().origin_dir;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(".fetch-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The host's active version directory of `app`.
fn active_dir(env: &Env, host: &str) -> std::path::PathBuf {
    std::fs::canonicalize(env.host_root(host).join("products/app/current")).unwrap()
}

/// Finds `rel` somewhere under the host's active version (the torrent's top directory is
/// the source's name).
fn find_in_active(env: &Env, host: &str, rel: &str) -> Option<std::path::PathBuf> {
    let dir = active_dir(env, host);
    if dir.join(rel).exists() {
        return Some(dir.join(rel));
    }
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(rel))
        .find(|p| p.exists())
}

#[test]
fn http_archive_pinned_by_sha256_publishes_and_deploys_and_a_bad_pin_publishes_nothing() {
    let env = Env::fleet(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    let www = env.path().join("www");
    let tree = env.path().join("tree");
    std::fs::create_dir_all(&www).unwrap();
    make_tree(&tree, "http");
    sh(
        "tar czf",
        Command::new("tar")
            .arg("czf")
            .arg(www.join("app-1.tar.gz"))
            .arg("-C")
            .arg(&tree)
            .arg("."),
    );
    let sum = sh(
        "sha256sum",
        Command::new("sha256sum").arg(www.join("app-1.tar.gz")),
    );
    let sum = sum.split_whitespace().next().unwrap().to_string();
    let (_server, base) = http_server(&www);
    let url = format!("{base}/app-1.tar.gz");

    // A wrong pin: one line naming both digests; nothing registered, nothing left behind.
    let bad = format!("{url}#sha256={}", "0".repeat(64));
    let err = publish_fails(&env, &srv, &bad);
    assert!(
        err.contains("does not match its pin") && err.contains(&sum),
        "{err}"
    );
    // Unreachable: one line, nothing registered.
    let err = publish_fails(&env, &srv, "http://127.0.0.1:1/app-1.tar.gz");
    assert!(
        err.starts_with("error: fetch http://127.0.0.1:1/app-1.tar.gz"),
        "{err}"
    );
    // A server's 404.
    let err = publish_fails(&env, &srv, &format!("{base}/nope.tar"));
    assert!(err.contains("HTTP 404"), "{err}");
    let err = env.fails(
        &srv,
        &["deploy", "-p", "app", "-v", "1", "-f", "*", "-H", "*"],
    );
    assert!(
        err.contains("unknown"),
        "version 1 was not registered: {err}"
    );
    assert_eq!(origin_leftovers(&env), Vec::<String>::new());

    let out = env.ok(
        &srv,
        &[
            "publish",
            "-p",
            "app",
            "-v",
            "1",
            &format!("{url}#sha256={sum}"),
        ],
    );
    assert!(out.contains("\"registered\""), "{out}");
    assert_eq!(
        origin_leftovers(&env),
        Vec::<String>::new(),
        "scratch removed"
    );
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "*", "-H", "*"]);
    env.wait_state(&srv, &id, "done", T);
    for h in ["host-1", "host-2"] {
        let app = find_in_active(&env, h, "bin/app").unwrap_or_else(|| panic!("{h}: bin/app"));
        assert_eq!(
            std::fs::read(app).unwrap(),
            std::fs::read(tree.join("bin/app")).unwrap(),
            "{h}"
        );
        assert_eq!(
            env.history(h),
            ["1"],
            "{h}: the archive's start hook ran (still executable)"
        );
    }
}

#[test]
fn git_source_publishes_the_tree_at_a_ref_without_dot_git_and_records_the_commit() {
    let env = Env::fleet(2, 1);
    let srv = env.serve("127.0.0.1:0", &[]);
    let repo = env.path().join("repo");
    make_tree(&repo, "v1");
    let git = |args: &[&str]| {
        sh(
            &format!("git {args:?}"),
            Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args),
        )
    };
    sh(
        "git init",
        Command::new("git").args(["init", "-q"]).arg(&repo),
    );
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "v1"]);
    git(&["tag", "v1"]);
    let commit = git(&["rev-parse", "HEAD"]);
    // A later commit on the branch must not leak into the tag's tree.
    std::fs::write(repo.join("README"), "readme later").unwrap();
    git(&["commit", "-q", "-am", "later"]);

    let src = format!("git+file://{}#v1", repo.display());
    let err = publish_fails(&env, &srv, &format!("git+file://{}#nope", repo.display()));
    assert!(err.contains("no commit \"nope\""), "{err}");
    env.ok(&srv, &["publish", "-p", "app", "-v", "1", &src]);
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "*", "-H", "*"]);
    env.wait_state(&srv, &id, "done", T);
    for h in ["host-1", "host-2"] {
        let readme = find_in_active(&env, h, "README").unwrap_or_else(|| panic!("{h}: README"));
        assert_eq!(
            std::fs::read_to_string(&readme).unwrap(),
            "readme v1",
            "{h}: the tag's tree"
        );
        let top = readme.parent().unwrap();
        assert!(!top.join(".git").exists(), "{h}: no .git");
        assert_eq!(env.history(h), ["1"], "{h}");
    }
    // The signed manifest names the commit.
    let manifest = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/v1/products/app/versions/1/manifest",
            srv.url
        ))
        .bearer_auth(support::TOKEN)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("GET the manifest");
    assert!(manifest.contains(&commit), "commit {commit} in {manifest}");
    assert_eq!(origin_leftovers(&env), Vec::<String>::new());
}
