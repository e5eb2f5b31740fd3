//! Swarm efficiency: one seed and N peers, every host in its own network namespace with its
//! link shaped by `tc`, the same payload and torrent for every client, clients alternating
//! round by round. Figures per round: fanout time (start -> every peer verified), its ratio
//! to the lower bound, seed upload / payload, CPU-seconds per GiB delivered, and with
//! `--fabrics K` the bytes that entered the busiest non-origin fabric / payload (wire bytes
//! counted by the shaping qdisc of that fabric's link; ideal 1.0).
//!
//! Seeds start first and are timed from when they listen; peers keep seeding until every
//! peer is done (libtorrent: until terminated; instream: `--seed-for`). Outputs are deleted
//! and the disks synced between rounds.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use super::clients::{
    ClientKind, DoneSource, Tools, event_time, instream_done_at, secs_between, summary_u64,
};
use super::delay_line::Impairment;
use super::netns;
use super::path_probe;
use super::process::Child;
use super::report::{Table, f, median};
use super::topology::{ImpairAt, Link, Topology, TopologySpec, host_addr};
use super::util::{
    GIB, ScratchDir, fmt_size, fresh_dir, install_interrupt_handler, is_root, mktorrent,
    parse_size, same_file, sync_disks, wait_until, write_payload,
};

/// Every host listens on this port of its own address.
const PORT: u16 = 6881;

#[derive(clap::Args, Debug, Clone)]
pub struct SwarmArgs {
    /// Number of peers (besides the seed).
    #[arg(long, default_value_t = 8)]
    pub peers: usize,
    /// Rate of every host link, each way, Mbit/s.
    #[arg(long, default_value_t = 400.0)]
    pub mbit: f64,
    /// Payload size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Piece size (a power of two).
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub piece_size: u64,
    /// Rounds per client; clients alternate within each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Clients to compare, in order; ratios are against the last one. The same client may be
    /// listed twice (e.g. libtorrent,libtorrent) to see the run-to-run noise.
    #[arg(long, value_delimiter = ',', default_value = "instream,libtorrent", value_parser = ClientKind::parse)]
    pub clients: Vec<ClientKind>,
    /// Seconds instream peers keep seeding after they finish (must cover the slowest peer).
    #[arg(long, default_value_t = 10.0)]
    pub seed_for: f64,
    /// Number of fabrics (bridges); peers are spread round-robin, the seed is in the first.
    #[arg(long, default_value_t = 1)]
    pub fabrics: usize,
    /// Rate of each fabric's link to the core, each way, Mbit/s (with --fabrics > 1;
    /// unshaped without it).
    #[arg(long)]
    pub fabric_mbit: Option<f64>,
    /// Give up on a round after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Directory holding instream-seed and instream-peer (default: next to this harness).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Parent of the scratch directory (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the scratch directory.
    #[arg(long)]
    pub keep: bool,
    /// Skip the byte-for-byte check of every download after each round.
    #[arg(long)]
    pub no_verify: bool,
    /// Copy the clients' stderr to ours.
    #[arg(long)]
    pub verbose: bool,
    /// Extra arguments for `instream-seed serve`, space-separated.
    #[arg(long, default_value = "--skip-check", allow_hyphen_values = true)]
    pub instream_seed_args: String,
    /// Extra arguments for `instream-peer get`, space-separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub instream_peer_args: String,
    /// Transports instream runs with (`--transport` of its seed and peers), each its own
    /// column: `tcp,quic` puts QUIC beside TCP in the same rounds; `quic+bbr` adds
    /// `--quic-congestion bbr`.
    #[arg(long, value_delimiter = ',', default_value = "tcp")]
    pub transports: Vec<String>,
    /// One-way delay added to every frame a host sends, ms (a userspace delay line; round
    /// trips between hosts take twice this). With --fabrics > 1 it applies to every frame
    /// leaving a fabric instead, so only cross-fabric round trips take twice this. 0: none.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Share of the frames dropped, percent (on the same links as --delay-ms).
    #[arg(long, default_value_t = 0.0)]
    pub loss_pct: f64,
    /// Time libtorrent peers from their spawn (python start-up included) instead of from the
    /// "go" sent once every peer is set up. instream peers are always timed from their spawn.
    #[arg(long)]
    pub lt_from_spawn: bool,
    /// Do not pass `--fabric-share` to instream peers (default flags: they rank themselves
    /// among the same-fabric peers they connect to, or take the tracker's share).
    #[arg(long)]
    pub no_fabric_share: bool,
}

