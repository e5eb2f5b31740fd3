//! The engine's announce client (`engine::tracker_client`) against the real
//! instream-tracker on loopback and against Debian's opentracker.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use engine::tracker_client::{
    ClientConfig, ClientError, DiscoveredPeers, Identity, TrackerClient, TrackerConn, TrackerUrl,
    TransferStats,
};
use proto::InfoHash;
use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{Request, Response, ScrapeRequest};
use support::*;
use tokio::sync::mpsc;

const H: InfoHash = InfoHash([0x77; 20]);

fn fast() -> ClientConfig {
    ClientConfig {
        udp_initial_timeout: Duration::from_millis(200),
        udp_max_retries: 2,
        http_timeout: Duration::from_secs(2),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        min_interval: Duration::from_millis(300),
        ..ClientConfig::default()
    }
}

fn ident(n: u32, port: u16, fabric: Option<&str>) -> Identity {
    Identity {
        info_hash: H,
        peer_id: peer_id(n),
        port,
        fabric: fabric.map(str::to_owned),
        key: n,
        local_ip: None,
        announce_ip: None,
    }
}

fn leecher() -> TransferStats {
    TransferStats {
        uploaded: 0,
        downloaded: 0,
        left: 1000,
    }
}

/// Waits until some tracker reply lists a peer on `port`; returns which tracker said so.
/// Asks `client` to re-announce while waiting: a tracker's interval (opentracker's is 30
/// minutes) may be longer than the test, and our first announce may have come first.
async fn wait_for_peer(
    rx: &mut mpsc::Receiver<DiscoveredPeers>,
    client: &TrackerClient,
    port: u16,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tracker reply listed port {port} within {within:?}"
        );
        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            Err(_) => client.announce_now(),
            Ok(None) => panic!("client stopped"),
            Ok(Some(got)) if got.peers.iter().any(|p| p.port() == port) => return got.tracker,
            Ok(Some(_)) => client.announce_now(),
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn udp_and_http_clients_find_each_other_through_instream_tracker() {
    let mut c = loopback_config();
    c.access.open = true;
    c.swarm.announce_interval_secs = 1;
    let t = TestTracker::start(c, None);
    let urls = vec![
        format!("udp://{}/announce", t.udp),
        format!("http://{}/announce", t.http),
    ];
    rt().block_on(async {
        let (a, _a_rx) = TrackerClient::start(&urls, ident(1, 4001, None), leecher(), fast()).unwrap();
        let (b, mut b_rx) = TrackerClient::start(&urls, ident(2, 4002, None), leecher(), fast()).unwrap();
        // Both trackers (UDP and HTTP) must hand out a's address.
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 2 {
            seen.insert(wait_for_peer(&mut b_rx, &b, 4001, Duration::from_secs(10)).await);
        }
        a.completed();
        let completed = || {
            let mut cl = UdpClient::new(t.udp);
            let cid = cl.connect();
            let tid = cl.tid();
            cl.send(&Request::Scrape(ScrapeRequest {
                connection_id: cid,
                transaction_id: tid,
                info_hashes: vec![H],
            }));
            matches!(cl.recv(), Response::Scrape(s) if s.stats[0].seeders == 1 && s.stats[0].completed == 1)
        };
        wait_async(Duration::from_secs(10), "a seeder after `completed`", completed).await;
        a.stop(Duration::from_secs(5)).await;
        b.stop(Duration::from_secs(5)).await;
        let h = t.handle.clone();
        wait_async(Duration::from_secs(5), "`stopped` announces to empty the swarm", || {
            h.stats().peers == 0
        })
        .await;
    });
}

