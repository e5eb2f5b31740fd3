//! Engine-to-engine tests through the library (no binaries): two sessions on 127.0.0.1:0
//! move torrents between them; one seed session routes several torrents through one
//! listener; a full disk on the downloading side ends the torrent with a clear error
//! instead of a panic or a false "complete".

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use instream_engine::create::{CreateOptions, create_torrent};
use instream_engine::meta::TorrentMeta;
use instream_engine::session::{AddOptions, Session, SessionConfig, TorrentHandle};
use instream_engine::storage::fault::{FaultStorage, Faults};
use instream_engine::storage::{Mode, OpenOptions, PortableStorage, Storage};
use tokio::net::TcpListener;

/// Bound on every wait: generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(60);

fn payload(len: usize, seed: u32) -> Vec<u8> {
    // A cheap deterministic pattern that differs per piece and per seed.
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `data` as `dir/name` and returns its torrent.
fn make_torrent(dir: &Path, name: &str, data: &[u8], piece: u32) -> TorrentMeta {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let bytes = create_torrent(
        &path,
        &CreateOptions {
            piece_len: Some(piece),
            ..Default::default()
        },
    )
    .unwrap();
    TorrentMeta::from_torrent_bytes(&bytes).unwrap()
}

async fn session() -> Session {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Session::start(SessionConfig::default(), Some(l)).unwrap()
}

async fn seed(s: &Session, meta: &TorrentMeta, dir: &Path) -> TorrentHandle {
    let st = PortableStorage::open(
        dir,
        meta.layout().unwrap(),
        OpenOptions {
            mode: Mode::ReadOnly,
            ..Default::default()
        },
    )
    .unwrap();
    let h = s
        .add_torrent(meta.clone(), Arc::new(st), AddOptions::default())
        .await
        .unwrap();
    assert_eq!(
        h.status().pieces_at_start,
        meta.lengths.num_pieces(),
        "the seed should verify all of its data"
    );
    h
}

async fn fetch(
    s: &Session,
    meta: &TorrentMeta,
    storage: Arc<dyn Storage>,
    from: SocketAddr,
) -> TorrentHandle {
    s.add_torrent(
        meta.clone(),
        storage,
        AddOptions {
            peers: vec![from],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_serves_two_torrents_to_two_peers() {
    let src = tempfile::tempdir().unwrap();
    let a = payload(3 * 1024 * 1024 + 5, 1);
    let b = payload(1024 * 1024 - 3, 2);
    let ma = make_torrent(src.path(), "a.bin", &a, 32 * 1024);
    let mb = make_torrent(src.path(), "b.bin", &b, 16 * 1024);
    let seeder = session().await;
    seed(&seeder, &ma, src.path()).await;
    seed(&seeder, &mb, src.path()).await;
    let addr = seeder.listen_addr().unwrap();

    let out = tempfile::tempdir().unwrap();
    let peer = session().await;
    let open = |m: &TorrentMeta| -> Arc<dyn Storage> {
        Arc::new(
            PortableStorage::open(out.path(), m.layout().unwrap(), OpenOptions::default()).unwrap(),
        )
    };
    let ha = fetch(&peer, &ma, open(&ma), addr).await;
    let hb = fetch(&peer, &mb, open(&mb), addr).await;
    for h in [&ha, &hb] {
        tokio::time::timeout(WAIT, h.wait_complete())
            .await
            .expect("download did not finish in time")
            .expect("download failed");
    }
    peer.shutdown().await;
    seeder.shutdown().await;
    assert!(
        std::fs::read(out.path().join("a.bin")).unwrap() == a,
        "a.bin differs"
    );
    assert!(
        std::fs::read(out.path().join("b.bin")).unwrap() == b,
        "b.bin differs"
    );
    let s = ha.status().stats;
    assert!(s.bytes_downloaded >= a.len() as u64, "{s:?}");
    assert_eq!(s.peers_seen, 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_download_cleanly() {
    let src = tempfile::tempdir().unwrap();
    let data = payload(2 * 1024 * 1024, 3);
    let meta = make_torrent(src.path(), "p.bin", &data, 64 * 1024);
    let seeder = session().await;
    seed(&seeder, &meta, src.path()).await;

    let out = tempfile::tempdir().unwrap();
    let inner =
        PortableStorage::open(out.path(), meta.layout().unwrap(), OpenOptions::default()).unwrap();
    // Room for five pieces only.
    let faulty = Arc::new(FaultStorage::new(
        inner,
        Faults {
            space: Some(5 * 64 * 1024),
            torn_writes: true,
            ..Default::default()
        },
    ));
    let peer = session().await;
    let h = fetch(&peer, &meta, faulty.clone(), seeder.listen_addr().unwrap()).await;
    let r = tokio::time::timeout(WAIT, h.wait_complete())
        .await
        .expect("the full disk was not reported in time");
    let err = r.expect_err("a download onto a full disk must not complete");
    assert!(
        err.to_lowercase().contains("no space left"),
        "error should say the disk is full: {err}"
    );
    let s = h.status();
    assert!(
        s.stats.pieces_have <= 5,
        "more pieces claimed than could be written: {:?}",
        s.stats
    );
    peer.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_download_keeps_verified_pieces() {
    let src = tempfile::tempdir().unwrap();
    let data = payload(1024 * 1024, 4);
    let meta = make_torrent(src.path(), "r.bin", &data, 16 * 1024);
    // Half the pieces already on disk, one of them corrupted.
    let out = tempfile::tempdir().unwrap();
    let mut partial = data.clone();
    for b in &mut partial[512 * 1024..] {
        *b = 0;
    }
    partial[100] ^= 0xff; // piece 0 is wrong
    std::fs::write(out.path().join("r.bin"), &partial).unwrap();

    let seeder = session().await;
    seed(&seeder, &meta, src.path()).await;
    let peer = session().await;
    let st =
        PortableStorage::open(out.path(), meta.layout().unwrap(), OpenOptions::default()).unwrap();
    let h = fetch(&peer, &meta, Arc::new(st), seeder.listen_addr().unwrap()).await;
    assert_eq!(
        h.status().pieces_at_start,
        31,
        "32 intact pieces minus the corrupted one"
    );
    tokio::time::timeout(WAIT, h.wait_complete())
        .await
        .expect("download did not finish in time")
        .expect("download failed");
    let got = h.status().stats.bytes_downloaded;
    assert!(
        (512 * 1024 + 16 * 1024..=512 * 1024 + 2 * 16 * 1024).contains(&got),
        "fetched {got} bytes; only 33 pieces (528 KiB) were missing"
    );
    peer.shutdown().await;
    seeder.shutdown().await;
    assert!(
        std::fs::read(out.path().join("r.bin")).unwrap() == data,
        "r.bin differs"
    );
}
