//! The local dispatcher: every host of the inventory is simulated on this machine by one
//! host-agent process with its own data root (`<hosts-root>/<host>`), started per job.
//!
//! The agent command line is a contract with `instream-peer` ([`contract::AgentArgs`]). Agents
//! are independent processes: they outlive a control server killed mid-deployment and keep
//! reporting (with retries) to the same URL, which is how a restarted server finishes a
//! deployment. A job's processes are reaped by a background task; their stdout and stderr
//! go to `<root>/agent.log`.

use super::inventory::Inventory;
use super::{DispatchError, Dispatcher, HostInfo, Job, JobHost, TargetQuery};
use contract::args::Token;
use contract::{AgentArgs, ServiceAction};
use futures::future::BoxFuture;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What the dispatchers put on the agent's command line (`instream-peer deploy`, typed as
/// [`contract::AgentArgs`]): `--version` is the version the host must end up running (for a
/// rollback the old one, which the agent activates with no download when it is still on
/// disk); `--variant` only when the deployment names one; `--trusted-key` only when the
/// server was given a publisher public key (agents refuse to activate anything without
/// one); `--seed-for` only when the server sets it; `--fabric-share` when the job has
/// several hosts in the host's fabric ([`contract::fabric_shares`]); `--ca` when the server
/// is https (`serve --agent-ca`); `--report-kafka` and `--report-topic` when the server
/// consumes status events from Kafka (`serve --reporter kafka`), with the server's
/// `--kafka-option`s in the environment variable [`KAFKA_OPTIONS_ENV`].
/// The token is the host's own agent credential for the deployment, never the operator's,
/// and never a command-line word: a 0600 file in the host's data root (`--token-file`,
/// local) or the command's environment (`--token-env`, Salt and Ansible).
/// The environment variable of the agent's process that holds the server's Kafka options,
/// one `KEY=VALUE` a line.
pub const KAFKA_OPTIONS_ENV: &str = "INSTREAM_KAFKA_OPTIONS";

/// Where agents produce their status events when the server reads them from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaReport {
    /// Bootstrap brokers, `host:port,...`.
    pub brokers: String,
    /// Status topic.
    pub topic: String,
    /// librdkafka settings of the server's clients (`serve --kafka-option`), the producer's
    /// too.
    pub options: Vec<(String, String)>,
}

/// How to run the agent.
#[derive(Clone, Debug)]
pub struct AgentCommand {
    /// The agent executable (`instream-peer`, or a stand-in in tests).
    pub program: PathBuf,
    /// Arguments placed before the subcommand (e.g. a script for an interpreter).
    pub prefix_args: Vec<OsString>,
    /// Control server base URL the agent reports to and fetches manifests from.
    pub server: String,
    /// Parent of the per-host data roots.
    pub hosts_root: PathBuf,
    /// Publisher public key file handed to agents, if configured.
    pub trusted_key: Option<PathBuf>,
    /// CA file agents check an https server with (`--ca`).
    pub ca: Option<PathBuf>,
    /// Seconds agents keep seeding after a download, if the server sets it.
    pub seed_for: Option<u64>,
    /// Status events go to Kafka instead of `POST /api/v1/events`.
    pub report_kafka: Option<KafkaReport>,
}

