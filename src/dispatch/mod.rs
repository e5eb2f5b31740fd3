//! Remote execution: how the control server starts the host agent on a set of hosts.
//!
//! The trait is shaped for back ends that are asynchronous and unreliable (Salt's
//! `local_async`, Ansible, ...): `start` only *submits* a job and returns its id; whether and
//! when hosts run it is learnt from their status events, which may never come, come twice,
//! or come late. The deployment machine deals with all of that (report deadlines, the
//! maximum rule); a dispatcher never waits for hosts.
//!
//! Target resolution (fabrics, host glob, variant grain) belongs to the dispatcher too,
//! because only it knows the fleet: the local one reads an inventory file, Salt asks its
//! master for grains.

pub mod ansible;
pub mod inventory;
pub mod local;
pub mod salt;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A host as the dispatcher knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    pub name: String,
    pub fabric: String,
    #[serde(default)]
    pub grains: BTreeMap<String, String>,
}

/// Which hosts a deployment targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetQuery {
    /// Fabric names; `*` alone means every fabric.
    pub fabrics: Vec<String>,
    /// Glob over host names (`*`, `web-1*`), as Salt's `L@`/glob targets.
    pub hosts: String,
    /// Restricts to hosts whose variant grain equals this (Salt: `G@osmajorrelease:12`).
    pub variant: Option<String>,
}

/// One host of a job and the version it must end up running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobHost {
    pub name: String,
    pub fabric: String,
    /// This host's agent credential for the job's deployment (`api::credential`): the
    /// dispatcher hands it to this host's agent only, never on a command line.
    pub credential: String,
}

/// Start the agent for `deployment` on `hosts`, each to run `product` `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub deployment: String,
    pub product: String,
    pub version: String,
    pub variant: Option<String>,
    pub hosts: Vec<JobHost>,
    /// Spread the agents' starts over this many seconds (`deploy --splay`).
    pub splay_secs: Option<u64>,
    /// A service command (`instream service ACTION`) instead of a deployment: the agents
    /// run it on the version they run (`version` is what the server believes that is).
    pub service: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unknown fabric {fabric:?} (known: {known})")]
    UnknownFabric { fabric: String, known: String },
    #[error("host pattern {pattern:?} matches no host{}", describe_scope(.fabrics, .variant))]
    NoHosts {
        pattern: String,
        fabrics: Vec<String>,
        variant: Option<String>,
    },
    #[error("invalid host pattern {pattern:?}: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("inventory {path}: {detail}")]
    Inventory { path: String, detail: String },
    #[error("start agent for host {host}")]
    Spawn {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Salt(#[from] salt::SaltError),
}

fn describe_scope(fabrics: &[String], variant: &Option<String>) -> String {
    let mut s = String::new();
    if !fabrics.is_empty() {
        s.push_str(&format!(" in fabric {}", fabrics.join(",")));
    }
    if let Some(v) = variant {
        s.push_str(&format!(" with variant {v}"));
    }
    s
}

pub trait Dispatcher: Send + Sync + 'static {
    /// "local", "salt", ...
    fn name(&self) -> &'static str;

    /// Every fabric the dispatcher knows about.
    fn fabrics(&self) -> BoxFuture<'_, Result<Vec<String>, DispatchError>>;

    /// Resolves a deployment's target. An unknown fabric or an empty result is an error,
    /// so that a mistyped deploy changes nothing.
    fn resolve<'a>(
        &'a self,
        query: &'a TargetQuery,
    ) -> BoxFuture<'a, Result<Vec<HostInfo>, DispatchError>>;

    /// Submits a job and returns its id at once; it never waits for hosts to finish.
    fn start<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<String, DispatchError>>;
}
