//! The Ansible dispatcher: hosts are the hosts of an Ansible inventory, reached by
//! ansible-core (`ansible-playbook`, `ansible-inventory`) on the control server's machine.
//!
//! - The fleet is `ansible-inventory -i INV --list`, asked at every resolution (the
//!   inventory may be dynamic): one group per fabric, scalar host variables as grains
//!   ([`inventory`]), then the local dispatcher's rules ([`Inventory::resolve`]), so `-H`
//!   and `--variant` mean the same under every dispatcher.
//! - A job is one `ansible-playbook` run of a fixed playbook ([`playbook`]) limited to the
//!   job's hosts, whose one task launches the agent with `async`/`poll: 0`: Ansible only
//!   starts it and returns each host's async job id. The step's job id is the first host's
//!   (all of them are logged); hosts Ansible could not start are logged with its message,
//!   never report, and are failed by the report deadline.
//! - Each host's credential goes to its agent through the task's `environment` (from an
//!   extra-vars file, 0600, removed after the run), never through a command line.

pub mod inventory;
pub mod playbook;

use super::inventory::Inventory;
use super::local::{AgentCommand, TokenArg};
use super::{DispatchError, Dispatcher, HostInfo, Job, TargetQuery};
use futures::future::BoxFuture;
use playbook::{Launch, PlayHost};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The host variable that names a host's fabric when its groups do not.
pub const DEFAULT_FABRIC_VAR: &str = "fabric";

#[derive(Clone, Debug)]
pub struct AnsibleSettings {
    /// The inventory (`-i`): a file, a directory or an inventory script.
    pub inventory: PathBuf,
    /// Where `ansible-playbook` and `ansible-inventory` are; `None`: on `PATH`.
    pub bin_dir: Option<PathBuf>,
    pub fabric_var: String,
    pub variant_grain: String,
    /// Hosts Ansible works on at once (`--forks`).
    pub forks: u32,
    /// Bound on one `ansible-inventory` or `ansible-playbook` run.
    pub timeout: Duration,
    /// The agents' async time limit: Ansible kills an agent still running after it.
    pub async_secs: u64,
}

pub struct AnsibleDispatcher {
    settings: AnsibleSettings,
    agent: AgentCommand,
}

#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    #[error("run {program} (install ansible-core, or pass --ansible-bin-dir)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {secs} s")]
    Timeout { program: String, secs: u64 },
    #[error("{program} failed ({status}): {detail}")]
    Failed {
        program: String,
        status: String,
        detail: String,
    },
    #[error("ansible-inventory -i {inventory}: {detail}")]
    Listing { inventory: String, detail: String },
    #[error("ansible job for {hosts} hosts started none: {detail}")]
    NoneStarted { hosts: usize, detail: String },
    #[error("ansible job files: {0}")]
    Files(std::io::Error),
    #[error("agent argument is not UTF-8: {0:?}")]
    NotUtf8(std::ffi::OsString),
}

impl From<AnsibleError> for DispatchError {
    fn from(e: AnsibleError) -> Self {
        DispatchError::Backend(crate::error_chain(&e))
    }
}

impl AnsibleDispatcher {
    pub fn new(settings: AnsibleSettings, agent: AgentCommand) -> Self {
        Self { settings, agent }
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.settings.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    /// Runs one ansible-core program to its end, bounded; stdout on exit statuses `ok`.
    async fn run(
        &self,
        name: &str,
        args: &[std::ffi::OsString],
        ok: &[i32],
        env: &[(&str, &str)],
    ) -> Result<String, AnsibleError> {
        let program = self.program(name);
        let shown = program.display().to_string();
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            // Plain, parseable output; no prompts, no cows.
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_NOCOWS", "1")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCALHOST_WARNING", "False")
            .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|source| AnsibleError::Spawn {
            program: shown.clone(),
            source,
        })?;
        let secs = self.settings.timeout.as_secs();
        let out = tokio::time::timeout(self.settings.timeout, child.wait_with_output())
            .await
            .map_err(|_| AnsibleError::Timeout {
                program: shown.clone(),
                secs,
            })?
            .map_err(|source| AnsibleError::Spawn {
                program: shown.clone(),
                source,
            })?;
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if ok.contains(&code) {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Ansible's own error line, not its warnings.
        let detail = stderr
            .lines()
            .find(|l| l.contains("ERROR"))
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no output")
            .trim()
            .to_string();
        Err(AnsibleError::Failed {
            program: shown,
            status: out.status.to_string(),
            detail,
        })
    }

