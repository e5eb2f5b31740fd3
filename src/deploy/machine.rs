//! The deployment state machine, sans-IO: canary step, gate, promotion, fabric-by-fabric
//! rollout, halting, canary rollback and host deadlines. Time is an argument; the driver
//! (`deploy::driver`) reads the clock, persists what the machine asks and talks to the
//! dispatcher.
//!
//! Contract: feed `handle_event(now, ev)`, `handle_command(now, cmd)` or
//! `handle_timeout(now)`; after each call drain `poll_action()` until `None` and carry the
//! actions out *in order* (a [`Action::SavePhase`] is written before the dispatch that
//! follows it, so a crash never forgets a dispatched step); then arm a timer for
//! `poll_timeout()`.
//!
//! Invariants:
//! - a host's status is the maximum of its events (see `model`), so duplicate, late and
//!   reordered events converge to the same state;
//! - only the current step is ever gated, and a step is gated exactly once, when all its
//!   hosts are terminal (reported, or failed by a deadline);
//! - the phase only moves forward: steps in order, then done; or halted, which is final.
//!
//! Transitions (STATE.md-style):
//! ```text
//! new ──timeout(now)──▶ step 0 dispatched
//! step i complete, gate passes, i is canary, not promoted ──▶ awaiting promotion
//! awaiting promotion ──promote──▶ step i+1 dispatched
//! step i complete, gate passes ──▶ step i+1 dispatched | done (no more steps)
//! step i complete, gate fails ──▶ halted (+ rollback of canary hosts when i is canary)
//! report deadline after step start ──▶ silent hosts fail "no report within Ns"
//! gate timeout after step start ──▶ unfinished hosts fail "not finished within Ns"
//! ```

use super::canary;
use super::model::{
    DeploymentSpec, DeploymentState, HostEvent, HostState, HostStatus, Millis, PhaseRecord,
    SERVER_SEQ, StepKind, Target,
};
use std::collections::{HashMap, VecDeque};

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Persist the phase record. Carry it out before the actions that follow.
    SavePhase(PhaseRecord),
    /// Start these hosts (each on its `version`).
    Dispatch { step: usize, hosts: Vec<Target> },
    /// The machine failed a host itself (deadline passed); store this event. It is already
    /// applied to the machine.
    RecordEvent(HostEvent),
    /// The canary failed its gate: switch these hosts back, each to its `version` (which is
    /// the version it ran before this deployment). Answer with
    /// [`Command::RollbackStarted`] once the rollback deployment exists.
    Rollback { hosts: Vec<Target> },
}

/// An operator's (or the driver's) command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Continue past the canary gate (or pre-approve while the canary still runs).
    Promote,
    /// The rollback asked for by [`Action::Rollback`] exists under this id.
    RollbackStarted(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("deployment {id} has no canary step to promote")]
    NoCanary { id: String },
    #[error("deployment {id} is past its canary step (state {state})")]
    PastCanary { id: String, state: &'static str },
    #[error("deployment {id} is halted: {reason}")]
    Halted { id: String, reason: String },
    #[error("deployment {id} is already done")]
    Done { id: String },
}

/// One target host and what the machine knows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostRecord {
    pub target: Target,
    pub step: usize,
    pub status: HostStatus,
}

/// Per-step counters, kept incrementally so that an event costs O(1) even with 100,000
/// hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepCounts {
    pub total: u64,
    pub success: u64,
    pub failure: u64,
    /// Non-terminal hosts never heard from (candidates for the report deadline).
    pub silent: u64,
}

impl StepCounts {
    fn add(&mut self, st: &HostStatus, sign: i64) {
        let d = |v: &mut u64, yes: bool| {
            if yes {
                *v = v.wrapping_add_signed(sign);
            }
        };
        d(&mut self.success, st.state == HostState::Success);
        d(&mut self.failure, st.state == HostState::Failure);
        d(&mut self.silent, !st.state.is_terminal() && !st.heard());
    }

    pub fn complete(&self) -> bool {
        self.success + self.failure == self.total
    }
}

#[derive(Debug)]
pub struct Machine {
    id: String,
    spec: DeploymentSpec,
    steps: Vec<StepKind>,
    hosts: Vec<HostRecord>,
    index: HashMap<String, usize>,
    /// Host indices per step.
    members: Vec<Vec<usize>>,
    counts: Vec<StepCounts>,
    phase: PhaseRecord,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A fresh deployment: plans the rollout; nothing is dispatched until the first
    /// `handle_timeout` (`poll_timeout` says "now").
    pub fn new(id: String, spec: DeploymentSpec, targets: Vec<Target>, created_at: Millis) -> Self {
        let plan = canary::plan(
            &targets,
            &spec.fabrics,
            spec.canary,
            spec.parallel_fabrics,
            spec.batch.map(|b| b as usize),
        );
        let hosts = targets
            .into_iter()
            .zip(plan.step_of)
            .map(|(target, step)| HostRecord {
                target,
                step,
                status: HostStatus::pending(created_at),
            })
            .collect();
        Self::restore(id, spec, plan.steps, hosts, PhaseRecord::default())
    }

