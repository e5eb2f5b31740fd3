//! Turning an operator's request into a stored deployment: validate names, look the version
//! up, resolve the target through the dispatcher, note what each host runs now (for canary
//! rollback), plan the steps, and store it all in one transaction. Nothing is written unless
//! every check passed, so a mistyped deploy changes nothing.
//!
//! The driver is told to load a stored deployment by the caller; storing first means a
//! crash right after the answer still leaves the deployment to resume.

use super::canary;
use super::model::{Canary, DeploymentKind, DeploymentSpec, Gate, Millis, Target, validate_name};
use crate::dispatch::{DispatchError, Dispatcher, TargetQuery};
use crate::store::{Db, StoreError};
use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/deployments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub product: String,
    pub version: String,
    /// Fabrics in rollout order; `["*"]` for every fabric.
    pub fabrics: Vec<String>,
    /// Host glob.
    pub hosts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `N` or `P%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    #[serde(default)]
    pub auto_promote: bool,
    #[serde(default)]
    pub parallel_fabrics: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_deadline_ms: Option<u64>,
    /// Seconds over which each step's agents start (`--splay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splay_secs: Option<u64>,
    /// Most hosts of a step started at once (`--batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Body of `POST /api/v1/services`: a service command on the hosts that run the product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub product: String,
    /// `start`, `stop`, `restart`, `status` or `check`.
    pub action: String,
    /// Fabrics in order; `["*"]` for every fabric.
    pub fabrics: Vec<String>,
    /// Host glob.
    pub hosts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splay_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_deadline_ms: Option<u64>,
}

/// Longest `--splay` window: beyond a day it is a schedule, not a splay.
pub const MAX_SPLAY_SECS: u64 = 86_400;

/// Body of `POST /api/v1/rollbacks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub product: String,
    pub fabric: String,
    /// Roll every host of the fabric to this version; without it, each host goes back to
    /// the version it ran before its current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_deadline_ms: Option<u64>,
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// Names something that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Well-formed but cannot be done (422): unknown fabric, no matching host.
    #[error("{0}")]
    Unprocessable(String),
    #[error("store")]
    Store(#[from] StoreError),
    #[error("dispatcher")]
    Dispatch(#[source] DispatchError),
}

impl From<DispatchError> for SubmitError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::UnknownFabric { .. } | DispatchError::NoHosts { .. } => {
                SubmitError::Unprocessable(e.to_string())
            }
            DispatchError::BadPattern { .. } => SubmitError::Invalid(e.to_string()),
            other => SubmitError::Dispatch(other),
        }
    }
}

/// A new deployment id: prefix + 12 hex digits of randomness.
pub fn new_id(prefix: &str) -> String {
    let b: [u8; 6] = rand::random();
    format!("{prefix}-{}", hex::encode(b))
}

fn check(what: &str, s: &str) -> Result<(), SubmitError> {
    validate_name(what, s).map_err(SubmitError::Invalid)
}

fn check_fabric(s: &str) -> Result<(), SubmitError> {
    super::model::validate_fabric("fabric", s).map_err(SubmitError::Invalid)
}

/// What deploys and service commands share: the fabrics (`*` or names), the host glob,
/// and how hosts are started (`batch`, `splay`).
fn check_scope(
    fabrics: &[String],
    hosts: &str,
    batch: Option<u32>,
    splay_secs: Option<u64>,
) -> Result<(), SubmitError> {
    if fabrics.is_empty() {
        return Err(SubmitError::Invalid("no fabric given".into()));
    }
    for f in fabrics.iter().filter(|f| *f != "*") {
        check_fabric(f)?;
    }
    if hosts.trim().is_empty() {
        return Err(SubmitError::Invalid("empty host pattern".into()));
    }
    if batch == Some(0) {
        return Err(SubmitError::Invalid("batch must be at least 1 host".into()));
    }
    if let Some(s) = splay_secs.filter(|&s| s > MAX_SPLAY_SECS) {
        return Err(SubmitError::Invalid(format!(
            "splay {s} s is longer than {MAX_SPLAY_SECS} s"
        )));
    }
    Ok(())
}

