//! Service commands on the active version (`instream service start|stop|restart|status|
//! check`): the product's own hooks, run under the product lock so they never interleave
//! with an activation, with the activation's variables. Nothing on disk changes: a service
//! command never switches versions.
//!
//! `restart` runs the `restart` hook when the manifest ships one, else `stop` then `start`;
//! `check` is the `health` hook (the activation's service check). A hook the manifest does
//! not ship is a success with a note for `start`/`stop`/`restart` (nothing to do) and a
//! failure for `status`/`check` (nothing can answer).

use super::hooks::{HookOutcome, run_hook_output};
use super::{HookFailure, InstallError, Installer, ProductLock, Result, VersionRecord};

/// The service commands are the contract with the control server: one definition.
pub use contract::ServiceAction;

/// What a service command did on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResult {
    /// The active version the hooks belong to.
    pub version: String,
    /// The last hook's last output line, or a note ("no stop hook: nothing to stop").
    pub line: Option<String>,
}

impl Installer {
    /// Runs `action` on the active version of `product`.
    pub fn service(&self, product: &str, action: ServiceAction) -> Result<ServiceResult> {
        let pdir = self.product_dir(product);
        let _lock = ProductLock::take(&pdir)?;
        let Some(version) = self.current(product)? else {
            return Err(InstallError::NoActiveVersion {
                product: product.to_string(),
            });
        };
        let record = self
            .record(product, &version)?
            .ok_or_else(|| InstallError::NotInstalled {
                product: product.to_string(),
                version: version.clone(),
            })?;
        let hooks: &[&str] = match action {
            ServiceAction::Start => &["start"],
            ServiceAction::Stop => &["stop"],
            ServiceAction::Restart if record.hooks.iter().any(|h| h == "restart") => &["restart"],
            ServiceAction::Restart => &["stop", "start"],
            ServiceAction::Status => &["status"],
            ServiceAction::Check => &["health"],
        };
        let mut line = None;
        for hook in hooks {
            if !record.hooks.iter().any(|h| h == hook) {
                if matches!(action, ServiceAction::Status | ServiceAction::Check) {
                    return Err(InstallError::Activation(HookFailure {
                        hook: (*hook).to_string(),
                        version: version.clone(),
                        detail: format!("version {version} ships no {hook} hook"),
                    }));
                }
                line = Some(format!("no {hook} hook shipped: nothing to {hook}"));
                continue;
            }
            let (outcome, output) = self.service_hook(&record, hook);
            match outcome {
                HookOutcome::Ok | HookOutcome::NotShipped => line = output,
                HookOutcome::Failed(detail) => {
                    return Err(InstallError::Activation(HookFailure {
                        hook: (*hook).to_string(),
                        version: version.clone(),
                        detail,
                    }));
                }
            }
        }
        Ok(ServiceResult { version, line })
    }

    fn service_hook(&self, record: &VersionRecord, hook: &str) -> (HookOutcome, Option<String>) {
        let dir = self.version_dir(&record.product, &record.version);
        let vars = [
            ("INSTREAM_PRODUCT", record.product.as_str()),
            ("INSTREAM_VERSION", record.version.as_str()),
            ("INSTREAM_PREVIOUS_VERSION", ""),
            ("INSTREAM_TARGET_VERSION", record.version.as_str()),
            ("INSTREAM_HOST", self.identity.host.as_str()),
            ("INSTREAM_FABRIC", self.identity.fabric.as_str()),
        ];
        run_hook_output(&dir, hook, &vars, self.policy.timeout)
    }
}
