//! How a host keeps product versions under its data root: one directory per version, an
//! atomic `current` link per product, the product's hooks, and the last K versions.
//!
//! ```text
//! <root>/products/<product>/
//!   versions/<version>/      a complete, verified version (only ever made by renaming a
//!                            finished staging directory into place)
//!   records/<version>.json   what was verified for it: BLAKE3, info-hash, files, hooks
//!   current -> versions/<v>  relative symlink, replaced by rename(2) of a new link
//!   state.json               versions in the order they were installed or activated
//!   staging/                 half-built versions (removed on failure and on the next commit)
//!   .lock                    flock(2) held by whoever changes any of the above
//! ```
//!
//! Invariants: `versions/<v>` exists only with its record beside it; `current` always names
//! a version directory that exists (or is absent before the first activation), because a
//! link is switched only by renaming a complete new link over the old one; a failed
//! activation leaves `current` where it was.
//!
//! Activation (docs/ARCHITECTURE.md, install layout): `stop` of the old version, the link switch,
//! `start` of the new one, then `health`, retried. A failing `start` or `health` stops the
//! new version, switches the link back and starts the old one again; the error carries the
//! hook's last line of standard error. A hook runs only if the version's signed manifest
//! lists it, with the version's directory as working directory, in its own process group
//! (so a timeout kills everything it started), with these variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `INSTREAM_PRODUCT` | the product |
//! | `INSTREAM_VERSION` | the version the hook belongs to (its working directory) |
//! | `INSTREAM_PREVIOUS_VERSION` | the version active before this activation began ("" if none) |
//! | `INSTREAM_TARGET_VERSION` | the version being activated |
//! | `INSTREAM_HOST`, `INSTREAM_FABRIC` | this host |
//!
//! Everything here is blocking file-system work; async callers use `spawn_blocking`.

mod activation;
mod digest;
mod folded;
mod hooks;
mod journal;
mod service;

pub use service::{ServiceAction, ServiceResult};

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use activation::{Activation, Recovery};
pub use digest::{payload_digest, payload_path};
pub use folded::FoldedDigest;
pub use hooks::{HookOutcome, run_hook};
pub use journal::{Journal, JournalStep};

/// Errors of installing and activating versions.
#[derive(Debug, Error)]
pub enum InstallError {
    /// A file-system call failed.
    #[error("{op} {path}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A product or version name that is not safe as a directory name.
    #[error("invalid {what} name {name:?}")]
    BadName {
        /// "product" or "version".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The version is not on disk.
    #[error("version {version} of {product} is not installed")]
    NotInstalled {
        /// Product.
        product: String,
        /// Version.
        version: String,
    },
    /// A record or state file that does not parse.
    #[error("{path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A payload file has the wrong size (truncated, replaced).
    #[error("{path} is {actual} bytes, expected {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// On disk.
        actual: u64,
        /// Recorded.
        expected: u64,
    },
    /// A recorded path that would leave the version directory.
    #[error("unsafe payload path {0:?}")]
    UnsafePath(String),
    /// Activation failed; the previous version (if any) is active again.
    #[error("{0}")]
    Activation(HookFailure),
    /// A service command for a product with no active version on this host.
    #[error("{product} has no active version on this host")]
    NoActiveVersion {
        /// Product.
        product: String,
    },
}

/// Why a hook made an activation fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    /// `stop`, `start` or `health`.
    pub hook: String,
    /// The version the hook belongs to.
    pub version: String,
    /// The hook's last line of standard error, or what happened to it.
    pub detail: String,
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // docs/ARCHITECTURE.md: a failed health check's reason is the hook's last stderr line, as is.
        if self.hook == "health" {
            f.write_str(&self.detail)
        } else {
            write!(
                f,
                "{} hook of {} failed: {}",
                self.hook, self.version, self.detail
            )
        }
    }
}

