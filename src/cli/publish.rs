//! `instream publish -p P -v V [--variant NAME] PATH|URL`: read a product version from a
//! data source, build its torrent (engine::create, SHA-1 pieces) and a manifest (product,
//! version, variant, info-hash, BLAKE3 of the payload, size, hooks, files) signed with the
//! publisher's ed25519 key, register both with the control server (which allows the
//! info-hash on its tracker), and hand the version to the origin.
//!
//! Tracker URLs and the origin directory come from the control server (`serve --tracker
//! URL --origin-dir DIR`, answered at `GET /api/v1/publish-info`); `--tracker` and
//! `--origin-dir` override them. Handing over means hard-linking (or copying) the payload
//! into `DIR/<info-hash>/`, then renaming the torrent to `DIR/<info-hash>.torrent` and
//! waiting for the origin's `DIR/<info-hash>.seeding` (instream_engine::origin).
//!
//! The key is made on first use at `publisher.key` in the config dir (hex secret, mode 0600;
//! the public half beside it in `publisher.pub`, which is what hosts and `serve
//! --trusted-key` take). Data sources (local, HTTP archives, Git) are `crate::source`; a
//! remote one is fetched into scratch space under the origin directory first, and the
//! manifest records where it came from.

use super::ClientArgs;
use super::client::{Client, enc};
use super::config;
use super::output::println_or_exit;
use super::size::parse_size;
use crate::api::views::{RegisterReply, RegisterRequest};
use crate::tracker_admin::PublishInfo;
use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::SigningKey;
use proto::manifest::{KNOWN_HOOKS, Manifest, ManifestFile};
use proto::metainfo::{NewTorrent, TorrentOptions, ValidMetainfo, auto_piece_len};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Product name.
    #[arg(short = 'p', long)]
    pub product: String,
    /// Version name.
    #[arg(short = 'v', long)]
    pub version: String,
    /// Variant this build is for (matched against the hosts' variant grain at deploy).
    #[arg(long)]
    pub variant: Option<String>,
    /// Piece size (e.g. 256KiB) [default: chosen from the payload size].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub piece_size: Option<u64>,
    /// Tracker announce URL to put in the torrent (repeatable) [default: the server's --tracker URLs].
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Also write the .torrent here (for an origin: `instream-seed serve FILE --data PATH`).
    #[arg(short = 'o', long = "torrent-out", value_name = "FILE")]
    pub torrent_out: Option<PathBuf>,
    /// Publisher signing key (hex secret) [default: publisher.key in the config dir, made on first use].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Directory of the origin that seeds new versions [default: the server's --origin-dir].
    #[arg(long, value_name = "DIR")]
    pub origin_dir: Option<PathBuf>,
    /// Seconds to wait for the origin to check and announce the version.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub origin_timeout: u64,
    /// The product version: a local directory or file, `http(s)://HOST/FILE[#sha256=HEX]` (a
    /// file, or a .tar, .tar.gz, .tar.zst archive unpacked), or `git+file://PATH[#REF]` /
    /// `git+https://URL[#REF]` (the tree at REF, default HEAD).
    pub source: String,
}

