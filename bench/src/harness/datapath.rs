//! Data-path cost: one seed -> one peer on loopback, clients alternating round by round.
//! On loopback nothing but the CPU limits the transfer, so this measures what a byte costs:
//! wall time, CPU-seconds per GiB for the seed and the peer separately, and peak memory.
//!
//! Memory is reported twice because libtorrent maps the payload into its address space:
//! "peak RSS" (VmHWM / ru_maxrss) counts those file pages, about the payload size, while
//! "peak anon" (highest RssAnon sampled every few ms) is heap and stacks only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use super::clients::{ClientKind, Tools, event_time, instream_done_at, secs_between};
use super::report::{Table, f, median};
use super::swarm::labels;
use super::util::{
    GIB, MIB, ScratchDir, fmt_size, free_local_port, fresh_dir, install_interrupt_handler,
    mktorrent, parse_size, same_file, sync_disks, wait_until, write_payload,
};

#[derive(clap::Args, Debug, Clone)]
pub struct DatapathArgs {
    /// Payload size.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Piece size (a power of two).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub piece_size: u64,
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
    peer_cpu: f64,
    peer_rss_mib: f64,
    peer_anon_mib: f64,
    seed_rss_mib: f64,
    seed_anon_mib: f64,
}

struct Ctx<'a> {
    a: &'a DatapathArgs,
    tools: &'a Tools,
    torrent: PathBuf,
    payload: PathBuf,
    out: PathBuf,
}

fn kib_to_mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

