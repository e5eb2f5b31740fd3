//! Real disk errors through both storage back ends (portable pread/pwrite and io_uring):
//! a full file system (ENOSPC, a small tmpfs: needs root, or CI fails it) in the middle of a write of many
//! chunks, and a file that shrank under a read of several files (a short read, EOF). Each
//! call must fail with an error that names the file and the cause, and the same storage
//! (for io_uring: the same thread's ring) must keep working correctly afterwards: no
//! completion of the failed call may be left behind. Each case runs once per back end
//! ([`available_backends`](instream_engine::storage::available_backends)).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use instream_engine::storage::{
    FileEntry, FileLayout, IoBackend, OpenOptions, Storage, WRITE_CHUNK, open_with,
};

/// One row of docs/RELIABILITY.md's table (see tests/support/mod.rs `reliability_row`).
fn reliability_row(slug: &str, row: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{slug}.md")), format!("{row}\n")).unwrap();
}

/// Portable, and io_uring where it works (under CI=true its absence fails the test).
fn backends() -> Vec<IoBackend> {
    instream_engine::storage::available_backends()
}

fn layout(lens: &[u64]) -> FileLayout {
    FileLayout::new(
        lens.iter()
            .enumerate()
            .map(|(i, &len)| FileEntry {
                path: format!("d/f{i}").into(),
                len,
                pad: false,
            })
            .collect(),
    )
    .unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (a skip, printed; a failure under CI) when not root.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        if !testkit::needs_root("mounting a tmpfs") {
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        testkit::run_ok(
            "mount a tmpfs",
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at),
        );
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_write_and_leaves_the_storage_usable() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "2m") else {
            return;
        };
        // Files are sparse (no preallocation), so the space runs out during the write.
        let opts = OpenOptions {
            preallocate: instream_engine::storage::Preallocate::Sparse,
            ..OpenOptions::default()
        };
        let big = 8 * 1024 * 1024;
        let s: Arc<dyn Storage> = open_with(&fs.0, layout(&[big, 4096]), opts, backend).unwrap();
        // 16 chunks of WRITE_CHUNK at once: several complete, the rest fail with ENOSPC.
        let data = pattern(16 * WRITE_CHUNK, 1);
        let err = s.write_at(0, &data).unwrap_err();
        let msg = format!("{:#}", anyhow::Error::from(err));
        assert!(
            msg.contains("No space left on device") && msg.contains("d/f0"),
            "{backend:?}: the error names the file and ENOSPC: {msg}"
        );
        // The same storage on the same thread still works: a small write and read back.
        // Free the space (the storage keeps its descriptor, so truncate rather than remove).
        std::fs::OpenOptions::new()
            .write(true)
            .open(fs.0.join("d/f0"))
            .unwrap()
            .set_len(0)
            .unwrap();
        let small = pattern(4096, 7);
        s.write_at(big, &small).unwrap();
        let mut back = vec![0u8; 4096];
        s.read_at(big, &mut back).unwrap();
        assert_eq!(back, small, "{backend:?}: data after the error is right");
    }
    reliability_row(
        "storage-enospc",
        "| disk full in the middle of a many-chunk write (portable and io_uring) | the write fails naming the file and ENOSPC; the storage keeps working | nothing: no completion left on the ring |",
    );
}

#[test]
fn a_short_read_across_files_fails_and_leaves_the_storage_usable() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let lens = [300_000u64, 200_000, 100_000];
        let s = open_with(dir.path(), layout(&lens), OpenOptions::default(), backend).unwrap();
        let total: u64 = lens.iter().sum();
        let data = pattern(total as usize, 3);
        s.write_at(0, &data).unwrap();
        // Another process truncates the middle file: a read across all three comes up short.
        let f1 = dir.path().join("d/f1");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f1)
            .unwrap()
            .set_len(10)
            .unwrap();
        let mut buf = vec![0u8; total as usize];
        let err = s.read_at(0, &mut buf).unwrap_err();
        let msg = format!("{:#}", anyhow::Error::from(err));
        assert!(
            msg.contains("d/f1"),
            "{backend:?}: names the short file: {msg}"
        );
        // Reads that do not touch the short file still work, with the right bytes.
        let mut last = vec![0u8; lens[2] as usize];
        s.read_at(lens[0] + lens[1], &mut last).unwrap();
        assert_eq!(
            &last[..],
            &data[(lens[0] + lens[1]) as usize..],
            "{backend:?}"
        );
        for _ in 0..100 {
            let mut first = vec![0u8; 1000];
            s.read_at(0, &mut first).unwrap();
            assert_eq!(&first[..], &data[..1000], "{backend:?}");
        }
    }
}

#[test]
fn forcing_io_uring_where_it_cannot_work_is_a_clear_error() {
    match instream_engine::storage::resolve_backend(IoBackend::Uring) {
        Ok(b) => assert_eq!(b, IoBackend::Uring),
        Err(e) => assert!(
            e.to_string().starts_with("io_uring is not available: "),
            "{e}"
        ),
    }
    // Auto never fails: it falls back.
    assert!(instream_engine::storage::resolve_backend(IoBackend::Auto).is_ok());
}