/// Polls `cond` every 20 ms on the runtime until it holds, or panics after `within`.
async fn wait_async(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn fabric_rides_in_bep41_url_data_and_http_params() {
    let mut c = loopback_config();
    c.access.open = true;
    c.fabric.bridges = 0;
    let t = TestTracker::start(c, None);
    let udp = TrackerUrl::parse(&format!("udp://{}/announce", t.udp)).unwrap();
    let http = TrackerUrl::parse(&format!("http://{}/announce", t.http)).unwrap();
    rt().block_on(async {
        let cfg = fast();
        let mut conn = TrackerConn::new(udp.clone());
        conn.announce(
            &cfg,
            &ident(1, 5001, Some("f1")),
            AnnounceEvent::Started,
            leecher(),
        )
        .await
        .unwrap();
        let mut conn2 = TrackerConn::new(http.clone());
        conn2
            .announce(
                &cfg,
                &ident(2, 5002, Some("f2")),
                AnnounceEvent::Started,
                leecher(),
            )
            .await
            .unwrap();
        // With no bridges, a peer of f1 sees only f1 peers, over either protocol.
        for url in [udp, http] {
            let mut c3 = TrackerConn::new(url);
            let o = c3
                .announce(
                    &cfg,
                    &ident(3, 5003, Some("f1")),
                    AnnounceEvent::Started,
                    leecher(),
                )
                .await
                .unwrap();
            let ports: Vec<u16> = o.peers.iter().map(SocketAddr::port).collect();
            assert_eq!(ports, vec![5001], "same-fabric only");
            let o = c3
                .announce(
                    &cfg,
                    &ident(4, 5004, Some("f2")),
                    AnnounceEvent::Started,
                    leecher(),
                )
                .await
                .unwrap();
            let ports: Vec<u16> = o.peers.iter().map(SocketAddr::port).collect();
            assert_eq!(ports, vec![5002], "same-fabric only");
        }
    });
}

#[test]
fn refusals_and_dead_trackers_are_errors_and_the_live_tracker_still_serves() {
    let t = TestTracker::start(loopback_config(), None); // nothing registered
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    rt().block_on(async {
        let cfg = fast();
        for url in [
            format!("udp://{}/announce", t.udp),
            format!("http://{}/announce", t.http),
        ] {
            let mut conn = TrackerConn::new(TrackerUrl::parse(&url).unwrap());
            match conn
                .announce(&cfg, &ident(1, 1, None), AnnounceEvent::Started, leecher())
                .await
            {
                Err(ClientError::Refused { reason }) => {
                    assert!(reason.contains("not registered"), "{reason}")
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
        let mut conn = TrackerConn::new(TrackerUrl::parse(&format!("udp://{dead}")).unwrap());
        let started = Instant::now();
        match conn
            .announce(&cfg, &ident(1, 1, None), AnnounceEvent::Started, leecher())
            .await
        {
            Err(ClientError::Timeout { attempts: 3 }) => {}
            other => panic!("expected a timeout after 3 attempts, got {other:?}"),
        }
        // 200 + 400 + 800 ms of retransmission timeouts.
        assert!(started.elapsed() >= Duration::from_millis(1400));

        // A client with one dead and one live tracker gets peers from the live one.
        t.handle.register(H);
        let urls = vec![
            format!("udp://{dead}/announce"),
            format!("udp://{}/announce", t.udp),
        ];
        let (a, _a_rx) =
            TrackerClient::start(&urls, ident(1, 6001, None), leecher(), fast()).unwrap();
        let (b, mut b_rx) =
            TrackerClient::start(&urls, ident(2, 6002, None), leecher(), fast()).unwrap();
        let from = wait_for_peer(&mut b_rx, &b, 6001, Duration::from_secs(10)).await;
        assert_eq!(from, urls[1]);
        a.stop(Duration::from_secs(2)).await;
        b.stop(Duration::from_secs(2)).await;
    });
}

/// opentracker from Debian, run by PID in its own chroot dir, killed on drop.
struct OpenTracker {
    _proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OpenTracker {
    fn start(whitelist: &[InfoHash]) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // It chroots into the dir and drops to `nobody`: both must be world-readable, and
        // the whitelist path is read after the chroot, so it is given relative to it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let wl = dir.path().join("wl.txt");
        let text: String = whitelist
            .iter()
            .map(|h| format!("{}\n", h.to_hex()))
            .collect();
        std::fs::write(&wl, text).unwrap();
        std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644)).unwrap();
        // opentracker cannot report a port-0 bind: pick a port free for both TCP and UDP.
        let port = testkit::free_port();
        let mut cmd = Command::new("opentracker");
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .arg("-d")
        .arg(dir.path())
        .args(["-w", "/wl.txt"]);
        // Proc panics naming the command if it cannot spawn: apt-get install opentracker.
        Self {
            _proc: Proc::spawn("opentracker", cmd),
            port,
            _dir: dir,
        }
    }
}

#[test]
fn client_works_against_opentracker_over_udp_and_http() {
    let ot = OpenTracker::start(&[H]);
    let http = format!("http://127.0.0.1:{}/announce", ot.port);
    let udp = format!("udp://127.0.0.1:{}/announce", ot.port);
    rt().block_on(async {
        let cfg = fast();
        // Wait until it is up: an HTTP announce that succeeds.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = TrackerConn::new(TrackerUrl::parse(&http).unwrap());
        loop {
            match conn
                .announce(
                    &cfg,
                    &ident(9, 9009, None),
                    AnnounceEvent::Started,
                    leecher(),
                )
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "opentracker did not come up: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let urls = vec![udp.clone(), http.clone()];
        let (a, _a_rx) =
            TrackerClient::start(&urls, ident(1, 7001, Some("f1")), leecher(), fast()).unwrap();
        let (b, mut b_rx) =
            TrackerClient::start(&urls, ident(2, 7002, Some("f1")), leecher(), fast()).unwrap();
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 2 {
            seen.insert(wait_for_peer(&mut b_rx, &b, 7001, Duration::from_secs(10)).await);
        }
        a.stop(Duration::from_secs(2)).await;
        b.stop(Duration::from_secs(2)).await;

        // A hash outside its whitelist: refused over HTTP.
        let mut other = ident(3, 7003, None);
        other.info_hash = InfoHash([0x78; 20]);
        let mut conn = TrackerConn::new(TrackerUrl::parse(&http).unwrap());
        assert!(matches!(
            conn.announce(&cfg, &other, AnnounceEvent::Started, leecher())
                .await,
            Err(ClientError::Refused { .. })
        ));
    });
}

#[test]
fn client_announces_over_ipv6_udp_and_http() {
    let mut c = loopback_config();
    c.udp.listen = vec!["[::1]:0".parse().unwrap()];
    c.http.listen = vec!["[::1]:0".parse().unwrap()];
    c.access.open = true;
    let t = TestTracker::start(c, None);
    rt().block_on(async {
        let cfg = fast();
        for (i, url) in [
            format!("udp://{}/announce", t.udp),
            format!("http://{}/announce", t.http),
        ]
        .into_iter()
        .enumerate()
        {
            let mut first = TrackerConn::new(TrackerUrl::parse(&url).unwrap());
            let n = 10 * i as u32;
            first
                .announce(
                    &cfg,
                    &ident(n + 1, 8001, None),
                    AnnounceEvent::Started,
                    leecher(),
                )
                .await
                .unwrap();
            let mut second = TrackerConn::new(TrackerUrl::parse(&url).unwrap());
            let o = second
                .announce(
                    &cfg,
                    &ident(n + 2, 8002, None),
                    AnnounceEvent::Started,
                    leecher(),
                )
                .await
                .unwrap();
            assert!(
                o.peers.contains(&"[::1]:8001".parse().unwrap()),
                "{url}: IPv6 peer expected in {:?}",
                o.peers
            );
        }
    });
}

/// Waits until some reply on `rx` lists exactly `addr`.
async fn wait_for_addr(
    rx: &mut mpsc::Receiver<DiscoveredPeers>,
    client: &TrackerClient,
    addr: SocketAddr,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Vec::new();
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tracker reply listed {addr} within {within:?}; last list {last:?}"
        );
        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            Err(_) => client.announce_now(),
            Ok(None) => panic!("client stopped"),
            Ok(Some(got)) if got.peers.contains(&addr) => return,
            Ok(Some(got)) => {
                last = got.peers;
                client.announce_now();
            }
        }
    }
}

