//! Fabric simulator: N hosts in K fabrics fetch one payload from an origin, running the real
//! torrent machine (`proto::torrent`: picker, choker, super-seeder) and the real tracker
//! registry (`tracker::swarm`, which also hands each host its fabric share) on a virtual clock
//! with a link model (host up/down rates, a shared ingress pipe per fabric).
//!
//! Prints the fanout time against the lower bound
//! `max(F/u_origin, F/d_host, F/w_ingress, N*F/(u_origin + sum u_host))`, per fabric the
//! bytes that crossed into it divided by the payload (ideal 1.0) and when it finished, and
//! the origin's upload over the payload. `--trace FILE.csv` writes each fabric's progress
//! over time (`fabric_chart` draws it).
//!
//! Scale: the swarm is dataless (no payload in memory, see `proto::sim`), and a host costs
//! only its protocol state. Large payloads are simulated at `--block-scale K` (automatic by
//! default): piece length, payload and every link rate are divided by K, so each simulated
//! 16 KiB block stands for K of them while the number of pieces, every transfer's duration
//! and so every timer's relative weight stay as they are. What changes is that a piece has
//! fewer, longer blocks, and byte-sized bounds (upload and request queues) are looser.
//!
//! `cargo run --release -p instream-bench --bin fabric_sim -- --hosts 10000 --fabrics 20 --size-mib 1024`

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use proto::picker::FabricShare;
use proto::sim::{NodeReport, NodeSpec, PeerSource, Role, Swarm};
use proto::torrent::Config;
use proto::tracker::AnnounceEvent;
use proto::{InfoHash, PeerId};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracker::swarm::{Announce, FabricId, SwarmConfig, Torrents};

/// Where a host's fabric share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShareFrom {
    /// The tracker's announce answer (default flags, no dispatcher).
    Tracker,
    /// The control plane, which knows every host it deploys to (`--fabric-share`).
    Exact,
    /// Each host ranks itself among the same-fabric peers it is connected to.
    Local,
}

#[derive(Parser, Debug)]
#[command(
    about = "Simulate a fleet rollout across fabrics with the real picker, choker and tracker registry"
)]
struct Args {
    /// Hosts downloading (the origin comes on top).
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Fabrics; the origin sits in the first.
    #[arg(long, default_value_t = 4)]
    fabrics: usize,
    /// Payload size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Piece size in KiB (default: the payload over 256, between 256 KiB and 16 MiB, a
    /// power of two, as torrents of large payloads are made).
    #[arg(long)]
    piece_kib: Option<u32>,
    /// Divide piece length, payload and link rates by this (default: so that a piece has
    /// 8 blocks; see the module header).
    #[arg(long)]
    block_scale: Option<u32>,
    /// Each host's link, Mbit/s each way.
    #[arg(long, default_value_t = 1000.0)]
    host_mbit: f64,
    /// The origin's link, Mbit/s each way.
    #[arg(long, default_value_t = 1000.0)]
    origin_mbit: f64,
    /// Capacity into each fabric from the others, Mbit/s (shared by all its hosts).
    #[arg(long, default_value_t = 4000.0)]
    ingress_mbit: f64,
    /// Cross-fabric peers the tracker hands each host.
    #[arg(long, default_value_t = 2)]
    bridges: u32,
    /// Peers the tracker hands out per announce.
    #[arg(long, default_value_t = 40)]
    numwant: u32,
    /// Most connections per host.
    #[arg(long, default_value_t = 60)]
    max_peers: usize,
    /// Fall-back delay step, milliseconds (see `torrent::Config::fabric_fallback_delay`;
    /// default: the machine's default).
    #[arg(long)]
    fallback_ms: Option<u64>,
    /// Turn the origin's super-seeding off.
    #[arg(long)]
    no_super_seed: bool,
    /// Where hosts learn their fabric share.
    #[arg(long, value_enum, default_value_t = ShareFrom::Tracker)]
    share: ShareFrom,
    /// Give hosts no fabric (a fabric-blind swarm, for comparison).
    #[arg(long)]
    blind: bool,
    /// Stop after this much virtual time, seconds.
    #[arg(long, default_value_t = 3600.0)]
    limit_secs: f64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Write per-fabric progress over time to this CSV file
    /// (`secs,fabric,fraction,hosts_done,hosts`).
    #[arg(long, value_name = "FILE.csv")]
    trace: Option<PathBuf>,
    /// Trace sampling period, seconds of virtual time (default: the bound over 100).
    #[arg(long)]
    trace_every: Option<f64>,
}