/// Scratch space for a source that writes its files (under the origin directory when there
/// is one, so handing over is a hard link): removed on drop unless kept.
struct Scratch {
    root: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new(parent: &Path, product: &str, version: &str) -> Result<(Scratch, PathBuf)> {
        let root = parent.join(format!(".fetch-{:016x}", rand::random::<u64>()));
        let into = root.join(format!("{product}-{version}"));
        std::fs::create_dir_all(&into).with_context(|| format!("create {}", into.display()))?;
        Ok((Scratch { root, keep: false }, into))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The publisher key at `path`, made (with its `.pub` sibling) if missing.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read publisher key {}", path.display()))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut secret)
            .with_context(|| format!("parse publisher key {} (64 hex digits)", path.display()))?;
        return Ok(SigningKey::from_bytes(&secret));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    config::write_private(path, &format!("{}\n", hex::encode(key.to_bytes())))?;
    let public = path.with_extension("pub");
    std::fs::write(
        &public,
        format!(
            "{}\n",
            proto::manifest::public_key_hex(&key.verifying_key())
        ),
    )
    .with_context(|| format!("write {}", public.display()))?;
    tracing::info!(key = %path.display(), "made a publisher key");
    Ok(key)
}

/// A built product version: torrent bytes, signed manifest bytes, and what they say.
pub struct Built {
    pub torrent: Vec<u8>,
    pub manifest: Vec<u8>,
    pub info_hash: proto::InfoHash,
    pub size: u64,
    /// The torrent's `name`: the file, or the top directory of its files.
    pub name: String,
}

/// BLAKE3 of the payload: the torrent's files concatenated in torrent order (what hosts
/// compute over what they downloaded).
fn payload_blake3(path: &Path, nt: &NewTorrent) -> Result<[u8; 32]> {
    let mut digest = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for (rel, len) in nt.files() {
        let file_path = rel.iter().fold(path.to_path_buf(), |p, c| p.join(c));
        let mut f = std::fs::File::open(&file_path)
            .with_context(|| format!("open {}", file_path.display()))?;
        let mut left = *len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f
                .read(&mut buf[..want])
                .with_context(|| format!("read {}", file_path.display()))?;
            if n == 0 {
                bail!("{} shrank while being published", file_path.display());
            }
            digest.update(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(*digest.finalize().as_bytes())
}

/// Builds torrent (engine::create: SHA-1 pieces hashed on two threads) and signed manifest
/// for a local file or directory.
#[allow(clippy::too_many_arguments)] // each is one manifest field
pub fn build(
    path: &Path,
    product: &str,
    version: &str,
    variant: Option<&str>,
    piece_size: Option<u64>,
    trackers: &[String],
    key: &SigningKey,
    provenance: Option<crate::source::Provenance>,
) -> Result<Built> {
    let nt = engine::create::scan(path).with_context(|| format!("read {}", path.display()))?;
    if nt.files().is_empty() {
        bail!("{} has no files", path.display());
    }
    let piece_len = match piece_size {
        Some(p) => u32::try_from(p).context("piece size too large")?,
        None => auto_piece_len(nt.total_len()),
    };
    nt.lengths(piece_len).context("choose piece size")?;
    let hashes = engine::create::hash_pieces(path, &nt, piece_len, 2)
        .with_context(|| format!("hash {}", path.display()))?;
    let blake3 = payload_blake3(path, &nt)?;
    let now_secs = crate::deploy::model::now_millis() / 1000;
    let torrent = nt
        .build(
            piece_len,
            &hashes,
            &TorrentOptions {
                trackers: trackers.to_vec(),
                creation_date: Some(now_secs as i64),
                ..Default::default()
            },
        )
        .context("build torrent")?;
    let meta = ValidMetainfo::from_bytes(&torrent).context("read back the built torrent")?;
    let name = meta.name().to_string();
    let is_dir = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .is_dir();
    let hooks = if is_dir {
        KNOWN_HOOKS
            .iter()
            .filter(|h| path.join(".instream/hooks").join(h).is_file())
            .map(|h| h.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let files = nt
        .files()
        .iter()
        .map(|(rel, size)| ManifestFile {
            path: if rel.is_empty() {
                name.clone()
            } else {
                rel.join("/")
            },
            size: *size,
        })
        .collect();
    let manifest = Manifest {
        product: product.to_string(),
        version: version.to_string(),
        variant: variant.map(str::to_string),
        info_hash: meta.info_hash(),
        blake3,
        size: nt.total_len(),
        hooks,
        files: Some(files),
        created_unix: now_secs,
        source: provenance,
    };
    let manifest = proto::manifest::sign(&manifest, key).context("sign manifest")?;
    Ok(Built {
        torrent,
        manifest,
        info_hash: meta.info_hash(),
        size: nt.total_len(),
        name,
    })
}

/// Hard-links (or, across file systems, copies) every regular file under `src` to the same
/// place under `dst`.
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = std::fs::metadata(src).with_context(|| format!("read {}", src.display()))?;
    if md.is_file() {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        if std::fs::hard_link(src, dst).is_err() {
            std::fs::copy(src, dst)
                .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(dst).with_context(|| format!("create {}", dst.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let e = e.with_context(|| format!("read {}", src.display()))?;
        link_tree(&e.path(), &dst.join(e.file_name()))?;
    }
    Ok(())
}

/// Hands a version to the origin watching `dir` (see `instream_engine::origin`):
/// payload under `dir/<info-hash>/<name>`, then the torrent by rename, then waits up to
/// `timeout` for the origin's `.seeding` (or `.error`) answer.
pub fn hand_to_origin(
    dir: &Path,
    source: &Path,
    built: &Built,
    timeout: std::time::Duration,
) -> Result<()> {
    let key = built.info_hash.to_hex();
    let seeding = dir.join(format!("{key}.seeding"));
    let error = dir.join(format!("{key}.error"));
    let torrent = dir.join(format!("{key}.torrent"));
    let data = dir.join(&key);
    if seeding.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    if error.exists() {
        // A previous attempt failed: start over with fresh data.
        let _ = std::fs::remove_file(&torrent);
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_file(&error);
    }
    if !data.exists() {
        let tmp = dir.join(format!(".{key}.{:08x}", rand::random::<u32>()));
        link_tree(source, &tmp.join(&built.name))?;
        std::fs::rename(&tmp, &data)
            .with_context(|| format!("move the payload into {}", data.display()))?;
    }
    if !torrent.exists() {
        let tmp = dir.join(format!(".{key}.torrent.tmp"));
        std::fs::write(&tmp, &built.torrent).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &torrent).with_context(|| format!("write {}", torrent.display()))?;
    }
    let start = std::time::Instant::now();
    loop {
        if seeding.exists() {
            return Ok(());
        }
        if let Ok(why) = std::fs::read_to_string(&error) {
            bail!("the origin refused {key}: {}", why.trim());
        }
        if start.elapsed() > timeout {
            bail!(
                "no origin picked up {} within {}s (is `instream-seed serve --watch {}` running?)",
                torrent.display(),
                timeout.as_secs(),
                dir.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub async fn run(a: PublishArgs) -> Result<()> {
    let client = a.client.client()?;
    let reply = publish(&client, &a).await?;
    println_or_exit(&serde_json::to_string(&reply)?);
    Ok(())
}

/// Builds, registers and hands to the origin; what `instream publish` and `instream up` do.
pub async fn publish(client: &Client, a: &PublishArgs) -> Result<RegisterReply> {
    let source = crate::source::parse(&a.source)?;
    let key_path = a
        .key
        .clone()
        .unwrap_or_else(|| config::config_dir().join("publisher.key"));
    let key = load_or_create_key(&key_path)?;
    let info: PublishInfo = client.get("/api/v1/publish-info").await?;
    let trackers = if a.trackers.is_empty() {
        info.trackers.clone()
    } else {
        a.trackers.clone()
    };
    if trackers.is_empty() {
        eprintln!(
            "warning: the torrent names no tracker (the server has no --tracker and none was given): hosts will find no peers"
        );
    }
    let origin = a
        .origin_dir
        .clone()
        .or_else(|| info.origin_dir.as_ref().map(PathBuf::from));
    // A remote source is fetched first; any failure (unreachable, wrong pin) removes what
    // it wrote and registers nothing.
    let (mut scratch, into) = if source.needs_scratch() {
        let parent = origin.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
        let (s, into) = Scratch::new(&parent, &a.product, &a.version)?;
        (Some(s), into)
    } else {
        (None, PathBuf::new())
    };
    let fetched = tokio::task::spawn_blocking(move || source.fetch(&into))
        .await
        .context("fetch the source")??;
    let path = fetched.path;
    let (p, v, variant, piece) = (
        a.product.clone(),
        a.version.clone(),
        a.variant.clone(),
        a.piece_size,
    );
    let path2 = path.clone();
    let built = tokio::task::spawn_blocking(move || {
        build(
            &path2,
            &p,
            &v,
            variant.as_deref(),
            piece,
            &trackers,
            &key,
            fetched.provenance,
        )
    })
    .await
    .context("build the torrent")??;
    if let Some(out) = &a.torrent_out {
        std::fs::write(out, &built.torrent).with_context(|| format!("write {}", out.display()))?;
    }
    let req = RegisterRequest {
        version: a.version.clone(),
        variant: a.variant.clone(),
        torrent_hex: hex::encode(&built.torrent),
        manifest_hex: hex::encode(&built.manifest),
    };
    let reply: RegisterReply = client
        .post(
            &format!("/api/v1/products/{}/versions", enc(&a.product)),
            &req,
        )
        .await?;
    match origin {
        Some(dir) => {
            let timeout = std::time::Duration::from_secs(a.origin_timeout);
            tokio::task::spawn_blocking(move || hand_to_origin(&dir, &path, &built, timeout))
                .await
                .context("hand the version to the origin")??;
        }
        None => {
            // Nobody seeds it yet: keep fetched files where the note says.
            if let Some(s) = scratch.as_mut() {
                s.keep = true;
            }
            eprintln!(
                "note: no origin directory (serve --origin-dir or --origin-dir): seed it yourself, e.g. `instream-seed serve FILE.torrent --data {}` with -o FILE.torrent",
                path.display()
            )
        }
    }
    Ok(reply)
}
