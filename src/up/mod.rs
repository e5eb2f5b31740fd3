//! `instream up [--hosts N] [--fabrics K] [--size SIZE] [--keep]`: the whole system on one
//! machine, with no outside service.
//!
//! 1. links `instream-tracker`, `instream-seed` and `instream-peer` to this binary, which is
//!    all three when started under their names (or takes them from `--bin-dir`);
//! 2. makes a local CA and a certificate for 127.0.0.1 ([`ca`]), then starts, each by PID
//!    in its own process group: the tracker (HTTP on 127.0.0.1, admin token), the origin
//!    (`instream-seed serve --watch`), and `instream serve` over TLS (SQLite in the work
//!    directory, local dispatcher over a generated inventory of N hosts in K fabrics,
//!    agents = `instream-peer deploy --ca`);
//! 3. measures what loopback and the disk move ([`bound`]), generates a product (random
//!    payload of SIZE and hooks), publishes it, deploys it to every host with a canary of one
//!    host per fabric that promotes itself, and shows live progress;
//! 4. prints the final status in the contract's wording and the fanout time next to its
//!    lower bound, then stops everything (SIGTERM, then SIGKILL, per process group) and
//!    removes the temporary work directory. With `--keep` it first writes the server URL,
//!    the CA (and the token, if there was none) where the operator commands look by default, and
//!    waits for Ctrl-C, so another shell can publish, deploy, watch, promote and roll back.

pub mod bound;
pub mod ca;
pub mod procs;
pub mod product;
pub mod progress;

use crate::api::views::{DeploymentView, HostsView, Submitted};
use crate::cli::client::Client;
use crate::cli::output::progress_line;
use crate::cli::size::parse_size;
use crate::cli::{ClientArgs, config, publish};
use crate::deploy::submit::DeployRequest;
use crate::dispatch::inventory::Inventory;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::HumanBytes;
use procs::{Pipe, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The product `up` generates and deploys.
pub const PRODUCT: &str = "demo";

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Local hosts to simulate (one agent process each).
    #[arg(long, default_value_t = 24, value_name = "N")]
    pub hosts: usize,
    /// Fabrics the hosts are spread over (host-1 in f1, host-2 in f2, ...).
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub fabrics: usize,
    /// Payload size of the generated product (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub size: u64,
    /// Leave the fleet running after the deployment, with the server URL written where the
    /// operator commands look (`server` in the config dir), until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Canary step: hosts (N) or share (P%) of each fabric.
    #[arg(long, default_value = "1", value_name = "N|P%")]
    pub canary: String,
    /// Seconds hosts keep seeding after they finish.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub seed_for: u64,
    /// Give up if the deployment has not finished after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    /// Work directory, kept afterwards [default: a temporary directory, removed at exit].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Directory with instream-tracker, instream-seed and instream-peer [default: links to
    /// this binary, which is all three].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

const BINS: [&str; 3] = ["instream-tracker", "instream-seed", "instream-peer"];

/// The directory holding the three programs. With `--bin-dir`, that directory (each must
/// be there). Without it, `DIR/bin` of the work directory gets links named after them to
/// this very binary, which is all of them (see `main.rs`): nothing else to build, and the
/// fleet never runs agents older than this `instream`.
fn find_bins(explicit: Option<&Path>, work: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        let missing: Vec<&str> = BINS
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} not found in {}: build them with `cargo build --release --workspace`",
                missing.join(", "),
                dir.display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    let exe = std::env::current_exe().context("find this executable")?;
    let dir = work.join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for b in BINS {
        let link = dir.join(b);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("link {} to {}", link.display(), exe.display()))?;
    }
    Ok(dir)
}

