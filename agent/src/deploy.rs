//! The host agent (`instream-peer deploy`): brings one host to one product version and
//! tells the control server, event by event, where it stands.
//!
//! ```text
//! fetch manifest ─▶ check signature (trusted publisher key) ─▶ on disk and intact?
//!    ├─ yes: verifying ─▶ installing ─▶ activate (link switch + hooks) ─▶ success  (0 bytes)
//!    └─ no:  fetch torrent ─▶ same payload (BLAKE3, files) installed under another
//!            version? copy it in ─▶ downloading (swarm; the resume check takes what is
//!            there; each piece's BLAKE3 subtree is hashed as it is verified on disk)
//!            ─▶ verifying (BLAKE3 from those subtrees, or a re-read) ─▶ installing
//!            ─▶ commit version dir ─▶ seed read-only ─▶ activate ─▶ success ─▶ seed --seed-for
//! any error ─▶ failure with the reason; the previous version stays active
//! ```
//!
//! Invariants: nothing is activated that did not verify (signature, info-hash, size and
//! BLAKE3 of the bytes on disk: a download's BLAKE3 is folded from the very bytes each piece
//! was written with or read back from at the resume check, and any piece not seen that way
//! means the whole payload is read back, [`FoldedDigest`]); every state change is reported
//! (see [`report`]); a failure never leaves the `current` link on the new version
//! ([`crate::install`]).
//!
//! The library never reads argv or the environment: the binary turns [`DeployArgs`] into
//! an [`AgentConfig`] and calls [`deploy`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use proto::manifest::{ManifestError, VerifiedManifest};
use serde::Serialize;
use thiserror::Error;

use crate::control::{ControlClient, ControlError, enc};
use crate::install::{FoldedDigest, HookPolicy, HostIdentity, InstallError, Installer, RecordFile};
use crate::report::kafka::{KafkaReportConfig, KafkaSink};
use crate::report::{self, HostState, ReportIdentity, Reporter, Transport};
use crate::splay;
use crate::swarm::{self, PeerConfig, Seeder, SwarmError};
use contract::AgentArgs;
use engine::meta::TorrentMeta;

/// Why a deployment failed on this host; its one-line rendering is the reported reason.
#[derive(Debug, Error)]
pub enum AgentError {
    /// A bad argument (name, key file).
    #[error("{0}")]
    Config(String),
    /// Nothing to check signatures against.
    #[error("no trusted publisher key: pass --trusted-key FILE")]
    NoTrustedKey,
    /// The control API did not give us what we need.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The manifest is unsigned, mis-signed, malformed or does not match the torrent or
    /// the payload.
    #[error("refused")]
    Manifest(#[from] ManifestError),
    /// The manifest is for something else than what was asked.
    #[error(
        "refused: the manifest is for {field} {actual:?}, the deployment asks for {expected:?}"
    )]
    WrongManifest {
        /// product, version or variant.
        field: &'static str,
        /// Asked for.
        expected: String,
        /// In the manifest.
        actual: String,
    },
    /// The torrent does not parse.
    #[error("refused: invalid torrent")]
    Torrent(#[from] proto::metainfo::Error),
    /// Payload size differs from the manifest.
    #[error("refused: the torrent carries {actual} bytes, the manifest says {expected}")]
    Size {
        /// Manifest.
        expected: u64,
        /// Torrent.
        actual: u64,
    },
    /// Downloading failed.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// Installing or activating failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The active version's files no longer match their manifest.
    #[error(
        "the active copy of version {version} does not match its manifest; deploy another version first"
    )]
    ActiveCopyCorrupt {
        /// Version.
        version: String,
    },
    /// A blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything one run of the agent needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control API base URL.
    pub server: String,
    /// Bearer token.
    pub token: String,
    /// Deployment id.
    pub deployment: String,
    /// This host's name.
    pub host: String,
    /// This host's fabric.
    pub fabric: String,
    /// This host's data root.
    pub root: PathBuf,
    /// Product.
    pub product: String,
    /// Version to end up running.
    pub version: String,
    /// Variant of the build, if the deployment names one.
    pub variant: Option<String>,
    /// Publisher keys a manifest must be signed by.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Versions kept on disk.
    pub keep: usize,
    /// Seeding time after a successful download.
    pub seed_for: Duration,
    /// Longest download.
    pub download_timeout: Duration,
    /// Interval of `downloading` progress events.
    pub progress_every: Duration,
    /// How long undelivered status events are retried at the end.
    pub report_for: Duration,
    /// Status events go to Kafka instead of `POST /api/v1/events` on `server`.
    pub report_kafka: Option<KafkaReportConfig>,
    /// Window the start is spread over (`--splay`); zero: start at once.
    pub splay: Duration,
    /// Run this service command on the active version instead of deploying (`--service`).
    pub service: Option<crate::install::ServiceAction>,
    /// The only root an https `server` is checked against.
    pub ca: Option<engine::https::Ca>,
    /// Hook timing.
    pub hooks: HookPolicy,
    /// Swarm access.
    pub swarm: PeerConfig,
}