type Result<T, E = InstallError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    if proto::manifest::is_valid_name(name) {
        Ok(())
    } else {
        Err(InstallError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One payload file of a version, relative to the version directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFile {
    /// `/`-separated relative path.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// What was verified for an installed version (from its signed manifest and torrent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Variant, if the build is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Info-hash of the torrent it came in, hex.
    pub info_hash: String,
    /// BLAKE3 of the payload (files concatenated in order), hex.
    pub blake3: String,
    /// Payload bytes.
    pub size: u64,
    /// Payload files in payload order.
    pub files: Vec<RecordFile>,
    /// Hooks the manifest lists: the only ones ever run.
    pub hooks: Vec<String>,
    /// When it was installed, Unix seconds.
    pub installed_unix: u64,
}

/// Per-product bookkeeping: every version on disk, least recently used first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    order: Vec<String>,
}

impl State {
    fn touch(&mut self, version: &str) {
        self.order.retain(|v| v != version);
        self.order.push(version.to_string());
    }
}

/// Hook timing.
#[derive(Debug, Clone, Copy)]
pub struct HookPolicy {
    /// Longest a hook may run before its process group is killed. Default 60 s.
    pub timeout: Duration,
    /// Times `health` is tried before the version counts as unhealthy. Default 5.
    pub health_attempts: u32,
    /// Pause between `health` attempts. Default 1 s.
    pub health_interval: Duration,
}

impl Default for HookPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            health_attempts: 5,
            health_interval: Duration::from_secs(1),
        }
    }
}

/// Who this host is, for the hooks' environment.
#[derive(Debug, Clone, Default)]
pub struct HostIdentity {
    /// Host name.
    pub host: String,
    /// Fabric name.
    pub fabric: String,
}

/// The installed versions of every product under one data root.
#[derive(Debug, Clone)]
pub struct Installer {
    root: PathBuf,
    keep: usize,
    policy: HookPolicy,
    identity: HostIdentity,
}

/// An exclusive lock on one product's directory, released on drop.
struct ProductLock {
    _file: File,
}

impl ProductLock {
    fn take(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let path = dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock", &path))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; blocks until the other holder is done.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err("lock", &path)(io::Error::last_os_error()));
        }
        Ok(Self { _file: f })
    }
}

impl Installer {
    /// Versions live under `<root>/products`; at least one version (the current one) is
    /// always kept, whatever `keep` says.
    pub fn new(root: &Path, keep: usize, policy: HookPolicy, identity: HostIdentity) -> Self {
        Self {
            root: root.to_path_buf(),
            keep: keep.max(1),
            policy,
            identity,
        }
    }

    /// `<root>/products/<product>`.
    pub fn product_dir(&self, product: &str) -> PathBuf {
        self.root.join("products").join(product)
    }

    /// `<root>/products/<product>/versions/<version>`.
    pub fn version_dir(&self, product: &str, version: &str) -> PathBuf {
        self.product_dir(product).join("versions").join(version)
    }

    fn record_path(&self, product: &str, version: &str) -> PathBuf {
        self.product_dir(product)
            .join("records")
            .join(format!("{version}.json"))
    }

    /// The active version, from the `current` link.
    pub fn current(&self, product: &str) -> Result<Option<String>> {
        check_name("product", product)?;
        let link = self.product_dir(product).join("current");
        match std::fs::read_link(&link) {
            Ok(target) => Ok(target
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read link", &link)(e)),
        }
    }

    /// Versions on disk, least recently installed or activated first.
    pub fn versions(&self, product: &str) -> Result<Vec<String>> {
        check_name("product", product)?;
        let state = self.load_state(product)?;
        Ok(state
            .order
            .into_iter()
            .filter(|v| self.version_dir(product, v).is_dir())
            .collect())
    }

    /// The record of an installed version, if it is on disk.
    pub fn record(&self, product: &str, version: &str) -> Result<Option<VersionRecord>> {
        check_name("product", product)?;
        check_name("version", version)?;
        if !self.version_dir(product, version).is_dir() {
            return Ok(None);
        }
        let path = self.record_path(product, version);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| InstallError::Corrupt {
                path,
                detail: e.to_string(),
            })
    }

    /// A fresh, empty staging directory for `product` (on the same file system as
    /// `versions/`, so that [`Installer::commit`] is a rename). Its name starts with this
    /// process's id, so [`Installer::clean_staging`] can tell a dead agent's leftovers from
    /// another live agent's work.
    pub fn staging_dir(&self, product: &str) -> Result<PathBuf> {
        check_name("product", product)?;
        let dir = self.product_dir(product).join("staging").join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(dir)
    }