/// Removes a temporary work directory when dropped (after the processes using it).
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The running system; dropping it stops every process (control server and its agents
/// first, then origin, then tracker).
struct Fleet {
    serve: Proc,
    origin: Proc,
    tracker: Proc,
    url: String,
    /// The origin's Prometheus endpoint (`http://127.0.0.1:PORT/metrics`).
    origin_metrics: String,
    token: String,
    /// The CA of the server's certificate.
    ca: PathBuf,
}

impl Fleet {
    fn stop(mut self) {
        for p in [&mut self.serve, &mut self.origin, &mut self.tracker] {
            p.stop(Duration::from_secs(3));
        }
    }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Starts tracker, origin and control server for `hosts` hosts in `fabrics` fabrics.
fn start_fleet(a: &UpArgs, bins: &Path, work: &Path) -> Result<Fleet> {
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let inventory = work.join("inventory.toml");
    write_file(
        &inventory,
        &Inventory::generated(a.hosts, a.fabrics).to_toml(),
    )?;
    // With --keep, the operator's own token (made if missing) is the server's, so a second
    // shell needs no flags; otherwise a throwaway one.
    let token_file = if a.keep {
        config::default_token_file()
    } else {
        work.join("token")
    };
    if !token_file.exists() {
        config::write_private(
            &token_file,
            &format!("{}\n", crate::api::auth::generate_token()),
        )?;
    }
    let token = config::read_token(&token_file)?;
    let tracker_token = work.join("tracker.token");
    config::write_private(&tracker_token, &format!("{}\n", random_hex()))?;
    let key_path = publisher_key_path(a, work);
    let key = publish::load_or_create_key(&key_path)?;
    let public = work.join("publisher.pub");
    write_file(
        &public,
        &format!(
            "{}\n",
            proto::manifest::public_key_hex(&key.verifying_key())
        ),
    )?;

    let mut cmd = Command::new(bins.join("instream-tracker"));
    cmd.args(["--udp", "none", "--http", "127.0.0.1:0", "--interval", "2"])
        .arg("--admin-token-file")
        .arg(&tracker_token)
        .env("RUST_LOG", "info");
    let mut tracker = Proc::spawn(
        "instream-tracker",
        &mut cmd,
        &logs.join("tracker.log"),
        Pipe::Stderr,
    )?;
    let tracker_addr = tracker.wait_line(Duration::from_secs(30), |l| {
        l.contains("HTTP tracker listening")
            .then(|| l.split("addr=").nth(1))
            .flatten()
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    })?;

    let origin_dir = work.join("origin");
    let mut cmd = Command::new(bins.join("instream-seed"));
    // An origin super-seeds by default: each piece leaves it about once, hosts trade the rest.
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--watch",
    ])
    .arg(&origin_dir);
    let mut origin = Proc::spawn(
        "instream-seed",
        &mut cmd,
        &logs.join("origin.log"),
        Pipe::Stdout,
    )?;
    let origin_metrics = origin.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("metrics ").map(str::to_string)
    })?;

    let tls = ca::make(&work.join("tls"))?;
    let exe = std::env::current_exe().context("find this executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .arg("--agent-ca")
        .arg(&tls.ca)
        .arg("--db")
        .arg(work.join("instream.db"))
        .arg("--inventory")
        .arg(&inventory)
        .arg("--token-file")
        .arg(&token_file)
        .arg("--hosts-root")
        .arg(work.join("hosts"))
        .arg("--trusted-key")
        .arg(&public)
        .arg("--tracker")
        .arg(format!("http://{tracker_addr}/announce"))
        .arg("--tracker-token-file")
        .arg(&tracker_token)
        .arg("--origin-dir")
        .arg(&origin_dir)
        .arg("--agent")
        .arg(bins.join("instream-peer"))
        .args(["--agent-seed-for", &a.seed_for.to_string()]);
    let mut serve = Proc::spawn(
        "instream serve",
        &mut cmd,
        &logs.join("serve.log"),
        Pipe::Stdout,
    )?;
    let url = serve.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("listening on ").map(str::to_string)
    })?;
    Ok(Fleet {
        serve,
        origin,
        tracker,
        url,
        origin_metrics,
        token,
        ca: tls.ca,
    })
}

fn publisher_key_path(a: &UpArgs, work: &Path) -> PathBuf {
    if a.keep {
        // The key a second shell's `instream publish` uses by default.
        config::config_dir().join("publisher.key")
    } else {
        work.join("publisher.key")
    }
}