/// What a run did; printed as JSON by `instream-peer deploy --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Deployment id.
    pub deployment: String,
    /// Host.
    pub host: String,
    /// Product.
    pub product: String,
    /// Version asked for.
    pub version: String,
    /// "success" or "failure".
    pub state: &'static str,
    /// The version was already on disk (no download).
    pub from_disk: bool,
    /// The payload was copied from this installed "product version" with the same BLAKE3
    /// digest (the content cache) and verified like a download.
    pub copied_from: Option<String>,
    /// Payload bytes received from peers.
    pub bytes_downloaded: u64,
    /// Bytes sent to peers (download and seeding).
    pub bytes_uploaded: u64,
    /// The version active before.
    pub previous: Option<String>,
    /// The version active now.
    pub current: Option<String>,
    /// Why, for a failure.
    pub reason: Option<String>,
    /// What this run did about an activation a killed earlier run left unfinished
    /// ("completed an activation interrupted after `switched`", ...); also the reason of
    /// the success event, so `instream status` shows it.
    pub recovered: Option<String>,
    /// For a service command (`--service`): its action, version and the hook's last line;
    /// also the reason of the success event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_result: Option<String>,
    /// Staging directories of killed or failed earlier runs removed at start.
    pub staging_cleaned: usize,
    /// Status events queued.
    pub events: u64,
    /// Status events that could not be delivered.
    pub events_unsent: usize,
    /// Wall time, seconds.
    pub secs: f64,
}

impl Outcome {
    /// A success of `cfg`'s deployment, nothing done yet.
    fn new(cfg: &AgentConfig) -> Self {
        Self {
            deployment: cfg.deployment.clone(),
            host: cfg.host.clone(),
            product: cfg.product.clone(),
            version: cfg.version.clone(),
            state: "success",
            from_disk: false,
            copied_from: None,
            bytes_downloaded: 0,
            bytes_uploaded: 0,
            previous: None,
            current: None,
            reason: None,
            recovered: None,
            service_result: None,
            staging_cleaned: 0,
            events: 0,
            events_unsent: 0,
            secs: 0.0,
        }
    }

    /// A failure before anything started (nothing could be reported either).
    fn failed(cfg: &AgentConfig, reason: String) -> Self {
        Self {
            state: "failure",
            reason: Some(reason),
            ..Self::new(cfg)
        }
    }
}

/// The `deploy` command line: the contract's [`AgentArgs`] (what the dispatchers render)
/// plus this host's disk back end and transport, which no dispatcher sets.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The deployment on this host.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Disk I/O back end: `auto` (io_uring where the kernel allows it, else pread/pwrite),
    /// `uring` (an error if it cannot work) or `portable`.
    #[arg(long, default_value = "auto", value_name = "auto|uring|portable")]
    pub io_backend: engine::storage::IoBackend,
    /// Transport to other instream hosts (`--transport tcp|quic|auto`, QUIC keys), a host
    /// setting like the disk back end: the dispatchers leave it at its default.
    #[command(flatten)]
    pub transport: engine::programs::TransportArgs,
}

