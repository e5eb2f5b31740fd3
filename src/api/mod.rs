//! The control API (axum): routes in [`routes`], bearer auth in [`auth`], answer shapes in
//! [`views`], the status page in [`page`]. Every error is JSON `{"error": "..."}` with a
//! 4xx status for a bad request and 5xx only for the server's own trouble.
//!
//! [`run`] takes an already-bound listener and a shutdown future (tests bind port 0).

pub mod auth;
pub mod credential;
pub mod page;
pub mod routes;
pub mod tls;
pub mod views;

use crate::deploy::driver::DriverHandle;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::report::Ingest;
use crate::store::Db;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest request body: a registration carries a hex torrent (a 10 GiB payload in 256 KiB
/// pieces has 40,960 × 20 bytes of hashes = 800 KiB, 1.6 MiB as hex), a manifest, and room.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

pub struct AppState {
    pub db: Db,
    pub driver: DriverHandle,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub ingest: Ingest,
    pub token: auth::Token,
    /// Signs and checks per-host agent credentials.
    pub agent_key: credential::AgentKey,
    /// Revoked agent credentials (cache of the store's table).
    pub revocations: Arc<credential::Revocations>,
    pub metrics: Arc<Metrics>,
    /// Report deadline for deployments that do not name one, in ms.
    pub default_report_deadline_ms: u64,
    /// If not empty, a registered manifest must be signed by one of these.
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Trackers and origin handed to publishers.
    pub publish: crate::tracker_admin::PublishInfo,
    /// Where registered info-hashes are allowed on the tracker, if configured.
    pub tracker_admin: Option<crate::tracker_admin::TrackerAdmin>,
}

/// An error answer: status + one-line message, as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A server-side failure: logged with its chain under an incident number, answered
    /// with that number only (no paths, queries or library messages leave the server).
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let chain = crate::error_chain(err);
        let incident: u32 = rand::random();
        tracing::error!(error = %chain, incident = format_args!("{incident:08x}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (incident {incident:08x}, see the server log)"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = views::ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections (bad syntax, wrong fields, wrong content type) are JSON 4xx
/// errors with axum's explanation, like every other error.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// `Query<T>` with JSON 400 rejections.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// Limits of the API's HTTP server against slow and greedy clients. Every remote party can
/// make us hold a connection; these bound how many and for how long.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest a client may take to send a request's headers, including the wait for the
    /// next request on a kept-alive connection (so it is also the idle timeout). Default
    /// 10 s.
    pub header_timeout: std::time::Duration,
    /// Longest one request may take from its headers to the end of the answer (reading the
    /// body included). Default 60 s; a longer one gets 408.
    pub request_timeout: std::time::Duration,
    /// Most connections open at once; more are accepted and closed at once, so the accept
    /// backlog never fills with them. Default 4096. The server also raises its soft
    /// open-file limit to the hard one at start.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (systemd's default soft limit of 1,024
/// is what a few hundred slow sockets exhaust); returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        r.rlim_cur
    }
}

/// Serves the API in plain HTTP on `listener` until `shutdown` resolves, with
/// [`HttpLimits::default`].
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, state, HttpLimits::default(), None, shutdown).await
}

/// Serves the API on `listener` until `shutdown` resolves: one task per connection, each
/// bounded by `limits`; on shutdown, connections finish their request in flight. With
/// `tls`, every connection is TLS, and its handshake counts against the header timeout.
pub async fn run_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let timeout = limits.request_timeout;
    let app = routes::router(state).layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request not finished within {}s", timeout.as_secs()),
                )
                .into_response(),
            }
        },
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection cap reached: closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new());
        let Some(acceptor) = tls.clone() else {
            http.header_read_timeout(limits.header_timeout);
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                drop(permit);
            });
            continue;
        };
        // The handshake runs in the connection's task (the accept loop never waits on a
        // client) and is not watched by `graceful`: a connection still shaking hands at
        // shutdown has no request in flight.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some((stream, left)) =
                tls::handshake(&acceptor, stream, limits.header_timeout, peer).await
            else {
                drop(permit);
                return;
            };
            // The first request's headers get what the handshake left of the budget (later
            // requests on this connection keep that bound: a client that needed most of
            // it to shake hands gets a short keep-alive).
            http.header_read_timeout(left.max(std::time::Duration::from_millis(1)));
            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    // Let requests in flight finish, but not forever.
    let _ = tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await;
    Ok(())
}
