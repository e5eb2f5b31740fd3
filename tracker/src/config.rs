//! The tracker's configuration: one TOML file (`--config`), unknown keys refused, every
//! field with its unit, default and the meaning of 0. Command-line flags override it.
//! [`DEFAULT_CONFIG_TOML`] is what `--print-config` prints; a test checks that it parses
//! to [`Config::default`], so the two cannot drift apart.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything `run` needs; it never reads argv or the environment itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// BEP 15 UDP tracker.
    pub udp: UdpConfig,
    /// BEP 3 HTTP tracker and the admin API.
    pub http: HttpConfig,
    /// The swarm registry's section, `[swarm]`: peer handout and expiry, as written in the
    /// file ([`crate::swarm::SwarmConfig`] is the registry's run-time copy, in its own units).
    pub swarm: RegistryConfig,
    /// Fabric awareness.
    pub fabric: FabricConfig,
    /// Which info-hashes are served.
    pub access: AccessConfig,
}

/// BEP 15 UDP tracker settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    /// Addresses to listen on. Default `["0.0.0.0:6969"]`; empty: no UDP tracker.
    /// An IPv6 address listens on IPv6 only (answers carry 18-byte peers there).
    pub listen: Vec<SocketAddr>,
    /// Worker threads, each with its own socket on every address (SO_REUSEPORT).
    /// Default 0: one per available core.
    pub workers: usize,
    /// Receive buffer of each socket, in bytes. Default 0: the OS default
    /// (raise `net.core.rmem_max` to go beyond it).
    pub recv_buffer_bytes: usize,
    /// Most info-hashes in one scrape request. Default 74 (BEP 15); 0: refuse scrapes.
    pub max_scrape_torrents: usize,
    /// Length of a connection-id window, in seconds; an id is valid for one to two windows.
    /// Default 120; 0 is read as 1.
    pub connection_id_window_secs: u64,
    /// Whether to list a peer under the IPv4 address in its announce's IP field (BEP 15;
    /// `--announce-ip` behind NAT) instead of the packet's source. Default false (it lets
    /// a client list an address it does not hold); the entry stays owned by the source
    /// address either way, so another source cannot take the listing over.
    pub trust_ip_field: bool,
}

/// BEP 3 HTTP tracker settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses to listen on (TCP). Default `["0.0.0.0:6969"]`; empty: no HTTP tracker
    /// (and no admin API).
    pub listen: Vec<SocketAddr>,
    /// Largest request accepted (head and body), in bytes. Default 8192; 0 is read as 1024.
    pub max_request_bytes: usize,
    /// Largest body of an authenticated admin request (`POST /register`), in bytes: 41 per
    /// info-hash, so the default 1 MiB registers about 25,000 at once. The token is checked
    /// before the body is read. Default 1048576; 0 is read as `max_request_bytes`.
    pub max_admin_body_bytes: usize,
    /// Time allowed for one request, in milliseconds: waiting for it (so an idle keep-alive
    /// connection is closed after it), receiving it and writing its answer. Default 10000;
    /// 0 is read as 1000.
    pub request_timeout_ms: u64,
    /// Most concurrent connections; at the cap a newcomer evicts the connection that has
    /// waited longest for a request (it is closed at once if every one is mid-request).
    /// Default 1024; 0: unlimited.
    pub max_connections: usize,
    /// Whether to list a peer under the `ip=` it announces instead of the connection's
    /// address. Default false (it lets anyone list someone else's address).
    pub trust_ip_param: bool,
}