impl DeployArgs {
    /// Reads the token and key files and checks names.
    pub fn into_config(self) -> Result<AgentConfig, AgentError> {
        let io_backend = self.io_backend;
        let transport = self.transport;
        let a = self.agent;
        let token = match (&a.token_file, &a.token_env) {
            (Some(f), _) => read_token_file(f)?,
            (None, Some(var)) => read_token_env(var)?,
            (None, None) => {
                return Err(AgentError::Config(
                    "pass --token-file FILE or --token-env VAR".into(),
                ));
            }
        };
        let ca = engine::https::load_optional(a.ca.as_deref())
            .and_then(|ca| engine::https::require_ca_for(&a.server, ca.as_ref()).map(|()| ca))
            .map_err(|e| AgentError::Config(exit::error_chain(&e)))?;
        let from_env = match &a.report_kafka_options_env {
            Some(var) => std::env::var(var).map_err(|_| {
                AgentError::Config(format!(
                    "environment variable {var} (--report-kafka-options-env) is not set"
                ))
            })?,
            None => String::new(),
        };
        let kafka_options = report::kafka::parse_options(
            from_env
                .lines()
                .chain(a.report_kafka_option.iter().map(String::as_str)),
        )
        .map_err(AgentError::Config)?;
        let mut trusted_keys = Vec::new();
        for f in &a.trusted_keys {
            let text = std::fs::read_to_string(f).map_err(|e| {
                AgentError::Config(format!("read trusted key {}: {e}", f.display()))
            })?;
            trusted_keys
                .push(proto::manifest::parse_public_key(&text).map_err(|e| {
                    AgentError::Config(format!("trusted key {}: {e}", f.display()))
                })?);
        }
        Ok(AgentConfig {
            server: a.server,
            token,
            deployment: a.deployment,
            host: a.host,
            fabric: a.fabric.clone(),
            root: std::path::absolute(&a.root).unwrap_or(a.root),
            product: a.product,
            version: a.version,
            variant: a.variant,
            trusted_keys,
            keep: a.keep,
            seed_for: Duration::from_secs(a.seed_for),
            download_timeout: Duration::from_secs(a.download_timeout),
            progress_every: Duration::from_secs_f64(a.progress_every.clamp(0.05, 3600.0)),
            report_for: Duration::from_secs(a.report_for),
            ca,
            report_kafka: a.report_kafka.map(|brokers| KafkaReportConfig {
                options: kafka_options,
                ..KafkaReportConfig::new(
                    &brokers,
                    a.report_topic
                        .as_deref()
                        .unwrap_or(report::kafka::DEFAULT_TOPIC),
                )
            }),
            splay: Duration::from_secs(a.splay),
            service: a.service,
            hooks: HookPolicy {
                timeout: Duration::from_secs(a.hook_timeout),
                health_attempts: a.health_attempts.max(1),
                ..HookPolicy::default()
            },
            swarm: PeerConfig {
                listen: a.listen,
                fabric: Some(a.fabric),
                fabric_share: a.fabric_share,
                tracker: swarm::fleet_tracker_config(),
                encryption: a.encryption,
                io_backend,
                transport,
                announce_ip: a.announce_ip,
            },
        })
    }
}

