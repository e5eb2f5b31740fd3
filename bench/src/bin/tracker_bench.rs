//! UDP tracker throughput, side by side: instream-tracker, opentracker (Debian) and
//! aquatic_udp (crates.io), all driven by the same closed-loop load generator
//! (aquatic_udp_load_test, 10k torrents / 100k peers by default), in one run.
//!
//! Each tracker serves only the load test's info-hashes (a whitelist, as in production):
//! aquatic_udp_load_test draws them from a fixed `SmallRng` seed, which this program
//! reproduces with the same rand 0.8 generator. Two modes per tracker:
//! - `1 core`: tracker pinned to CPU 0 (one worker), generator pinned to CPU 1;
//! - `all`: tracker with one worker per core, nothing pinned (on a 2-core machine the
//!   generator competes with the tracker, so these figures understate every tracker).
//!
//! Prints responses/second and the ratios of instream-tracker to each reference. Needs
//! `opentracker` and `taskset` on PATH, and the aquatic binaries in `--tools/bin`
//! (`--install` runs `cargo install aquatic_udp_load_test aquatic_udp --root TOOLS`).
//!
//! `cargo run --release -p instream-bench --bin tracker_bench -- --install`

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use proto::tracker::udp::{ConnectRequest, Request, Response, TransactionId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use testkit::ProcGroup;

/// Side-by-side UDP tracker benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Torrents simulated by the load generator.
    #[arg(long, default_value_t = 10_000)]
    torrents: usize,
    /// Peers simulated by the load generator.
    #[arg(long, default_value_t = 100_000)]
    peers: usize,
    /// Where the aquatic binaries are (bin/ below it).
    #[arg(long)]
    tools: Option<PathBuf>,
    /// cargo install the aquatic binaries into --tools if missing.
    #[arg(long)]
    install: bool,
    /// instream-tracker binary (default: target/release/instream-tracker).
    #[arg(long)]
    tracker_bin: Option<PathBuf>,
    /// Rounds over all trackers (runs alternate between trackers); the best is kept.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// A tracker under load, SIGKILLed and reaped on drop. Adopted rather than spawned in a
/// group of its own: in the terminal's foreground group it still gets a Ctrl-C, which ends
/// this program without running any Drop.
type Proc = ProcGroup;

/// A port free for both TCP and UDP on 127.0.0.1 right now.
fn free_port() -> Result<u16> {
    Ok(testkit::try_free_ports(1).context("find a free port")?[0])
}

/// The info-hashes aquatic_udp_load_test 0.9 uses (its `InfoHashDist::new`).
fn load_test_hashes(n: usize) -> Vec<String> {
    let mut rng = SmallRng::seed_from_u64(0xc3aa_8be6_17b3_acce);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 20];
            for x in b.iter_mut() {
                *x = rng.r#gen();
            }
            hex(&b)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Waits until a BEP 15 connect on `port` is answered.
fn wait_ready(port: u16, child: &mut ProcGroup, name: &str) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let transaction_id = TransactionId(1);
    let mut req = Vec::new();
    Request::Connect(ConnectRequest { transaction_id }).encode(&mut req);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if let Some(e) = child.try_wait()? {
            bail!("{name} exited with {} before answering", e.status);
        }
        sock.send_to(&req, ("127.0.0.1", port))?;
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Ok(Response::Connect(r)) = Response::parse(&buf[..n], false)
            && r.transaction_id == transaction_id
        {
            return Ok(());
        }
    }
    bail!("{name} did not answer a connect on port {port} within 15 s")
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Instream,
    OpenTracker,
    Aquatic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Instream => "instream-tracker",
            Kind::OpenTracker => "opentracker",
            Kind::Aquatic => "aquatic_udp",
        }
    }
}

/// A scratch directory removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("tracker-bench-{}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        Ok(Self(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Env {
    dir: WorkDir,
    tools: PathBuf,
    tracker_bin: PathBuf,
    cores: usize,
    args: Args,
}