    /// Moves a complete, verified staging directory into `versions/<version>` and writes
    /// its record. The manifest's hooks are made executable (torrents carry no file modes).
    /// A version already on disk is replaced only if it is not the active one.
    pub fn commit(&self, staged: &Path, record: &VersionRecord) -> Result<()> {
        let (product, version) = (&record.product, &record.version);
        check_name("product", product)?;
        check_name("version", version)?;
        for hook in &record.hooks {
            let path = staged.join(".instream/hooks").join(hook);
            if path.is_file() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("make executable", &path))?;
            }
        }
        let pdir = self.product_dir(product);
        let _lock = ProductLock::take(&pdir)?;
        let dest = self.version_dir(product, version);
        if dest.exists() {
            if self.current(product)?.as_deref() == Some(version.as_str()) {
                // Never pull the active version from under the running service.
                let _ = std::fs::remove_dir_all(staged);
                return Ok(());
            }
            std::fs::remove_dir_all(&dest).map_err(io_err("remove", &dest))?;
        }
        let versions = pdir.join("versions");
        std::fs::create_dir_all(&versions).map_err(io_err("create directory", &versions))?;
        let records = pdir.join("records");
        std::fs::create_dir_all(&records).map_err(io_err("create directory", &records))?;
        // Record first: a version directory never exists without its record.
        write_atomic(
            &self.record_path(product, version),
            &serde_json::to_vec_pretty(record).expect("record serializes"),
        )?;
        std::fs::rename(staged, &dest).map_err(io_err("move into place", &dest))?;
        sync_dir(&versions);
        let mut state = self.load_state(product)?;
        state.touch(version);
        self.save_state(product, &state)?;
        Ok(())
    }

    /// Removes versions beyond the last K (never `current`); returns what was removed.
    fn prune_locked(&self, product: &str, state: &mut State, current: &str) -> Result<Vec<String>> {
        let keep_from = state.order.len().saturating_sub(self.keep);
        let doomed: Vec<String> = state.order[..keep_from]
            .iter()
            .filter(|v| v.as_str() != current)
            .cloned()
            .collect();
        for v in &doomed {
            let dir = self.version_dir(product, v);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
            }
            let rec = self.record_path(product, v);
            let _ = std::fs::remove_file(&rec);
        }
        state.order.retain(|v| !doomed.contains(v));
        Ok(doomed)
    }

    fn state_path(&self, product: &str) -> PathBuf {
        self.product_dir(product).join("state.json")
    }

    fn load_state(&self, product: &str) -> Result<State> {
        let path = self.state_path(product);
        match std::fs::read(&path) {
            Ok(t) => serde_json::from_slice(&t).map_err(|e| InstallError::Corrupt {
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn save_state(&self, product: &str, state: &State) -> Result<()> {
        write_atomic(
            &self.state_path(product),
            &serde_json::to_vec_pretty(state).expect("state serializes"),
        )
    }

    /// The content cache: an installed (product, version), of any product, whose payload
    /// has this BLAKE3 digest and these files (same paths and sizes), preferring `product`
    /// and recent versions. Its bytes are only a candidate: the caller copies them and
    /// verifies the copy like a download. Unreadable records are skipped.
    pub fn find_content(
        &self,
        product: &str,
        blake3_hex: &str,
        files: &[RecordFile],
    ) -> Option<(String, String)> {
        let mut products: Vec<String> = std::fs::read_dir(self.root.join("products"))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|p| check_name("product", p).is_ok())
            .collect();
        products.sort_by_key(|p| p != product);
        products.into_iter().find_map(|p| {
            let versions = self.versions(&p).ok()?;
            versions.into_iter().rev().find_map(|v| {
                let rec = self.record(&p, &v).ok()??;
                (rec.blake3 == blake3_hex && rec.files == files).then(|| (p.clone(), v))
            })
        })
    }

    /// Removes the staging directories of `product` that no live process owns: those left by
    /// agents that were killed or failed (and by older agents, whose names carry no pid).
    /// Returns how many were removed.
    pub fn clean_staging(&self, product: &str) -> Result<usize> {
        check_name("product", product)?;
        let dir = self.product_dir(product).join("staging");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let owner = name
                .split_once('-')
                .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok());
            if owner.is_some_and(process_alive) {
                continue;
            }
            let path = e.path();
            std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Builds the record of a new version (time of installation: now).
    pub fn new_record(
        manifest: &proto::manifest::Manifest,
        files: Vec<RecordFile>,
    ) -> VersionRecord {
        VersionRecord {
            product: manifest.product.clone(),
            version: manifest.version.clone(),
            variant: manifest.variant.clone(),
            info_hash: manifest.info_hash.to_hex(),
            blake3: hex::encode(manifest.blake3),
            size: manifest.size,
            files,
            hooks: manifest.hooks.clone(),
            installed_unix: unix_now(),
        }
    }
}

/// Best effort: a directory fsync makes a rename durable; failure only weakens that.
/// Whether a process with this id exists (signal 0 probes without signalling).
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(product: &str, version: &str, hooks: &[&str]) -> VersionRecord {
        VersionRecord {
            product: product.into(),
            version: version.into(),
            variant: None,
            info_hash: "00".repeat(20),
            blake3: "00".repeat(32),
            size: 0,
            files: vec![],
            hooks: hooks.iter().map(|h| h.to_string()).collect(),
            installed_unix: 0,
        }
    }

    /// Stages a version whose hooks append "<hook> <version>" to `<root>/hooks.log`;
    /// `health_script` replaces the default (succeeding) health hook.
    fn install(inst: &Installer, root: &Path, version: &str, health_script: Option<&str>) {
        let staged = inst.staging_dir("app").unwrap();
        std::fs::write(staged.join("payload"), format!("payload of {version}")).unwrap();
        let hooks = staged.join(".instream/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let log = root.join("hooks.log");
        for h in ["stop", "start", "health"] {
            let body = match (h, health_script) {
                ("health", Some(s)) => s.to_string(),
                _ => format!(
                    "echo \"{h} $INSTREAM_VERSION target=$INSTREAM_TARGET_VERSION prev=$INSTREAM_PREVIOUS_VERSION\" >> {}",
                    log.display()
                ),
            };
            // Written 0644 on purpose: commit must make listed hooks executable.
            std::fs::write(hooks.join(h), format!("#!/bin/sh\n{body}\n")).unwrap();
        }
        inst.commit(
            &staged,
            &record("app", version, &["stop", "start", "health"]),
        )
        .unwrap();
    }

    fn hooks_log(root: &Path) -> Vec<String> {
        std::fs::read_to_string(root.join("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn installer(root: &Path, keep: usize) -> Installer {
        let policy = HookPolicy {
            timeout: Duration::from_secs(10),
            health_attempts: 2,
            health_interval: Duration::from_millis(10),
        };
        let id = HostIdentity {
            host: "h1".into(),
            fabric: "f1".into(),
        };
        Installer::new(&root.join("data"), keep, policy, id)
    }

    #[test]
    fn activation_switches_the_link_atomically_and_runs_hooks_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        install(&inst, dir.path(), "1", None);
        assert_eq!(inst.current("app").unwrap(), None);
        let a = inst.activate("app", "1").unwrap();
        assert_eq!((a.previous, a.switched), (None, true));
        install(&inst, dir.path(), "2", None);
        let a = inst.activate("app", "2").unwrap();
        assert_eq!(a.previous.as_deref(), Some("1"));
        assert_eq!(inst.current("app").unwrap().as_deref(), Some("2"));
        let link = inst.product_dir("app").join("current");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(link.join("payload")).unwrap(),
            "payload of 2"
        );
        // No temporary link is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(inst.product_dir("app"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".current"))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(
            hooks_log(dir.path()),
            [
                "start 1 target=1 prev=",
                "health 1 target=1 prev=",
                "stop 1 target=2 prev=1",
                "start 2 target=2 prev=1",
                "health 2 target=2 prev=1",
            ]
        );
    }

    #[test]
    fn failed_health_switches_back_with_the_last_stderr_line() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        install(&inst, dir.path(), "1", None);
        inst.activate("app", "1").unwrap();
        install(
            &inst,
            dir.path(),
            "2",
            Some("echo starting check >&2\necho 'db unreachable on port 5432' >&2\nexit 3"),
        );
        let err = inst.activate("app", "2").unwrap_err();
        assert_eq!(err.to_string(), "db unreachable on port 5432");
        assert_eq!(inst.current("app").unwrap().as_deref(), Some("1"));
        assert_eq!(
            &hooks_log(dir.path())[2..],
            [
                "stop 1 target=2 prev=1",
                "start 2 target=2 prev=1",
                "stop 2 target=2 prev=1",
                "start 1 target=2 prev=1",
            ]
        );
        // The failed version stays on disk (verified data), but is not current.
        assert!(inst.version_dir("app", "2").is_dir());
    }

    #[test]
    fn failed_first_install_leaves_no_current_link() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        install(&inst, dir.path(), "1", Some("echo nope >&2; exit 1"));
        assert_eq!(inst.activate("app", "1").unwrap_err().to_string(), "nope");
        assert_eq!(inst.current("app").unwrap(), None);
    }

    #[test]
    fn keeps_only_the_last_k_versions() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 2);
        for v in ["1", "2", "3", "4"] {
            install(&inst, dir.path(), v, None);
            inst.activate("app", v).unwrap();
        }
        assert_eq!(inst.versions("app").unwrap(), ["3", "4"]);
        assert!(!inst.version_dir("app", "1").exists());
        assert!(inst.record("app", "2").unwrap().is_none());
        assert!(inst.record("app", "3").unwrap().is_some());
    }

    #[test]
    fn rollback_to_a_version_on_disk_is_a_link_switch() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        for v in ["1", "2"] {
            install(&inst, dir.path(), v, None);
            inst.activate("app", v).unwrap();
        }
        let before = std::fs::metadata(inst.version_dir("app", "1").join("payload")).unwrap();
        let a = inst.activate("app", "1").unwrap();
        assert_eq!((a.previous.as_deref(), a.switched), (Some("2"), true));
        assert_eq!(inst.current("app").unwrap().as_deref(), Some("1"));
        // The very same file: nothing was re-staged or copied.
        use std::os::unix::fs::MetadataExt;
        let after = std::fs::metadata(inst.version_dir("app", "1").join("payload")).unwrap();
        assert_eq!(before.ino(), after.ino());
        assert_eq!(inst.versions("app").unwrap(), ["2", "1"]);
        // Activating the active version again only checks health.
        let a = inst.activate("app", "1").unwrap();
        assert!(!a.switched);
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join(".instream/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let path = hooks.join("health");
        std::fs::write(&path, "#!/bin/sh\nsleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = std::time::Instant::now();
        let out = run_hook(dir.path(), "health", &[], Duration::from_millis(300));
        assert_eq!(
            out,
            HookOutcome::Failed("health hook timed out after 0.3s".into())
        );
        assert!(t.elapsed() < Duration::from_secs(10), "the hook was killed");
    }

    #[test]
    fn unlisted_hooks_never_run_and_digests_check_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        let staged = inst.staging_dir("app").unwrap();
        std::fs::write(staged.join("a"), b"hello").unwrap();
        let hooks = staged.join(".instream/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::write(hooks.join("health"), "#!/bin/sh\nexit 1\n").unwrap();
        let files = vec![RecordFile {
            path: "a".into(),
            size: 5,
        }];
        assert_eq!(
            payload_digest(&staged, &files).unwrap(),
            *blake3::hash(b"hello").as_bytes()
        );
        inst.commit(&staged, &record("app", "1", &[])).unwrap();
        inst.activate("app", "1")
            .expect("health not listed, so not run");
        let vdir = inst.version_dir("app", "1");
        std::fs::write(vdir.join("a"), b"hello!").unwrap();
        assert!(matches!(
            payload_digest(&vdir, &files),
            Err(InstallError::Size { actual: 6, .. })
        ));
        assert!(matches!(
            payload_path(&vdir, "../x"),
            Err(InstallError::UnsafePath(_))
        ));
    }

    /// The state an agent killed right after recording `step` of the activation of 2 (from
    /// 1) leaves behind: the journal, and the link where that step puts it.
    fn crashed_after(inst: &Installer, root: &Path, step: JournalStep) {
        install(inst, root, "1", None);
        inst.activate("app", "1").unwrap();
        install(inst, root, "2", None);
        let pdir = inst.product_dir("app");
        if !matches!(step, JournalStep::Verified | JournalStep::StoppedOld) {
            activation::switch_link_for_tests(&pdir, "2");
        }
        journal::record(
            &pdir,
            &Journal {
                target: "2".into(),
                previous: Some("1".into()),
                step,
                reason: (step == JournalStep::RollingBack).then(|| "health said no".into()),
                at_unix: 0,
            },
        )
        .unwrap();
        std::fs::remove_file(root.join("hooks.log")).unwrap();
    }

    #[test]
    fn every_step_is_journaled_and_a_finished_activation_says_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        install(&inst, dir.path(), "1", None);
        inst.activate("app", "1").unwrap();
        let j = journal::load(&inst.product_dir("app")).unwrap().unwrap();
        assert_eq!((j.target.as_str(), j.step), ("1", JournalStep::Healthy));
    }

    #[test]
    fn a_rerun_completes_an_activation_interrupted_at_any_step() {
        // (step recorded before the kill, hooks the re-run must run)
        let cases: [(JournalStep, &[&str]); 4] = [
            (
                JournalStep::Verified,
                &[
                    "stop 1 target=2 prev=1",
                    "start 2 target=2 prev=1",
                    "health 2 target=2 prev=1",
                ],
            ),
            (
                JournalStep::StoppedOld,
                &["start 2 target=2 prev=1", "health 2 target=2 prev=1"],
            ),
            (
                JournalStep::Switched,
                &["start 2 target=2 prev=1", "health 2 target=2 prev=1"],
            ),
            (JournalStep::Started, &["health 2 target=2 prev=1"]),
        ];
        for (step, hooks) in cases {
            let dir = tempfile::tempdir().unwrap();
            let inst = installer(dir.path(), 3);
            crashed_after(&inst, dir.path(), step);
            let a = inst.activate("app", "2").unwrap();
            assert_eq!(
                a.recovered,
                Some(Recovery::Completed { after: step }),
                "{step:?}"
            );
            assert_eq!(a.previous.as_deref(), Some("1"), "{step:?}");
            assert_eq!(
                inst.current("app").unwrap().as_deref(),
                Some("2"),
                "{step:?}"
            );
            assert_eq!(hooks_log(dir.path()), hooks, "{step:?}");
            let j = journal::load(&inst.product_dir("app")).unwrap().unwrap();
            assert_eq!(j.step, JournalStep::Healthy, "{step:?}");
        }
    }

    #[test]
    fn another_version_asked_for_undoes_the_interrupted_activation_first() {
        for step in [
            JournalStep::StoppedOld,
            JournalStep::Switched,
            JournalStep::Started,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let inst = installer(dir.path(), 3);
            crashed_after(&inst, dir.path(), step);
            install(&inst, dir.path(), "3", None);
            let a = inst.activate("app", "3").unwrap();
            assert_eq!(
                a.recovered,
                Some(Recovery::RolledBack {
                    target: "2".into(),
                    after: step
                }),
                "{step:?}"
            );
            let mut expected = vec![];
            if step != JournalStep::StoppedOld {
                expected.push("stop 2 target=2 prev=1");
            }
            expected.extend([
                "start 1 target=2 prev=1",
                "stop 1 target=3 prev=1",
                "start 3 target=3 prev=1",
                "health 3 target=3 prev=1",
            ]);
            assert_eq!(hooks_log(dir.path()), expected, "{step:?}");
            assert_eq!(inst.current("app").unwrap().as_deref(), Some("3"));
        }
    }

    #[test]
    fn an_interrupted_rollback_is_finished_and_its_failure_stands() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        crashed_after(&inst, dir.path(), JournalStep::RollingBack);
        let err = inst.activate("app", "2").unwrap_err();
        assert!(err.to_string().contains("health said no"), "{err}");
        assert_eq!(inst.current("app").unwrap().as_deref(), Some("1"));
        assert_eq!(
            hooks_log(dir.path()),
            ["stop 2 target=2 prev=1", "start 1 target=2 prev=1"]
        );
        let j = journal::load(&inst.product_dir("app")).unwrap().unwrap();
        assert_eq!(j.step, JournalStep::RolledBack);
    }

    #[test]
    fn staging_left_by_dead_agents_is_cleaned_and_live_work_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let inst = installer(dir.path(), 3);
        let mine = inst.staging_dir("app").unwrap();
        let staging = inst.product_dir("app").join("staging");
        // pid 0 is never a live agent; a name without a pid is an older agent's.
        for dead in ["0-00000000000000aa", "0123456789abcdef"] {
            std::fs::create_dir_all(staging.join(dead).join("sub")).unwrap();
        }
        assert_eq!(inst.clean_staging("app").unwrap(), 2);
        assert!(mine.is_dir(), "this live process's staging must stay");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
    }
}