/// The control API token: the first non-empty line of `path`. A file its group or others
/// may read is refused: the token is a credential (`chmod 600 FILE`).
pub fn read_token_file(path: &Path) -> Result<String, AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| AgentError::Config(format!("read token file {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(AgentError::Config(format!(
            "token file {} is readable by group or others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    let token = first_line(
        &std::fs::read_to_string(path)
            .map_err(|e| AgentError::Config(format!("read token file {}: {e}", path.display())))?,
    );
    if token.is_empty() {
        return Err(AgentError::Config(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// The control API token from the environment variable `var` (its first non-empty line).
pub fn read_token_env(var: &str) -> Result<String, AgentError> {
    let token = std::env::var(var)
        .map(|v| first_line(&v))
        .unwrap_or_default();
    if token.is_empty() {
        return Err(AgentError::Config(format!(
            "environment variable {var} (--token-env) is not set or empty"
        )));
    }
    Ok(token)
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// What the steps hand back on success.
struct Done {
    from_disk: bool,
    copied_from: Option<String>,
    downloaded: u64,
    uploaded: u64,
    previous: Option<String>,
    recovered: Option<String>,
    /// A service command's result line (`status 1: started`).
    service_result: Option<String>,
    seeder: Option<Seeder>,
}

/// Runs the deployment on this host until success or failure, reports it, seeds for a
/// while after a download, and returns what happened. `stop` resolving (a signal)
/// interrupts a download or cuts seeding short.
pub async fn deploy(cfg: AgentConfig, stop: impl std::future::Future<Output = ()>) -> Outcome {
    let started = Instant::now();
    tokio::pin!(stop);
    // Before anything starts (no client, reporter, lock or staging): a stop during the
    // wait leaves nothing behind, and the next run begins from scratch.
    let wait = splay::delay(&cfg.deployment, &cfg.host, cfg.splay);
    if !wait.is_zero() {
        tracing::info!(
            splay_ms = wait.as_millis() as u64,
            window_secs = cfg.splay.as_secs(),
            "splay: waiting before the start"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => {
                tracing::warn!("stopped during the splay wait; nothing started");
                let reason = "stopped during the splay wait, before starting".to_string();
                let mut out = Outcome::failed(&cfg, reason);
                out.secs = started.elapsed().as_secs_f64();
                return out;
            }
        }
    }
    // Fails only for an https server without a CA, which `DeployArgs` refuses first.
    let client = ControlClient::new(
        &cfg.server,
        &cfg.token,
        Duration::from_secs(60),
        cfg.ca.as_ref(),
    );
    let (client, transport) = match client {
        Ok(c) => {
            let transport = report_transport(&cfg, &c);
            (c, transport)
        }
        Err(e) => {
            let mut out = Outcome::failed(&cfg, exit::error_chain(&e));
            out.secs = started.elapsed().as_secs_f64();
            return out;
        }
    };
    let seq_floor = cfg.root.join("event-seq");
    let _ = std::fs::create_dir_all(&cfg.root);
    let reporter = Reporter::start_after(
        transport,
        ReportIdentity {
            deployment: cfg.deployment.clone(),
            host: cfg.host.clone(),
            fabric: cfg.fabric.clone(),
        },
        report::run_seq_base(Some(&seq_floor)),
    );
    let installer = Installer::new(
        &cfg.root,
        cfg.keep,
        cfg.hooks,
        HostIdentity {
            host: cfg.host.clone(),
            fabric: cfg.fabric.clone(),
        },
    );
    // Leftovers of killed or failed runs: never a half-built version on disk for long.
    let staging_cleaned = match installer.clean_staging(&cfg.product) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %exit::error_chain(&e), "cannot clean staging");
            0
        }
    };
    let result = match cfg.service {
        Some(action) => service_step(&cfg, &reporter, &installer, action).await,
        None => steps(&cfg, &client, &reporter, &installer, &mut stop).await,
    };
    let mut out = Outcome::new(&cfg);
    out.staging_cleaned = staging_cleaned;
    match result {
        Ok(done) => {
            if let Some(r) = &done.recovered {
                tracing::warn!(recovery = %r, "finished what an earlier run left");
            }
            // The success event says what a recovery or a service command did.
            let said = done.recovered.clone().or(done.service_result.clone());
            reporter.report(HostState::Success, done.downloaded, said);
            out.recovered = done.recovered.clone();
            out.service_result = done.service_result.clone();
            out.from_disk = done.from_disk;
            out.copied_from = done.copied_from.clone();
            out.bytes_downloaded = done.downloaded;
            out.previous = done.previous;
            out.bytes_uploaded = done.uploaded;
            if let Some(seeder) = done.seeder {
                seed_for_a_while(&cfg, &seeder, &mut stop).await;
                out.bytes_uploaded += seeder.uploaded();
                seeder.stop().await;
            }
        }
        Err(e) => {
            let reason = exit::error_chain(&e);
            tracing::warn!(%reason, "deployment failed on this host");
            reporter.report(HostState::Failure, 0, Some(reason.clone()));
            out.state = "failure";
            out.reason = Some(reason);
        }
    }
    out.current = installer.current(&cfg.product).ok().flatten();
    out.events = reporter.sent_count();
    out.events_unsent = reporter.finish(cfg.report_for).await;
    out.secs = started.elapsed().as_secs_f64();
    out
}

/// Kafka when configured (and the producer can be created), else HTTP: the control server
/// takes HTTP posts whatever its `--reporter`, so falling back never loses events.
fn report_transport(cfg: &AgentConfig, control: &ControlClient) -> Transport {
    if let Some(k) = &cfg.report_kafka {
        match KafkaSink::new(k, &format!("instream-peer-{}", cfg.host)) {
            Ok(sink) => return Transport::Kafka(sink),
            Err(e) => {
                tracing::warn!(error = %exit::error_chain(&e), "reporting over HTTP instead of Kafka")
            }
        }
    }
    // Reports retry in their own loop; each post gives up quickly so new events join it.
    // Same connection pool as the fetches: one TLS handshake per agent, not two.
    Transport::Http(control.with_retry_for(Duration::from_secs(2)))
}

async fn seed_for_a_while(
    cfg: &AgentConfig,
    seeder: &Seeder,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    let until = tokio::time::Instant::now() + cfg.seed_for;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return,
            _ = stop.as_mut() => return,
            _ = tick.tick() => {
                // The host's data root is gone (a test tore its world down): nothing to
                // serve from any more.
                if !cfg.root.exists() || !seeder.is_seeding() {
                    return;
                }
            }
        }
    }
}

