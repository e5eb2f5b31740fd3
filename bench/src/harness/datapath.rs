//! Data-path cost: one seed -> one peer (or, with `--peers N`, the loopback fanout: one seed
//! -> N peers that also trade among themselves) on loopback, clients alternating round by
//! round. On loopback nothing but the CPU limits the transfer, so this measures what a byte
//! costs: wall time (start -> last peer verified), CPU-seconds per GiB delivered for the
//! seed, the peers and all together, and peak memory. instream runs once per disk back end
//! of `--io-backend` (labels `instream/uring`, `instream/portable`), in the same rounds as
//! libtorrent.
//!
//! CPU is counted up to the moment the last peer is done, for both clients: libtorrent peers
//! report `finished` and are sampled then; instream peers keep seeding for `--seed-for` (so
//! early finishers still serve the rest) and their CPU is taken from samples of /proc every
//! 10 ms, at the first sample after the last completion.
//!
//! Memory is reported twice because libtorrent maps the payload into its address space:
//! "peak RSS" (VmHWM / ru_maxrss) counts those file pages, about the payload size, while
//! "peak anon" (highest RssAnon sampled every few ms) is heap and stacks only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use super::clients::{ClientKind, Tools, event_time, instream_done_at, secs_between};
use super::process::Child;
use super::report::{Table, f, median};
use super::swarm::labels;
use super::util::{
    GIB, ScratchDir, fmt_size, free_local_port, fresh_dir, install_interrupt_handler, mktorrent,
    parse_size, same_file, sync_disks, wait_until, write_payload,
};

#[derive(clap::Args, Debug, Clone)]
pub struct DatapathArgs {
    /// Payload size.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Piece size (a power of two).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub piece_size: u64,
    /// Peers; more than 1 is the loopback fanout (every peer also dials the others).
    #[arg(long, default_value_t = 1)]
    pub peers: usize,
    /// Disk back ends instream runs with, each as its own client in every round.
    #[arg(long, value_delimiter = ',', default_value = "uring,portable")]
    pub io_backend: Vec<String>,
    /// Seconds instream peers keep seeding after they finish, with --peers > 1 (must cover
    /// the spread between the first and the last peer).
    #[arg(long, default_value_t = 5)]
    pub seed_for: u64,
    /// Rounds per client; clients alternate within each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Clients to compare, in order; ratios are against the last one.
    #[arg(long, value_delimiter = ',', default_value = "instream,libtorrent", value_parser = ClientKind::parse)]
    pub clients: Vec<ClientKind>,
    /// Give up on a round after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Directory holding instream-seed and instream-peer (default: next to this harness).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Parent of the scratch directory (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Seconds to wait after clearing the previous round's output before starting a round.
    /// On VMs that hand freed memory back to the host (virtio-balloon free page reporting),
    /// page cache that was freed moments ago is still backed and ~10x cheaper to fill than
    /// page cache freed seconds ago; a fixed wait puts every client in the same state.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub no_verify: bool,
    #[arg(long)]
    pub verbose: bool,
    /// Extra arguments for `instream-seed serve`, space-separated.
    #[arg(long, default_value = "--skip-check", allow_hyphen_values = true)]
    pub instream_seed_args: String,
    /// Extra arguments for `instream-peer get`, space-separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub instream_peer_args: String,
}

struct Round {
    wall: f64,
    seed_cpu: f64,
    /// All peers together.
    peer_cpu: f64,
    /// The highest peer's.
    peer_rss_mib: f64,
    peer_anon_mib: f64,
    seed_rss_mib: f64,
    seed_anon_mib: f64,
}

/// One column of the comparison: a client, and for instream its disk back end.
struct Entry {
    kind: ClientKind,
    label: String,
    tools: Tools,
}

struct Ctx<'a> {
    a: &'a DatapathArgs,
    torrent: PathBuf,
    payload: PathBuf,
    out: PathBuf,
}

impl Ctx<'_> {
    fn out_dir(&self, i: usize) -> PathBuf {
        if self.a.peers == 1 {
            self.out.clone()
        } else {
            self.out.join(format!("p{i}"))
        }
    }

    fn fresh_outputs(&self) -> Result<()> {
        fresh_dir(&self.out)
    }

    fn delivered_gib(&self) -> f64 {
        (self.a.peers as u64 * self.a.size) as f64 / GIB as f64
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.a.timeout)
    }
}