/// Validates, resolves and stores a deployment; returns its id.
pub async fn submit_deploy(
    db: &Db,
    dispatcher: &dyn Dispatcher,
    req: DeployRequest,
    default_report_deadline_ms: u64,
    now: Millis,
) -> Result<String, SubmitError> {
    check("product", &req.product)?;
    check("version", &req.version)?;
    if let Some(v) = &req.variant {
        check("variant", v)?;
    }
    check_scope(&req.fabrics, &req.hosts, req.batch, req.splay_secs)?;
    let canary = req
        .canary
        .as_deref()
        .map(Canary::parse)
        .transpose()
        .map_err(SubmitError::Invalid)?;
    let gate = req.gate.clone().unwrap_or_default();
    if !(0.0..=1.0).contains(&gate.min_success_ratio) {
        return Err(SubmitError::Invalid(format!(
            "gate min_success_ratio {} is not within 0..=1",
            gate.min_success_ratio
        )));
    }

    let (product, version, variant) = (
        req.product.clone(),
        req.version.clone(),
        req.variant.clone(),
    );
    let (found, product_known) = db
        .read(move |s| -> Result<_, StoreError> {
            Ok((
                s.version(&product, &version, variant.as_deref())?,
                s.product_exists(&product)?,
            ))
        })
        .await?;
    if found.is_none() {
        return Err(SubmitError::NotFound(if !product_known {
            format!("unknown product {:?}", req.product)
        } else {
            match &req.variant {
                Some(v) => format!(
                    "unknown version {:?} of product {:?} (variant {v})",
                    req.version, req.product
                ),
                None => format!(
                    "unknown version {:?} of product {:?}",
                    req.version, req.product
                ),
            }
        }));
    }

    let query = TargetQuery {
        fabrics: req.fabrics.clone(),
        hosts: req.hosts.clone(),
        variant: req.variant.clone(),
    };
    let hosts = dispatcher.resolve(&query).await?;
    let fabrics = if req.fabrics.iter().any(|f| f == "*") {
        let mut order = Vec::new();
        for h in &hosts {
            if !order.contains(&h.fabric) {
                order.push(h.fabric.clone());
            }
        }
        order
    } else {
        req.fabrics.clone()
    };

    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let product = req.product.clone();
    let installed = db.read(move |s| s.installed(&product, &names)).await?;
    let targets: Vec<Target> = hosts
        .into_iter()
        .map(|h| Target {
            previous: installed.get(&h.name).map(|(cur, _)| cur.clone()),
            host: h.name,
            fabric: h.fabric,
            version: req.version.clone(),
        })
        .collect();

    let spec = DeploymentSpec {
        kind: DeploymentKind::Deploy,
        product: req.product,
        version: req.version,
        variant: req.variant,
        fabrics,
        hosts: req.hosts,
        canary,
        auto_promote: req.auto_promote,
        parallel_fabrics: req.parallel_fabrics,
        gate,
        report_deadline_ms: req.report_deadline_ms.unwrap_or(default_report_deadline_ms),
        splay_secs: req.splay_secs.filter(|&s| s > 0),
        batch: req.batch,
    };
    store_new(db, "d", spec, targets, now).await
}

/// Validates and stores a service command; returns its id. Its targets are the matching
/// hosts known to run the product, each on the version it runs. `start`, `stop` and
/// `restart` go fabric by fabric and halt on a failure, like a deploy (with `batch`, a
/// rolling restart); `status` and `check` ask every host at once and never halt.
pub async fn submit_service(
    db: &Db,
    dispatcher: &dyn Dispatcher,
    req: ServiceRequest,
    default_report_deadline_ms: u64,
    now: Millis,
) -> Result<String, SubmitError> {
    check("product", &req.product)?;
    if !super::model::SERVICE_ACTIONS.contains(&req.action.as_str()) {
        return Err(SubmitError::Invalid(format!(
            "unknown service action {:?} (one of {})",
            req.action,
            super::model::SERVICE_ACTIONS.join(", ")
        )));
    }
    check_scope(&req.fabrics, &req.hosts, req.batch, req.splay_secs)?;
    let product = req.product.clone();
    if !db.read(move |s| s.product_exists(&product)).await? {
        return Err(SubmitError::NotFound(format!(
            "unknown product {:?}",
            req.product
        )));
    }
    let query = TargetQuery {
        fabrics: req.fabrics.clone(),
        hosts: req.hosts.clone(),
        variant: None,
    };
    let hosts = dispatcher.resolve(&query).await?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let product = req.product.clone();
    let installed = db.read(move |s| s.installed(&product, &names)).await?;
    let mut fabrics: Vec<String> = Vec::new();
    let targets: Vec<Target> = hosts
        .into_iter()
        .filter_map(|h| {
            let (current, _) = installed.get(&h.name)?;
            if !fabrics.contains(&h.fabric) {
                fabrics.push(h.fabric.clone());
            }
            Some(Target {
                version: current.clone(),
                previous: None,
                host: h.name,
                fabric: h.fabric,
            })
        })
        .collect();
    if targets.is_empty() {
        return Err(SubmitError::Unprocessable(format!(
            "no host matching {:?} runs {} (as far as deployments have reported)",
            req.hosts, req.product
        )));
    }
    if !req.fabrics.iter().any(|f| f == "*") {
        // The operator's order for the fabrics named.
        fabrics.sort_by_key(|f| {
            req.fabrics
                .iter()
                .position(|x| x == f)
                .unwrap_or(usize::MAX)
        });
    }
    let ask = matches!(req.action.as_str(), "status" | "check");
    let gate = if ask {
        Gate {
            min_success_ratio: 0.0,
            max_failures: u32::MAX,
            ..Gate::default()
        }
    } else {
        Gate::default()
    };
    let spec = DeploymentSpec {
        kind: DeploymentKind::Service {
            action: req.action.clone(),
        },
        product: req.product,
        version: "current".into(),
        variant: None,
        fabrics,
        hosts: req.hosts,
        canary: None,
        auto_promote: true,
        parallel_fabrics: ask,
        gate,
        report_deadline_ms: req.report_deadline_ms.unwrap_or(default_report_deadline_ms),
        splay_secs: req.splay_secs.filter(|&s| s > 0),
        batch: req.batch,
    };
    store_new(db, "s", spec, targets, now).await
}