/// A service command: the hooks of the active version, nothing downloaded or switched.
async fn service_step(
    cfg: &AgentConfig,
    reporter: &Reporter,
    installer: &Installer,
    action: crate::install::ServiceAction,
) -> Result<Done, AgentError> {
    check_names(cfg)?;
    reporter.report(HostState::Installing, 0, None);
    let (inst, p) = (installer.clone(), cfg.product.clone());
    let r = blocking(move || Ok(inst.service(&p, action)?)).await?;
    if r.version != cfg.version {
        // The server's view was stale; the hooks ran on what is really active, and say so.
        tracing::warn!(active = %r.version, expected = %cfg.version, "service command ran on another version than the server expected");
    }
    let line = r.line.unwrap_or_default();
    tracing::info!(action = action.as_str(), version = %r.version, %line, "service command done");
    Ok(Done {
        from_disk: true,
        copied_from: None,
        downloaded: 0,
        uploaded: 0,
        previous: None,
        recovered: None,
        service_result: Some(
            format!("{} {}: {line}", action.as_str(), r.version)
                .trim_end_matches(": ")
                .to_string(),
        ),
        seeder: None,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
}

fn check_names(cfg: &AgentConfig) -> Result<(), AgentError> {
    let names = [
        ("product", Some(&cfg.product)),
        ("version", Some(&cfg.version)),
        ("variant", cfg.variant.as_ref()),
        ("host", Some(&cfg.host)),
        ("fabric", Some(&cfg.fabric)),
        ("deployment", Some(&cfg.deployment)),
    ];
    for (what, v) in names {
        if let Some(v) = v
            && !proto::manifest::is_valid_name(v)
        {
            return Err(AgentError::Config(format!("invalid {what} name {v:?}")));
        }
    }
    Ok(())
}

fn check_manifest(cfg: &AgentConfig, m: &VerifiedManifest) -> Result<(), AgentError> {
    let m = m.manifest();
    let wrong = |field, expected: &str, actual: &str| AgentError::WrongManifest {
        field,
        expected: expected.to_string(),
        actual: actual.to_string(),
    };
    if m.product != cfg.product {
        return Err(wrong("product", &cfg.product, &m.product));
    }
    if m.version != cfg.version {
        return Err(wrong("version", &cfg.version, &m.version));
    }
    if let Some(v) = &cfg.variant
        && m.variant.as_deref() != Some(v.as_str())
    {
        return Err(wrong("variant", v, m.variant.as_deref().unwrap_or("")));
    }
    Ok(())
}

/// Payload files relative to the version directory, in payload order, and the directory
/// under the download dir that becomes the version directory (`None`: a single file,
/// which goes inside a new version directory).
fn payload_files(meta: &TorrentMeta) -> (Vec<RecordFile>, Option<PathBuf>) {
    let files = meta
        .files
        .iter()
        .filter(|f| !f.pad)
        .map(|f| {
            let comps: Vec<String> = f
                .path
                .components()
                .skip(usize::from(meta.multi_file))
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            RecordFile {
                path: comps.join("/"),
                size: f.len,
            }
        })
        .collect();
    let top = meta.multi_file.then(|| PathBuf::from(&meta.name));
    (files, top)
}

/// Copies a version's payload files from `from` to `to` (both payload roots).
fn copy_payload(from: &Path, to: &Path, files: &[RecordFile]) -> Result<(), InstallError> {
    for f in files {
        let (src, dst) = (
            crate::install::payload_path(from, &f.path)?,
            crate::install::payload_path(to, &f.path)?,
        );
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InstallError::Io {
                op: "create directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::copy(&src, &dst).map_err(|source| InstallError::Io {
            op: "copy",
            path: src.clone(),
            source,
        })?;
    }
    Ok(())
}

async fn steps(
    cfg: &AgentConfig,
    client: &ControlClient,
    reporter: &Reporter,
    installer: &Installer,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Done, AgentError> {
    check_names(cfg)?;
    if cfg.trusted_keys.is_empty() {
        return Err(AgentError::NoTrustedKey);
    }
    let query = cfg
        .variant
        .as_ref()
        .map(|v| format!("?variant={}", enc(v)))
        .unwrap_or_default();
    let base = format!(
        "/api/v1/products/{}/versions/{}",
        enc(&cfg.product),
        enc(&cfg.version)
    );
    let manifest_bytes = client
        .get_bytes(&format!("{base}/manifest{query}"), "fetch the manifest")
        .await?;
    let verified = proto::manifest::verify(&manifest_bytes, &cfg.trusted_keys)?;
    check_manifest(cfg, &verified)?;
    let m = verified.manifest().clone();
    let (product, version) = (cfg.product.clone(), cfg.version.clone());

    // A rollback (or a re-deploy): the version is still on disk.
    let record = {
        let (inst, p, v) = (installer.clone(), product.clone(), version.clone());
        blocking(move || Ok(inst.record(&p, &v)?)).await?
    };
    if let Some(rec) =
        record.filter(|r| r.blake3 == hex::encode(m.blake3) && r.info_hash == m.info_hash.to_hex())
    {
        reporter.report(HostState::Verifying, 0, None);
        let dir = installer.version_dir(&product, &version);
        let files = rec.files.clone();
        let digest = blocking(move || Ok(crate::install::payload_digest(&dir, &files)?)).await;
        match digest.map(|d| verified.check_blake3(&d)) {
            Ok(Ok(())) => {
                reporter.report(HostState::Installing, 0, None);
                let (inst, p, v) = (installer.clone(), product.clone(), version.clone());
                let act = blocking(move || Ok(inst.activate(&p, &v)?)).await?;
                return Ok(Done {
                    from_disk: true,
                    copied_from: None,
                    downloaded: 0,
                    uploaded: 0,
                    previous: act.previous,
                    recovered: act.recovered.map(|r| r.to_string()),
                    service_result: None,
                    seeder: None,
                });
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => exit::error_chain(&e),
                    Ok(Ok(())) => unreachable!(),
                };
                if installer.current(&product)?.as_deref() == Some(version.as_str()) {
                    return Err(AgentError::ActiveCopyCorrupt { version });
                }
                tracing::warn!(%why, "the copy on disk does not verify; downloading again");
            }
        }
    }

    let torrent = client
        .get_bytes(&format!("{base}/torrent{query}"), "fetch the torrent")
        .await?;
    let meta = TorrentMeta::from_torrent_bytes(&torrent)?;
    verified.check_info_hash(meta.info_hash)?;
    let (files, top) = payload_files(&meta);
    let size: u64 = files.iter().map(|f| f.size).sum();
    if size != m.size {
        return Err(AgentError::Size {
            expected: m.size,
            actual: size,
        });
    }
    reporter.report(HostState::Downloading, 0, None);
    let work = cfg.root.join("downloads").join(&cfg.deployment);
    let payload_root = match &top {
        Some(t) => work.join(t),
        None => work.clone(),
    };
    // The content cache: the same bytes already installed under another version (or
    // product) need no download. Copy them where the download goes; the swarm's resume
    // check hashes them like any partial download, and BLAKE3 is checked after.
    let (inst, p, digest_hex, fl) = (
        installer.clone(),
        product.clone(),
        hex::encode(m.blake3),
        files.clone(),
    );
    let mut copied_from = None;
    if let Some((p, v)) = blocking(move || Ok(inst.find_content(&p, &digest_hex, &fl))).await? {
        let from = installer.version_dir(&p, &v);
        let (to, fl) = (payload_root.clone(), files.clone());
        match blocking(move || Ok(copy_payload(&from, &to, &fl)?)).await {
            Ok(()) => {
                tracing::info!(product = %p, version = %v, "same payload on disk: copied");
                copied_from = Some(format!("{p} {v}"));
            }
            Err(e) => tracing::warn!(
                product = %p,
                version = %v,
                error = %exit::error_chain(&e),
                "cannot copy the same payload from disk; downloading"
            ),
        }
    }
    // BLAKE3 folded into the pieces' pass: each piece's subtree is hashed as it lands (or
    // as the resume check finds it), so verifying needs no second read of the payload.
    let folded = FoldedDigest::for_torrent(&meta).map(Arc::new);
    let transfer = swarm::download(
        meta.clone(),
        &work,
        &cfg.swarm,
        folded
            .clone()
            .map(|f| f as Arc<dyn engine::verify::PieceObserver>),
        cfg.download_timeout,
        cfg.progress_every,
        |received| {
            reporter.report(HostState::Downloading, received, None);
        },
        stop.as_mut(),
    )
    .await;
    let transfer = match transfer {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e.into());
        }
    };
    let received = transfer.downloaded;

    reporter.report(HostState::Verifying, received, None);
    let digest = match folded.as_ref().and_then(|f| f.root()) {
        Some(d) => Ok(d),
        None => {
            // Not every piece was seen (or the geometry does not fold): read it all back.
            tracing::info!("BLAKE3 not folded from the pieces; reading the payload back");
            let (pr, fl) = (payload_root.clone(), files.clone());
            blocking(move || Ok(crate::install::payload_digest(&pr, &fl)?)).await
        }
    };
    if let Err(e) = digest.and_then(|d| Ok(verified.check_blake3(&d)?)) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }

    reporter.report(HostState::Installing, received, None);
    let record = Installer::new_record(&m, files);
    let (inst, work2, top2, name) = (
        installer.clone(),
        work.clone(),
        top.clone(),
        meta.name.clone(),
    );
    blocking(move || {
        let staged = inst.staging_dir(&record.product)?;
        let moved = match &top2 {
            // The torrent's directory becomes the version directory.
            Some(t) => {
                std::fs::remove_dir(&staged).ok();
                std::fs::rename(work2.join(t), &staged)
            }
            None => std::fs::rename(work2.join(&name), staged.join(&name)),
        };
        let committed = moved
            .map_err(|source| InstallError::Io {
                op: "move the download into staging",
                path: staged.clone(),
                source,
            })
            .and_then(|()| inst.commit(&staged, &record));
        if let Err(e) = committed {
            // Nothing half-built stays behind: neither the staged copy nor the download.
            let _ = std::fs::remove_dir_all(&staged);
            let _ = std::fs::remove_dir_all(&work2);
            return Err(e.into());
        }
        let _ = std::fs::remove_dir_all(&work2);
        Ok(())
    })
    .await?;

    // Serve the verified version to the hosts after us while it activates.
    let vdir = installer.version_dir(&product, &version);
    let seeder = match Seeder::start(meta, &vdir, &cfg.swarm).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %exit::error_chain(&e), "cannot seed the installed version");
            None
        }
    };
    let (inst, p, v) = (installer.clone(), product.clone(), version.clone());
    let act = blocking(move || Ok(inst.activate(&p, &v)?)).await;
    match act {
        Ok(act) => Ok(Done {
            from_disk: false,
            copied_from,
            downloaded: received,
            uploaded: transfer.uploaded,
            previous: act.previous,
            recovered: act.recovered.map(|r| r.to_string()),
            service_result: None,
            seeder,
        }),
        Err(e) => {
            if let Some(s) = seeder {
                s.stop().await;
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn error_line_says_each_cause_once() {
        let cause = proto::metainfo::ValidMetainfo::from_bytes(b"not bencode").unwrap_err();
        let inner = cause.to_string();
        let line = exit::error_chain(&AgentError::Torrent(cause));
        assert_eq!(line, format!("refused: invalid torrent: {inner}"));
        assert_eq!(line.matches(&inner).count(), 1, "{line}");
    }

    #[test]
    fn token_file_readable_by_others_is_refused_and_a_private_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "\n  agent:h:d:1:ab \nrest\n").unwrap();
        for loose in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = read_token_file(&f).unwrap_err().to_string();
            assert!(e.contains("readable by group or others"), "{loose:o}: {e}");
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&f).unwrap(), "agent:h:d:1:ab");
    }
}
