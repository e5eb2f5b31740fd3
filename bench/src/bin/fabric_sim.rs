//! Fabric simulator: N hosts in K fabrics fetch one payload from an origin, running the real
//! torrent machine (`proto::torrent`) and the real tracker registry (`tracker::swarm`) on a
//! virtual clock with a link model (host up/down rates, a shared ingress pipe per fabric).
//!
//! Prints the fanout time against the lower bound
//! `max(F/u_origin, F/d_host, F/w_ingress, N*F/(u_origin + sum u_host))` and, per fabric,
//! the bytes that crossed into it divided by the payload (ideal 1.0).
//!
//! `cargo run --release -p instream-bench --bin fabric_sim -- --hosts 1000 --fabrics 4`

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Parser;
use proto::picker::FabricShare;
use proto::sim::{NodeReport, NodeSpec, PeerSource, Role, Swarm};
use proto::torrent::Config;
use proto::tracker::AnnounceEvent;
use proto::{InfoHash, PeerId};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracker::swarm::{Announce, FabricId, SwarmConfig, Torrents};

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
    /// Piece size in KiB.
    #[arg(long, default_value_t = 256)]
    piece_kib: u32,
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
    /// Turn the origin's super-seeding off.
    #[arg(long)]
    no_super_seed: bool,
    /// Let hosts rank themselves among the same-fabric peers they know, instead of being told
    /// their exact share by the control plane (which knows every host it deploys to).
    #[arg(long)]
    no_exact_share: bool,
    /// Give hosts no fabric (a fabric-blind swarm, for comparison).
    #[arg(long)]
    blind: bool,
    /// Stop after this much virtual time, seconds.
    #[arg(long, default_value_t = 3600.0)]
    limit_secs: f64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The real tracker registry as the simulator's peer source.
struct TrackerModel {
    torrents: Torrents,
    cfg: SwarmConfig,
    blind: bool,
    rng: SmallRng,
}

fn addr_of(node: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + node as u32 + 1), 6881)
}

fn node_of(addr: &SocketAddrV4) -> usize {
    (u32::from(*addr.ip()) - 0x0a00_0000 - 1) as usize
}

impl PeerSource for TrackerModel {
    fn announce(&mut self, node: usize, fabric: &str, now: Duration) -> Vec<usize> {
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
            left: u64::from(node != 0),
            event: AnnounceEvent::Started,
            fabric,
            numwant: Some(self.cfg.max_numwant),
        };
        let mut out = Vec::new();
        self.torrents
            .announce(
                &self.cfg,
                InfoHash([7; 20]),
                &a,
                now.as_secs() as u32,
                &mut self.rng,
                &mut out,
            )
            .expect("the model has no caps");
        out.iter().map(node_of).collect()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.fabrics == 0 || args.hosts == 0 {
        bail!("need at least one host and one fabric");
    }
    let mbit = |m: f64| m * 1e6 / 8.0;
    let size = args.size_mib * 1024 * 1024;
    let payload: Bytes = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
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
            // Thousands of hosts share this process: no pooled piece buffers.
            piece_buffer_pool_bytes: 0,
            ..Config::default()
        },
        start_at: Duration::ZERO,
    };
    let mut specs = vec![spec(Role::Seed, &fabrics[0], mbit(args.origin_mbit), None)];
    for h in 0..args.hosts {
        let k = h % args.fabrics;
        let share = (!args.no_exact_share && !args.blind).then(|| FabricShare {
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
    let mut swarm = Swarm::new(payload, args.piece_kib * 1024, specs);
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
        rng: SmallRng::seed_from_u64(1),
    }));
    let wall = Instant::now();
    let end = swarm.run(Duration::from_secs_f64(args.limit_secs));
    let wall = wall.elapsed();
    let reports = swarm.reports();
    let done = reports[1..]
        .iter()
        .filter(|r| r.completed_at.is_some())
        .count();
    let f = size as f64;
    let n = args.hosts as f64;
    let bound = [
        f / mbit(args.origin_mbit),
        f / mbit(args.host_mbit),
        if args.fabrics > 1 {
            f / mbit(args.ingress_mbit)
        } else {
            0.0
        },
        n * f / (mbit(args.origin_mbit) + n * mbit(args.host_mbit)),
    ]
    .into_iter()
    .fold(0.0, f64::max);
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
    let origin_copies = reports[0].bytes_up as f64 / f;
    let cross_sum = |g: fn(&NodeReport) -> u64| reports[1..].iter().map(g).sum::<u64>() as f64 / f;
    let (cross_total, cross_share, cross_origin) = (
        cross_sum(|r| r.cross_fabric_down),
        cross_sum(|r| r.cross_share_down),
        cross_sum(|r| r.cross_from_first_down),
    );
    let cross: Vec<(String, f64)> = fabrics
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let bytes: u64 = reports[1..]
                .iter()
                .enumerate()
                .filter(|(h, _)| h % args.fabrics == k)
                .map(|(_, r)| r.cross_fabric_down)
                .sum();
            (name.clone(), bytes as f64 / f)
        })
        .collect();
    if args.json {
        let per_fabric: serde_json::Map<String, serde_json::Value> = cross
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "hosts": args.hosts, "fabrics": args.fabrics, "done": done,
                "fanout_secs": fanout, "bound_secs": bound, "ratio": fanout / bound,
                "origin_copies": origin_copies, "cross_fabric_copies": per_fabric,
                "cross_fabric_total": cross_total, "cross_fabric_in_share": cross_share,
                "cross_fabric_from_origin": cross_origin,
                "sim_wall_secs": wall.as_secs_f64(),
            })
        );
    } else {
        println!(
            "hosts {} in {} fabrics, {} MiB, {} KiB pieces",
            args.hosts, args.fabrics, args.size_mib, args.piece_kib
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
        for (name, c) in &cross {
            println!("into fabric {name:<8} {c:.2} x payload across fabrics");
        }
        if args.no_exact_share || args.blind {
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
        println!("simulated in         {:.1} s wall", wall.as_secs_f64());
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
