//! `instream serve`: the control server. Prints one line, `listening on https://ADDR` (or
//! `http://` with `--insecure-http`), on stdout once the socket is bound (scripts and tests
//! read the port from it), then logs to stderr. Stops on SIGINT/SIGTERM.
//!
//! TLS or nothing: `--tls-cert FILE --tls-key FILE` (with `--agent-ca PATH`, the CA the
//! agents check the server with), or plain HTTP by name only (`--insecure-http`, with a
//! warning); neither is a one-line error, never a silent plain server.
//!
//! The distribution side is configured here, once, for every publisher: `--tracker` URLs
//! go into published torrents, `--tracker-token-file` lets the server allow each registered
//! version's info-hash on the tracker, and `--origin-dir` is where publishers drop new
//! versions for the origin (`instream-seed serve --watch DIR`) to seed.
//!
//! `--dispatcher salt` starts agents on Salt minions through salt-api instead of locally
//! (see `dispatch::salt`); it logs in before the server announces itself, so a wrong
//! secret or an unreachable salt-api ends `serve` with one line naming the URL.
//! `--dispatcher ansible` starts them through ansible-core (see `dispatch::ansible`); it
//! reads the inventory first, so a missing ansible-core or a broken inventory ends `serve`
//! the same way.

use super::config;
use crate::api::auth::generate_token;
use crate::dispatch::Dispatcher;
use crate::dispatch::ansible::{self, AnsibleDispatcher, AnsibleSettings};
use crate::dispatch::inventory::DEFAULT_VARIANT_GRAIN;
use crate::dispatch::local::{AgentCommand, LocalDispatcher};
use crate::dispatch::salt::{self, SaltDispatcher, SaltSettings};
use crate::server::{self, ServerConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DispatcherKind {
    Local,
    Salt,
    Ansible,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReporterKind {
    Http,
    Kafka,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR")]
    pub listen: String,
    /// SQLite database file [default: instream.db in the data dir].
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// How hosts are told to deploy.
    #[arg(long, value_enum, default_value = "local", env = "INSTREAM_DISPATCHER")]
    pub dispatcher: DispatcherKind,
    /// How hosts report status.
    #[arg(long, value_enum, default_value = "http")]
    pub reporter: ReporterKind,
    #[command(flatten)]
    pub kafka: crate::report::kafka::KafkaArgs,
    /// Hosts of the local dispatcher (TOML, `[[host]] name fabric grains`) [default: inventory.toml in the config dir].
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// File with the API token; created with a random token if missing [default: token in the config dir].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Parent of the hosts' data roots, `<DIR>/<host>` (with salt: on the minions)
    /// [default: hosts/ in the data dir].
    #[arg(long, value_name = "DIR")]
    pub hosts_root: Option<PathBuf>,
    /// Host agent executable (with salt: its path on the minions) [default: instream-peer
    /// beside this binary, else from PATH].
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Argument placed before the agent's `deploy` subcommand (repeatable; e.g. a script
    /// when --agent is an interpreter).
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub agent_args: Vec<std::ffi::OsString>,
    /// Grain that `--variant` is compared with.
    #[arg(long, default_value = DEFAULT_VARIANT_GRAIN, value_name = "GRAIN")]
    pub variant_grain: String,
    /// Publisher public key file (hex): registered manifests must be signed by it, and agents get it.
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Option<PathBuf>,
    /// Seconds a dispatched host may stay silent before it fails (deployments may override).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub report_deadline: u64,
    /// Seconds a client may take to send a request's headers (also the keep-alive idle
    /// timeout): slow clients are cut off after it.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub http_header_timeout: u64,
    /// Seconds one request may take, body included (408 after it).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub http_request_timeout: u64,
    /// Most HTTP connections open at once (more are closed at once).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub http_max_connections: usize,
    /// PEM certificate (then intermediates) of the control API: every connection is TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS (tokens and status in the clear: a trusted network
    /// or a TLS proxy in front only); said again in a warning at start.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure_http: bool,
    /// CA file (PEM) agents check this server's certificate with, passed to them as `--ca`
    /// (with salt or ansible: its path on the hosts) [required with --tls-cert].
    #[arg(long, value_name = "PATH")]
    pub agent_ca: Option<PathBuf>,
    /// URL agents use to reach this server [default: https://<listen address>, or http://
    /// with --insecure-http].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// fsync every commit (synchronous=FULL): survive power loss, not only a killed process.
    #[arg(long)]
    pub durable: bool,
    /// Tracker announce URL that published torrents carry (repeatable); `instream publish`
    /// asks the server for them.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Base URL of the tracker's admin API (`POST /register`) [default: the first http://
    /// --tracker without its path].
    #[arg(long, value_name = "URL")]
    pub tracker_admin: Option<String>,
    /// File with the tracker's admin token: registered versions' info-hashes are allowed on
    /// the tracker with it (without it, run the tracker with --open or a whitelist).
    #[arg(long, value_name = "FILE")]
    pub tracker_token_file: Option<PathBuf>,
    /// Directory watched by the origin (`instream-seed serve --watch DIR`): `instream
    /// publish` hands new versions to it there.
    #[arg(long, value_name = "DIR")]
    pub origin_dir: Option<PathBuf>,
    /// Seconds agents keep seeding after a successful download [default: the agent's].
    #[arg(long, value_name = "SECS")]
    pub agent_seed_for: Option<u64>,
    #[command(flatten)]
    pub salt: SaltArgs,
    #[command(flatten)]
    pub ansible: AnsibleArgs,
}

/// ansible-core access for `--dispatcher ansible`: the inventory's groups are the fabrics,
/// host variables the grains; paths given to `serve` (agent, hosts root, trusted key) are
/// paths on the hosts.
#[derive(Args, Debug)]
pub struct AnsibleArgs {
    /// Ansible inventory (`-i`: file, directory or script), one group per fabric.
    #[arg(long, value_name = "INV", env = "INSTREAM_ANSIBLE_INVENTORY")]
    pub ansible_inventory: Option<PathBuf>,
    /// Directory holding ansible-playbook and ansible-inventory [default: from PATH].
    #[arg(long, value_name = "DIR")]
    pub ansible_bin_dir: Option<PathBuf>,
    /// Host variable naming a host's fabric when its groups do not.
    #[arg(long, default_value = ansible::DEFAULT_FABRIC_VAR, value_name = "VAR")]
    pub ansible_fabric_var: String,
    /// Hosts Ansible starts agents on at once.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub ansible_forks: u32,
    /// Seconds one ansible-playbook or ansible-inventory run may take.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub ansible_timeout: u64,
}

impl AnsibleArgs {
    fn settings(&self, variant_grain: &str) -> Result<AnsibleSettings> {
        let inventory = self
            .ansible_inventory
            .clone()
            .context("--dispatcher ansible needs --ansible-inventory INV")?;
        if !inventory.exists() {
            bail!("ansible inventory {} does not exist", inventory.display());
        }
        Ok(AnsibleSettings {
            inventory,
            bin_dir: self.ansible_bin_dir.clone(),
            fabric_var: self.ansible_fabric_var.clone(),
            variant_grain: variant_grain.to_string(),
            forks: self.ansible_forks.max(1),
            timeout: std::time::Duration::from_secs(self.ansible_timeout.max(1)),
            // An agent that runs a day is stuck; Ansible's async wrapper ends it.
            async_secs: 86_400,
        })
    }
}

/// Which fleet the server dispatches to, checked before anything starts.
enum FleetConfig {
    Local(crate::dispatch::inventory::Inventory),
    Salt(SaltSettings),
    Ansible(AnsibleSettings),
}

/// salt-api access for `--dispatcher salt`. The trusted key path given to `serve` must also
/// exist at the same path on the minions; each agent gets its own credential in its
/// command's environment.
#[derive(Args, Debug)]
pub struct SaltArgs {
    /// salt-api (rest_cherrypy) base URL.
    #[arg(long, value_name = "URL", env = "SALTAPI_URL")]
    pub salt_api: Option<String>,
    /// salt-api user (an external_auth entry of the master).
    #[arg(long, value_name = "USER", env = "SALTAPI_USER")]
    pub salt_user: Option<String>,
    /// File whose first line is that user's password or the master's shared secret.
    #[arg(long, value_name = "FILE", env = "SALTAPI_SECRET_FILE")]
    pub salt_secret_file: Option<PathBuf>,
    /// eauth back end (sharedsecret, pam, ldap, ...).
    #[arg(
        long,
        default_value = "sharedsecret",
        value_name = "EAUTH",
        env = "SALTAPI_EAUTH"
    )]
    pub salt_eauth: String,
    /// Grain holding a minion's fabric.
    #[arg(long, default_value = salt::DEFAULT_FABRIC_GRAIN, value_name = "GRAIN")]
    pub salt_fabric_grain: String,
    /// Seconds the master waits for minions to answer a grains query (target resolution).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub salt_timeout: u64,
}

