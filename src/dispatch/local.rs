//! The local dispatcher: every host of the inventory is simulated on this machine by one
//! host-agent process with its own data root (`<hosts-root>/<host>`), started per job.
//!
//! The agent command line is a contract with `instream-peer` (see [`AGENT_USAGE`]). Agents
//! are independent processes: they outlive a control server killed mid-deployment and keep
//! reporting (with retries) to the same URL, which is how a restarted server finishes a
//! deployment. A job's processes are reaped by a background task; their stdout and stderr
//! go to `<root>/agent.log`.

use super::inventory::Inventory;
use super::{DispatchError, Dispatcher, HostInfo, Job, JobHost, TargetQuery};
use futures::future::BoxFuture;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The exact command line the local dispatcher runs per host (one process per host per job).
/// `--version` is the version the host must end up running: for a rollback that is the old
/// version, which the agent activates by switching its `current` link, with no download,
/// when it is still on disk. `--variant` is given only when the deployment names one;
/// `--trusted-key` only when the server was given a publisher public key (agents refuse to
/// activate anything without one); `--seed-for` only when the server sets it;
/// `--fabric-share` when the job has several hosts in the host's fabric: its rank among
/// them by name, so that together they bring each piece into the fabric about once;
/// `--ca` when the server is https (`serve --agent-ca`: the only root the agent trusts);
/// `--report-kafka` and `--report-topic` when the server consumes status events from Kafka
/// (`serve --reporter kafka`): agents then produce them there instead of posting them,
/// with the server's `--kafka-option`s in the environment variable [`KAFKA_OPTIONS_ENV`]
/// (`--report-kafka-options-env`; SASL passwords are no command-line words either).
/// The token is the host's own agent credential for the deployment, never the operator's:
/// the local dispatcher writes it to a 0600 file in the host's data root
/// (`--token-file`), the Salt dispatcher passes it in the command's environment
/// (`--token-env`); it is never a command-line word, which every local user could read in
/// `/proc`.
pub const AGENT_USAGE: &str = "instream-peer deploy --server URL \
(--token-file FILE | --token-env VAR) --deployment ID --host NAME --fabric FABRIC --root DIR --product PRODUCT --version VERSION \
[--ca FILE] [--variant NAME] [--trusted-key FILE] [--seed-for SECS] [--fabric-share RANK/OF] \
[--report-kafka BROKERS --report-topic TOPIC [--report-kafka-options-env VAR]] [--splay SECS] [--service ACTION]";

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

    /// The argument vector (after the program) for one host of a job, per [`AGENT_USAGE`].
    pub fn args(&self, job: &Job, host: &str, fabric: &str, token: TokenArg<'_>) -> Vec<OsString> {
        let mut a: Vec<OsString> = self.prefix_args.clone();
        let mut push = |k: &str, v: &dyn AsRef<std::ffi::OsStr>| {
            a.push(k.into());
            a.push(v.as_ref().to_owned());
        };
        push("--server", &self.server);
        if let Some(ca) = &self.ca {
            push("--ca", ca);
        }
        match token {
            TokenArg::File(f) => push("--token-file", &f),
            TokenArg::Env(v) => push("--token-env", &v),
        }
        push("--deployment", &job.deployment);
        push("--host", &host);
        push("--fabric", &fabric);
        push("--root", &self.root_of(host));
        push("--product", &job.product);
        push("--version", &job.version);
        if let Some(v) = &job.variant {
            push("--variant", v);
        }
        let mut same_fabric: Vec<&str> = job
            .hosts
            .iter()
            .filter(|h| h.fabric == fabric)
            .map(|h| h.name.as_str())
            .collect();
        same_fabric.sort_unstable();
        if let Some(rank) = same_fabric.iter().position(|h| *h == host)
            && same_fabric.len() > 1
        {
            push("--fabric-share", &format!("{rank}/{}", same_fabric.len()));
        }
        if let Some(k) = &self.trusted_key {
            push("--trusted-key", k);
        }
        if let Some(s) = self.seed_for {
            push("--seed-for", &s.to_string());
        }
        if let Some(k) = &self.report_kafka {
            push("--report-kafka", &k.brokers);
            push("--report-topic", &k.topic);
            if !k.options.is_empty() {
                push("--report-kafka-options-env", &KAFKA_OPTIONS_ENV);
            }
        }
        if let Some(s) = job.splay_secs.filter(|&s| s > 0) {
            push("--splay", &s.to_string());
        }
        if let Some(action) = &job.service {
            push("--service", action);
        }
        a.insert(self.prefix_args.len(), "deploy".into());
        a
    }

    /// Environment of every agent process besides its credential: the Kafka options, if
    /// any (see [`AGENT_USAGE`]).
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
    fn agent_command_line_matches_the_documented_usage() {
        let agent = AgentCommand {
            program: "instream-peer".into(),
            prefix_args: vec![],
            server: "http://127.0.0.1:7070".into(),
            hosts_root: "/hosts".into(),
            trusted_key: None,
            ca: Some("/etc/ca.pem".into()),
            seed_for: Some(5),
            report_kafka: None,
        };
        let job = Job {
            deployment: "dep-1".into(),
            product: "app".into(),
            version: "2".into(),
            variant: Some("12".into()),
            hosts: vec![JobHost {
                name: "h1".into(),
                fabric: "f1".into(),
                credential: "agent:h1:dep-1:1:00".into(),
            }],
            splay_secs: None,
            service: None,
        };
        let args: Vec<String> = agent
            .args(&job, "h1", "f1", TokenArg::File(Path::new("/t")))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "deploy --server http://127.0.0.1:7070 --ca /etc/ca.pem --token-file /t --deployment dep-1 \
--host h1 --fabric f1 --root /hosts/h1 --product app --version 2 --variant 12 --seed-for 5"
        );
        let mut three = job.clone();
        three.hosts = ["h3", "h1", "x9"]
            .iter()
            .map(|n| JobHost {
                name: (*n).into(),
                fabric: if *n == "x9" { "f2" } else { "f1" }.into(),
                credential: String::new(),
            })
            .collect();
        let share = |host: &str, fabric: &str| {
            let a: Vec<String> = agent
                .args(&three, host, fabric, TokenArg::File(Path::new("/t")))
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect();
            a.iter()
                .position(|x| x == "--fabric-share")
                .map(|i| a[i + 1].clone())
        };
        assert_eq!(share("h1", "f1").as_deref(), Some("0/2"));
        assert_eq!(share("h3", "f1").as_deref(), Some("1/2"));
        assert_eq!(share("x9", "f2"), None, "alone in its fabric");
        let kafka = AgentCommand {
            report_kafka: Some(KafkaReport {
                brokers: "127.0.0.1:9092".into(),
                topic: "st".into(),
                options: vec![
                    ("security.protocol".into(), "sasl_plaintext".into()),
                    ("sasl.password".into(), "s3cret".into()),
                ],
            }),
            ..agent.clone()
        };
        let with_kafka: Vec<String> = kafka
            .args(&job, "h1", "f1", TokenArg::File(Path::new("/t")))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(
            with_kafka
                .join(" ")
                .ends_with("--seed-for 5 --report-kafka 127.0.0.1:9092 --report-topic st --report-kafka-options-env INSTREAM_KAFKA_OPTIONS"),
            "{with_kafka:?}"
        );
        // The options (a password among them) travel in the environment, not in argv.
        assert!(!with_kafka.iter().any(|a| a.contains("s3cret")));
        assert_eq!(
            kafka.env(),
            vec![(
                KAFKA_OPTIONS_ENV.to_string(),
                "security.protocol=sasl_plaintext\nsasl.password=s3cret".to_string()
            )]
        );
        assert_eq!(agent.env(), Vec::new(), "no Kafka, no options");
        // Every flag used is in the documented usage.
        for a in args
            .iter()
            .chain(&with_kafka)
            .filter(|a| a.starts_with("--"))
        {
            assert!(AGENT_USAGE.contains(a.as_str()), "{a} not in AGENT_USAGE");
        }
    }
}