fn kib_to_mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

/// The clients of the run: each instream once per back end, in the order given.
fn entries(a: &DatapathArgs, tools: &Tools) -> Result<Vec<Entry>> {
    for b in &a.io_backend {
        ensure!(
            ["uring", "portable", "auto"].contains(&b.as_str()),
            "unknown --io-backend {b:?} (uring, portable, auto)"
        );
    }
    let base = labels(&a.clients);
    let mut out = Vec::new();
    for (c, label) in a.clients.iter().zip(base) {
        match c {
            ClientKind::Instream => {
                for b in &a.io_backend {
                    let mut t = tools.clone();
                    for args in [&mut t.seed_args, &mut t.peer_args] {
                        args.extend(["--io-backend".to_string(), b.clone()]);
                    }
                    out.push(Entry {
                        kind: *c,
                        label: format!("{label}/{b}"),
                        tools: t,
                    });
                }
            }
            ClientKind::Libtorrent => out.push(Entry {
                kind: *c,
                label,
                tools: tools.clone(),
            }),
        }
    }
    Ok(out)
}

pub fn run(a: DatapathArgs) -> Result<()> {
    ensure!(
        a.rounds >= 1 && a.peers >= 1 && !a.clients.is_empty(),
        "need at least one round, one peer and one client"
    );
    let tools = Tools::for_run(
        a.bin_dir.clone(),
        a.verbose,
        &a.instream_seed_args,
        &a.instream_peer_args,
        &a.clients,
    )?;
    let entries = entries(&a, &tools)?;
    install_interrupt_handler();
    let work = ScratchDir::new(a.work_dir.as_deref(), a.keep)?;
    let payload = work.path().join("src/payload.bin");
    write_payload(&payload, a.size, 65).context("write the payload")?;
    let torrent = work.path().join("datapath.torrent");
    mktorrent(&payload, a.piece_size, &torrent)?;
    let ctx = Ctx {
        a: &a,
        torrent,
        payload,
        out: work.path().join("out"),
    };
    println!(
        "datapath: 1 seed -> {} peer{} on loopback, payload {}, pieces {}, {:.2} GiB delivered\n",
        a.peers,
        if a.peers == 1 { "" } else { "s" },
        fmt_size(a.size),
        fmt_size(a.piece_size),
        ctx.delivered_gib()
    );

    let mut per_client: Vec<Vec<Round>> = entries.iter().map(|_| Vec::new()).collect();
    let mut table = Table::new(&[
        "round",
        "client",
        "wall s",
        "MiB/s",
        "CPU-s/GiB",
        "seed CPU-s/GiB",
        "peer CPU-s/GiB",
        "peer RSS MiB",
        "peer anon MiB",
        "seed RSS MiB",
        "seed anon MiB",
    ]);
    let gib = ctx.delivered_gib();
    for r in 1..=a.rounds {
        for (ci, e) in entries.iter().enumerate() {
            ctx.fresh_outputs()?;
            sync_disks();
            std::thread::sleep(Duration::from_secs_f64(a.settle.max(0.0)));
            let res = match e.kind {
                ClientKind::Libtorrent => lt_round(&ctx, &e.tools),
                ClientKind::Instream => instream_round(&ctx, &e.tools),
            }
            .with_context(|| format!("round {r}, {}", e.label))?;
            if !a.no_verify {
                for i in 1..=a.peers {
                    let got = ctx.out_dir(i).join(ctx.payload.file_name().unwrap());
                    ensure!(
                        same_file(&ctx.payload, &got)?,
                        "round {r}, {}: peer {i}'s download differs from the payload",
                        e.label
                    );
                }
            }
            let row = vec![
                r.to_string(),
                e.label.clone(),
                f(res.wall, 3),
                f(gib * 1024.0 / res.wall, 0),
                f((res.seed_cpu + res.peer_cpu) / gib, 2),
                f(res.seed_cpu / gib, 2),
                f(res.peer_cpu / gib, 2),
                f(res.peer_rss_mib, 0),
                f(res.peer_anon_mib, 0),
                f(res.seed_rss_mib, 0),
                f(res.seed_anon_mib, 0),
            ];
            println!("{}", row.join("  "));
            table.row(row);
            per_client[ci].push(res);
            ctx.fresh_outputs()?;
            sync_disks();
        }
    }
    println!("\n{}", table.render());

    let med =
        |ci: usize, g: fn(&Round) -> f64| median(&per_client[ci].iter().map(g).collect::<Vec<_>>());
    let base = entries.len() - 1;
    let vs = |ci: usize, g: fn(&Round) -> f64| f(med(ci, g) / med(base, g), 2);
    let total = |r: &Round| r.seed_cpu + r.peer_cpu;
    let mut summary = Table::new(&[
        "client (median)",
        "wall s",
        "CPU-s/GiB",
        "seed CPU-s/GiB",
        "peer CPU-s/GiB",
        "peer RSS MiB",
        "peer anon MiB",
        &format!("wall / {}", entries[base].label),
        "CPU /",
        "seed CPU /",
        "peer CPU /",
        "peer anon /",
    ]);
    for (ci, e) in entries.iter().enumerate() {
        summary.row(vec![
            e.label.clone(),
            f(med(ci, |r| r.wall), 3),
            f(med(ci, total) / gib, 2),
            f(med(ci, |r| r.seed_cpu) / gib, 2),
            f(med(ci, |r| r.peer_cpu) / gib, 2),
            f(med(ci, |r| r.peer_rss_mib), 0),
            f(med(ci, |r| r.peer_anon_mib), 0),
            vs(ci, |r| r.wall),
            vs(ci, total),
            vs(ci, |r| r.seed_cpu),
            vs(ci, |r| r.peer_cpu),
            vs(ci, |r| r.peer_anon_mib),
        ]);
    }
    println!("{}", summary.render());
    println!(
        "CPU-s/GiB: per GiB delivered (peers x payload), seed + peers. Peer RSS / anon: the \
         highest peer's.\nRSS includes mapped payload pages (libtorrent maps the files); anon = \
         heap + stacks."
    );
    Ok(())
}

