//! Emulated data-center topology: hosts in their own network namespaces, fabrics as bridges.
//!
//! ```text
//!   host ns isb<pid>-<n>h<i>         hub ns isb<pid>-<n>hub   (n: the topology's number in this process)
//!   eth0 10.77.x.y --veth-- h<i> ── bridge fab<k> ──(K > 1: veth f<k>up / f<k>core)── bridge core
//!   egress shaped = host upload      egress of h<i> shaped = host download
//!                                    egress of f<k>up = fabric egress, of f<k>core = fabric ingress
//! ```
//!
//! All hosts share one /16, so fabrics are joined at layer 2 and no routing is needed. With one
//! fabric there is no core bridge and hosts hang off `fab0` directly. Host 0 is the origin.
//! With an [`Impairment`] (netem's delay and loss, which this kernel lacks) a [`DelayLine`]
//! delays (and loses some of) every frame sent into it once; where it sits is
//! [`ImpairAt`]:
//! - one fabric ([`ImpairAt::Hosts`]): `h<i>` leaves the bridge and the line joins it to a
//!   veth `x<i>`/`y<i>` whose `y<i>` end takes its place, so host-to-host round trips take
//!   twice the delay;
//! - several fabrics ([`ImpairAt::Uplinks`]): `f<k>core` leaves the core bridge and the line
//!   joins it to a veth `u<k>`/`v<k>` whose `v<k>` end takes its place, so only cross-fabric
//!   paths are impaired (a round trip crosses two uplinks: twice the delay) and hosts of one
//!   fabric talk as on a clean link. This is the issue's "delay and loss on cross-fabric
//!   links".
//!
//! Either way every host's `eth0` sends one packet per frame (`gso_max_segs 1`), so a lost
//! frame is one lost packet.
//! The [`TopologySpec`] is plain data (it also computes the lower bound), so a fabric variant
//! is a different spec, not different code.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};

use super::delay_line::{DelayLine, Impairment, LineStats};
use super::netns::{Netns, PREFIX};

/// A host's access link, in Mbit/s each way.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub up_mbit: f64,
    pub down_mbit: f64,
}

#[derive(Clone, Debug)]
pub struct HostSpec {
    pub fabric: usize,
    pub link: Link,
}

#[derive(Clone, Debug)]
pub struct FabricSpec {
    pub name: String,
    /// Rate of the fabric's link to the core, each way, in Mbit/s; `None` when unshaped
    /// (or when there is a single fabric and no core).
    pub uplink_mbit: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct TopologySpec {
    /// Host 0 is the origin (seed).
    pub hosts: Vec<HostSpec>,
    pub fabrics: Vec<FabricSpec>,
    /// Delay and loss (`None`: none), on the links [`TopologySpec::impair_at`] says.
    pub impair: Option<Impairment>,
}

/// Which links a [`TopologySpec::impair`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImpairAt {
    /// Every host's access link (every frame a host sends).
    Hosts,
    /// Each fabric's link to the core (every frame leaving a fabric), not links within one.
    Uplinks,
}

/// One term of the lower bound, for printing.
#[derive(Clone, Debug)]
pub struct BoundTerm {
    pub name: &'static str,
    pub secs: f64,
}

impl TopologySpec {
    /// An origin and `peers` peers, all with the same link, spread round-robin over
    /// `fabrics` fabrics (the origin in fabric 0), fabrics joined by `fabric_mbit` links.
    pub fn star(
        peers: usize,
        fabrics: usize,
        link: Link,
        fabric_mbit: Option<f64>,
    ) -> TopologySpec {
        let fabrics = fabrics.max(1);
        TopologySpec {
            hosts: (0..=peers)
                .map(|i| HostSpec {
                    fabric: if i == 0 { 0 } else { (i - 1) % fabrics },
                    link,
                })
                .collect(),
            fabrics: (0..fabrics)
                .map(|k| FabricSpec {
                    name: format!("f{}", k + 1),
                    uplink_mbit: if fabrics > 1 { fabric_mbit } else { None },
                })
                .collect(),
            impair: None,
        }
    }

    /// The same topology with `imp`: on the fabric uplinks with several fabrics, else on
    /// every host's link ([`ImpairAt`]).
    pub fn impaired(self, imp: Impairment) -> TopologySpec {
        TopologySpec {
            impair: Some(imp),
            ..self
        }
    }

    /// Where [`Self::impair`] applies: between fabrics when there are several.
    pub fn impair_at(&self) -> ImpairAt {
        if self.fabrics.len() > 1 {
            ImpairAt::Uplinks
        } else {
            ImpairAt::Hosts
        }
    }

    pub fn peers(&self) -> usize {
        self.hosts.len() - 1
    }