impl SaltArgs {
    fn settings(&self, variant_grain: &str) -> Result<SaltSettings> {
        let need = |v: &Option<String>, flag: &str| {
            v.clone()
                .with_context(|| format!("--dispatcher salt needs {flag}"))
        };
        let url = need(&self.salt_api, "--salt-api URL")?;
        let user = need(&self.salt_user, "--salt-user USER")?;
        let file = self
            .salt_secret_file
            .as_ref()
            .context("--dispatcher salt needs --salt-secret-file FILE")?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read salt secret file {}", file.display()))?;
        let secret = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if secret.is_empty() {
            bail!("salt secret file {} is empty", file.display());
        }
        Ok(SaltSettings {
            url,
            credentials: salt::Credentials {
                user,
                secret: secret.to_string(),
                eauth: self.salt_eauth.clone(),
            },
            fabric_grain: self.salt_fabric_grain.clone(),
            variant_grain: variant_grain.to_string(),
            minion_timeout: std::time::Duration::from_secs(self.salt_timeout),
        })
    }
}

fn default_agent() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        let sibling = exe.with_file_name("instream-peer");
        if sibling.exists() {
            return sibling;
        }
    }
    PathBuf::from("instream-peer")
}

/// TLS, or plain HTTP only when asked for by name: never plain by omission.
fn tls_of(a: &ServeArgs) -> Result<Option<tokio_rustls::TlsAcceptor>> {
    let (cert, key) = match (&a.tls_cert, &a.tls_key, a.insecure_http) {
        (Some(cert), Some(key), _) => (cert, key),
        // Warned about once the server is up (a `serve` that fails says only why).
        (_, _, true) => return Ok(None),
        _ => bail!(
            "the control API needs --tls-cert FILE --tls-key FILE (PEM), or --insecure-http to serve plain HTTP"
        ),
    };
    let acceptor = crate::api::tls::acceptor(&crate::api::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    })?;
    let Some(ca) = &a.agent_ca else {
        bail!(
            "--tls-cert needs --agent-ca PATH: the CA file agents check the server with (with salt or ansible, its path on the hosts)"
        );
    };
    // A local agent reads the same file: refuse to start with one it could not use.
    if a.dispatcher == DispatcherKind::Local {
        engine::https::Ca::load(ca)?;
    }
    Ok(Some(acceptor))
}

