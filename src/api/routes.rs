//! The API's routes and handlers. Paths (all JSON unless said):
//!
//! auth: `op` = the operator's token only (an agent credential gets 403); `any` = the
//! operator's token or an agent credential (whose events must all be its host's, for its
//! deployment).
//!
//! | method + path | auth | does |
//! | --- | --- | --- |
//! | GET `/` | no | status page (static HTML; reads the API with the token from `#token=`) |
//! | GET `/healthz` | no | `ok` |
//! | GET `/metrics` | op | Prometheus text |
//! | GET `/api/v1/products` | op | products with their versions |
//! | GET `/api/v1/products/{p}/versions` | op | versions of one product |
//! | POST `/api/v1/products/{p}/versions` | op | register a version (torrent + signed manifest) |
//! | GET `/api/v1/products/{p}/versions/{v}/torrent?variant=` | any | .torrent bytes |
//! | GET `/api/v1/products/{p}/versions/{v}/manifest?variant=` | any | signed manifest bytes |
//! | GET `/api/v1/products/{p}/running?fabric=` | op | what runs where: each host's active version, since, through which deployment; unknown hosts |
//! | GET `/api/v1/products/{p}/hosts/{h}/history` | op | every change of one host's active version |
//! | GET `/api/v1/publish-info` | op | tracker URLs and origin directory for `instream publish` |
//! | GET `/api/v1/fabrics` | op | fabrics the dispatcher knows |
//! | GET `/api/v1/deployments?limit=` | op | recent deployments with progress |
//! | POST `/api/v1/deployments` | op | create; answers `{"status":"submitted","id":..}` |
//! | GET `/api/v1/deployments/{id}?fabric=` | op | state and progress (overall, per fabric) |
//! | GET `/api/v1/deployments/{id}/hosts?state=&fabric=` | op | per-host list |
//! | POST `/api/v1/deployments/{id}/promote` | op | continue past the canary |
//! | POST `/api/v1/rollbacks` | op | roll a fabric back; answers like a deploy |
//! | POST `/api/v1/services` | op | a service command on the hosts that run a product; answers like a deploy |
//! | POST `/api/v1/events` | any | host events, batched and idempotent |
//! | POST `/api/v1/revocations` | op | `{"host":H,"deployment":ID?}`: refuse H's agent credentials issued until now |

use super::auth::Principal;
use super::views::{
    DeploymentView, HostView, HostsView, ProductView, RegisterReply, RegisterRequest, RevokeReply,
    Submitted,
};
use super::{ApiError, ApiJson, ApiQuery, AppState, MAX_BODY, auth, page};
use crate::deploy::driver::PromoteError;
use crate::deploy::model::{now_millis, validate_name};
use crate::deploy::submit::{self, DeployRequest, RollbackRequest, SubmitError};
use crate::metrics::Metrics;
use crate::report::IngestError;
use crate::report::http::{EventBatch, IngestReply};
use crate::store::{Blob, HostFilter, NewVersion, RunningLine, StoreError, VersionChange};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    // What an agent credential may use; the operator's token may too.
    let agent = Router::new()
        .route(
            "/api/v1/products/{product}/versions/{version}/torrent",
            get(get_torrent),
        )
        .route(
            "/api/v1/products/{product}/versions/{version}/manifest",
            get(get_manifest),
        )
        .route("/api/v1/events", post(post_events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    // The operator's token only.
    let operator = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/products", get(list_products))
        .route(
            "/api/v1/products/{product}/versions",
            get(list_versions).post(register_version),
        )
        .route("/api/v1/products/{product}/running", get(running))
        .route(
            "/api/v1/products/{product}/hosts/{host}/history",
            get(version_history),
        )
        .route("/api/v1/fabrics", get(list_fabrics))
        .route("/api/v1/publish-info", get(publish_info))
        .route(
            "/api/v1/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route("/api/v1/deployments/{id}", get(get_deployment))
        .route("/api/v1/deployments/{id}/hosts", get(get_hosts))
        .route("/api/v1/deployments/{id}/promote", post(promote))
        .route("/api/v1/rollbacks", post(create_rollback))
        .route("/api/v1/services", post(create_service))
        .route("/api/v1/revocations", post(revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_operator,
        ));
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(|| async { "ok" }))
        .merge(agent)
        .merge(operator)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        StoreError::NoDeployment { .. } => ApiError::not_found(e.to_string()),
        other => ApiError::internal(&other),
    }
}

fn submit_err(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Invalid(m) => ApiError::bad_request(m),
        SubmitError::NotFound(m) => ApiError::not_found(m),
        SubmitError::Unprocessable(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        SubmitError::Store(e) => store_err(e),
        SubmitError::Dispatch(e) => ApiError::new(StatusCode::BAD_GATEWAY, crate::error_chain(&e)),
    }
}

fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    validate_name(what, s).map_err(ApiError::bad_request)
}

async fn metrics(State(st): St) -> Result<Response, ApiError> {
    let by_state = st
        .db
        .read(|s| s.deployment_state_counts())
        .await
        .map_err(store_err)?;
    let text = st.metrics.render(&by_state, st.driver.active());
    Ok((
        [(header::CONTENT_TYPE, proto::prometheus::CONTENT_TYPE)],
        text,
    )
        .into_response())
}

async fn list_products(State(st): St) -> Result<Json<Vec<ProductView>>, ApiError> {
    let out = st
        .db
        .read(|s| -> Result<Vec<ProductView>, StoreError> {
            let mut out = Vec::new();
            for name in s.products()? {
                let versions = s.versions(&name)?;
                out.push(ProductView { name, versions });
            }
            Ok(out)
        })
        .await
        .map_err(store_err)?;
    Ok(Json(out))
}

async fn list_versions(
    State(st): St,
    Path(product): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    check_name("product", &product)?;
    let p = product.clone();
    let (known, versions) = st
        .db
        .read(move |s| -> Result<_, StoreError> { Ok((s.product_exists(&p)?, s.versions(&p)?)) })
        .await
        .map_err(store_err)?;
    if !known {
        return Err(ApiError::not_found(format!("unknown product {product:?}")));
    }
    Ok(Json(ProductView {
        name: product,
        versions,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunningQuery {
    fabric: Option<String>,
}

async fn running(
    State(st): St,
    Path(product): Path<String>,
    ApiQuery(q): ApiQuery<RunningQuery>,
) -> Result<Json<Vec<RunningLine>>, ApiError> {
    check_name("product", &product)?;
    if let Some(f) = &q.fabric {
        check_name("fabric", f)?;
    }
    let p = product.clone();
    let (known, lines) = st
        .db
        .read(move |s| -> Result<_, StoreError> {
            Ok((s.product_exists(&p)?, s.running(&p, q.fabric.as_deref())?))
        })
        .await
        .map_err(store_err)?;
    if !known {
        return Err(ApiError::not_found(format!("unknown product {product:?}")));
    }
    Ok(Json(lines))
}

async fn version_history(
    State(st): St,
    Path((product, host)): Path<(String, String)>,
) -> Result<Json<Vec<VersionChange>>, ApiError> {
    check_name("product", &product)?;
    check_name("host", &host)?;
    let out = st
        .db
        .read(move |s| s.version_history(&product, &host))
        .await
        .map_err(store_err)?;
    Ok(Json(out))
}

async fn register_version(
    State(st): St,
    Path(product): Path<String>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<RegisterReply>), ApiError> {
    check_name("product", &product)?;
    check_name("version", &req.version)?;
    if let Some(v) = &req.variant {
        check_name("variant", v)?;
    }
    let torrent = hex::decode(req.torrent_hex.trim())
        .map_err(|e| ApiError::bad_request(format!("torrent_hex is not hex: {e}")))?;
    let manifest = hex::decode(req.manifest_hex.trim())
        .map_err(|e| ApiError::bad_request(format!("manifest_hex is not hex: {e}")))?;
    if manifest.is_empty() {
        return Err(ApiError::bad_request("empty manifest"));
    }
    // Derive what the torrent says instead of trusting the client's word for it.
    let meta = proto::metainfo::ValidMetainfo::from_bytes(&torrent)
        .map_err(|e| ApiError::bad_request(format!("invalid torrent: {e}")))?;
    check_manifest(
        &st,
        &manifest,
        &product,
        &req.version,
        req.variant.as_deref(),
        meta.info_hash(),
    )?;
    // Allow the info-hash on the tracker first: a version no host could fetch is not
    // registered (publish is idempotent, so retrying after fixing the tracker is fine).
    if let Some(admin) = &st.tracker_admin {
        admin
            .register(&[meta.info_hash().to_hex()])
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, crate::error_chain(&e)))?;
    }
    let nv = NewVersion {
        product: product.clone(),
        version: req.version.clone(),
        variant: req.variant.clone().unwrap_or_default(),
        info_hash: meta.info_hash().to_hex(),
        size: meta.lengths().total_len(),
        manifest,
        torrent,
    };
    let reply = RegisterReply {
        status: String::new(),
        product,
        version: req.version,
        variant: req.variant,
        info_hash: nv.info_hash.clone(),
        size: nv.size,
    };
    let created = st
        .db
        .write(move |s| s.register_version(&nv, now_millis()))
        .await
        .map_err(store_err)?;
    let (code, status) = if created {
        (StatusCode::CREATED, "registered")
    } else {
        (StatusCode::OK, "unchanged")
    };
    Ok((
        code,
        Json(RegisterReply {
            status: status.into(),
            ..reply
        }),
    ))
}

/// The manifest must describe what is registered (product, version, variant, the torrent's
/// info-hash); if the server was given publisher keys, it must also be signed by one. Hosts
/// check the signature again: this only catches mistakes early.
fn check_manifest(
    st: &AppState,
    bytes: &[u8],
    product: &str,
    version: &str,
    variant: Option<&str>,
    info_hash: proto::InfoHash,
) -> Result<(), ApiError> {
    use proto::manifest::{Manifest, SignedManifest};
    let bad = |m: String| ApiError::bad_request(format!("invalid manifest: {m}"));
    let m: Manifest = if st.trusted_keys.is_empty() {
        let env: SignedManifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        serde_json::from_str(&env.payload).map_err(|e| bad(e.to_string()))?
    } else {
        proto::manifest::verify(bytes, &st.trusted_keys)
            .map_err(|e| bad(e.to_string()))?
            .manifest()
            .clone()
    };
    if m.product != product || m.version != version || m.variant.as_deref() != variant {
        return Err(bad(format!(
            "it describes {} {}{} but {} {}{} is being registered",
            m.product,
            m.version,
            m.variant
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default(),
            product,
            version,
            variant.map(|v| format!(" ({v})")).unwrap_or_default(),
        )));
    }
    if m.info_hash != info_hash {
        return Err(bad(format!(
            "its info-hash {} is not the torrent's {}",
            m.info_hash, info_hash
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantQuery {
    variant: Option<String>,
}

async fn blob(
    st: Arc<AppState>,
    product: String,
    version: String,
    variant: Option<String>,
    which: Blob,
) -> Result<Response, ApiError> {
    check_name("product", &product)?;
    check_name("version", &version)?;
    if let Some(v) = &variant {
        check_name("variant", v)?;
    }
    let (p, v) = (product.clone(), version.clone());
    let bytes = st
        .db
        .read(move |s| s.version_blob(&p, &v, variant.as_deref(), which))
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown version {version:?} of product {product:?}"
            ))
        })?;
    let ctype = match which {
        Blob::Torrent => "application/x-bittorrent",
        Blob::Manifest => "application/json",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], bytes).into_response())
}

async fn get_torrent(
    State(st): St,
    Path((product, version)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<VariantQuery>,
) -> Result<Response, ApiError> {
    blob(st, product, version, q.variant, Blob::Torrent).await
}

async fn get_manifest(
    State(st): St,
    Path((product, version)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<VariantQuery>,
) -> Result<Response, ApiError> {
    blob(st, product, version, q.variant, Blob::Manifest).await
}

async fn publish_info(State(st): St) -> Json<crate::tracker_admin::PublishInfo> {
    Json(st.publish.clone())
}

async fn list_fabrics(State(st): St) -> Result<Json<Vec<String>>, ApiError> {
    st.dispatcher
        .fabrics()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, crate::error_chain(&e)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_deployments(
    State(st): St,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let limit = q.limit.unwrap_or(20).min(500);
    let out = st
        .db
        .read(move |s| -> Result<Vec<DeploymentView>, StoreError> {
            let mut out = Vec::new();
            for d in s.deployments(limit)? {
                let p = s.progress(&d.id)?;
                out.push(DeploymentView::new(&d, p.all, p.fabrics));
            }
            Ok(out)
        })
        .await
        .map_err(store_err)?;
    Ok(Json(out))
}

async fn create_deployment(
    State(st): St,
    ApiJson(req): ApiJson<DeployRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let id = submit::submit_deploy(
        &st.db,
        st.dispatcher.as_ref(),
        req,
        st.default_report_deadline_ms,
        now_millis(),
    )
    .await
    .map_err(submit_err)?;
    Ok(started(&st, id, "deployment").await)
}

async fn create_rollback(
    State(st): St,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let id = submit::submit_rollback(
        &st.db,
        st.dispatcher.as_ref(),
        req,
        st.default_report_deadline_ms,
        now_millis(),
    )
    .await
    .map_err(submit_err)?;
    Metrics::inc(&st.metrics.rollbacks_created, 1);
    Ok(started(&st, id, "rollback").await)
}

async fn create_service(
    State(st): St,
    ApiJson(req): ApiJson<submit::ServiceRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let id = submit::submit_service(
        &st.db,
        st.dispatcher.as_ref(),
        req,
        st.default_report_deadline_ms,
        now_millis(),
    )
    .await
    .map_err(submit_err)?;
    Ok(started(&st, id, "service command").await)
}

/// Counts a stored deployment (or rollback), hands it to the driver and answers 201 with
/// the contract's `{"status":"submitted","id":...}`.
async fn started(st: &AppState, id: String, what: &str) -> (StatusCode, Json<Submitted>) {
    Metrics::inc(&st.metrics.deployments_created, 1);
    tracing::info!(%id, what, "submitted");
    st.driver.load(id.clone()).await;
    let status = "submitted".into();
    (StatusCode::CREATED, Json(Submitted { status, id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FabricQuery {
    fabric: Option<String>,
}

async fn get_deployment(
    State(st): St,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FabricQuery>,
) -> Result<Json<DeploymentView>, ApiError> {
    check_name("deployment id", &id)?;
    let id2 = id.clone();
    let (d, p) = st
        .db
        .read(move |s| -> Result<_, StoreError> { Ok((s.deployment(&id2)?, s.progress(&id2)?)) })
        .await
        .map_err(store_err)?;
    let d = d.ok_or_else(|| ApiError::not_found(format!("no deployment {id}")))?;
    let progress = match &q.fabric {
        None => p.all,
        Some(f) => *p.fabrics.get(f).ok_or_else(|| {
            ApiError::not_found(format!("deployment {id} has no host in fabric {f:?}"))
        })?,
    };
    Ok(Json(DeploymentView::new(&d, progress, p.fabrics)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsQuery {
    state: Option<String>,
    fabric: Option<String>,
}

async fn get_hosts(
    State(st): St,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HostsQuery>,
) -> Result<Json<HostsView>, ApiError> {
    check_name("deployment id", &id)?;
    let filter = match q.state.as_deref() {
        None => HostFilter::All,
        Some(s) => HostFilter::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state filter {s:?} (success, failure, pending or all)"
            ))
        })?,
    };
    let id2 = id.clone();
    let fabric = q.fabric.clone();
    let (d, p, lines) = st
        .db
        .read(move |s| -> Result<_, StoreError> {
            Ok((
                s.deployment(&id2)?,
                s.progress(&id2)?,
                s.host_lines(&id2, filter, fabric.as_deref())?,
            ))
        })
        .await
        .map_err(store_err)?;
    if d.is_none() {
        return Err(ApiError::not_found(format!("no deployment {id}")));
    }
    if let Some(f) = &q.fabric
        && !p.fabrics.contains_key(f)
    {
        return Err(ApiError::not_found(format!(
            "deployment {id} has no host in fabric {f:?}"
        )));
    }
    Ok(Json(HostsView {
        hosts: lines.into_iter().map(HostView::from).collect(),
    }))
}

async fn promote(State(st): St, Path(id): Path<String>) -> Result<Json<Submitted>, ApiError> {
    check_name("deployment id", &id)?;
    match st.driver.promote(id.clone()).await {
        Ok(()) => Ok(Json(Submitted {
            status: "promoted".into(),
            id,
        })),
        Err(PromoteError::NotFound(id)) => Err(ApiError::not_found(format!("no deployment {id}"))),
        Err(e @ (PromoteError::Refused(_) | PromoteError::Finished { .. })) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ PromoteError::DriverGone) => Err(ApiError::internal(&e)),
    }
}

async fn post_events(
    State(st): St,
    Extension(who): Extension<Principal>,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<Json<IngestReply>, ApiError> {
    // An agent posts its own host's events for the deployment it was dispatched for; one
    // event outside that refuses the whole batch, so nothing of it is stored.
    if let Principal::Agent { host, deployment } = &who
        && let Some(e) = batch
            .events
            .iter()
            .find(|e| &e.host != host || &e.deployment != deployment)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the agent credential of host {host} for deployment {deployment} may not post events of host {} for deployment {}",
                e.host, e.deployment
            ),
        ));
    }
    match st.ingest.ingest(batch.events).await {
        Ok(out) => Ok(Json(out.into())),
        Err(e @ IngestError::TooLarge { .. }) => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))
        }
        Err(IngestError::Store(e)) => Err(store_err(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    host: String,
    deployment: Option<String>,
}

async fn revoke(
    State(st): St,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeReply>, ApiError> {
    check_name("host", &req.host)?;
    if let Some(d) = &req.deployment {
        check_name("deployment id", d)?;
    }
    // Everything issued up to and including this millisecond is refused.
    let before = now_millis() + 1;
    let (host, dep) = (req.host.clone(), req.deployment.clone().unwrap_or_default());
    st.db
        .write(move |s| s.revoke(&host, &dep, before))
        .await
        .map_err(store_err)?;
    st.revocations
        .add(&req.host, req.deployment.as_deref().unwrap_or(""), before);
    tracing::info!(host = %req.host, deployment = req.deployment.as_deref().unwrap_or("*"), "agent credentials revoked");
    Ok(Json(RevokeReply {
        status: "revoked".into(),
        host: req.host,
        deployment: req.deployment,
        revoked_before_ms: before,
    }))
}