/// One client's figures for one round.
struct Round {
    /// Most bytes that entered one non-origin fabric, / payload (NaN with one fabric).
    cross_fabric: f64,
    fanout: f64,
    seed_copies: f64,
    cpu_per_gib: f64,
    first_done: f64,
    note: String,
}

struct Ctx<'a> {
    a: &'a SwarmArgs,
    tools: &'a Tools,
    topo: &'a Topology,
    torrent: PathBuf,
    payload: PathBuf,
    out_root: PathBuf,
}

impl Ctx<'_> {
    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(host_addr(i)), PORT)
    }

    fn out_dir(&self, i: usize) -> PathBuf {
        self.out_root.join(format!("h{i}"))
    }

    fn others(&self, i: usize) -> Vec<SocketAddr> {
        (0..=self.a.peers)
            .filter(|&j| j != i)
            .map(|j| self.addr(j))
            .collect()
    }

    fn fabric(&self, i: usize) -> Option<&str> {
        self.topo.multi_fabric().then(|| self.topo.fabric_name(i))
    }

    /// `RANK/OF` of peer `i` among the peers of its fabric, as the control plane's
    /// dispatcher would pass it (`None` with one fabric or alone in its fabric).
    fn fabric_share(&self, i: usize) -> Option<String> {
        if self.a.no_fabric_share {
            return None;
        }
        let mine = self.fabric(i)?;
        let same: Vec<usize> = (1..=self.a.peers)
            .filter(|&j| self.fabric(j) == Some(mine))
            .collect();
        let rank = same.iter().position(|&j| j == i)?;
        (same.len() > 1).then(|| format!("{rank}/{}", same.len()))
    }

    fn delivered_gib(&self) -> f64 {
        (self.a.peers as u64 * self.a.size) as f64 / GIB as f64
    }

    fn fresh_outputs(&self) -> Result<()> {
        for i in 1..=self.a.peers {
            fresh_dir(&self.out_dir(i))?;
        }
        Ok(())
    }

    fn verify_outputs(&self) -> Result<()> {
        if self.a.no_verify {
            return Ok(());
        }
        let name = self.payload.file_name().unwrap();
        for i in 1..=self.a.peers {
            let got = self.out_dir(i).join(name);
            ensure!(
                same_file(&self.payload, &got)?,
                "peer {i}'s download {} differs from the payload",
                got.display()
            );
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.a.timeout)
    }
}

