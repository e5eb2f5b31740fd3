//! Activating an installed version: `stop` of the old one, the `current` link switch,
//! `start` of the new one, `health` retried; any failure switches back and starts the old
//! one again. Each step is written to the product's activation journal ([`super::journal`])
//! before it starts, so an agent killed at any point is finished or rolled back by the next
//! run ([`Installer::activate`] finishes or undoes it first).

use std::io;
use std::path::Path;

use super::hooks::{HookOutcome, run_hook};
use super::journal::{self, Journal, JournalStep};
use super::{
    HookFailure, InstallError, Installer, ProductLock, Result, VersionRecord, check_name, io_err,
    sync_dir,
};

/// What a successful activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The version active before (None on a first install).
    pub previous: Option<String>,
    /// False when the version was already active (only `health` ran).
    pub switched: bool,
    /// Versions removed by keep-last-K afterwards.
    pub pruned: Vec<String>,
    /// An activation interrupted by a crash that this call finished or undid first.
    pub recovered: Option<Recovery>,
}

/// What was done about an activation that an earlier agent run left unfinished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The same version was asked for again: its activation was completed from `after`.
    Completed {
        /// The last step the interrupted run recorded.
        after: JournalStep,
    },
    /// Another version was asked for: the interrupted one was undone first (the old
    /// version switched back and started).
    RolledBack {
        /// The version whose activation was interrupted.
        target: String,
        /// The last step the interrupted run recorded.
        after: JournalStep,
    },
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recovery::Completed { after } => write!(
                f,
                "completed an activation interrupted after `{}`",
                after.as_str()
            ),
            Recovery::RolledBack { target, after } => write!(
                f,
                "rolled back the activation of {target} interrupted after `{}`",
                after.as_str()
            ),
        }
    }
}

/// Where a (possibly resumed) activation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumeAt {
    /// From the beginning: `stop` of the old version.
    Start,
    /// The old version is stopped: switch.
    Switch,
    /// Switched: `start` of the new version.
    StartNew,
    /// Started: `health`.
    Health,
}

impl Installer {
    /// Activates an installed version (see the module header for the order of hooks). An
    /// activation of this product left unfinished by a killed agent is completed first if
    /// it was for `version`, or undone first if it was for another version; the result says
    /// which in [`Activation::recovered`].
    pub fn activate(&self, product: &str, version: &str) -> Result<Activation> {
        check_name("product", product)?;
        check_name("version", version)?;
        let pdir = self.product_dir(product);
        let _lock = ProductLock::take(&pdir)?;
        let record = self
            .record(product, version)?
            .ok_or_else(|| InstallError::NotInstalled {
                product: product.to_string(),
                version: version.to_string(),
            })?;
        let mut recovered = None;
        let mut from = ResumeAt::Start;
        let mut previous = self.current(product)?;
        if let Some(j) = journal::load(&pdir)?.filter(|j| !j.step.is_final()) {
            if j.target == version && j.step != JournalStep::RollingBack {
                tracing::warn!(%product, %version, step = j.step.as_str(), "completing an interrupted activation");
                previous = j.previous.clone();
                from = match j.step {
                    JournalStep::Verified => ResumeAt::Start,
                    JournalStep::StoppedOld => ResumeAt::Switch,
                    JournalStep::Switched => ResumeAt::StartNew,
                    _ => ResumeAt::Health,
                };
                recovered = Some(Recovery::Completed { after: j.step });
            } else {
                tracing::warn!(%product, target = %j.target, step = j.step.as_str(), "undoing an interrupted activation");
                let after = j.step;
                let reason = j.reason.clone();
                let target = j.target.clone();
                self.undo(&pdir, j)?;
                if target == version {
                    // It was rolling back from this very version: that failure stands.
                    return Err(InstallError::Activation(HookFailure {
                        hook: "activation".into(),
                        version: version.to_string(),
                        detail: reason.unwrap_or_else(|| "rolled back after a restart".into()),
                    }));
                }
                previous = self.current(product)?;
                recovered = Some(Recovery::RolledBack { target, after });
            }
        }
        let old = previous;
        let env = ActivationEnv {
            product,
            target: version,
            previous: old.as_deref(),
        };
        let mut journal = Journal {
            target: version.to_string(),
            previous: old.clone(),
            step: JournalStep::Verified,
            reason: None,
            at_unix: super::unix_now(),
        };
        let step = |j: &mut Journal, s: JournalStep| -> Result<()> {
            j.step = s;
            j.at_unix = super::unix_now();
            journal::record(&pdir, j)
        };
        if from == ResumeAt::Start && old.as_deref() == Some(version) {
            self.health(&record, &env)?;
            return Ok(Activation {
                previous: old,
                switched: false,
                pruned: Vec::new(),
                recovered,
            });
        }
        let old_record = match &old {
            Some(v) if v != version => self.record(product, v)?,
            _ => None,
        };
        if from == ResumeAt::Start {
            step(&mut journal, JournalStep::Verified)?;
            if let Some(o) = &old_record
                && let HookOutcome::Failed(detail) = self.hook(o, "stop", &env)?
            {
                // The old version may be half stopped: bring it back, leave the link alone.
                let _ = self.hook(o, "start", &env)?;
                journal.reason = Some(detail.clone());
                step(&mut journal, JournalStep::RolledBack)?;
                return Err(InstallError::Activation(HookFailure {
                    hook: "stop".into(),
                    version: o.version.clone(),
                    detail,
                }));
            }
            step(&mut journal, JournalStep::StoppedOld)?;
        }
        if matches!(from, ResumeAt::Start | ResumeAt::Switch) {
            switch_link(&pdir, version)?;
            step(&mut journal, JournalStep::Switched)?;
        }
        let started = if from == ResumeAt::Health {
            HookOutcome::Ok
        } else {
            let outcome = self.hook(&record, "start", &env)?;
            if !matches!(outcome, HookOutcome::Failed(_)) {
                step(&mut journal, JournalStep::Started)?;
            }
            outcome
        };
        let result = match started {
            HookOutcome::Failed(detail) => Err(HookFailure {
                hook: "start".into(),
                version: version.to_string(),
                detail,
            }),
            _ => self.health(&record, &env).map_err(|e| match e {
                InstallError::Activation(f) => f,
                other => HookFailure {
                    hook: "health".into(),
                    version: version.to_string(),
                    detail: other.to_string(),
                },
            }),
        };
        if let Err(failure) = result {
            tracing::warn!(%product, %version, reason = %failure, "activation failed; switching back");
            journal.reason = Some(failure.to_string());
            step(&mut journal, JournalStep::RollingBack)?;
            self.undo(&pdir, journal)?;
            let mut state = self.load_state(product)?;
            state.touch(version);
            self.save_state(product, &state)?;
            return Err(InstallError::Activation(failure));
        }
        step(&mut journal, JournalStep::Healthy)?;
        let mut state = self.load_state(product)?;
        state.touch(version);
        let pruned = self.prune_locked(product, &mut state, version)?;
        self.save_state(product, &state)?;
        Ok(Activation {
            previous: old,
            switched: true,
            pruned,
            recovered,
        })
    }