/// The real tracker registry as the simulator's peer source.
struct TrackerModel {
    torrents: Torrents,
    cfg: SwarmConfig,
    blind: bool,
    /// Hand hosts the tracker's fabric share.
    shares: bool,
    rng: SmallRng,
}

fn addr_of(node: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + node as u32 + 1), 6881)
}

fn node_of(addr: &SocketAddrV4) -> usize {
    (u32::from(*addr.ip()) - 0x0a00_0000 - 1) as usize
}

impl PeerSource for TrackerModel {
    fn announce(
        &mut self,
        node: usize,
        fabric: &str,
        complete: bool,
        now: Duration,
    ) -> (Vec<usize>, Option<FabricShare>) {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&(node as u64).to_be_bytes());
        let fabric = if self.blind {
            FabricId::UNKNOWN
        } else {
            FabricId::from_name(fabric)
        };
        let a = Announce {
            peer_id: PeerId(id),
            addr: addr_of(node),
            source: std::net::IpAddr::V4(*addr_of(node).ip()),
            left: u64::from(!complete),
            event: AnnounceEvent::Started,
            fabric,
            numwant: Some(self.cfg.max_numwant),
        };
        let mut out = Vec::new();
        let counts = self
            .torrents
            .announce(
                &self.cfg,
                InfoHash([7; 20]),
                &a,
                now.as_secs() as u32,
                &mut self.rng,
                &mut out,
            )
            .expect("the model has no caps");
        let share = counts.fabric_share.filter(|_| self.shares);
        (out.iter().map(node_of).collect(), share)
    }
}

fn main() -> std::process::ExitCode {
    exit::exit(run(exit::parse_args()))
}