pub fn run(a: ServeArgs) -> Result<()> {
    let tls = tls_of(&a)?;
    // Checked before anything starts: a bad Kafka setting ends `serve` with one line.
    let kafka = match a.reporter {
        ReporterKind::Http => None,
        ReporterKind::Kafka => Some(a.kafka.config()?),
    };
    let token_file = a
        .token_file
        .clone()
        .unwrap_or_else(config::default_token_file);
    let token = if token_file.exists() {
        config::read_token(&token_file)?
    } else {
        let t = generate_token();
        config::write_private(&token_file, &format!("{t}\n"))?;
        tracing::info!(file = %token_file.display(), "generated API token");
        t
    };
    let db_path =
        a.db.clone()
            .unwrap_or_else(|| config::data_dir().join("instream.db"));
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // The local dispatcher's fleet is an inventory file; Salt's is the master's minions;
    // Ansible's is its inventory.
    let fleet = match a.dispatcher {
        DispatcherKind::Local => {
            let inventory_path = a
                .inventory
                .clone()
                .unwrap_or_else(|| config::config_dir().join("inventory.toml"));
            if !inventory_path.exists() {
                bail!(
                    "no inventory at {}: pass --inventory FILE ([[host]] name, fabric, grains)",
                    inventory_path.display()
                );
            }
            FleetConfig::Local(LocalDispatcher::load_inventory(&inventory_path)?)
        }
        DispatcherKind::Salt => FleetConfig::Salt(a.salt.settings(&a.variant_grain)?),
        DispatcherKind::Ansible => FleetConfig::Ansible(a.ansible.settings(&a.variant_grain)?),
    };
    let trusted_keys = match &a.trusted_key {
        None => Vec::new(),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("read trusted key {}", f.display()))?;
            vec![
                proto::manifest::parse_public_key(&text)
                    .with_context(|| format!("parse trusted key {}", f.display()))?,
            ]
        }
    };
    let tracker_admin = match &a.tracker_token_file {
        None => None,
        Some(f) => {
            let base = match &a.tracker_admin {
                Some(u) => u.clone(),
                None => a
                    .trackers
                    .iter()
                    .find_map(|t| crate::tracker_admin::admin_base_of(t))
                    .context(
                        "--tracker-token-file needs --tracker-admin URL or an http:// --tracker",
                    )?,
            };
            let tracker_token = config::read_token(f)?;
            // Two credentials for two services: one must never open the other's door.
            if tracker_token == token {
                anyhow::bail!(
                    "the tracker's admin token ({}) is the operator's API token ({}): give the tracker its own",
                    f.display(),
                    token_file.display()
                );
            }
            Some(crate::tracker_admin::TrackerAdmin::new(
                &base,
                &tracker_token,
            ))
        }
    };
    let publish = crate::tracker_admin::PublishInfo {
        trackers: a.trackers.clone(),
        origin_dir: a
            .origin_dir
            .clone()
            .map(|d| std::path::absolute(&d).unwrap_or(d).display().to_string()),
    };
    let hosts_root = a
        .hosts_root
        .clone()
        .unwrap_or_else(|| config::data_dir().join("hosts"));
    // Agents run with other working directories: hand them absolute paths.
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("instream-serve")
        .build()
        .context("start async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("bind {}", a.listen))?;
        let addr = listener.local_addr().context("read bound address")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = a
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let agent = AgentCommand {
            program: a.agent.clone().unwrap_or_else(default_agent),
            prefix_args: a.agent_args.clone(),
            server: url.clone(),
            hosts_root: abs(hosts_root),
            trusted_key: a.trusted_key.clone().map(abs),
            ca: tls.as_ref().and(a.agent_ca.clone()).map(|p| match a.dispatcher {
                // On the remote hosts: as given.
                DispatcherKind::Salt | DispatcherKind::Ansible => p,
                DispatcherKind::Local => abs(p),
            }),
            seed_for: a.agent_seed_for,
            report_kafka: kafka.as_ref().map(|k| crate::dispatch::local::KafkaReport {
                brokers: k.brokers.clone(),
                topic: k.topic.clone(),
                options: k.options.clone(),
            }),
        };
        let dispatcher: Arc<dyn Dispatcher> = match fleet {
            FleetConfig::Local(inventory) => Arc::new(LocalDispatcher::new(
                inventory,
                a.variant_grain.clone(),
                agent,
            )),
            FleetConfig::Salt(settings) => {
                let salt = SaltDispatcher::new(settings, agent)?;
                salt.login().await?;
                tracing::info!(url = %a.salt.salt_api.as_deref().unwrap_or(""), "logged in to salt-api");
                Arc::new(salt)
            }
            FleetConfig::Ansible(settings) => {
                let ansible = AnsibleDispatcher::new(settings, agent);
                // Read the inventory now, so a missing ansible-core or a broken inventory
                // ends `serve` with one line instead of failing the first deployment.
                let fabrics = ansible.fabrics().await?;
                tracing::info!(fabrics = %fabrics.join(","), "ansible inventory read");
                Arc::new(ansible)
            }
        };
        let cfg = ServerConfig {
            db_path,
            durable: a.durable,
            token,
            dispatcher,
            default_report_deadline_ms: a.report_deadline.saturating_mul(1000),
            trusted_keys,
            publish,
            tracker_admin,
            http: crate::api::HttpLimits {
                header_timeout: std::time::Duration::from_secs(a.http_header_timeout.max(1)),
                request_timeout: std::time::Duration::from_secs(a.http_request_timeout.max(1)),
                max_connections: a.http_max_connections.max(1),
            },
            tls,
            report_source: kafka.map(|k| {
                Box::new(crate::report::kafka::KafkaSource::new(k))
                    as Box<dyn crate::report::ReportSource>
            }),
        };
        if scheme == "http" {
            tracing::warn!(
                %addr,
                "--insecure-http: the control API is plain HTTP; tokens, credentials and status travel unencrypted"
            );
        }
        super::output::println_or_exit(&format!("listening on {scheme}://{addr}"));
        tracing::info!(%addr, "control server up");
        server::run(listener, cfg, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