/// Loopback addresses for the peers, probed free now, on distinct ports.
fn peer_addrs(n: usize) -> Result<Vec<SocketAddr>> {
    let ports = testkit::try_free_ports(n).context("find free ports for the peers")?;
    Ok(ports
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect())
}

/// Everyone but peer `i` (0-based): the seed first, then the other peers.
fn others(seed: SocketAddr, peers: &[SocketAddr], i: usize) -> Vec<SocketAddr> {
    std::iter::once(seed)
        .chain(
            peers
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, a)| *a),
        )
        .collect()
}

fn mem_round(seed: &mut Child, peers: &mut [Child], peer_cpu: f64, seed_cpu: f64) -> Round {
    let seed_mem = seed.sample_mem();
    let mut peer_rss = 0u64;
    let mut peer_anon = 0u64;
    for p in peers.iter_mut() {
        let m = p.sample_mem();
        let exit_rss = p.exit().map_or(0, |e| e.max_rss_kib);
        peer_rss = peer_rss.max(m.peak_rss_kib.max(exit_rss));
        peer_anon = peer_anon.max(p.peak_anon_kib);
    }
    Round {
        wall: f64::NAN,
        seed_cpu,
        peer_cpu,
        peer_rss_mib: kib_to_mib(peer_rss),
        peer_anon_mib: kib_to_mib(peer_anon),
        seed_rss_mib: kib_to_mib(seed_mem.peak_rss_kib),
        seed_anon_mib: kib_to_mib(seed.peak_anon_kib),
    }
}