fn run(args: Args) -> Result<()> {
    if args.fabrics == 0 || args.hosts == 0 {
        bail!("need at least one host and one fabric");
    }
    let size = args.size_mib * 1024 * 1024;
    let piece = match args.piece_kib {
        Some(k) => u64::from(k) * 1024,
        None => (size / 256).clamp(256 << 10, 16 << 20).next_power_of_two(),
    };
    // 8 blocks of 16 KiB a piece at least (or the piece as it is, if smaller).
    let scale = u64::from(args.block_scale.unwrap_or(0))
        .max(if args.block_scale.is_some() {
            1
        } else {
            piece / (8 * 16 * 1024)
        })
        .max(1);
    if !piece.is_multiple_of(scale) || !size.is_multiple_of(scale) {
        bail!("--block-scale {scale} does not divide the piece ({piece} B) and payload ({size} B)");
    }
    // Rates in simulated bytes per second (see the module header): times stay real.
    let mbit = |m: f64| m * 1e6 / 8.0 / scale as f64;
    let fabrics: Vec<String> = (1..=args.fabrics).map(|k| format!("f{k}")).collect();
    let in_fabric = |k: usize| (args.hosts + args.fabrics - 1 - k) / args.fabrics;
    let spec = |role: Role, fabric: &str, rate: f64, share: Option<FabricShare>| NodeSpec {
        role,
        fabric: fabric.to_owned(),
        up_rate: rate,
        down_rate: rate,
        config: Config {
            fabric: (!args.blind).then(|| fabric.to_owned()),
            super_seed: role == Role::Seed && !args.no_super_seed,
            max_peers: args.max_peers,
            fabric_share: share,
            fabric_fallback_delay: args.fallback_ms.map_or(
                Config::default().fabric_fallback_delay,
                Duration::from_millis,
            ),
            ..Config::default()
        },
        start_at: Duration::ZERO,
    };
    let mut specs = vec![spec(Role::Seed, &fabrics[0], mbit(args.origin_mbit), None)];
    for h in 0..args.hosts {
        let k = h % args.fabrics;
        let share = (args.share == ShareFrom::Exact && !args.blind).then(|| FabricShare {
            rank: (h / args.fabrics) as u32,
            of: in_fabric(k) as u32,
        });
        specs.push(spec(
            Role::Leecher,
            &fabrics[k],
            mbit(args.host_mbit),
            share,
        ));
    }
    let piece_len = u32::try_from(piece / scale).context("piece length")?;
    let mut swarm = Swarm::new_dataless(size / scale, piece_len, specs);
    for f in &fabrics {
        swarm.set_fabric_ingress(f, mbit(args.ingress_mbit));
    }
    swarm.set_peer_source(Box::new(TrackerModel {
        torrents: Torrents::default(),
        cfg: SwarmConfig {
            interval: 30,
            grace: 30,
            default_numwant: args.numwant,
            max_numwant: args.numwant,
            bridges: args.bridges,
            max_peers: 0,
            max_fabrics: 0,
        },
        blind: args.blind,
        shares: args.share == ShareFrom::Tracker,
        rng: SmallRng::seed_from_u64(1),
    }));
    let f = size as f64;
    let n = args.hosts as f64;
    let real = |m: f64| m * 1e6 / 8.0;
    let bound = [
        f / real(args.origin_mbit),
        f / real(args.host_mbit),
        if args.fabrics > 1 {
            f / real(args.ingress_mbit)
        } else {
            0.0
        },
        n * f / (real(args.origin_mbit) + n * real(args.host_mbit)),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    let fabric_of = |h: usize| h % args.fabrics;
    let mut trace = match &args.trace {
        Some(p) => {
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
            );
            writeln!(w, "secs,fabric,fraction,hosts_done,hosts")?;
            Some(w)
        }
        None => None,
    };
    let limit = Duration::from_secs_f64(args.limit_secs);
    let step = Duration::from_secs_f64(args.trace_every.unwrap_or(bound / 100.0).max(1e-3));
    let pieces = size.div_ceil(piece);
    let wall = Instant::now();
    let end = loop {
        let until = if trace.is_some() {
            (swarm.now() + step).min(limit)
        } else {
            limit
        };
        let end = swarm.run(until);
        if let Some(w) = trace.as_mut() {
            let mut have = vec![0u64; args.fabrics];
            let mut done = vec![0usize; args.fabrics];
            for h in 0..args.hosts {
                let got = swarm.pieces_of(h + 1);
                have[fabric_of(h)] += u64::from(got);
                done[fabric_of(h)] += usize::from(u64::from(got) == pieces);
            }
            for (k, fabric) in fabrics.iter().enumerate() {
                let hosts = in_fabric(k);
                writeln!(
                    w,
                    "{:.3},{fabric},{:.5},{},{hosts}",
                    end.as_secs_f64(),
                    have[k] as f64 / (hosts.max(1) as u64 * pieces) as f64,
                    done[k]
                )?;
            }
        }
        if swarm.is_done() || end >= limit {
            break end;
        }
    };
    if let Some(mut w) = trace {
        w.flush().context("write the trace")?;
    }
    let wall = wall.elapsed();
    let reports = swarm.reports();
    let done = reports[1..]
        .iter()
        .filter(|r| r.completed_at.is_some())
        .count();
    let mut times: Vec<f64> = reports[1..]
        .iter()
        .filter_map(|r| r.completed_at)
        .map(|d| d.as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let fanout = reports[1..]
        .iter()
        .filter_map(|r| r.completed_at)
        .max()
        .unwrap_or(end)
        .as_secs_f64();
    // Reports count simulated bytes.
    let fs = (size / scale) as f64;
    let origin_copies = reports[0].bytes_up as f64 / fs;
    let cross_sum = |g: fn(&NodeReport) -> u64| reports[1..].iter().map(g).sum::<u64>() as f64 / fs;
    let (cross_total, cross_share, cross_origin) = (
        cross_sum(|r| r.cross_fabric_down),
        cross_sum(|r| r.cross_share_down),
        cross_sum(|r| r.cross_from_first_down),
    );
    // (fabric, cross-fabric bytes in over the payload, when its last host finished)
    let cross: Vec<(String, f64, Option<f64>)> = fabrics
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mine = || {
                reports[1..]
                    .iter()
                    .enumerate()
                    .filter(|(h, _)| fabric_of(*h) == k)
                    .map(|(_, r)| r)
            };
            let bytes: u64 = mine().map(|r| r.cross_fabric_down).sum();
            let finished = if mine().all(|r| r.completed_at.is_some()) {
                mine()
                    .filter_map(|r| r.completed_at)
                    .max()
                    .map(|d| d.as_secs_f64())
            } else {
                None
            };
            (name.clone(), bytes as f64 / fs, finished)
        })
        .collect();
    let worst = cross.iter().map(|c| c.1).fold(0.0, f64::max);
    // Over the fabrics without the origin (the origin's own takes next to nothing).
    let others = &cross[usize::from(cross.len() > 1)..];
    let mean = others.iter().map(|c| c.1).sum::<f64>() / others.len() as f64;
    if args.json {
        let per_fabric: serde_json::Map<String, serde_json::Value> = cross
            .iter()
            .map(|(k, v, _)| (k.clone(), serde_json::json!(v)))
            .collect();
        let finished: serde_json::Map<String, serde_json::Value> = cross
            .iter()
            .map(|(k, _, t)| (k.clone(), serde_json::json!(t)))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "hosts": args.hosts, "fabrics": args.fabrics, "size_mib": args.size_mib,
                "piece_kib": piece / 1024, "block_scale": scale, "done": done,
                "cross_fabric_worst": worst, "cross_fabric_mean": mean,
                "fabric_finished_secs": finished,
                "fanout_secs": fanout, "bound_secs": bound, "ratio": fanout / bound,
                "origin_copies": origin_copies, "cross_fabric_copies": per_fabric,
                "cross_fabric_total": cross_total, "cross_fabric_in_share": cross_share,
                "cross_fabric_from_origin": cross_origin,
                "sim_wall_secs": wall.as_secs_f64(), "events": swarm.events_handled(),
            })
        );
    } else {
        println!(
            "hosts {} in {} fabrics, {} MiB, {} KiB pieces (block scale {scale}), shares from {:?}",
            args.hosts,
            args.fabrics,
            args.size_mib,
            piece / 1024,
            args.share
        );
        println!("completed            {done}/{}", args.hosts);
        println!("fanout               {fanout:.2} s (virtual)");
        println!(
            "host done p10/p50/p90 {:.2} / {:.2} / {:.2} s",
            pct(0.1),
            pct(0.5),
            pct(0.9)
        );
        println!("lower bound          {bound:.2} s");
        println!("fanout / bound       {:.2}", fanout / bound);
        println!("origin upload        {origin_copies:.2} x payload");
        for (name, c, t) in &cross {
            let t = t.map_or("unfinished".to_owned(), |t| format!("finished at {t:.2} s"));
            println!("into fabric {name:<8} {c:.2} x payload across fabrics, {t}");
        }
        println!(
            "across, per fabric   worst {worst:.2}, mean {mean:.2} x payload (mean without the origin's fabric)"
        );
        if args.share != ShareFrom::Exact || args.blind {
            println!(
                "across, all fabrics  {cross_total:.2} x payload: {cross_origin:.2} from the origin"
            );
        } else {
            println!(
                "across, all fabrics  {cross_total:.2} x payload: {cross_share:.2} in the \
                 receivers' shares, {cross_origin:.2} from the origin, {:.2} fall-back",
                cross_total - cross_share - cross_origin
            );
        }
        println!(
            "simulated in         {:.1} s wall, {} events",
            wall.as_secs_f64(),
            swarm.events_handled()
        );
    }
    if done < args.hosts {
        bail!(
            "{} of {} hosts did not complete within {} s of virtual time",
            args.hosts - done,
            args.hosts,
            args.limit_secs
        );
    }
    Ok(())
}
