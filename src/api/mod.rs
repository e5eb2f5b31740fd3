//! The control API (axum): routes in [`routes`], bearer auth in [`auth`], answer shapes in
//! [`views`], the status page in [`page`]. Every error is JSON `{"error": "..."}` with a
//! 4xx status for a bad request and 5xx only for the server's own trouble.
//!
//! [`run`] takes an already-bound listener and a shutdown future (tests bind port 0).

pub mod auth;
pub mod page;
pub mod routes;
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

    /// A server-side failure: logged with its chain, answered without internals.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let chain = crate::error_chain(err);
        tracing::error!(error = %chain, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {chain}"),
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

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