    /// The terms of `max(F/u_origin, F/d_host, F/w_fabric_ingress, N·F/(u_origin + Σ u_host))`
    /// (docs/ARCHITECTURE.md) for a payload of `bytes`, largest first; the bound is the first.
    pub fn lower_bound(&self, bytes: u64) -> Vec<BoundTerm> {
        let bits = bytes as f64 * 8.0;
        let mbps = |m: f64| m * 1e6;
        let origin = &self.hosts[0];
        let peers = &self.hosts[1..];
        let mut terms = vec![BoundTerm {
            name: "F/u_seed",
            secs: bits / mbps(origin.link.up_mbit),
        }];
        if let Some(d) = peers.iter().map(|h| h.link.down_mbit).reduce(f64::min) {
            terms.push(BoundTerm {
                name: "F/d_peer",
                secs: bits / mbps(d),
            });
        }
        let w = self
            .fabrics
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != origin.fabric && peers.iter().any(|h| h.fabric == *k))
            .filter_map(|(_, f)| f.uplink_mbit)
            .reduce(f64::min);
        if let Some(w) = w {
            terms.push(BoundTerm {
                name: "F/w_fabric",
                secs: bits / mbps(w),
            });
        }
        let total_up: f64 = self.hosts.iter().map(|h| h.link.up_mbit).sum();
        terms.push(BoundTerm {
            name: "N*F/(u_seed+sum u_peer)",
            secs: peers.len() as f64 * bits / mbps(total_up),
        });
        terms.sort_by(|a, b| b.secs.total_cmp(&a.secs));
        terms
    }
}

/// A built topology; dropping it deletes every namespace (and so every veth and bridge).
pub struct Topology {
    pub spec: TopologySpec,
    // Field order matters for Drop: the delay lines stop first, hosts go before the hub.
    /// Per host, with [`ImpairAt::Hosts`].
    lines: Vec<DelayLine>,
    /// Per fabric, with [`ImpairAt::Uplinks`].
    uplink_lines: Vec<DelayLine>,
    hosts: Vec<Netns>,
    hub: Netns,
}

/// Address of host `i`: 10.77.0.1, 10.77.0.2, ... (250 per /24 step).
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, (i / 250) as u8, (i % 250 + 1) as u8)
}