/// Peer handout and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Seconds between regular announces, told to clients. Default 300; 0 is read as 1.
    pub announce_interval_secs: u32,
    /// Seconds a silent peer is kept after its interval. Default 60; 0: none.
    pub peer_grace_secs: u32,
    /// Peers handed out when a client does not say. Default 50; 0: none.
    pub default_numwant: u32,
    /// Most peers in one reply. Default 200 (1,220 bytes over IPv4 UDP); 0: none.
    pub max_numwant: u32,
    /// Seconds between sweeps of expired peers. Default 30; 0 is read as 1.
    pub cleaning_interval_secs: u32,
    /// State shards (torrents are spread over them by info-hash; each has its own lock).
    /// Default 0: 64.
    pub shards: usize,
    /// Most peers listed per torrent (IPv4 and IPv6 together); an announce from a new peer
    /// beyond it gets an error reply and evicts nobody. Default 50000; 0: unlimited.
    pub max_peers_per_torrent: u32,
    /// Most fabrics per torrent and address family (peers of unknown fabric count as one);
    /// an announce that would open another gets an error reply. Default 1024; 0: unlimited.
    pub max_fabrics_per_torrent: u32,
}

/// Fabric awareness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FabricConfig {
    /// CIDR → fabric file (`10.1.0.0/16 dc1` per line), for peers that do not name their
    /// fabric. Default: none.
    pub map: Option<PathBuf>,
    /// Most cross-fabric peers ("bridges") in a reply to a peer whose fabric is known.
    /// Default 2; 0: a fabric with no seed of its own never gets the data.
    pub bridges: u32,
}

/// Which info-hashes are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Serve every info-hash. Default false.
    pub open: bool,
    /// Hex info-hashes, one per line, re-read on SIGHUP. Default: none.
    pub whitelist: Option<PathBuf>,
    /// File holding the bearer token of the admin API (`POST /register`). Default: none
    /// (the API is off unless the token comes from the environment).
    pub admin_token_file: Option<PathBuf>,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:6969".parse().expect("literal")],
            workers: 0,
            recv_buffer_bytes: 0,
            max_scrape_torrents: proto::tracker::udp::MAX_SCRAPE_INFO_HASHES,
            connection_id_window_secs: 120,
            trust_ip_field: false,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:6969".parse().expect("literal")],
            max_request_bytes: 8192,
            max_admin_body_bytes: 1 << 20,
            request_timeout_ms: 10_000,
            max_connections: 1024,
            trust_ip_param: false,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            announce_interval_secs: 300,
            peer_grace_secs: 60,
            default_numwant: 50,
            max_numwant: 200,
            cleaning_interval_secs: 30,
            shards: 0,
            max_peers_per_torrent: 50_000,
            max_fabrics_per_torrent: 1024,
        }
    }
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self {
            map: None,
            bridges: 2,
        }
    }
}

