//! `instream serve` as a library: open the store, start the deployment driver, serve the API
//! on a bound listener until shutdown. If the driver or the HTTP server stops, the other is
//! stopped too and the error is returned (a half-alive control server would accept events it
//! never acts on).

use crate::api::credential::{AgentKey, KeyFileError, Revocations};
use crate::api::{self, AppState, auth::Token};
use crate::deploy::driver::Driver;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::report::{Ingest, ReportError, ReportSource};
use crate::store::{Db, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ServerConfig {
    /// SQLite file (created if missing).
    pub db_path: PathBuf,
    /// `synchronous=FULL` (survive power loss) instead of NORMAL (survive process death).
    pub durable: bool,
    /// The operator's bearer token (agents get their own credentials at dispatch).
    pub token: String,
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Report deadline for deployments that do not set one, ms (default 120 s).
    pub default_report_deadline_ms: u64,
    /// Publisher keys a registered manifest must be signed by; empty = not checked here
    /// (hosts always check).
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Trackers and origin directory handed to `instream publish`.
    pub publish: crate::tracker_admin::PublishInfo,
    /// The tracker's admin API: registered versions' info-hashes are allowed there.
    pub tracker_admin: Option<crate::tracker_admin::TrackerAdmin>,
    /// Limits of the HTTP server against slow and greedy clients.
    pub http: crate::api::HttpLimits,
    /// TLS on every connection (see `api::tls`); `None` serves plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// A transport that delivers events by itself (a Kafka consumer), besides the HTTP
    /// route (which stays open: agents may fall back to it).
    pub report_source: Option<Box<dyn ReportSource>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("open store {path}")]
    Open {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("agent credentials")]
    AgentKey(#[source] KeyFileError),
    #[error("deployment driver")]
    Driver(#[source] StoreError),
    #[error("http server")]
    Http(#[source] std::io::Error),
    #[error("status events")]
    Report(#[source] ReportError),
    /// A long-running task panicked (logged with its name): the server exits rather than
    /// run on without it.
    #[error("{component} panicked: {message}")]
    Panicked {
        component: &'static str,
        message: String,
    },
}

/// A task's outcome, with a panic turned into [`ServerError::Panicked`] and logged.
fn supervised<E>(
    component: &'static str,
    joined: Result<Result<(), E>, tokio::task::JoinError>,
    wrap: impl FnOnce(E) -> ServerError,
) -> Result<(), ServerError> {
    match joined {
        Ok(r) => r.map_err(wrap),
        Err(e) => {
            let message = match e.try_into_panic() {
                Ok(p) => engine::supervise::panic_message(&*p),
                Err(e) => e.to_string(),
            };
            tracing::error!(component, panic = %message, "task panicked");
            Err(ServerError::Panicked { component, message })
        }
    }
}

/// Where the secret of agent credentials lives: next to the database, `<db>.agent-key`
/// (0600, made on first start; a copy of it lets anyone mint any host's credential).
pub fn agent_key_path(db_path: &std::path::Path) -> PathBuf {
    let mut name = db_path.file_name().unwrap_or_default().to_os_string();
    name.push(".agent-key");
    db_path.with_file_name(name)
}

pub async fn run(
    listener: tokio::net::TcpListener,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let db = Db::open(&cfg.db_path, cfg.durable).map_err(|source| ServerError::Open {
        path: cfg.db_path.display().to_string(),
        source,
    })?;
    let key_path = agent_key_path(&cfg.db_path);
    let agent_key = AgentKey::load_or_create(&key_path).map_err(ServerError::AgentKey)?;
    let revocations = db
        .read(|s| s.revocations())
        .await
        .map_err(ServerError::Driver)?;
    let revocations = Arc::new(Revocations::from_rows(revocations));
    let metrics = Arc::new(Metrics::default());
    let (driver, handle) = Driver::new(
        db.clone(),
        cfg.dispatcher.clone(),
        agent_key.clone(),
        metrics.clone(),
    );
    let ingest = Ingest::new(db.clone(), handle.clone(), metrics.clone());
    let source = cfg.report_source;
    let source_ingest = ingest.clone();
    let state = Arc::new(AppState {
        db,
        driver: handle,
        dispatcher: cfg.dispatcher,
        ingest,
        token: Token::new(&cfg.token),
        agent_key,
        revocations,
        metrics,
        default_report_deadline_ms: cfg.default_report_deadline_ms,
        trusted_keys: cfg.trusted_keys,
        publish: cfg.publish,
        tracker_admin: cfg.tracker_admin.clone(),
    });
    if let Some(admin) = cfg.tracker_admin {
        // A restarted tracker forgot run-time registrations: give it every known version.
        let db = state.db.clone();
        tokio::spawn(async move {
            match db.read(|s| s.all_info_hashes()).await {
                Ok(h) if !h.is_empty() => {
                    if admin
                        .register_retrying(&h, std::time::Duration::from_secs(120))
                        .await
                    {
                        tracing::info!(count = h.len(), tracker = %admin.base(), "info-hashes registered with the tracker");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "list info-hashes"),
            }
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let driver_task = tokio::spawn(driver.run(stopped()));
    let fds = api::raise_fd_limit();
    tracing::debug!(open_files = fds, "file descriptor limit");
    let http_task = tokio::spawn(api::run_with(listener, state, cfg.http, cfg.tls, stopped()));
    let source_task = tokio::spawn({
        let stop = stopped();
        async move {
            match source {
                Some(s) => s.run(source_ingest, Box::pin(stop)).await,
                None => {
                    stop.await;
                    Ok(())
                }
            }
        }
    });
    let stop_tx2 = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx2.send(true);
    });
    tokio::pin!(driver_task, http_task, source_task);
    // Which task ended: it must not be polled again below (a JoinHandle polled after
    // completion panics).
    let (result, ended) = tokio::select! {
        r = &mut driver_task => (supervised("deployment driver", r, ServerError::Driver), 0),
        r = &mut http_task => (supervised("http server", r, ServerError::Http), 1),
        r = &mut source_task => (supervised("status events", r, ServerError::Report), 2),
    };
    let _ = stop_tx.send(true);
    // Let the others finish their graceful stop.
    let grace = std::time::Duration::from_secs(5);
    if ended != 0 {
        let _ = tokio::time::timeout(grace, &mut driver_task).await;
    }
    if ended != 1 {
        let _ = tokio::time::timeout(grace, &mut http_task).await;
    }
    if ended != 2 {
        let _ = tokio::time::timeout(grace, &mut source_task).await;
    }
    result
}