/// Validates and stores an operator's rollback of one fabric; returns its id.
pub async fn submit_rollback(
    db: &Db,
    dispatcher: &dyn Dispatcher,
    req: RollbackRequest,
    default_report_deadline_ms: u64,
    now: Millis,
) -> Result<String, SubmitError> {
    check("product", &req.product)?;
    check_fabric(&req.fabric)?;
    if let Some(v) = &req.to {
        check("version", v)?;
    }
    let known = dispatcher.fabrics().await?;
    if !known.contains(&req.fabric) {
        return Err(SubmitError::Unprocessable(format!(
            "unknown fabric {:?} (known: {})",
            req.fabric,
            known.join(",")
        )));
    }
    let (product, fabric, to) = (req.product.clone(), req.fabric.clone(), req.to.clone());
    let (product_known, to_known, installed) = db
        .read(move |s| -> Result<_, StoreError> {
            let to_known = match &to {
                Some(v) => s.versions(&product)?.iter().any(|x| &x.version == v),
                None => true,
            };
            Ok((
                s.product_exists(&product)?,
                to_known,
                s.installed_in_fabric(&product, &fabric)?,
            ))
        })
        .await?;
    if !product_known {
        return Err(SubmitError::NotFound(format!(
            "unknown product {:?}",
            req.product
        )));
    }
    if !to_known {
        return Err(SubmitError::NotFound(format!(
            "unknown version {:?} of product {:?}",
            req.to.as_deref().unwrap_or_default(),
            req.product
        )));
    }
    let targets: Vec<Target> = installed
        .into_iter()
        .filter_map(|(host, current, previous)| {
            let version = match &req.to {
                Some(v) => v.clone(),
                None => previous?,
            };
            (version != current).then(|| Target {
                host,
                fabric: req.fabric.clone(),
                version,
                previous: Some(current),
            })
        })
        .collect();
    if targets.is_empty() {
        return Err(SubmitError::Unprocessable(match &req.to {
            Some(v) => format!(
                "no host of fabric {} runs {} other than version {v}",
                req.fabric, req.product
            ),
            None => format!(
                "no host of fabric {} has a previous version of {} to roll back to",
                req.fabric, req.product
            ),
        }));
    }
    let spec = rollback_spec(
        &req.product,
        req.to.as_deref(),
        vec![req.fabric.clone()],
        None,
        req.report_deadline_ms.unwrap_or(default_report_deadline_ms),
    );
    store_new(db, "r", spec, targets, now).await
}

/// Stores the rollback of a failed canary (targets come from the machine).
pub async fn submit_canary_rollback(
    db: &Db,
    parent: &DeploymentSpec,
    parent_id: &str,
    targets: Vec<Target>,
    now: Millis,
) -> Result<String, SubmitError> {
    let mut fabrics: Vec<String> = Vec::new();
    for t in &targets {
        if !fabrics.contains(&t.fabric) {
            fabrics.push(t.fabric.clone());
        }
    }
    let spec = rollback_spec(
        &parent.product,
        None,
        fabrics,
        Some(parent_id.to_string()),
        parent.report_deadline_ms,
    );
    store_new(db, "r", spec, targets, now).await
}

fn rollback_spec(
    product: &str,
    to: Option<&str>,
    fabrics: Vec<String>,
    parent: Option<String>,
    report_deadline_ms: u64,
) -> DeploymentSpec {
    DeploymentSpec {
        kind: DeploymentKind::Rollback { parent },
        product: product.to_string(),
        version: to.unwrap_or("previous").to_string(),
        variant: None,
        fabrics,
        hosts: "*".into(),
        canary: None,
        auto_promote: true,
        // A rollback is urgent: every host at once.
        parallel_fabrics: true,
        gate: Gate::default(),
        report_deadline_ms,
        // A rollback is urgent: no splay, no batches.
        splay_secs: None,
        batch: None,
    }
}

async fn store_new(
    db: &Db,
    prefix: &str,
    spec: DeploymentSpec,
    targets: Vec<Target>,
    now: Millis,
) -> Result<String, SubmitError> {
    let plan = canary::plan(
        &targets,
        &spec.fabrics,
        spec.canary,
        spec.parallel_fabrics,
        spec.batch.map(|b| b as usize),
    );
    let hosts: Vec<(Target, usize)> = targets.into_iter().zip(plan.step_of).collect();
    let id = new_id(prefix);
    let id2 = id.clone();
    db.write(move |s| s.create_deployment(&id2, &spec, &plan.steps, &hosts, now))
        .await?;
    Ok(id)
}