impl Config {
    /// Worker count with 0 resolved to the number of cores.
    pub fn udp_workers(&self) -> usize {
        match self.udp.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Shard count with 0 resolved.
    pub fn shards(&self) -> usize {
        match self.swarm.shards {
            0 => 64,
            n => n,
        }
    }

    /// The registry's knobs.
    pub fn swarm_config(&self) -> crate::swarm::SwarmConfig {
        crate::swarm::SwarmConfig {
            interval: self.swarm.announce_interval_secs.max(1),
            grace: self.swarm.peer_grace_secs,
            default_numwant: self.swarm.default_numwant,
            max_numwant: self.swarm.max_numwant,
            bridges: self.fabric.bridges,
            max_peers: self.swarm.max_peers_per_torrent,
            max_fabrics: self.swarm.max_fabrics_per_torrent,
        }
    }
}

/// The commented default configuration printed by `--print-config`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# instream-tracker configuration. Every key is optional; shown are the defaults.
# Command-line flags (--udp, --http, --fabric-map, --whitelist, --open) override them.

[udp]
# Addresses of the BEP 15 UDP tracker; [] disables it. An IPv6 address is IPv6-only.
listen = ["0.0.0.0:6969"]
# Worker threads sharing each address through SO_REUSEPORT. 0: one per core.
workers = 0
# Socket receive buffer in bytes. 0: OS default (see sysctl net.core.rmem_max).
recv_buffer_bytes = 0
# Most info-hashes in one scrape request (BEP 15 says about 74). 0: refuse scrapes.
max_scrape_torrents = 74
# Connection-id window in seconds; an id stays valid for one to two windows. 0 reads as 1.
connection_id_window_secs = 120
# List peers under the IP field of their announces (NAT) rather than the packet's source.
# The entry stays owned by the source address, which alone can refresh or remove it.
trust_ip_field = false

[http]
# Addresses of the HTTP tracker and admin API; [] disables both.
listen = ["0.0.0.0:6969"]
# Largest request (head and body) in bytes. 0 reads as 1024.
max_request_bytes = 8192
# Largest body of an authenticated admin request (41 bytes per info-hash). The token is
# checked before the body is read. 0 reads as max_request_bytes.
max_admin_body_bytes = 1048576
# Milliseconds allowed for one request: idle keep-alive wait, receiving it and writing
# the answer, together. 0 reads as 1000.
request_timeout_ms = 10000
# Most concurrent connections; at the cap a newcomer evicts the connection that has
# waited longest for a request. 0: unlimited.
max_connections = 1024
# List peers under their announced ip= rather than the connection's address. The entry
# stays owned by the connection's address, which alone can refresh or remove it.
trust_ip_param = false

[swarm]
# Seconds between regular announces, told to clients. 0 reads as 1.
announce_interval_secs = 300
# Extra seconds a silent peer is kept after its interval. 0: none.
peer_grace_secs = 60
# Peers handed out when the client does not say. 0: none.
default_numwant = 50
# Most peers in one reply. 0: none.
max_numwant = 200
# Seconds between sweeps of expired peers. 0 reads as 1.
cleaning_interval_secs = 30
# State shards, each with its own lock (torrents spread by info-hash). 0: 64.
shards = 0
# Most peers per torrent (IPv4 and IPv6 together). A new peer beyond it gets an error
# reply; nobody listed is evicted. 0: unlimited.
max_peers_per_torrent = 50000
# Most fabrics per torrent and address family (unknown fabric counts as one). An announce
# that would open another gets an error reply. 0: unlimited.
max_fabrics_per_torrent = 1024

[fabric]
# CIDR -> fabric file ("10.1.0.0/16 dc1" per line) for peers that do not send fabric=.
# map = "/etc/instream/fabrics.txt"
# Most cross-fabric peers in a reply to a peer of known fabric. 0: none (a fabric with
# no seed of its own would never get the data).
bridges = 2

[access]
# Serve every info-hash (--open). Otherwise only the whitelist and registered ones.
open = false
# Hex info-hashes, one per line; re-read on SIGHUP.
# whitelist = "/etc/instream/tracker-whitelist.txt"
# Bearer token file of the admin API (POST /register, POST /unregister with a hex
# info-hash as body). The token may also come from INSTREAM_TRACKER_TOKEN.
# admin_token_file = "/etc/instream/tracker-token"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn default_round_trips_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }

    #[test]
    fn printed_config_is_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn non_default_values_round_trip() {
        let mut c = Config::default();
        c.udp.listen = vec!["[::1]:7000".parse().unwrap()];
        c.fabric.map = Some("/tmp/map".into());
        c.access.whitelist = Some("/tmp/wl".into());
        c.access.open = true;
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[udp]\nlisten = []\nworkerz = 3\n").unwrap_err();
        assert!(err.to_string().contains("workerz"), "{err}");
        assert!(toml::from_str::<Config>("[nope]\n").is_err());
    }

    #[test]
    fn zero_means_what_the_docs_say() {
        let mut c = Config::default();
        c.udp.workers = 0;
        assert!(c.udp_workers() >= 1);
        c.swarm.shards = 0;
        assert_eq!(c.shards(), 64);
        c.swarm.announce_interval_secs = 0;
        assert_eq!(c.swarm_config().interval, 1);
    }
}