impl Topology {
    pub fn build(spec: TopologySpec) -> Result<Topology> {
        ensure!(
            spec.hosts.len() >= 2,
            "a topology needs an origin and at least one peer"
        );
        ensure!(
            spec.hosts.len() <= 250 * 250,
            "too many hosts for 10.77.0.0/16"
        );
        // Several topologies may live in one process (parallel tests): each gets a number.
        static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{PREFIX}{}-{n}", std::process::id());
        let hub = Netns::create(&format!("{tag}hub"))?;
        let mut topo = Topology {
            spec: spec.clone(),
            lines: Vec::new(),
            uplink_lines: Vec::new(),
            hosts: Vec::new(),
            hub,
        };
        let multi = spec.fabrics.len() > 1;
        if multi {
            topo.hub.ip(&["link", "add", "core", "type", "bridge"])?;
            topo.hub.ip(&["link", "set", "core", "up"])?;
        }
        for (k, f) in spec.fabrics.iter().enumerate() {
            let br = format!("fab{k}");
            topo.hub.ip(&["link", "add", &br, "type", "bridge"])?;
            topo.hub.ip(&["link", "set", &br, "up"])?;
            if multi {
                let (up, core) = (format!("f{k}up"), format!("f{k}core"));
                topo.hub
                    .ip(&["link", "add", &up, "type", "veth", "peer", "name", &core])?;
                topo.hub.ip(&["link", "set", &up, "master", &br, "up"])?;
                match spec
                    .impair
                    .filter(|_| spec.impair_at() == ImpairAt::Uplinks)
                {
                    None => topo
                        .hub
                        .ip(&["link", "set", &core, "master", "core", "up"])?,
                    Some(imp) => {
                        // Frames leaving the fabric arrive on f<k>core (after f<k>up's
                        // shaping) and are delayed into u<k>; frames entering it come back
                        // from v<k> and leave by f<k>core, whose qdisc shapes them.
                        let (line, port) = (format!("u{k}"), format!("v{k}"));
                        topo.hub
                            .ip(&["link", "add", &line, "type", "veth", "peer", "name", &port])?;
                        topo.hub
                            .ip(&["link", "set", &port, "master", "core", "up"])?;
                        topo.hub.ip(&["link", "set", &line, "up"])?;
                        topo.hub.ip(&["link", "set", &core, "up"])?;
                        let line = DelayLine::start(&topo.hub, &core, &line, imp, 1000 + k as u64)
                            .with_context(|| format!("start the delay line of fabric {k}"))?;
                        topo.uplink_lines.push(line);
                    }
                }
                if let Some(w) = f.uplink_mbit {
                    topo.hub.shape_egress(&up, w)?; // fabric -> core
                    topo.hub.shape_egress(&core, w)?; // core -> fabric
                } else {
                    // Unshaped, but counted (cross-fabric bytes).
                    topo.hub.count_egress(&up)?;
                    topo.hub.count_egress(&core)?;
                }
            }
        }
        for (i, h) in spec.hosts.iter().enumerate() {
            let ns = Netns::create(&format!("{tag}h{i}"))?;
            let hub_end = format!("h{i}");
            crate::harness::netns::ip(&[
                "link",
                "add",
                "name",
                "eth0",
                "netns",
                ns.name(),
                "type",
                "veth",
                "peer",
                "name",
                &hub_end,
                "netns",
                topo.hub.name(),
            ])
            .with_context(|| format!("create the veth of host {i}"))?;
            let fabric_br = format!("fab{}", h.fabric);
            match spec.impair.filter(|_| spec.impair_at() == ImpairAt::Hosts) {
                None => topo
                    .hub
                    .ip(&["link", "set", &hub_end, "master", &fabric_br, "up"])?,
                Some(imp) => {
                    let (line, port) = (format!("x{i}"), format!("y{i}"));
                    topo.hub
                        .ip(&["link", "add", &line, "type", "veth", "peer", "name", &port])?;
                    topo.hub
                        .ip(&["link", "set", &port, "master", &fabric_br, "up"])?;
                    topo.hub.ip(&["link", "set", &line, "up"])?;
                    topo.hub.ip(&["link", "set", &hub_end, "up"])?;
                    let line = DelayLine::start(&topo.hub, &hub_end, &line, imp, i as u64 + 1)
                        .with_context(|| format!("start the delay line of host {i}"))?;
                    topo.lines.push(line);
                }
            }
            if spec.impair.is_some() {
                // One packet per frame, so that a lost frame is one lost packet (also across
                // the bridges to an impaired uplink).
                ns.ip(&["link", "set", "eth0", "gso_max_segs", "1"])?;
            }
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/16", host_addr(i)),
                "dev",
                "eth0",
            ])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.shape_egress("eth0", h.link.up_mbit)?;
            topo.hub.shape_egress(&hub_end, h.link.down_mbit)?;
            topo.hosts.push(ns);
        }
        Ok(topo)
    }

    pub fn host_ns(&self, i: usize) -> &Netns {
        &self.hosts[i]
    }

    /// Frame counts of host `i`'s delay line (`None` without an impairment on host links).
    pub fn line_stats(&self, i: usize) -> Option<&LineStats> {
        self.lines.get(i).map(|l| &*l.stats)
    }

    /// Frame counts of fabric `k`'s uplink delay line (`None` without an impairment on
    /// uplinks).
    pub fn uplink_line_stats(&self, k: usize) -> Option<&LineStats> {
        self.uplink_lines.get(k).map(|l| &*l.stats)
    }

    /// Fabric name of host `i` (for `--fabric`).
    pub fn fabric_name(&self, i: usize) -> &str {
        &self.spec.fabrics[self.spec.hosts[i].fabric].name
    }

    pub fn multi_fabric(&self) -> bool {
        self.spec.fabrics.len() > 1
    }

    /// Bytes that have entered each fabric from the core so far (index = fabric); all zero
    /// with a single fabric. Differences between two calls give one round's cross-fabric
    /// traffic.
    pub fn fabric_ingress_bytes(&self) -> Result<Vec<u64>> {
        if !self.multi_fabric() {
            return Ok(vec![0; self.spec.fabrics.len()]);
        }
        (0..self.spec.fabrics.len())
            .map(|k| self.hub.egress_bytes(&format!("f{k}core")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bound_of_the_reference_setup_is_1_34_s() {
        // One seed and eight peers at 400 Mbit/s, 64 MiB (REFERENCE-CLIENTS.md: 1.34 s).
        let spec = TopologySpec::star(
            8,
            1,
            Link {
                up_mbit: 400.0,
                down_mbit: 400.0,
            },
            None,
        );
        let terms = spec.lower_bound(64 << 20);
        assert_eq!(terms[0].name, "F/u_seed");
        assert!((terms[0].secs - 1.342).abs() < 0.001, "{terms:?}");
        let swarm = terms.iter().find(|t| t.name.starts_with("N*F")).unwrap();
        assert!((swarm.secs - 8.0 / 9.0 * 1.342).abs() < 0.001, "{terms:?}");
    }

    #[test]
    fn impairment_goes_between_fabrics_when_there_are_several() {
        let imp = Impairment {
            delay: std::time::Duration::from_millis(15),
            loss: 0.01,
        };
        let link = Link {
            up_mbit: 400.0,
            down_mbit: 400.0,
        };
        let one = TopologySpec::star(4, 1, link, None).impaired(imp);
        assert_eq!(one.impair_at(), ImpairAt::Hosts);
        let two = TopologySpec::star(4, 2, link, None).impaired(imp);
        assert_eq!(two.impair_at(), ImpairAt::Uplinks);
    }

    #[test]
    fn narrow_fabric_links_dominate_the_bound() {
        let spec = TopologySpec::star(
            8,
            2,
            Link {
                up_mbit: 400.0,
                down_mbit: 400.0,
            },
            Some(100.0),
        );
        assert_eq!(spec.hosts.iter().filter(|h| h.fabric == 1).count(), 4);
        let terms = spec.lower_bound(64 << 20);
        assert_eq!(terms[0].name, "F/w_fabric");
        assert!((terms[0].secs - 4.0 * 1.342).abs() < 0.01, "{terms:?}");
    }
}
