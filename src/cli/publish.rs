//! `instream publish -p P -v V [--variant NAME] PATH|URL`: read a product version from a
//! data source, build its torrent (proto::metainfo's builder, SHA-1 pieces) and a manifest
//! (product, version, variant, info-hash, BLAKE3 of the payload, size, hooks, files) signed
//! with the publisher's ed25519 key, and register both with the control server.
//!
//! The key is made on first use at `publisher.key` in the config dir (hex secret, mode 0600;
//! the public half beside it in `publisher.pub`, which is what hosts and `serve
//! --trusted-key` take). Only local paths are a data source today; the [`Source`] type
//! is where HTTP and Git go.

use super::ClientArgs;
use super::client::enc;
use super::config;
use super::output::println_or_exit;
use super::size::parse_size;
use crate::api::views::{RegisterReply, RegisterRequest};
use anyhow::{Context, Result, bail};
use clap::Args;
use ed25519_dalek::SigningKey;
use proto::manifest::{KNOWN_HOOKS, Manifest, ManifestFile};
use proto::metainfo::{NewTorrent, PieceHasher, TorrentOptions, ValidMetainfo, auto_piece_len};
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
    /// Tracker announce URL to put in the torrent (repeatable).
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Also write the .torrent here (for an origin: `instream-seed serve FILE --data PATH`).
    #[arg(short = 'o', long = "torrent-out", value_name = "FILE")]
    pub torrent_out: Option<PathBuf>,
    /// Publisher signing key (hex secret) [default: publisher.key in the config dir, made on first use].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The product version: a directory or a file (a URL source is not supported yet).
    pub source: String,
}

/// Where a product version's bytes come from.
pub enum Source {
    Local(PathBuf),
}

impl Source {
    pub fn parse(s: &str) -> Result<Self> {
        if let Some((scheme, _)) = s.split_once("://") {
            bail!("{scheme}:// sources are not supported yet: publish a local path");
        }
        Ok(Source::Local(PathBuf::from(s)))
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

/// Regular files under `dir` as (components relative to `dir`, size); symlinks and other
/// special files are refused rather than followed.
fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<(Vec<String>, u64)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("read directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("file name {n:?} in {} is not UTF-8", dir.display()))?;
        let ft = e
            .file_type()
            .with_context(|| format!("stat {}", e.path().display()))?;
        rel.push(name);
        if ft.is_dir() {
            walk(&e.path(), rel, out)?;
        } else if ft.is_file() {
            let len = e
                .metadata()
                .with_context(|| format!("stat {}", e.path().display()))?
                .len();
            out.push((rel.clone(), len));
        } else {
            bail!("{} is neither a file nor a directory", e.path().display());
        }
        rel.pop();
    }
    Ok(())
}

/// A built product version: torrent bytes, signed manifest bytes, and what they say.
pub struct Built {
    pub torrent: Vec<u8>,
    pub manifest: Vec<u8>,
    pub info_hash: proto::InfoHash,
    pub size: u64,
}

/// Builds torrent and signed manifest for a local path.
pub fn build(
    path: &Path,
    product: &str,
    version: &str,
    variant: Option<&str>,
    piece_size: Option<u64>,
    trackers: &[String],
    key: &SigningKey,
) -> Result<Built> {
    let meta = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    let name = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{product}-{version}"));
    let nt = if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            bail!("{} has no files", path.display());
        }
        NewTorrent::directory(&name, files).context("describe the payload")?
    } else {
        NewTorrent::single_file(&name, meta.len()).context("describe the payload")?
    };
    let piece_len = match piece_size {
        Some(p) => u32::try_from(p).context("piece size too large")?,
        None => auto_piece_len(nt.total_len()),
    };
    let lengths = nt.lengths(piece_len).context("choose piece size")?;
    let mut pieces = PieceHasher::new(&lengths);
    let mut digest = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for (rel, len) in nt.files() {
        let file_path = if meta.is_dir() {
            rel.iter().fold(path.to_path_buf(), |p, c| p.join(c))
        } else {
            path.to_path_buf()
        };
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
            pieces.feed(&buf[..n]);
            digest.update(&buf[..n]);
            left -= n as u64;
        }
    }
    let now_secs = crate::deploy::model::now_millis() / 1000;
    let torrent = nt
        .build(
            piece_len,
            &pieces.finish(),
            &TorrentOptions {
                trackers: trackers.to_vec(),
                creation_date: Some(now_secs as i64),
                ..Default::default()
            },
        )
        .context("build torrent")?;
    let info_hash = ValidMetainfo::from_bytes(&torrent)
        .context("read back the built torrent")?
        .info_hash();
    let hooks = if meta.is_dir() {
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
        info_hash,
        blake3: *digest.finalize().as_bytes(),
        size: nt.total_len(),
        hooks,
        files: Some(files),
        created_unix: now_secs,
    };
    let manifest = proto::manifest::sign(&manifest, key).context("sign manifest")?;
    Ok(Built {
        torrent,
        manifest,
        info_hash,
        size: nt.total_len(),
    })
}

pub async fn run(a: PublishArgs) -> Result<()> {
    let Source::Local(path) = Source::parse(&a.source)?;
    let client = a.client.client()?;
    let key_path = a
        .key
        .clone()
        .unwrap_or_else(|| config::config_dir().join("publisher.key"));
    let key = load_or_create_key(&key_path)?;
    let built = build(
        &path,
        &a.product,
        &a.version,
        a.variant.as_deref(),
        a.piece_size,
        &a.trackers,
        &key,
    )?;
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
    println_or_exit(&serde_json::to_string(&reply)?);
    Ok(())
}