/// Issue 9: `--announce-ip` rides in the BEP 15 IP field and in `ip=`; a tracker that
/// trusts them lists the peer there, one that does not lists the source address.
#[test]
fn r9_announce_ip_is_listed_by_a_trusting_tracker_and_ignored_by_default() {
    for trusting in [true, false] {
        let mut c = loopback_config();
        c.access.open = true;
        c.swarm.announce_interval_secs = 1;
        c.udp.trust_ip_field = trusting;
        c.http.trust_ip_param = trusting;
        let t = TestTracker::start(c, None);
        let udp = vec![format!("udp://{}/announce", t.udp)];
        let http = vec![format!("http://{}/announce", t.http)];
        let both: Vec<String> = udp.iter().chain(&http).cloned().collect();
        rt().block_on(async {
            let nat = |n: u32, port: u16, ip: [u8; 4]| Identity {
                announce_ip: Some(ip.into()),
                ..ident(n, port, None)
            };
            let (a, _a_rx) =
                TrackerClient::start(&udp, nat(1, 4011, [192, 0, 2, 7]), leecher(), fast())
                    .unwrap();
            let (b, _b_rx) =
                TrackerClient::start(&http, nat(2, 4012, [192, 0, 2, 8]), leecher(), fast())
                    .unwrap();
            let (c, mut c_rx) =
                TrackerClient::start(&both, ident(3, 4013, None), leecher(), fast()).unwrap();
            let (ip_a, ip_b) = if trusting {
                ([192, 0, 2, 7], [192, 0, 2, 8])
            } else {
                ([127, 0, 0, 1], [127, 0, 0, 1])
            };
            let within = Duration::from_secs(10);
            wait_for_addr(&mut c_rx, &c, (ip_a, 4011).into(), within).await;
            wait_for_addr(&mut c_rx, &c, (ip_b, 4012).into(), within).await;
            for x in [a, b, c] {
                x.stop(Duration::from_secs(5)).await;
            }
        });
    }
}