/// Where an agent finds its credential.
#[derive(Clone, Copy, Debug)]
pub enum TokenArg<'a> {
    /// A file (`--token-file`).
    File(&'a Path),
    /// An environment variable of the agent's process (`--token-env`).
    Env(&'a str),
}

/// The file the local dispatcher writes a host's credential for `deployment` to, under
/// its data root.
pub fn credential_file(root: &Path, deployment: &str) -> PathBuf {
    root.join("credentials").join(deployment)
}

impl AgentCommand {
    /// The data root of one host.
    pub fn root_of(&self, host: &str) -> PathBuf {
        self.hosts_root.join(host)
    }

    /// The argument vector (after the program) for one host of a job: `prefix_args`, then
    /// the rendered [`AgentArgs`] (see [`AgentCommand::agent_args`]).
    pub fn args(&self, job: &Job, host: &str, fabric: &str, token: TokenArg<'_>) -> Vec<OsString> {
        let mut a = self.prefix_args.clone();
        a.extend(self.agent_args(job, host, fabric, token).argv());
        a
    }

    /// The agent's arguments for one host of a job.
    pub fn agent_args(
        &self,
        job: &Job,
        host: &str,
        fabric: &str,
        token: TokenArg<'_>,
    ) -> AgentArgs {
        let token = match token {
            TokenArg::File(f) => Token::File(f.to_path_buf()),
            TokenArg::Env(v) => Token::Env(v.to_string()),
        };
        let mut a = AgentArgs::new(
            &self.server,
            token,
            &job.deployment,
            host,
            fabric,
            self.root_of(host),
            &job.product,
            &job.version,
        );
        a.ca = self.ca.clone();
        a.variant = job.variant.clone();
        a.fabric_share = contract::fabric_shares(
            job.hosts
                .iter()
                .map(|h| (h.name.as_str(), h.fabric.as_str())),
        )
        .get(host)
        .copied()
        // A host of another fabric under the same name would not be this one.
        .filter(|_| {
            job.hosts
                .iter()
                .any(|h| h.name == host && h.fabric == fabric)
        });
        a.trusted_keys = self.trusted_key.iter().cloned().collect();
        if let Some(s) = self.seed_for {
            a.seed_for = s;
        }
        if let Some(k) = &self.report_kafka {
            a.report_kafka = Some(k.brokers.clone());
            a.report_topic = Some(k.topic.clone());
            if !k.options.is_empty() {
                a.report_kafka_options_env = Some(KAFKA_OPTIONS_ENV.to_string());
            }
        }
        a.splay = job.splay_secs.unwrap_or(0);
        a.service = job.service.as_deref().and_then(ServiceAction::parse);
        a
    }

    /// Environment of every agent process besides its credential: the Kafka options, if
    /// any (see [`KAFKA_OPTIONS_ENV`]).
    pub fn env(&self) -> Vec<(String, String)> {
        self.kafka_options()
            .map(|o| vec![(KAFKA_OPTIONS_ENV.to_string(), o)])
            .unwrap_or_default()
    }

    /// The value of [`KAFKA_OPTIONS_ENV`]: the server's Kafka options, one `KEY=VALUE` a
    /// line, if agents report to Kafka with any.
    pub fn kafka_options(&self) -> Option<String> {
        let k = self
            .report_kafka
            .as_ref()
            .filter(|k| !k.options.is_empty())?;
        let lines: Vec<String> = k.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(lines.join("\n"))
    }
}

pub struct LocalDispatcher {
    inventory: Inventory,
    variant_grain: String,
    agent: AgentCommand,
    jobs: AtomicU64,
}

impl LocalDispatcher {
    pub fn new(inventory: Inventory, variant_grain: String, agent: AgentCommand) -> Self {
        Self {
            inventory,
            variant_grain,
            agent,
            jobs: AtomicU64::new(0),
        }
    }

    pub fn load_inventory(path: &Path) -> Result<Inventory, DispatchError> {
        let text = std::fs::read_to_string(path).map_err(|e| DispatchError::Inventory {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Inventory::parse(&text, &path.display().to_string())
    }

    fn spawn_one(&self, job: &Job, h: &JobHost) -> Result<(), DispatchError> {
        let (host, fabric) = (h.name.as_str(), h.fabric.as_str());
        let spawn_err = |source| DispatchError::Spawn {
            host: host.to_string(),
            source,
        };
        let root = self.agent.root_of(host);
        std::fs::create_dir_all(&root).map_err(spawn_err)?;
        let token_file = credential_file(&root, &job.deployment);
        write_private(&token_file, &h.credential).map_err(spawn_err)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("agent.log"))
            .map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let mut cmd = tokio::process::Command::new(&self.agent.program);
        cmd.args(
            self.agent
                .args(job, host, fabric, TokenArg::File(&token_file)),
        )
        .envs(self.agent.env())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let (host, deployment) = (host.to_string(), job.deployment.clone());
        tokio::spawn(async move {
            match child.wait().await {
                Ok(st) if st.success() => tracing::debug!(%host, %deployment, "agent exited"),
                Ok(st) => tracing::warn!(%host, %deployment, %st, "agent failed"),
                Err(e) => tracing::warn!(%host, %deployment, error = %e, "wait for agent"),
            }
        });
        Ok(())
    }
}

/// Writes `contents` to `path`, readable by its owner only, in a directory only its owner
/// may enter (both made if missing; an existing file is replaced, not reopened, so a
/// looser mode or a link planted there is not followed).
/// Writes `contents` and a newline to `path` (0600, a fresh file; its directory made 0700):
/// files that carry credentials.
pub(super) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

impl Dispatcher for LocalDispatcher {
    fn name(&self) -> &'static str {
        "local"
    }

    fn fabrics(&self) -> BoxFuture<'_, Result<Vec<String>, DispatchError>> {
        Box::pin(async move { Ok(self.inventory.fabrics()) })
    }

    fn resolve<'a>(
        &'a self,
        query: &'a TargetQuery,
    ) -> BoxFuture<'a, Result<Vec<HostInfo>, DispatchError>> {
        Box::pin(async move { self.inventory.resolve(query, &self.variant_grain) })
    }

    fn start<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<String, DispatchError>> {
        Box::pin(async move {
            let n = self.jobs.fetch_add(1, Ordering::Relaxed);
            // A host whose agent cannot start fails the whole call: the driver turns that
            // into per-host failures. Hosts started before it keep running and reporting.
            for h in &job.hosts {
                self.spawn_one(job, h)?;
            }
            tracing::info!(deployment = %job.deployment, hosts = job.hosts.len(), version = %job.version, "local job started");
            Ok(format!("local-{}-{n}", job.deployment))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::JobHost;

    #[test]
    fn agent_arguments_are_the_jobs_and_parse_back_in_the_agent() {
        use clap::Parser;
        /// The agent's side of the contract: `instream-peer deploy` parses these.
        #[derive(Parser)]
        enum Peer {
            Deploy(AgentArgs),
        }
        let agent = AgentCommand {
            program: "instream-peer".into(),
            prefix_args: vec!["script.py".into()],
            server: "http://127.0.0.1:7070".into(),
            hosts_root: "/hosts".into(),
            trusted_key: Some("/k.pub".into()),
            ca: Some("/etc/ca.pem".into()),
            seed_for: Some(5),
            report_kafka: Some(KafkaReport {
                brokers: "127.0.0.1:9092".into(),
                topic: "st".into(),
                options: vec![
                    ("security.protocol".into(), "sasl_plaintext".into()),
                    ("sasl.password".into(), "s3cret".into()),
                ],
            }),
        };
        let host = |name: &str, fabric: &str| JobHost {
            name: name.into(),
            fabric: fabric.into(),
            credential: "agent:h1:dep-1:1:00".into(),
        };
        let job = Job {
            deployment: "dep-1".into(),
            product: "app".into(),
            version: "2".into(),
            variant: Some("12".into()),
            hosts: vec![host("h3", "f1"), host("h1", "f1"), host("x9", "f2")],
            splay_secs: Some(30),
            service: Some("restart".into()),
        };
        let token = TokenArg::File(Path::new("/t"));
        let argv = agent.args(&job, "h1", "f1", token);
        assert_eq!(argv[0], "script.py", "the prefix comes first");
        let Peer::Deploy(parsed) = Peer::try_parse_from(
            std::iter::once(OsString::from("instream-peer")).chain(argv[1..].iter().cloned()),
        )
        .expect("the agent parses what the dispatcher renders");
        assert_eq!(parsed, agent.agent_args(&job, "h1", "f1", token));
        // What the job says, typed on the agent's side.
        assert_eq!(
            (
                parsed.deployment.as_str(),
                parsed.host.as_str(),
                parsed.fabric.as_str()
            ),
            ("dep-1", "h1", "f1")
        );
        assert_eq!(parsed.root, Path::new("/hosts/h1"));
        assert_eq!(
            (parsed.product.as_str(), parsed.version.as_str()),
            ("app", "2")
        );
        assert_eq!(parsed.variant.as_deref(), Some("12"));
        assert_eq!(parsed.token_file.as_deref(), Some(Path::new("/t")));
        assert_eq!(parsed.ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(parsed.trusted_keys, vec![PathBuf::from("/k.pub")]);
        assert_eq!(parsed.seed_for, 5);
        assert_eq!(parsed.splay, 30);
        assert_eq!(parsed.service, Some(ServiceAction::Restart));
        assert_eq!(parsed.report_kafka.as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(parsed.report_topic.as_deref(), Some("st"));
        assert_eq!(
            parsed.report_kafka_options_env.as_deref(),
            Some(KAFKA_OPTIONS_ENV)
        );
        // h1 sorts before h3 in f1; x9 is alone in f2.
        let share = |h: &str, f: &str| {
            agent
                .agent_args(&job, h, f, token)
                .fabric_share
                .map(|s| s.to_string())
        };
        assert_eq!(share("h1", "f1").as_deref(), Some("0/2"));
        assert_eq!(share("h3", "f1").as_deref(), Some("1/2"));
        assert_eq!(share("x9", "f2"), None, "alone in its fabric");
        // The options (a password among them) travel in the environment, not in argv.
        assert!(!argv.iter().any(|a| a.to_string_lossy().contains("s3cret")));
        assert_eq!(
            agent.env(),
            vec![(
                KAFKA_OPTIONS_ENV.to_string(),
                "security.protocol=sasl_plaintext\nsasl.password=s3cret".to_string()
            )]
        );
        let plain = AgentCommand {
            report_kafka: None,
            ..agent.clone()
        };
        assert_eq!(plain.env(), Vec::new(), "no Kafka, no options");
    }
}