/// What the deployment came to.
struct Ran {
    view: DeploymentView,
    fanout_secs: f64,
}

async fn publish_and_deploy(a: &UpArgs, fleet: &Fleet, work: &Path) -> Result<Ran> {
    let ca = engine::https::Ca::load(&fleet.ca)?;
    let client = Client::new(&fleet.url, &fleet.token, Some(&ca))?;
    let src = work.join("src").join(format!("{PRODUCT}-1"));
    let size = a.size;
    let src2 = src.clone();
    tokio::task::spawn_blocking(move || product::generate(&src2, size))
        .await
        .context("generate the product")??;
    let t = Instant::now();
    let args = publish::PublishArgs {
        client: ClientArgs {
            server: Some(fleet.url.clone()),
            token_file: None,
            ca: Some(fleet.ca.clone()),
        },
        product: PRODUCT.into(),
        version: "1".into(),
        variant: None,
        piece_size: None,
        trackers: Vec::new(),
        torrent_out: None,
        key: Some(publisher_key_path(a, work)),
        origin_dir: None,
        origin_timeout: 120,
        source: src.display().to_string(),
    };
    let reg = publish::publish(&client, &args).await?;
    eprintln!(
        "published {PRODUCT} 1: {} ({}) in {:.1}s; the origin seeds it",
        reg.info_hash,
        HumanBytes(reg.size),
        t.elapsed().as_secs_f64()
    );
    let req = DeployRequest {
        product: PRODUCT.into(),
        version: "1".into(),
        fabrics: vec!["*".into()],
        hosts: "*".into(),
        variant: None,
        canary: Some(a.canary.clone()),
        auto_promote: true,
        parallel_fabrics: true,
        gate: None,
        report_deadline_ms: None,
        splay_secs: None,
        batch: None,
    };
    let submitted: Submitted = client.post("/api/v1/deployments", &req).await?;
    let id = submitted.id;
    eprintln!(
        "deploying {PRODUCT} 1 to {} hosts in {} fabrics as {id} (canary {} per fabric, then the rest)",
        a.hosts, a.fabrics, a.canary
    );
    let started = Instant::now();
    let mut progress = progress::Progress::new(a.hosts as u64);
    let view = loop {
        let view: DeploymentView = client.get(&format!("/api/v1/deployments/{id}")).await?;
        let hosts: HostsView = client
            .get(&format!("/api/v1/deployments/{id}/hosts"))
            .await?;
        progress.update(&view, &hosts);
        if view.is_finished() {
            break view;
        }
        if started.elapsed() > Duration::from_secs(a.timeout) {
            progress.finish();
            bail!(
                "deployment {id} did not finish within {}s: {}",
                a.timeout,
                progress_line(&view.progress)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish();
    // The server's own clock: from the deployment's creation to its last host's report.
    let fanout_secs = match view.finished_at_ms {
        Some(f) => f.saturating_sub(view.created_at_ms) as f64 / 1000.0,
        None => started.elapsed().as_secs_f64(),
    };
    Ok(Ran { view, fanout_secs })
}

async fn wait_for_ctrl_c() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn run(a: UpArgs) -> Result<()> {
    if a.hosts == 0 || a.fabrics == 0 {
        bail!("--hosts and --fabrics must be at least 1");
    }
    if a.size == 0 {
        bail!("--size must be at least one byte");
    }
    let work = WorkDir {
        path: a.dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("instream-up-{}", &random_hex()[..8]))
        }),
        remove: a.dir.is_none(),
    };
    std::fs::create_dir_all(&work.path)
        .with_context(|| format!("create {}", work.path.display()))?;
    let work_path = std::path::absolute(&work.path).unwrap_or(work.path.clone());
    let bins = find_bins(a.bin_dir.as_deref(), &work_path)?;

    // Children are spawned from this (the main) thread: PR_SET_PDEATHSIG follows the
    // thread that forked them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;

    eprintln!(
        "measuring what this machine's loopback, disk and cores move and hash (for the fanout lower bound)..."
    );
    // The piece length `publish` picks for this size (it is given none).
    let machine = bound::measure(&work_path, proto::metainfo::auto_piece_len(a.size))?;
    let fleet = start_fleet(&a, &bins, &work_path)?;
    eprintln!(
        "up: tracker, origin and control server {} for {} hosts in {} fabrics (logs in {})",
        fleet.url,
        a.hosts,
        a.fabrics,
        work_path.join("logs").display()
    );
    eprintln!(
        "metrics: {}/metrics (operator token), origin metrics {}",
        fleet.url, fleet.origin_metrics
    );
    let ran = rt.block_on(async {
        tokio::select! {
            r = publish_and_deploy(&a, &fleet, &work_path) => r,
            _ = wait_for_ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    let ran = match ran {
        Ok(r) => r,
        Err(e) => {
            fleet.stop();
            return Err(e);
        }
    };

    let v = &ran.view;
    println!("{}", progress_line(&v.progress));
    let bound_secs = machine.bound_secs(a.hosts as u64, a.size);
    println!(
        "fanout: {} hosts x {} in {:.1}s (deployment created -> last host active, canary step included)",
        a.hosts,
        HumanBytes(a.size),
        ran.fanout_secs
    );
    println!(
        "lower bound: {:.1}s = {} hosts x {} / {}/s, set by {}: the slowest of loopback {}/s, disk writes {}/s, every host's SHA-1 + BLAKE3 on {} cores {}/s (SHA-1 {}/s, BLAKE3 {}/s a core) and a byte's copy, write and hashes on those cores {}/s (measured here just before); fanout = {:.1}x the bound",
        bound_secs,
        a.hosts,
        HumanBytes(a.size),
        HumanBytes(machine.rate() as u64),
        machine.limit(),
        HumanBytes(machine.loopback as u64),
        HumanBytes(machine.disk_write as u64),
        machine.cores,
        HumanBytes(machine.hash_rate() as u64),
        HumanBytes(machine.sha1 as u64),
        HumanBytes(machine.blake3 as u64),
        HumanBytes(machine.cpu_rate() as u64),
        ran.fanout_secs / bound_secs.max(1e-9)
    );
    if v.state == "halted" {
        let reason = v.halted_reason.clone().unwrap_or_default();
        fleet.stop();
        bail!("deployment {} halted: {reason}", v.id);
    }

    if a.keep {
        let server_file = config::default_server_file();
        let ca_file = config::default_ca_file();
        let ca_pem = std::fs::read_to_string(&fleet.ca)
            .with_context(|| format!("read {}", fleet.ca.display()))?;
        config::write_private(&ca_file, &ca_pem)?;
        config::write_private(&server_file, &format!("{}\n", fleet.url))?;
        eprintln!(
            "\nthe fleet keeps running; in another shell (no flags needed):\n  \
             instream status -t {id} -m success\n  \
             instream publish -p {PRODUCT} -v 2 DIR\n  \
             instream deploy -p {PRODUCT} -v 2 -f f1 -H '*' --canary 1\n  \
             instream promote -t ID\n  \
             instream rollback -p {PRODUCT} -f f1\n\
             status page: {}/#token=<the token in {}> (TLS certificate by the CA in {})\n\
             server URL written to {}, its CA to {}; press Ctrl-C to stop everything",
            fleet.url,
            config::default_token_file().display(),
            ca_file.display(),
            server_file.display(),
            ca_file.display(),
            id = v.id,
        );
        rt.block_on(wait_for_ctrl_c());
        // Forget the server only if the file still names this one.
        if std::fs::read_to_string(&server_file).is_ok_and(|s| s.trim() == fleet.url) {
            let _ = std::fs::remove_file(&server_file);
        }
        if std::fs::read_to_string(&ca_file).is_ok_and(|s| s == ca_pem) {
            let _ = std::fs::remove_file(&ca_file);
        }
    }
    fleet.stop();
    drop(work);
    Ok(())
}