fn lt_round(ctx: &Ctx, tools: &Tools) -> Result<Round> {
    let src = ctx.payload.parent().unwrap();
    let mut seed = tools.lt_seed("lt-seed", &ctx.torrent, src, "127.0.0.1:0".parse()?, None)?;
    let port = seed
        .event("ready")
        .and_then(|v| v["listen_port"].as_u64())
        .context("seed's listen port")? as u16;
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let n = ctx.a.peers;
    let addrs = peer_addrs(n)?;
    let mut peers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        // One peer: dial the seed from port 0, as before the fanout existed.
        let listen = if n == 1 {
            "127.0.0.1:0".parse()?
        } else {
            *addr
        };
        peers.push(tools.lt_peer(
            &format!("lt-peer{}", i + 1),
            &ctx.torrent,
            &ctx.out_dir(i + 1),
            listen,
            &others(seed_addr, &addrs, i),
            -1.0,
            true,
            None,
        )?);
    }
    for p in &mut peers {
        Tools::wait_ready(p)?;
    }
    let seed_cpu0 = seed.cpu_secs();
    let peer_cpu0: f64 = peers.iter_mut().map(Child::cpu_secs).sum();
    let t0 = SystemTime::now();
    for p in &mut peers {
        p.send_line("go")?;
    }
    wait_until(ctx.timeout(), "every libtorrent peer to finish", || {
        seed.sample_mem();
        let mut all = true;
        for p in peers.iter_mut() {
            p.sample_mem();
            if let Some(e) = p.poll_exit() {
                let d = e.describe();
                bail!("{} ended ({d}) before finishing\n{}", p.label, p.tail());
            }
            all &= p.event("finished").is_some();
        }
        Ok(all)
    })?;
    let seed_cpu = seed.cpu_secs() - seed_cpu0;
    let peer_cpu = peers.iter_mut().map(Child::cpu_secs).sum::<f64>() - peer_cpu0;
    let mut done = f64::NAN;
    for p in &peers {
        let at = p
            .event("finished")
            .as_ref()
            .and_then(event_time)
            .context("finished event time")?;
        done = done.max(secs_between(t0, at));
    }
    let mut round = mem_round(&mut seed, &mut peers, peer_cpu, seed_cpu);
    for p in peers.iter_mut() {
        p.terminate(Duration::from_secs(10));
    }
    seed.terminate(Duration::from_secs(10));
    round.wall = done;
    Ok(round)
}

fn instream_round(ctx: &Ctx, tools: &Tools) -> Result<Round> {
    let n = ctx.a.peers;
    let seed_for = if n == 1 { 0.0 } else { ctx.a.seed_for as f64 };
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], free_local_port()?));
    let mut seed = tools.instream_seed(
        "instream-seed",
        &ctx.torrent,
        &ctx.payload,
        seed_addr,
        None,
        None,
    )?;
    let seed_cpu0 = seed.cpu_secs();
    let addrs = peer_addrs(n)?;
    let t0 = SystemTime::now();
    let mut peers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let listen = if n == 1 {
            "127.0.0.1:0".parse()?
        } else {
            *addr
        };
        peers.push(tools.instream_peer(
            &format!("instream-peer{}", i + 1),
            &ctx.torrent,
            &ctx.out_dir(i + 1),
            listen,
            &others(seed_addr, &addrs, i),
            seed_for,
            None,
            None,
            None,
        )?);
    }
    // (when, seed CPU, peers' CPU) every poll: the CPU at the last completion is read back
    // from here once the peers have exited and said when they were done.
    let mut samples: Vec<(SystemTime, f64, f64)> = Vec::new();
    let limit = ctx.timeout() + Duration::from_secs_f64(seed_for);
    wait_until(limit, "every instream peer to finish and exit", || {
        seed.sample_mem();
        let mut all = true;
        let mut cpu = 0.0;
        for p in peers.iter_mut() {
            p.sample_mem();
            cpu += p.cpu_secs();
            match p.poll_exit() {
                Some(e) if !e.success() => {
                    let d = e.describe();
                    bail!("{} failed ({d})\n{}", p.label, p.tail())
                }
                Some(_) => {}
                None => all = false,
            }
        }
        samples.push((SystemTime::now(), seed.cpu_secs() - seed_cpu0, cpu));
        Ok(all)
    })?;
    // Let the stdout readers take the summary lines.
    std::thread::sleep(Duration::from_millis(20));
    let mut last = SystemTime::UNIX_EPOCH;
    for p in &peers {
        let (done, _) = instream_done_at(p, seed_for).context("peer completion time")?;
        last = last.max(done);
    }
    let &(_, seed_cpu, peer_cpu) = samples
        .iter()
        .find(|(at, ..)| *at >= last)
        .or(samples.last())
        .context("no CPU sample")?;
    let mut round = mem_round(&mut seed, &mut peers, peer_cpu, seed_cpu);
    seed.terminate(Duration::from_secs(10));
    round.wall = secs_between(t0, last);
    Ok(round)
}
