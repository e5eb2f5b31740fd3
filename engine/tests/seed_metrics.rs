//! `instream-seed serve --metrics ADDR`: a real seed announcing to a real tracker
//! (opentracker, Debian) and a real peer (`instream-peer get`) that finds it there and
//! downloads the payload; the seed's Prometheus counters follow: announces answered, bytes
//! served at least the payload, nothing failed verification.

mod support;

use std::time::Duration;

use support::*;

/// The value of the unlabelled sample `name` in a Prometheus text answer.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {v:?}: {e}"))
        })
}

fn scrape(url: &str) -> String {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    r.text().unwrap()
}

#[test]
fn the_seeds_metrics_count_what_a_real_peer_downloaded() {
    let dir = temp_dir();
    let data = dir.path().join("payload.bin");
    // Several pieces of 64 KiB, so the download is a real exchange of requests.
    let payload = write_payload(&data, 700_000, 12);
    let port = free_port();
    let tracker_url = format!("http://127.0.0.1:{port}/announce");
    let torrent = dir.path().join("payload.torrent");
    instream_create(&data, "64KiB", &[tracker_url], &torrent);
    let info = torrent_info(&torrent);
    let _tracker = Opentracker::start(port, &[&info.info_hash]);

    let (mut seed, _addr) =
        instream_serve_with(&torrent, &data, &["--metrics", "127.0.0.1:0"], "info");
    let url = wait_for(
        STARTUP_TIMEOUT,
        "instream-seed to print its metrics URL",
        || {
            if let Some(s) = seed.try_wait() {
                panic!(
                    "instream-seed exited ({})\n{}",
                    describe(s),
                    seed.output_tail()
                );
            }
            seed.stdout_lines()
                .iter()
                .find_map(|l| l.strip_prefix("metrics ").map(str::to_string))
        },
    );
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    // The seed's `started` reached the tracker: a peer asking now is told about it.
    let before = wait_for(
        STARTUP_TIMEOUT,
        "the seed's first announce to be counted",
        || {
            let t = scrape(&url);
            (sample(&t, "instream_seed_announces_total")? >= 1).then_some(t)
        },
    );
    assert_eq!(
        sample(&before, "instream_seed_uploaded_bytes_total"),
        Some(0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "instream_seed_torrents{state=\"seeding\"}"),
        Some(1),
        "{before}"
    );

    let out = dir.path().join("out");
    let mut peer = Proc::spawn(
        "instream-peer get",
        instream_get_cmd(&torrent, &out, &["--listen".into(), "127.0.0.1:0".into()]),
    );
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    assert!(
        PeerSummary::of(&peer).u64("bytes_downloaded") >= payload.len() as u64,
        "the peer got the payload"
    );

    // The torrent publishes its counters at most every 100 ms: wait for the last batch.
    let after = wait_for(
        Duration::from_secs(10),
        "the seed's metrics to count the whole payload as served",
        || {
            let t = scrape(&url);
            let served = sample(&t, "instream_seed_uploaded_bytes_total").unwrap();
            (served >= payload.len() as u64).then_some(t)
        },
    );
    assert_eq!(
        sample(&after, "instream_seed_piece_verification_failures_total"),
        Some(0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "instream_seed_announce_errors_total"),
        Some(0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "instream_seed_downloaded_bytes_total"),
        Some(0),
        "{after}"
    );
    for family in [
        "# TYPE instream_seed_uploaded_bytes_total counter",
        "# TYPE instream_seed_connected_peers gauge",
        "# TYPE instream_seed_torrents gauge",
    ] {
        assert!(after.contains(family), "{family} missing:\n{after}");
    }
}