    /// Rebuilds a machine from what the store kept. A restored machine whose canary failed
    /// before its rollback was recorded asks for the rollback again.
    pub fn restore(
        id: String,
        spec: DeploymentSpec,
        steps: Vec<StepKind>,
        hosts: Vec<HostRecord>,
        phase: PhaseRecord,
    ) -> Self {
        let mut members = vec![Vec::new(); steps.len()];
        let mut counts = vec![StepCounts::default(); steps.len()];
        let mut index = HashMap::with_capacity(hosts.len());
        for (i, h) in hosts.iter().enumerate() {
            assert!(
                h.step < steps.len(),
                "host {} in step {} of {}",
                h.target.host,
                h.step,
                steps.len()
            );
            members[h.step].push(i);
            counts[h.step].total += 1;
            counts[h.step].add(&h.status, 1);
            index.insert(h.target.host.clone(), i);
        }
        let mut m = Self {
            id,
            spec,
            steps,
            hosts,
            index,
            members,
            counts,
            phase,
            actions: VecDeque::new(),
        };
        if m.phase.halted.is_some() && m.rollback_pending() {
            m.emit_rollback();
        }
        m
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn spec(&self) -> &DeploymentSpec {
        &self.spec
    }

    pub fn steps(&self) -> &[StepKind] {
        &self.steps
    }

    pub fn hosts(&self) -> &[HostRecord] {
        &self.hosts
    }

    pub fn phase(&self) -> &PhaseRecord {
        &self.phase
    }

    pub fn state(&self) -> DeploymentState {
        self.phase.state()
    }

    pub fn step_counts(&self, step: usize) -> Option<StepCounts> {
        self.counts.get(step).copied()
    }

    /// Is there nothing left for this machine to do (the driver may drop it)?
    pub fn is_finished(&self) -> bool {
        (self.phase.done || self.phase.halted.is_some()) && !self.rollback_pending()
    }

    /// Applies a host's report. Events of other deployments or unknown hosts are ignored
    /// (returns false); so are those that lose under the maximum rule.
    pub fn handle_event(&mut self, now: Millis, ev: &HostEvent) -> bool {
        if ev.deployment != self.id {
            return false;
        }
        let Some(&i) = self.index.get(&ev.host) else {
            return false;
        };
        let changed = self.apply(i, ev);
        if changed {
            self.check_step(now);
        }
        changed
    }

    pub fn handle_command(&mut self, now: Millis, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::RollbackStarted(rb) => {
                self.phase.rollback_id = Some(rb);
                self.save();
                Ok(())
            }
            Command::Promote => {
                if let Some(reason) = &self.phase.halted {
                    return Err(CommandError::Halted {
                        id: self.id.clone(),
                        reason: reason.clone(),
                    });
                }
                if self.phase.done {
                    return Err(CommandError::Done {
                        id: self.id.clone(),
                    });
                }
                if self.steps.first() != Some(&StepKind::Canary) {
                    return Err(CommandError::NoCanary {
                        id: self.id.clone(),
                    });
                }
                let in_canary = self.phase.step.is_none_or(|s| s == 0);
                if self.phase.awaiting_promotion {
                    self.phase.awaiting_promotion = false;
                    self.phase.promoted = true;
                    self.start_step(now, 1);
                    Ok(())
                } else if in_canary {
                    // Pre-approval: the gate still has to pass, but nobody waits after it.
                    self.phase.promoted = true;
                    self.save();
                    Ok(())
                } else {
                    Err(CommandError::PastCanary {
                        id: self.id.clone(),
                        state: self.state().as_str(),
                    })
                }
            }
        }
    }