pub fn run(a: SwarmArgs) -> Result<()> {
    ensure!(
        is_root(),
        "the swarm benchmark needs root for ip netns and tc (run it with sudo)"
    );
    ensure!(
        a.peers >= 1 && a.rounds >= 1 && !a.clients.is_empty(),
        "need at least one peer, round and client"
    );
    let tools = Tools::for_run(
        a.bin_dir.clone(),
        a.verbose,
        &a.instream_seed_args,
        &a.instream_peer_args,
        &a.clients,
    )?;
    install_interrupt_handler();
    let stale = netns::remove_stale();
    if stale > 0 {
        eprintln!("removed {stale} network namespaces left by an earlier run");
    }

    let work = ScratchDir::new(a.work_dir.as_deref(), a.keep)?;
    let src = work.path().join("src");
    let payload = src.join("payload.bin");
    write_payload(&payload, a.size, 64).context("write the payload")?;
    let torrent = work.path().join("swarm.torrent");
    mktorrent(&payload, a.piece_size, &torrent)?;

    let mut spec = TopologySpec::star(
        a.peers,
        a.fabrics,
        Link {
            up_mbit: a.mbit,
            down_mbit: a.mbit,
        },
        a.fabric_mbit,
    );
    if a.delay_ms > 0.0 || a.loss_pct > 0.0 {
        spec = spec.impaired(Impairment {
            delay: Duration::from_secs_f64(a.delay_ms / 1000.0),
            loss: a.loss_pct / 100.0,
        });
    }
    // One column per (client, transport): libtorrent has one, instream one per transport.
    let entries: Vec<(ClientKind, Option<&str>)> = a
        .clients
        .iter()
        .flat_map(|&c| match c {
            ClientKind::Instream => a.transports.iter().map(|t| (c, Some(t.as_str()))).collect(),
            ClientKind::Libtorrent => vec![(c, None)],
        })
        .collect();
    let entry_tools: Vec<super::clients::Tools> = entries
        .iter()
        .map(|(_, t)| {
            let mut tools = tools.clone();
            if let Some(t) = t {
                // `quic+bbr`: a transport and its QUIC congestion control.
                let (t, cc) = match t.split_once('+') {
                    Some((t, cc)) => (t, Some(cc)),
                    None => (*t, None),
                };
                for args in [&mut tools.seed_args, &mut tools.peer_args] {
                    args.extend(["--transport".to_string(), t.to_string()]);
                    if let Some(cc) = cc {
                        args.extend(["--quic-congestion".to_string(), cc.to_string()]);
                    }
                }
            }
            tools
        })
        .collect();
    let terms = spec.lower_bound(a.size);
    let bound = terms[0].secs;
    let topo = Topology::build(spec).context("build the network namespaces")?;
    let ctx = Ctx {
        a: &a,
        tools: &tools,
        topo: &topo,
        torrent,
        payload,
        out_root: work.path().join("out"),
    };

    println!(
        "swarm: 1 seed + {} peers, {} Mbit/s each way per host, {} fabric(s){}, payload {}, pieces {}",
        a.peers,
        a.mbit,
        a.fabrics,
        a.fabric_mbit
            .map(|w| format!(" joined at {w} Mbit/s"))
            .unwrap_or_default(),
        fmt_size(a.size),
        fmt_size(a.piece_size)
    );
    let shown: Vec<String> = terms
        .iter()
        .map(|t| format!("{} = {:.3} s", t.name, t.secs))
        .collect();
    println!("lower bound {bound:.3} s  ({})", shown.join(", "));
    if let Some(imp) = topo.spec.impair {
        let at = match topo.spec.impair_at() {
            ImpairAt::Hosts => "every host link",
            ImpairAt::Uplinks => "every fabric uplink (cross-fabric paths only)",
        };
        println!(
            "{at}: {:.1} ms one-way delay, {:.2} % loss (userspace delay line: this kernel has no netem)",
            imp.delay.as_secs_f64() * 1000.0,
            imp.loss * 100.0
        );
        print_paths(&topo)?;
    }
    println!(
        "timing: instream peers from their spawn; libtorrent peers from {}\n",
        if a.lt_from_spawn {
            "their spawn"
        } else {
            "\"go\" once set up (python start-up excluded)"
        }
    );

    let labels = entry_labels(&entries);
    let mut per_client: Vec<Vec<Round>> = entries.iter().map(|_| Vec::new()).collect();
    let mut rounds = Table::new(&[
        "round",
        "client",
        "fanout s",
        "x bound",
        "seed up/F",
        "CPU-s/GiB",
        "first done s",
        "xfabric/F",
        "note",
    ]);
    for r in 1..=a.rounds {
        for (ci, (c, _)) in entries.iter().enumerate() {
            ctx.fresh_outputs()?;
            sync_disks();
            let ingress0 = topo.fabric_ingress_bytes()?;
            let mut res = match c {
                ClientKind::Libtorrent => lt_round(&ctx),
                ClientKind::Instream => instream_round(&ctx, &entry_tools[ci]),
            }
            .with_context(|| format!("round {r}, {}", labels[ci]))?;
            res.cross_fabric = cross_fabric_copies(&topo, &ingress0, a.size)?;
            ctx.verify_outputs()
                .with_context(|| format!("round {r}, {}", labels[ci]))?;
            println!(
                "round {r} {:<12} fanout {:>7.3} s  {:>5.2}x bound  seed up {:>5.2} F  {:>6.2} CPU-s/GiB{} {}",
                labels[ci],
                res.fanout,
                res.fanout / bound,
                res.seed_copies,
                res.cpu_per_gib,
                if res.cross_fabric.is_finite() {
                    format!("  into a fabric {:.2} F", res.cross_fabric)
                } else {
                    String::new()
                },
                res.note
            );
            rounds.row(vec![
                r.to_string(),
                labels[ci].clone(),
                f(res.fanout, 3),
                f(res.fanout / bound, 2),
                f(res.seed_copies, 2),
                f(res.cpu_per_gib, 2),
                f(res.first_done, 3),
                f(res.cross_fabric, 2),
                res.note.clone(),
            ]);
            per_client[ci].push(res);
            ctx.fresh_outputs()?;
            sync_disks();
        }
    }
    println!("\n{}", rounds.render());

    let med =
        |ci: usize, g: fn(&Round) -> f64| median(&per_client[ci].iter().map(g).collect::<Vec<_>>());
    let base = entries.len() - 1;
    let mut summary = Table::new(&[
        "client (median)",
        "fanout s",
        "bound s",
        "x bound",
        "seed up/F",
        "CPU-s/GiB",
        "xfabric/F",
        &format!("fanout / {}", labels[base]),
        &format!("CPU / {}", labels[base]),
    ]);
    for (ci, label) in labels.iter().enumerate() {
        let fanout = med(ci, |r| r.fanout);
        let cpu = med(ci, |r| r.cpu_per_gib);
        summary.row(vec![
            label.clone(),
            f(fanout, 3),
            f(bound, 3),
            f(fanout / bound, 2),
            f(med(ci, |r| r.seed_copies), 2),
            f(cpu, 2),
            f(med(ci, |r| r.cross_fabric), 2),
            f(fanout / med(base, |r| r.fanout), 2),
            f(cpu / med(base, |r| r.cpu_per_gib), 2),
        ]);
    }
    println!("{}", summary.render());
    Ok(())
}