fn taskset(pin: Option<&str>, program: &Path) -> Command {
    match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn start(env: &Env, kind: Kind, one_core: bool, port: u16) -> Result<Proc> {
    let pin = one_core.then_some("0");
    let workers = if one_core { 1 } else { env.cores };
    let wl = env.dir.path().join("wl.txt");
    let mut cmd = match kind {
        Kind::Instream => {
            let mut c = taskset(pin, &env.tracker_bin);
            c.args(["--udp", &format!("127.0.0.1:{port}"), "--http", "none"])
                .args(["--workers", &workers.to_string()])
                .arg("--whitelist")
                .arg(&wl)
                .env("RUST_LOG", "warn");
            c
        }
        Kind::OpenTracker => {
            // Chroots into -d and drops to nobody; the whitelist path is inside the chroot.
            let mut c = taskset(pin, Path::new("opentracker"));
            c.args([
                "-i",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-p",
                &port.to_string(),
            ])
            .arg("-d")
            .arg(env.dir.path())
            .args(["-w", "/wl.txt"]);
            c
        }
        Kind::Aquatic => {
            let cfg = env.dir.path().join(format!("aquatic-{workers}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "socket_workers = {workers}\nlog_level = \"error\"\n[network]\naddress = \"127.0.0.1:{port}\"\n\
                     [access_list]\nmode = \"allow\"\npath = \"{}\"\n",
                    wl.display()
                ),
            )?;
            let mut c = taskset(pin, &env.tools.join("bin/aquatic_udp"));
            c.arg("-c").arg(&cfg);
            c
        }
    };
    let mut child = ProcGroup::adopt(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", kind.name()))?,
    );
    wait_ready(port, &mut child, kind.name())?;
    Ok(child)
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .context("parse /proc stat")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Runs the load generator against `port`; returns (responses/s, error responses/s).
fn load(env: &Env, one_core: bool, port: u16) -> Result<(f64, f64)> {
    let cfg = env.dir.path().join("load.toml");
    std::fs::write(
        &cfg,
        format!(
            "server_address = \"127.0.0.1:{port}\"\nworkers = 1\nduration = {}\nsummarize_last = {}\n\
             [requests]\nnumber_of_torrents = {}\nnumber_of_peers = {}\n",
            env.args.duration,
            env.args.duration.saturating_sub(2).max(1),
            env.args.torrents,
            env.args.peers,
        ),
    )?;
    let out = taskset(
        one_core.then_some("1"),
        &env.tools.join("bin/aquatic_udp_load_test"),
    )
    .arg("-c")
    .arg(&cfg)
    .output()
    .context("run aquatic_udp_load_test")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.trim().trim_end_matches("/second").trim().parse().ok())
    };
    let responses = field("Responses in:").with_context(|| {
        format!(
            "read the load test's report:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let errors = field("- Error responses:").unwrap_or(0.0);
    Ok((responses, errors))
}

fn main() -> std::process::ExitCode {
    exit::exit(run(exit::parse_args()))
}

fn run(args: Args) -> Result<()> {
    let tools = args.tools.clone().unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cache/instream/bench-tools")
    });
    for tool in ["aquatic_udp_load_test", "aquatic_udp"] {
        if !tools.join("bin").join(tool).exists() {
            if !args.install {
                bail!(
                    "{tool} not found in {}/bin (pass --install)",
                    tools.display()
                );
            }
            // Without --locked: aquatic_udp only builds that way on this toolchain.
            let status = Command::new("cargo")
                .args(["install", tool, "--root"])
                .arg(&tools)
                .status()
                .with_context(|| format!("cargo install {tool}"))?;
            if !status.success() {
                bail!("cargo install {tool} failed");
            }
        }
    }
    let tracker_bin = match &args.tracker_bin {
        Some(p) => p.clone(),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "instream-tracker",
                    "--bin",
                    "instream-tracker",
                ])
                .current_dir(&root)
                .status()
                .context("build instream-tracker")?;
            if !status.success() {
                bail!("building instream-tracker failed");
            }
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"))
                .join("release/instream-tracker")
        }
    };
    let dir = WorkDir::new()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let wl = dir.path().join("wl.txt");
        std::fs::write(&wl, load_test_hashes(args.torrents).join("\n") + "\n")?;
        std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644))?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env {
        dir,
        tools,
        tracker_bin,
        cores,
        args,
    };
    let kinds = [Kind::Instream, Kind::OpenTracker, Kind::Aquatic];
    let mut best = [[0f64; 3]; 2];
    let mut errs = [[0f64; 3]; 2];
    let mut cpu_us = [[0f64; 3]; 2];
    for round in 0..env.args.rounds {
        for (m, one_core) in [true, false].into_iter().enumerate() {
            for (k, kind) in kinds.into_iter().enumerate() {
                let port = free_port()?;
                let proc = start(&env, kind, one_core, port)?;
                let cpu_before = cpu_secs(proc.pid())?;
                let (rps, err) = load(&env, one_core, port)?;
                let cpu = cpu_secs(proc.pid())? - cpu_before;
                drop(proc);
                // CPU time per response over the whole run: robust to other load on the
                // machine, unlike responses/s of a closed-loop generator.
                let us_per_response = cpu * 1e6 / (rps * env.args.duration as f64).max(1.0);
                eprintln!(
                    "round {} {:<17} {:<6} {:>10.0} responses/s ({:.0} errors/s), {:.2} CPU-us/response",
                    round + 1,
                    kind.name(),
                    if one_core { "1 core" } else { "all" },
                    rps,
                    err,
                    us_per_response
                );
                if rps > best[m][k] {
                    best[m][k] = rps;
                    errs[m][k] = err;
                }
                if cpu_us[m][k] == 0.0 || us_per_response < cpu_us[m][k] {
                    cpu_us[m][k] = us_per_response;
                }
            }
        }
    }
    println!(
        "UDP tracker, aquatic_udp_load_test ({} torrents, {} peers, {} s per run, best of {}), {} cores",
        env.args.torrents, env.args.peers, env.args.duration, env.args.rounds, env.cores
    );
    println!(
        "{:<18} {:<18} {:>12} {:>9} {:>10} {:>14} {:>12}",
        "tracker", "mode", "responses/s", "errors/s", "ratio", "CPU-us/resp", "CPU ratio"
    );
    for (m, mode) in ["1 worker, pinned", "all workers"].iter().enumerate() {
        for (k, kind) in kinds.iter().enumerate() {
            // Both ratios read "instream-tracker is N times better than this tracker".
            let ratio = if best[m][k] > 0.0 {
                best[m][0] / best[m][k]
            } else {
                0.0
            };
            let cpu_ratio = if cpu_us[m][0] > 0.0 {
                cpu_us[m][k] / cpu_us[m][0]
            } else {
                0.0
            };
            println!(
                "{:<18} {:<18} {:>12.0} {:>9.0} {:>9.2}x {:>14.2} {:>11.2}x",
                kind.name(),
                mode,
                best[m][k],
                errs[m][k],
                ratio,
                cpu_us[m][k],
                cpu_ratio
            );
        }
    }
    Ok(())
}