    async fn fleet(&self) -> Result<Inventory, AnsibleError> {
        let inv = self.settings.inventory.display().to_string();
        let args = [
            "-i".into(),
            self.settings.inventory.clone().into_os_string(),
            "--list".into(),
        ];
        let json = self.run("ansible-inventory", &args, &[0], &[]).await?;
        let (fleet, skipped) =
            inventory::parse_list(&json, &self.settings.fabric_var).map_err(|detail| {
                AnsibleError::Listing {
                    inventory: inv,
                    detail,
                }
            })?;
        for (host, why) in &skipped {
            tracing::warn!(%host, why, "ansible host left out of the fleet");
        }
        tracing::debug!(
            hosts = fleet.hosts.len(),
            skipped = skipped.len(),
            "ansible fleet"
        );
        Ok(fleet)
    }

    async fn launch(&self, job: &Job) -> Result<String, AnsibleError> {
        let mut hosts = Vec::with_capacity(job.hosts.len());
        for h in &job.hosts {
            let argv = std::iter::once(self.agent.program.clone().into_os_string())
                .chain(
                    self.agent
                        .args(job, &h.name, &h.fabric, TokenArg::Env(playbook::TOKEN_ENV)),
                )
                .map(|a| a.into_string().map_err(AnsibleError::NotUtf8))
                .collect::<Result<Vec<String>, _>>()?;
            hosts.push(PlayHost {
                name: &h.name,
                argv,
                token: &h.credential,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("instream-ansible-")
            .tempdir()
            .map_err(AnsibleError::Files)?;
        let book = dir.path().join("agent.yml");
        let vars = dir.path().join("vars.json");
        let limit = dir.path().join("hosts");
        std::fs::write(&book, playbook::PLAYBOOK).map_err(AnsibleError::Files)?;
        std::fs::write(&limit, playbook::limit_file(&hosts)).map_err(AnsibleError::Files)?;
        // The temp dir is 0700 and the file 0600: it carries every host's credential.
        super::local::write_private(
            &vars,
            &playbook::extra_vars(
                &hosts,
                self.settings.async_secs,
                &self.agent.kafka_options().unwrap_or_default(),
            ),
        )
        .map_err(AnsibleError::Files)?;
        let mut at = std::ffi::OsString::from("@");
        at.push(&vars);
        let mut lim = std::ffi::OsString::from("@");
        lim.push(&limit);
        let args: Vec<std::ffi::OsString> = vec![
            "-i".into(),
            self.settings.inventory.clone().into_os_string(),
            "--limit".into(),
            lim,
            "-e".into(),
            at,
            "--forks".into(),
            self.settings.forks.to_string().into(),
            book.into_os_string(),
        ];
        // Exit 2: some host failed, 4: some unreachable; both are per-host outcomes.
        let out = self
            .run(
                "ansible-playbook",
                &args,
                &[0, 2, 4],
                &[("ANSIBLE_STDOUT_CALLBACK", "minimal")],
            )
            .await?;
        let launches = playbook::parse_launches(&out);
        let mut first = None;
        let mut failed = Vec::new();
        for (host, l) in &launches {
            match l {
                Launch::Started(jid) => {
                    tracing::debug!(deployment = %job.deployment, %host, %jid, "ansible started the agent");
                    first.get_or_insert_with(|| jid.clone());
                }
                Launch::Failed(why) => {
                    tracing::warn!(deployment = %job.deployment, %host, why, "ansible could not start the agent");
                    failed.push(format!("{host}: {why}"));
                }
            }
        }
        let silent: Vec<&str> = job
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .filter(|h| !launches.iter().any(|(n, _)| n == h))
            .collect();
        if !silent.is_empty() {
            tracing::warn!(deployment = %job.deployment, hosts = %silent.join(","), "ansible said nothing about these hosts");
        }
        let Some(jid) = first else {
            let detail = failed
                .first()
                .cloned()
                .unwrap_or_else(|| "no host answered".into());
            return Err(AnsibleError::NoneStarted {
                hosts: job.hosts.len(),
                detail,
            });
        };
        tracing::info!(deployment = %job.deployment, %jid, hosts = job.hosts.len(), failed = failed.len(), version = %job.version, "ansible job started");
        Ok(jid)
    }
}

impl Dispatcher for AnsibleDispatcher {
    fn name(&self) -> &'static str {
        "ansible"
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
        Box::pin(async move { Ok(self.launch(job).await?) })
    }
}