pub fn run(a: DatapathArgs) -> Result<()> {
    ensure!(
        a.rounds >= 1 && !a.clients.is_empty(),
        "need at least one round and one client"
    );
    let tools = Tools::for_run(
        a.bin_dir.clone(),
        a.verbose,
        &a.instream_seed_args,
        &a.instream_peer_args,
        &a.clients,
    )?;
    install_interrupt_handler();
    let work = ScratchDir::new(a.work_dir.as_deref(), a.keep)?;
    let payload = work.path().join("src/payload.bin");
    write_payload(&payload, a.size, 65).context("write the payload")?;
    let torrent = work.path().join("datapath.torrent");
    mktorrent(&payload, a.piece_size, &torrent)?;
    let ctx = Ctx {
        a: &a,
        tools: &tools,
        torrent,
        payload,
        out: work.path().join("out"),
    };
    println!(
        "datapath: 1 seed -> 1 peer on loopback, payload {}, pieces {}\n",
        fmt_size(a.size),
        fmt_size(a.piece_size)
    );

    let labels = labels(&a.clients);
    let mut per_client: Vec<Vec<Round>> = a.clients.iter().map(|_| Vec::new()).collect();
    let mut table = Table::new(&[
        "round",
        "client",
        "wall s",
        "MiB/s",
        "seed CPU-s/GiB",
        "peer CPU-s/GiB",
        "peer RSS MiB",
        "peer anon MiB",
        "seed RSS MiB",
        "seed anon MiB",
    ]);
    let gib = a.size as f64 / GIB as f64;
    for r in 1..=a.rounds {
        for (ci, c) in a.clients.iter().enumerate() {
            fresh_dir(&ctx.out)?;
            sync_disks();
            std::thread::sleep(Duration::from_secs_f64(a.settle.max(0.0)));
            let res = match c {
                ClientKind::Libtorrent => lt_round(&ctx),
                ClientKind::Instream => instream_round(&ctx),
            }
            .with_context(|| format!("round {r}, {}", labels[ci]))?;
            if !a.no_verify {
                let got = ctx.out.join(ctx.payload.file_name().unwrap());
                ensure!(
                    same_file(&ctx.payload, &got)?,
                    "round {r}, {}: download differs from the payload",
                    labels[ci]
                );
            }
            let row = vec![
                r.to_string(),
                labels[ci].clone(),
                f(res.wall, 3),
                f(a.size as f64 / MIB as f64 / res.wall, 0),
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
            fresh_dir(&ctx.out)?;
            sync_disks();
        }
    }
    println!("\n{}", table.render());

    let med =
        |ci: usize, g: fn(&Round) -> f64| median(&per_client[ci].iter().map(g).collect::<Vec<_>>());
    let base = a.clients.len() - 1;
    let vs = |ci: usize, g: fn(&Round) -> f64| f(med(ci, g) / med(base, g), 2);
    let mut summary = Table::new(&[
        "client (median)",
        "wall s",
        "seed CPU-s/GiB",
        "peer CPU-s/GiB",
        "peer anon MiB",
        &format!("wall / {}", labels[base]),
        "seed CPU /",
        "peer CPU /",
        "peer anon /",
    ]);
    for (ci, label) in labels.iter().enumerate() {
        summary.row(vec![
            label.clone(),
            f(med(ci, |r| r.wall), 3),
            f(med(ci, |r| r.seed_cpu) / gib, 2),
            f(med(ci, |r| r.peer_cpu) / gib, 2),
            f(med(ci, |r| r.peer_anon_mib), 0),
            vs(ci, |r| r.wall),
            vs(ci, |r| r.seed_cpu),
            vs(ci, |r| r.peer_cpu),
            vs(ci, |r| r.peer_anon_mib),
        ]);
    }
    println!("{}", summary.render());
    println!(
        "peer/seed RSS include mapped payload pages (libtorrent maps the files); anon = heap + stacks."
    );
    Ok(())
}

fn lt_round(ctx: &Ctx) -> Result<Round> {
    let src = ctx.payload.parent().unwrap();
    let mut seed = ctx
        .tools
        .lt_seed("lt-seed", &ctx.torrent, src, "127.0.0.1:0".parse()?, None)?;
    let port = seed
        .event("ready")
        .and_then(|v| v["listen_port"].as_u64())
        .context("seed's listen port")? as u16;
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut peer = ctx.tools.lt_peer(
        "lt-peer",
        &ctx.torrent,
        &ctx.out,
        "127.0.0.1:0".parse()?,
        &[seed_addr],
        0.0,
        true,
        None,
    )?;
    Tools::wait_ready(&mut peer)?;
    let (seed_cpu0, peer_cpu0) = (seed.cpu_secs(), peer.cpu_secs());
    let t0 = SystemTime::now();
    peer.send_line("go")?;
    wait_until(
        Duration::from_secs(ctx.a.timeout),
        "the libtorrent peer to finish",
        || {
            seed.sample_mem();
            peer.sample_mem();
            if peer.event("finished").is_some() {
                return Ok(true);
            }
            if let Some(e) = peer.poll_exit() {
                let d = e.describe();
                bail!("lt-peer ended ({d}) before finishing\n{}", peer.tail());
            }
            Ok(false)
        },
    )?;
    let done = peer
        .event("finished")
        .as_ref()
        .and_then(event_time)
        .context("finished event time")?;
    let seed_cpu = seed.cpu_secs() - seed_cpu0;
    let seed_mem = seed.sample_mem();
    let peer_mem = peer.sample_mem();
    let peer_exit = peer.terminate(Duration::from_secs(10));
    seed.terminate(Duration::from_secs(10));
    Ok(Round {
        wall: secs_between(t0, done),
        seed_cpu,
        peer_cpu: peer_exit.cpu_secs - peer_cpu0,
        peer_rss_mib: kib_to_mib(peer_mem.peak_rss_kib.max(peer_exit.max_rss_kib)),
        peer_anon_mib: kib_to_mib(peer.peak_anon_kib),
        seed_rss_mib: kib_to_mib(seed_mem.peak_rss_kib),
        seed_anon_mib: kib_to_mib(seed.peak_anon_kib),
    })
}

fn instream_round(ctx: &Ctx) -> Result<Round> {
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], free_local_port()?));
    let mut seed = ctx.tools.instream_seed(
        "instream-seed",
        &ctx.torrent,
        &ctx.payload,
        seed_addr,
        None,
        None,
    )?;
    let seed_cpu0 = seed.cpu_secs();
    let t0 = SystemTime::now();
    let mut peer = ctx.tools.instream_peer(
        "instream-peer",
        &ctx.torrent,
        &ctx.out,
        "127.0.0.1:0".parse()?,
        &[seed_addr],
        0.0,
        None,
        None,
        None,
    )?;
    wait_until(
        Duration::from_secs(ctx.a.timeout),
        "the instream peer to finish and exit",
        || {
            seed.sample_mem();
            peer.sample_mem();
            match peer.poll_exit() {
                Some(e) if !e.success() => {
                    let d = e.describe();
                    bail!("instream-peer failed ({d})\n{}", peer.tail())
                }
                Some(_) => Ok(true),
                None => Ok(false),
            }
        },
    )?;
    let seed_cpu = seed.cpu_secs() - seed_cpu0;
    let seed_mem = seed.sample_mem();
    seed.terminate(Duration::from_secs(10));
    // Let the stdout reader take the summary line.
    std::thread::sleep(Duration::from_millis(20));
    let (done, _) = instream_done_at(&peer, 0.0).context("peer completion time")?;
    let exit = peer.exit().cloned().context("peer exit")?;
    Ok(Round {
        wall: secs_between(t0, done),
        seed_cpu,
        peer_cpu: exit.cpu_secs,
        peer_rss_mib: kib_to_mib(exit.max_rss_kib),
        peer_anon_mib: kib_to_mib(peer.peak_anon_kib),
        seed_rss_mib: kib_to_mib(seed_mem.peak_rss_kib),
        seed_anon_mib: kib_to_mib(seed.peak_anon_kib),
    })
}