    /// Starts the first step when due, applies the report deadline and the gate timeout.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.phase.done || self.phase.halted.is_some() || self.phase.awaiting_promotion {
            return;
        }
        let Some(step) = self.phase.step else {
            self.start_step(now, 0);
            return;
        };
        // Splayed agents may start up to the window's end: every deadline counts from there.
        let started = self.phase.step_started_at.saturating_add(self.splay_ms());
        let deadline = self.spec.report_deadline_ms;
        if deadline > 0 && now >= started.saturating_add(deadline) && self.counts[step].silent > 0 {
            let reason = format!("no report within {}", human_ms(deadline));
            self.fail_open_hosts(now, step, &reason, true);
        }
        let timeout = self.spec.gate.timeout_ms;
        if timeout > 0 && now >= started.saturating_add(timeout) && !self.counts[step].complete() {
            let reason = format!("not finished within {}", human_ms(timeout));
            self.fail_open_hosts(now, step, &reason, false);
        }
        self.check_step(now);
    }

    /// The next action to carry out; poll after every `handle_*` call until `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called; re-read after every `handle_*` call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.phase.done || self.phase.halted.is_some() || self.phase.awaiting_promotion {
            return None;
        }
        let Some(step) = self.phase.step else {
            return Some(0); // not started: start now
        };
        let c = self.counts[step];
        let started = self.phase.step_started_at.saturating_add(self.splay_ms());
        let mut t: Option<Millis> = None;
        if self.spec.report_deadline_ms > 0 && c.silent > 0 {
            t = Some(started.saturating_add(self.spec.report_deadline_ms));
        }
        if self.spec.gate.timeout_ms > 0 && !c.complete() {
            let g = started.saturating_add(self.spec.gate.timeout_ms);
            t = Some(t.map_or(g, |t| t.min(g)));
        }
        t
    }

    fn splay_ms(&self) -> Millis {
        self.spec.splay_secs.unwrap_or(0).saturating_mul(1000)
    }

    fn apply(&mut self, i: usize, ev: &HostEvent) -> bool {
        let h = &mut self.hosts[i];
        let step = h.step;
        let before = h.status.clone();
        let changed = h.status.apply(ev);
        let after = h.status.clone();
        self.counts[step].add(&before, -1);
        self.counts[step].add(&after, 1);
        changed
    }

    fn fail_open_hosts(&mut self, now: Millis, step: usize, reason: &str, only_silent: bool) {
        let members = std::mem::take(&mut self.members[step]);
        for &i in &members {
            let st = &self.hosts[i].status;
            if st.state.is_terminal() || (only_silent && st.heard()) {
                continue;
            }
            let ev = HostEvent {
                deployment: self.id.clone(),
                host: self.hosts[i].target.host.clone(),
                fabric: self.hosts[i].target.fabric.clone(),
                seq: SERVER_SEQ,
                state: HostState::Failure,
                bytes: 0,
                timestamp: now,
                reason: Some(reason.to_string()),
            };
            self.apply(i, &ev);
            self.actions.push_back(Action::RecordEvent(ev));
        }
        self.members[step] = members;
    }

    /// Gates the current step if it is complete, and moves on.
    fn check_step(&mut self, now: Millis) {
        if self.phase.done || self.phase.halted.is_some() || self.phase.awaiting_promotion {
            return;
        }
        let Some(step) = self.phase.step else { return };
        let c = self.counts[step];
        if !c.complete() {
            return;
        }
        if self.spec.gate.passes(c.total, c.success, c.failure) {
            let is_canary = self.steps[step] == StepKind::Canary;
            if is_canary && !self.spec.auto_promote && !self.phase.promoted {
                self.phase.awaiting_promotion = true;
                self.save();
            } else {
                self.start_step(now, step + 1);
            }
        } else {
            let g = &self.spec.gate;
            self.phase.halted = Some(format!(
                "{} gate failed: {} of {} hosts succeeded, {} failed (need {}% success, at most {} failures)",
                self.steps[step],
                c.success,
                c.total,
                c.failure,
                g.min_success_ratio * 100.0,
                g.max_failures
            ));
            self.phase.finished_at = Some(now);
            self.save();
            if self.steps[step] == StepKind::Canary {
                self.emit_rollback();
            }
        }
    }

    /// Starts step `step` (or finishes the deployment if there is none). Steps whose hosts
    /// are all terminal already are gated at once.
    fn start_step(&mut self, now: Millis, step: usize) {
        if step >= self.steps.len() {
            // `phase.step` keeps naming the last step run.
            self.phase.done = true;
            self.phase.finished_at = Some(now);
            self.save();
            return;
        }
        self.phase.step = Some(step);
        self.phase.step_started_at = now;
        self.phase.awaiting_promotion = false;
        self.save();
        let hosts = self.members[step]
            .iter()
            .map(|&i| self.hosts[i].target.clone())
            .collect();
        self.actions.push_back(Action::Dispatch { step, hosts });
        self.check_step(now);
    }

    fn canary_rollback_targets(&self) -> Vec<Target> {
        if self.steps.first() != Some(&StepKind::Canary) {
            return Vec::new();
        }
        self.members[0]
            .iter()
            .map(|&i| &self.hosts[i].target)
            .filter_map(|t| {
                let prev = t.previous.as_ref()?;
                (prev != &t.version).then(|| Target {
                    host: t.host.clone(),
                    fabric: t.fabric.clone(),
                    version: prev.clone(),
                    previous: Some(t.version.clone()),
                })
            })
            .collect()
    }

    fn rollback_pending(&self) -> bool {
        self.phase.halted.is_some()
            && self.phase.step == Some(0)
            && self.phase.rollback_id.is_none()
            && !self.canary_rollback_targets().is_empty()
    }

    fn emit_rollback(&mut self) {
        let hosts = self.canary_rollback_targets();
        if !hosts.is_empty() {
            self.actions.push_back(Action::Rollback { hosts });
        }
    }

    fn save(&mut self) {
        self.actions
            .push_back(Action::SavePhase(self.phase.clone()));
    }
}

/// "120s", "1.5s", "250ms": how deadlines read in failure reasons.
pub fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
