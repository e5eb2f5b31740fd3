//! The I/O edge around the deployment machines inside `instream serve`: one tokio task owns
//! every active [`Machine`], feeds it stored events, operator commands and timer ticks, and
//! carries out its actions in order — persist the phase (write-ahead), submit dispatcher
//! jobs, record server-made failures, start canary rollbacks.
//!
//! Write-ahead is strict: when a phase cannot be stored, none of the actions after it (a
//! dispatch above all) is carried out; the deployment is dropped from memory and reloaded
//! from its last stored phase a little later ([`RETRY_AFTER_MS`]), which decides again.
//!
//! On start it reloads every active deployment from the store, so a server killed with
//! SIGKILL resumes exactly where its last commit left it. Events reach the driver only
//! after they are committed, so losing the driver's queue in a crash loses nothing: the
//! restored machine reads the same states from the store.

use super::machine::{Action, Command, CommandError, Machine};
use super::model::{HostEvent, HostState, PhaseRecord, SERVER_SEQ, StepKind, now_millis};
use super::submit;
use crate::api::credential::AgentKey;
use crate::dispatch::{Dispatcher, Job, JobHost};
use crate::metrics::Metrics;
use crate::store::{Db, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, error, info, info_span, warn};

/// How long after a failed phase write the deployment is reloaded from the store.
const RETRY_AFTER_MS: u64 = 2_000;

/// Whether the actions after one may still be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    On,
    /// The phase was not stored: stop, drop the rest, reload later.
    Halt,
}

enum Msg {
    Load(String),
    Events(Vec<HostEvent>),
    Promote {
        id: String,
        reply: oneshot::Sender<Result<(), PromoteError>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("no deployment {0}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] CommandError),
    #[error("deployment {id} is {state}")]
    Finished { id: String, state: &'static str },
    #[error("the deployment driver is gone")]
    DriverGone,
}

/// How the API and the ingest path talk to the driver.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Msg>,
    active: Arc<AtomicU64>,
}

impl DriverHandle {
    /// Asks the driver to load a freshly stored deployment.
    pub async fn load(&self, id: String) {
        let _ = self.tx.send(Msg::Load(id)).await;
    }

    /// Hands over events that are already committed to the store.
    pub async fn events(&self, events: Vec<HostEvent>) {
        let _ = self.tx.send(Msg::Events(events)).await;
    }

    pub async fn promote(&self, id: String) -> Result<(), PromoteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Promote { id, reply })
            .await
            .map_err(|_| PromoteError::DriverGone)?;
        rx.await.map_err(|_| PromoteError::DriverGone)?
    }

    /// Deployments the driver is working on.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
}

pub struct Driver {
    db: Db,
    dispatcher: Arc<dyn Dispatcher>,
    /// Issues each dispatched host its agent credential.
    agent_key: AgentKey,
    metrics: Arc<Metrics>,
    machines: HashMap<String, Machine>,
    /// Deployments to reload from the store at the given time (ms): their phase could not
    /// be saved.
    retry: BTreeMap<String, u64>,
    rx: mpsc::Receiver<Msg>,
    active: Arc<AtomicU64>,
}

/// Is there possibly work left for a deployment with this record? (Halted canaries still
/// owe a rollback until it is recorded; a restored machine settles the doubt.)
fn record_active(p: &PhaseRecord, steps: &[StepKind]) -> bool {
    if p.done {
        return false;
    }
    match p.halted {
        None => true,
        Some(_) => {
            steps.first() == Some(&StepKind::Canary) && p.step == Some(0) && p.rollback_id.is_none()
        }
    }
}

impl Driver {
    pub fn new(
        db: Db,
        dispatcher: Arc<dyn Dispatcher>,
        agent_key: AgentKey,
        metrics: Arc<Metrics>,
    ) -> (Self, DriverHandle) {
        // Bounded: a flood of events slows the ingest answers down instead of growing memory.
        let (tx, rx) = mpsc::channel(1024);
        let active = Arc::new(AtomicU64::new(0));
        (
            Self {
                db,
                dispatcher,
                agent_key,
                metrics,
                machines: HashMap::new(),
                retry: BTreeMap::new(),
                rx,
                active: active.clone(),
            },
            DriverHandle { tx, active },
        )
    }