/// Bytes that entered the busiest non-origin fabric since `before`, in payload copies
/// (ideal 1.0); NaN with a single fabric.
fn cross_fabric_copies(topo: &Topology, before: &[u64], payload: u64) -> Result<f64> {
    if !topo.multi_fabric() {
        return Ok(f64::NAN);
    }
    let after = topo.fabric_ingress_bytes()?;
    let origin = topo.spec.hosts[0].fabric;
    Ok((0..after.len())
        .filter(|&k| k != origin)
        .map(|k| after[k].saturating_sub(before[k]) as f64 / payload as f64)
        .fold(f64::NAN, f64::max))
}

/// Measures the paths the impairment should (and, across fabrics, should not) touch, so
/// that the figures say what the links really did.
fn print_paths(topo: &Topology) -> Result<()> {
    let n = topo.spec.hosts.len();
    let mut pairs = vec![("origin to host 1", 0, 1)];
    if topo.multi_fabric() {
        // Peers are spread round-robin: host 1 and host 3 share fabric 0 with the origin,
        // host 2 is in fabric 1.
        if n > 3 {
            pairs = vec![("within a fabric (1 to 3)", 1, 3)];
        } else {
            pairs.clear();
        }
        if n > 2 {
            pairs.push(("across fabrics (1 to 2)", 1, 2));
        }
    }
    for (what, a, b) in pairs {
        let p = path_probe::probe(topo, a, b, 500).with_context(|| format!("probe {what}"))?;
        println!(
            "measured {what}: rtt median {:.1} ms, one-way loss {:.1} %",
            p.rtt_median.as_secs_f64() * 1000.0,
            p.one_way_loss() * 100.0
        );
    }
    Ok(())
}

/// Display names of the entries: the client, `/TRANSPORT` on instream's unless every one is
/// plain TCP, numbered when the same name comes twice.
fn entry_labels(entries: &[(ClientKind, Option<&str>)]) -> Vec<String> {
    let plain_tcp = entries.iter().all(|(_, t)| t.is_none_or(|t| t == "tcp"));
    let mut seen = std::collections::HashMap::new();
    entries
        .iter()
        .map(|(c, t)| {
            let name = match t {
                Some(t) if !plain_tcp => format!("{}/{t}", c.name()),
                _ => c.name().to_string(),
            };
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { name } else { format!("{name}#{n}") }
        })
        .collect()
}

/// Display names, numbered when a client is listed more than once.
pub fn labels(clients: &[ClientKind]) -> Vec<String> {
    let mut seen = std::collections::HashMap::new();
    clients
        .iter()
        .map(|c| {
            let n = seen.entry(c.name()).or_insert(0);
            *n += 1;
            if *n == 1 {
                c.name().to_string()
            } else {
                format!("{}#{n}", c.name())
            }
        })
        .collect()
}