    /// Undoes the unfinished activation `j` (the product lock held): the old version runs
    /// again under `current` (or there is no link, if there was none), then the journal
    /// says `rolled_back`.
    fn undo(&self, pdir: &Path, mut j: Journal) -> Result<()> {
        let product = pdir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let env = ActivationEnv {
            product: &product,
            target: &j.target,
            previous: j.previous.as_deref(),
        };
        let old_record = match &j.previous {
            Some(v) => self.record(&product, v)?,
            None => None,
        };
        let link_moved = !matches!(j.step, JournalStep::Verified | JournalStep::StoppedOld);
        if link_moved {
            if let Some(rec) = self.record(&product, &j.target)? {
                let _ = self.hook(&rec, "stop", &env);
            }
            match &old_record {
                Some(o) => switch_link(pdir, &o.version)?,
                None => remove_link(pdir)?,
            }
        }
        if let Some(o) = &old_record {
            let _ = self.hook(o, "start", &env);
        }
        j.step = JournalStep::RolledBack;
        j.at_unix = super::unix_now();
        journal::record(pdir, &j)
    }

    /// `health`, tried up to `health_attempts` times; the last failure is the error.
    fn health(&self, record: &VersionRecord, env: &ActivationEnv<'_>) -> Result<()> {
        let attempts = self.policy.health_attempts.max(1);
        let mut last = String::new();
        for i in 0..attempts {
            match self.hook(record, "health", env)? {
                HookOutcome::NotShipped | HookOutcome::Ok => return Ok(()),
                HookOutcome::Failed(d) => last = d,
            }
            if i + 1 < attempts {
                std::thread::sleep(self.policy.health_interval);
            }
        }
        Err(InstallError::Activation(HookFailure {
            hook: "health".into(),
            version: record.version.clone(),
            detail: last,
        }))
    }

    /// Runs one hook of an installed version, if its manifest lists it.
    fn hook(
        &self,
        record: &VersionRecord,
        hook: &str,
        env: &ActivationEnv<'_>,
    ) -> Result<HookOutcome> {
        if !record.hooks.iter().any(|h| h == hook) {
            return Ok(HookOutcome::NotShipped);
        }
        let dir = self.version_dir(&record.product, &record.version);
        let vars = [
            ("INSTREAM_PRODUCT", env.product),
            ("INSTREAM_VERSION", record.version.as_str()),
            ("INSTREAM_PREVIOUS_VERSION", env.previous.unwrap_or("")),
            ("INSTREAM_TARGET_VERSION", env.target),
            ("INSTREAM_HOST", self.identity.host.as_str()),
            ("INSTREAM_FABRIC", self.identity.fabric.as_str()),
        ];
        Ok(run_hook(&dir, hook, &vars, self.policy.timeout))
    }
}

struct ActivationEnv<'a> {
    product: &'a str,
    target: &'a str,
    previous: Option<&'a str>,
}

/// Replaces `<pdir>/current` with a link to `versions/<version>`: a new link is made under
/// a temporary name and renamed over the old one, so readers see the old or the new
/// target and never no link.
fn switch_link(pdir: &Path, version: &str) -> Result<()> {
    let tmp = pdir.join(format!(".current.{:016x}", rand::random::<u64>()));
    let target = Path::new("versions").join(version);
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("create link", &tmp))?;
    let link = pdir.join("current");
    if let Err(e) = std::fs::rename(&tmp, &link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("switch link", &link)(e));
    }
    sync_dir(pdir);
    Ok(())
}

fn remove_link(pdir: &Path) -> Result<()> {
    let link = pdir.join("current");
    match std::fs::remove_file(&link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove link", &link)(e)),
    }
}

/// [`switch_link`] for the crash-recovery tests, which build a crashed host by hand.
#[cfg(test)]
pub(super) fn switch_link_for_tests(pdir: &Path, version: &str) {
    switch_link(pdir, version).unwrap();
}