    /// Reloads active deployments, then serves messages and timers until `shutdown`.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StoreError> {
        let active = self.db.read(|s| s.active_deployments()).await?;
        for d in active {
            info!(id = %d.id, "resuming deployment");
            self.load(d.id).await;
        }
        tokio::pin!(shutdown);
        loop {
            let next = self
                .machines
                .values()
                .filter_map(|m| m.poll_timeout())
                .chain(self.retry.values().copied())
                .min();
            let sleep = match next {
                Some(t) => {
                    let wait = t.saturating_sub(now_millis());
                    tokio::time::sleep(std::time::Duration::from_millis(wait))
                }
                None => tokio::time::sleep(std::time::Duration::from_secs(3600)),
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                msg = self.rx.recv() => match msg {
                    None => return Ok(()),
                    Some(m) => self.on_msg(m).await,
                },
                _ = sleep, if next.is_some() => self.on_timer().await,
            }
            self.active
                .store(self.machines.len() as u64, Ordering::Relaxed);
        }
    }

    async fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Load(id) => {
                engine::supervise::test_panic_point("deploy-driver");
                self.load(id).await
            }
            Msg::Events(events) => {
                let mut by_dep: BTreeMap<String, Vec<HostEvent>> = BTreeMap::new();
                for e in events {
                    by_dep.entry(e.deployment.clone()).or_default().push(e);
                }
                for (id, evs) in by_dep {
                    let Some(mut m) = self.machines.remove(&id) else {
                        continue; // finished: the store has the events, nothing to drive
                    };
                    let now = now_millis();
                    for e in &evs {
                        m.handle_event(now, e);
                    }
                    self.settle(m).await;
                }
            }
            Msg::Promote { id, reply } => {
                let res = match self.machines.remove(&id) {
                    Some(mut m) => {
                        let r = m.handle_command(now_millis(), Command::Promote);
                        self.settle(m).await;
                        r.map_err(PromoteError::from)
                    }
                    None => {
                        let id2 = id.clone();
                        match self.db.read(move |s| s.deployment(&id2)).await {
                            Ok(Some(d)) => Err(PromoteError::Finished {
                                id,
                                state: d.phase.state().as_str(),
                            }),
                            Ok(None) => Err(PromoteError::NotFound(id)),
                            Err(e) => {
                                error!(error = %e, "read deployment for promote");
                                Err(PromoteError::DriverGone)
                            }
                        }
                    }
                };
                let _ = reply.send(res);
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = now_millis();
        let reload: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in reload {
            self.retry.remove(&id);
            info!(%id, "reloading a deployment whose phase could not be saved");
            self.load(id).await;
        }
        let due: Vec<String> = self
            .machines
            .iter()
            .filter(|(_, m)| m.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(mut m) = self.machines.remove(&id) {
                m.handle_timeout(now);
                self.settle(m).await;
            }
        }
    }

    async fn load(&mut self, id: String) {
        if self.machines.contains_key(&id) {
            return;
        }
        let id2 = id.clone();
        let loaded = self
            .db
            .read(move |s| -> Result<_, StoreError> {
                Ok((s.deployment(&id2)?, s.host_records(&id2)?))
            })
            .await;
        let (d, hosts) = match loaded {
            Ok((Some(d), hosts)) => (d, hosts),
            Ok((None, _)) => return warn!(%id, "load of unknown deployment"),
            Err(e) => return error!(%id, error = %e, "load deployment"),
        };
        let m = Machine::restore(d.id, d.spec, d.steps, hosts, d.phase);
        self.settle(m).await;
    }

    /// Carries out a machine's pending actions in order, then keeps it if it has work left.
    async fn settle(&mut self, mut m: Machine) {
        let span = info_span!("deployment", id = %m.id());
        let mut to_load = Vec::new();
        let mut halted = false;
        async {
            while let Some(action) = m.poll_action() {
                if self.carry_out(&mut m, action, &mut to_load).await == Carry::Halt {
                    // Write-ahead: nothing after an unsaved phase happens.
                    while m.poll_action().is_some() {}
                    halted = true;
                    warn!("phase not saved: actions dropped; reloading from the store later");
                    return;
                }
            }
            if m.is_finished() {
                // Settle the stored flag (a restored halted canary with nothing to roll back).
                let (id, phase) = (m.id().to_string(), m.phase().clone());
                if let Err(e) = self
                    .db
                    .write(move |s| s.save_phase(&id, &phase, false, now_millis()))
                    .await
                {
                    error!(error = %e, "mark deployment inactive");
                }
                info!(state = m.state().as_str(), "deployment finished");
            }
        }
        .instrument(span)
        .await;
        if halted {
            self.retry
                .insert(m.id().to_string(), now_millis() + RETRY_AFTER_MS);
        } else if !m.is_finished() {
            self.machines.insert(m.id().to_string(), m);
        }
        for id in to_load {
            Box::pin(self.load(id)).await;
        }
    }

    async fn carry_out(
        &mut self,
        m: &mut Machine,
        action: Action,
        to_load: &mut Vec<String>,
    ) -> Carry {
        let now = now_millis();
        match action {
            Action::SavePhase(p) => {
                let active = record_active(&p, m.steps());
                let id = m.id().to_string();
                if let Err(e) = self
                    .db
                    .write(move |s| s.save_phase(&id, &p, active, now))
                    .await
                {
                    error!(error = %e, "save deployment phase");
                    return Carry::Halt;
                }
            }
            Action::RecordEvent(ev) => {
                Metrics::inc(&self.metrics.hosts_timed_out, 1);
                warn!(host = %ev.host, reason = ev.reason.as_deref().unwrap_or(""), "host failed by the server");
                if let Err(e) = self.db.write(move |s| s.ingest(&[ev], now)).await {
                    error!(error = %e, "record server-made host failure");
                }
            }
            Action::Dispatch { step, hosts } => {
                let spec = m.spec().clone();
                let mut by_version: BTreeMap<String, Vec<JobHost>> = BTreeMap::new();
                for t in hosts {
                    let credential = self.agent_key.issue(&t.host, m.id(), now_millis());
                    by_version.entry(t.version).or_default().push(JobHost {
                        name: t.host,
                        fabric: t.fabric,
                        credential,
                    });
                }
                for (version, hosts) in by_version {
                    let job = Job {
                        deployment: m.id().to_string(),
                        product: spec.product.clone(),
                        version,
                        variant: spec.variant.clone(),
                        hosts,
                        splay_secs: spec.splay_secs,
                        service: match &spec.kind {
                            super::model::DeploymentKind::Service { action } => {
                                Some(action.clone())
                            }
                            _ => None,
                        },
                    };
                    info!(step, hosts = job.hosts.len(), version = %job.version, "dispatching");
                    match self.dispatcher.start(&job).await {
                        Ok(job_id) => {
                            Metrics::inc(&self.metrics.dispatch_jobs, 1);
                            let (id, n) = (job.deployment.clone(), job.hosts.len());
                            if let Err(e) = self
                                .db
                                .write(move |s| s.record_job(&id, step, &job_id, n, now))
                                .await
                            {
                                error!(error = %e, "record dispatcher job");
                            }
                        }
                        Err(e) => {
                            Metrics::inc(&self.metrics.dispatch_errors, 1);
                            let reason = format!("dispatch failed: {}", crate::error_chain(&e));
                            error!(%reason, "dispatch");
                            let evs: Vec<HostEvent> = job
                                .hosts
                                .iter()
                                .map(|h| HostEvent {
                                    deployment: job.deployment.clone(),
                                    host: h.name.clone(),
                                    fabric: h.fabric.clone(),
                                    seq: SERVER_SEQ,
                                    state: HostState::Failure,
                                    bytes: 0,
                                    timestamp: now,
                                    reason: Some(reason.clone()),
                                })
                                .collect();
                            let stored = evs.clone();
                            match self.db.write(move |s| s.ingest(&stored, now)).await {
                                Ok(_) => {
                                    for e in &evs {
                                        m.handle_event(now, e);
                                    }
                                }
                                Err(e) => error!(error = %e, "record dispatch failures"),
                            }
                        }
                    }
                }
            }
            Action::Rollback { hosts } => {
                let spec = m.spec().clone();
                match submit::submit_canary_rollback(&self.db, &spec, m.id(), hosts, now).await {
                    Ok(rb) => {
                        Metrics::inc(&self.metrics.deployments_created, 1);
                        Metrics::inc(&self.metrics.rollbacks_created, 1);
                        info!(rollback = %rb, "canary failed: rolling canary hosts back");
                        if let Err(e) = m.handle_command(now, Command::RollbackStarted(rb.clone()))
                        {
                            error!(error = %e, "record rollback");
                        }
                        to_load.push(rb);
                    }
                    Err(e) => error!(error = %crate::error_chain(&e), "start canary rollback"),
                }
            }
        }
        Carry::On
    }
}