fn lt_round(ctx: &Ctx) -> Result<Round> {
    let n = ctx.a.peers;
    let src_dir = ctx.payload.parent().unwrap();
    let mut seed = ctx.tools.lt_seed(
        "lt-seed",
        &ctx.torrent,
        src_dir,
        ctx.addr(0),
        Some(ctx.topo.host_ns(0)),
    )?;
    let from_spawn = ctx.a.lt_from_spawn;
    let mut t0 = SystemTime::now();
    let mut cpu0 = seed.cpu_secs();
    let mut peers = Vec::new();
    for i in 1..=n {
        peers.push(ctx.tools.lt_peer(
            &format!("lt-peer{i}"),
            &ctx.torrent,
            &ctx.out_dir(i),
            ctx.addr(i),
            &ctx.others(i),
            -1.0,
            !from_spawn,
            Some(ctx.topo.host_ns(i)),
        )?);
    }
    if !from_spawn {
        for p in &mut peers {
            Tools::wait_ready(p)?;
        }
        cpu0 = seed.cpu_secs() + peers.iter_mut().map(Child::cpu_secs).sum::<f64>();
        t0 = SystemTime::now();
        for p in &mut peers {
            p.send_line("go")?;
        }
    }
    wait_until(ctx.timeout(), "every libtorrent peer to finish", || {
        let mut all = true;
        for p in peers.iter_mut() {
            if let Some(e) = p.poll_exit() {
                let d = e.describe();
                bail!("{} ended ({d}) before finishing\n{}", p.label, p.tail());
            }
            all &= p.event("finished").is_some();
        }
        Ok(all)
    })?;
    let cpu1: f64 = seed.cpu_secs() + peers.iter_mut().map(Child::cpu_secs).sum::<f64>();
    let done: Vec<f64> = peers
        .iter()
        .map(|p| {
            p.event("finished")
                .as_ref()
                .and_then(event_time)
                .map(|t| secs_between(t0, t))
                .unwrap_or(f64::NAN)
        })
        .collect();
    for p in peers.iter_mut() {
        p.terminate(Duration::from_secs(10));
    }
    seed.terminate(Duration::from_secs(10));
    let seed_up = summary_u64(&seed, "bytes_uploaded")?;
    Ok(Round {
        cross_fabric: f64::NAN,
        fanout: done.iter().copied().fold(f64::NAN, f64::max),
        seed_copies: seed_up as f64 / ctx.a.size as f64,
        cpu_per_gib: (cpu1 - cpu0) / ctx.delivered_gib(),
        first_done: done.iter().copied().fold(f64::NAN, f64::min),
        note: String::new(),
    })
}

fn instream_round(ctx: &Ctx, tools: &super::clients::Tools) -> Result<Round> {
    let n = ctx.a.peers;
    let mut seed = tools.instream_seed(
        "instream-seed",
        &ctx.torrent,
        &ctx.payload,
        ctx.addr(0),
        ctx.fabric(0),
        Some(ctx.topo.host_ns(0)),
    )?;
    let seed_cpu0 = seed.cpu_secs();
    let t0 = SystemTime::now();
    let mut peers = Vec::new();
    for i in 1..=n {
        peers.push(tools.instream_peer(
            &format!("instream-peer{i}"),
            &ctx.torrent,
            &ctx.out_dir(i),
            ctx.addr(i),
            &ctx.others(i),
            ctx.a.seed_for,
            ctx.fabric(i),
            ctx.fabric_share(i).as_deref(),
            Some(ctx.topo.host_ns(i)),
        )?);
    }
    let limit = ctx.timeout() + Duration::from_secs_f64(ctx.a.seed_for);
    wait_until(limit, "every instream peer to finish and exit", || {
        let mut all = true;
        for p in peers.iter_mut() {
            match p.poll_exit() {
                Some(e) if !e.success() => {
                    let d = e.describe();
                    bail!("{} failed ({d})\n{}", p.label, p.tail());
                }
                Some(_) => {}
                None => all = false,
            }
        }
        Ok(all)
    })?;
    let seed_cpu = seed.cpu_secs() - seed_cpu0;
    seed.terminate(Duration::from_secs(10));
    let mut done = Vec::new();
    let mut sources = Vec::new();
    let (mut down, mut up, mut cpu) = (0u64, 0u64, seed_cpu);
    let mut quic = 0u64;
    for p in &peers {
        let (at, src) =
            instream_done_at(p, ctx.a.seed_for).context("peer exited without a completion time")?;
        done.push(secs_between(t0, at));
        sources.push(src);
        down += summary_u64(p, "bytes_downloaded")?;
        up += summary_u64(p, "bytes_uploaded")?;
        quic += summary_u64(p, "quic_connections").unwrap_or(0);
        cpu += p.exit().map_or(0.0, |e| e.cpu_secs);
    }
    let note = if sources.contains(&DoneSource::ExitMinusSeedFor) {
        "done = exit - seed-for".to_string()
    } else {
        String::new()
    };
    let fanout = done.iter().copied().fold(f64::NAN, f64::max);
    let first = done.iter().copied().fold(f64::NAN, f64::min);
    let mut note = note;
    if quic > 0 {
        note.push_str(&format!(" {quic} QUIC conns"));
    }
    if fanout - first > ctx.a.seed_for {
        note.push_str(" (spread > seed-for: early finishers left before the last)");
    }
    Ok(Round {
        cross_fabric: f64::NAN,
        fanout,
        // Every byte a peer received came from the seed or another peer.
        seed_copies: down.saturating_sub(up) as f64 / ctx.a.size as f64,
        cpu_per_gib: cpu / ctx.delivered_gib(),
        first_done: first,
        note,
    })
}
