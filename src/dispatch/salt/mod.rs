//! The Salt dispatcher: hosts are Salt minions, reached through salt-api (rest_cherrypy).
//!
//! - Target resolution asks the master for two grains of every minion (`grains.item` of
//!   the fabric grain, default `fabric`, and the variant grain, default `osmajorrelease`)
//!   and applies the local dispatcher's rules to the answer (the same [`Inventory::resolve`]:
//!   fabric filter, glob over minion ids, variant grain), so `-H` and `--variant` mean the
//!   same under both dispatchers. Minions that do not answer within `--salt-timeout` are
//!   not part of the fleet for that deployment.
//! - A job is ONE `local_async` call of `cmd.run` with a compound target
//!   (`L@host-1,host-2 and G@osmajorrelease:12`); its jid is the job id. The agent command
//!   differs per host (`--host`, `--fabric`, `--root`, `--fabric-share`), and rather than
//!   one call per host (with Salt's broadcast publish, N calls cost N publishes to every
//!   minion) the command is a Jinja template rendered on each minion (`template=jinja`):
//!   `--host` and the root come from `grains.id`, fabric and share from a small table keyed
//!   by minion id written into the template (about 30 bytes per host). The fabric is the
//!   one resolution found (the job is authoritative, not the grain at run time).
//! - `start` only submits: `cmd.run` runs the agent in the minion's job process, so the
//!   agent's output and exit code land in Salt's job cache under the jid
//!   (`salt-run jobs.lookup_jid JID`), and status comes back through the agent's reports.
//!
//! Paths in the command (`--agent`, `--hosts-root`, `--trusted-key`) are paths on the
//! minions. Each host's agent credential travels in the command's environment
//! (`cmd.run`'s `env`, one variable per host, picked by `--token-env`), never in the
//! command line.

pub mod api;
pub mod lowstate;

pub use api::{Credentials, SaltApi, SaltError};

use super::inventory::Inventory;
use super::local::{AgentCommand, TokenArg};
use super::{DispatchError, Dispatcher, HostInfo, Job, TargetQuery};
use futures::future::BoxFuture;
use std::time::Duration;

/// The grain that holds a minion's fabric unless configured otherwise.
pub const DEFAULT_FABRIC_GRAIN: &str = "fabric";

/// Bound on a `local_async` submission (salt-api answers once the master published).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct SaltSettings {
    /// salt-api base URL (`http://salt:8000`).
    pub url: String,
    pub credentials: Credentials,
    /// Grain naming a minion's fabric.
    pub fabric_grain: String,
    /// Grain `--variant` is compared with.
    pub variant_grain: String,
    /// How long the master waits for minions to answer a grains query.
    pub minion_timeout: Duration,
}

pub struct SaltDispatcher {
    api: SaltApi,
    settings: SaltSettings,
    agent: AgentCommand,
}

impl SaltDispatcher {
    pub fn new(settings: SaltSettings, agent: AgentCommand) -> Result<Self, SaltError> {
        let statics = [
            ("agent path", agent.program.to_string_lossy().into_owned()),
            ("server URL", agent.server.clone()),
            (
                "hosts root",
                agent.hosts_root.to_string_lossy().into_owned(),
            ),
            (
                "trusted key",
                agent
                    .trusted_key
                    .as_ref()
                    .map(|k| k.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ];
        let prefix = agent
            .prefix_args
            .iter()
            .map(|a| ("agent argument", a.to_string_lossy().into_owned()));
        for (what, s) in statics.into_iter().chain(prefix) {
            lowstate::check_static(what, &s).map_err(SaltError::Config)?;
        }
        for (what, g) in [
            ("fabric grain", &settings.fabric_grain),
            ("variant grain", &settings.variant_grain),
        ] {
            crate::deploy::model::validate_name(what, g).map_err(SaltError::Config)?;
        }
        Ok(Self {
            api: SaltApi::new(&settings.url, settings.credentials.clone())?,
            settings,
            agent,
        })
    }

    /// Logs in now, so that a wrong secret or an unreachable salt-api stops `serve` at once.
    pub async fn login(&self) -> Result<(), SaltError> {
        self.api.login().await
    }

    /// Every answering minion with a fabric grain, as an inventory.
    async fn fleet(&self) -> Result<Inventory, SaltError> {
        let s = &self.settings;
        let secs = s.minion_timeout.as_secs().max(1);
        let req = lowstate::grains_request(&s.fabric_grain, &s.variant_grain, secs);
        // The master waits `secs` for minions, then up to gather_job_timeout (10 s by
        // default) for stragglers it knows are busy.
        let bound = Duration::from_secs(secs + 30);
        let body = self.api.run(&req, bound).await?;
        let (hosts, skipped) = lowstate::parse_grains(&body, &s.fabric_grain, &s.variant_grain)
            .map_err(|d| self.api.bad(d))?;
        for (minion, why) in &skipped {
            tracing::debug!(%minion, why, "minion left out of the fleet");
        }
        tracing::debug!(minions = hosts.len(), skipped = skipped.len(), "salt fleet");
        Ok(Inventory { hosts })
    }
}

impl Dispatcher for SaltDispatcher {
    fn name(&self) -> &'static str {
        "salt"
    }

    fn fabrics(&self) -> BoxFuture<'_, Result<Vec<String>, DispatchError>> {
        Box::pin(async move { Ok(self.fleet().await?.fabrics()) })
    }

    fn resolve<'a>(
        &'a self,
        query: &'a TargetQuery,
    ) -> BoxFuture<'a, Result<Vec<HostInfo>, DispatchError>> {
        Box::pin(async move {
            self.fleet()
                .await?
                .resolve(query, &self.settings.variant_grain)
        })
    }

    fn start<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<String, DispatchError>> {
        Box::pin(async move {
            let variant = job
                .variant
                .as_deref()
                .map(|v| (self.settings.variant_grain.as_str(), v));
            let target = lowstate::compound_target(&job.hosts, variant);
            // Salt's splay executor delays the whole command; the agent must not again.
            let unsplayed = Job {
                splay_secs: None,
                ..job.clone()
            };
            let argv = self.agent.args(
                &unsplayed,
                lowstate::HOST_EXPR,
                lowstate::FABRIC_EXPR,
                TokenArg::Env(lowstate::TOKEN_ENV_EXPR),
            );
            let program = self.agent.program.to_string_lossy();
            let command = lowstate::command_template(&program, &argv, job);
            let mut env = lowstate::credential_env(job);
            env.extend(self.agent.env());
            let req = lowstate::start_request(&target, &command, &env, job.splay_secs);
            let body = self.api.run(&req, SUBMIT_TIMEOUT).await?;
            let Some((jid, minions)) = lowstate::parse_start(&body).map_err(|d| self.api.bad(d))?
            else {
                return Err(SaltError::NoMinions { target }.into());
            };
            // Hosts the master did not send the job to never report; the report deadline
            // fails them. Say which, since Salt will not.
            let missing: Vec<&str> = job
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .filter(|h| !minions.iter().any(|m| m == h))
                .collect();
            if !missing.is_empty() {
                tracing::warn!(%jid, missing = %missing.join(","), "salt did not send the job to every host");
            }
            tracing::info!(deployment = %job.deployment, %jid, hosts = job.hosts.len(), version = %job.version, "salt job submitted");
            Ok(jid)
        })
    }
}
