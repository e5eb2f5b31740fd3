//! The agent's command line, `instream-peer deploy ...`, as one typed struct: the dispatchers
//! fill an [`AgentArgs`] and render it with [`AgentArgs::argv`]; the agent parses the same
//! words back into the same struct (clap derive). A round-trip test keeps the two in step.
//!
//! The token is never a command-line word (every local user can read `/proc/PID/cmdline`):
//! `--token-file` names a 0600 file, `--token-env` an environment variable of the agent's
//! process. Kafka producer settings travel the same way (`--report-kafka-options-env`).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use proto::mse::Policy;
use proto::picker::FabricShare;

use crate::ServiceAction;

/// The subcommand of `instream-peer` that runs the agent.
pub const SUBCOMMAND: &str = "deploy";
/// Default `--keep`: versions of a product kept on disk.
pub const DEFAULT_KEEP: usize = 3;
/// Default `--seed-for`, seconds.
pub const DEFAULT_SEED_FOR: u64 = 60;
/// Default `--listen`: any address, any free port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:0";
/// Default `--download-timeout`, seconds.
pub const DEFAULT_DOWNLOAD_TIMEOUT: u64 = 1800;
/// Default `--progress-every`, seconds.
pub const DEFAULT_PROGRESS_EVERY: f64 = 1.0;
/// Default `--hook-timeout`, seconds.
pub const DEFAULT_HOOK_TIMEOUT: u64 = 60;
/// Default `--health-attempts`.
pub const DEFAULT_HEALTH_ATTEMPTS: u32 = 5;
/// Default `--report-for`, seconds.
pub const DEFAULT_REPORT_FOR: u64 = 300;

/// Everything `instream-peer deploy` takes, but the engine's disk back end (a property of
/// the host, not of the deployment, added by the agent's program).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct AgentArgs {
    /// Control server URL (manifest, torrent, status events).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// CA file (PEM) an https --server's certificate must be signed by; the only root
    /// trusted (required for https).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// File holding this host's agent credential (mode 0600; refused if its group or
    /// others may read it).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "token_env",
        conflicts_with = "token_env"
    )]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding this host's agent credential (how the Salt and Ansible
    /// dispatchers hand it over: never on the command line).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Deployment id the events are for.
    #[arg(long, value_name = "ID")]
    pub deployment: String,
    /// This host's name.
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// This host's fabric (data center); checked by the one rule (`proto::fabric`) as it
    /// is parsed, kept a `String` because this struct is also rendered for the dispatchers.
    #[arg(long, value_name = "FABRIC", value_parser = fabric_name)]
    pub fabric: String,
    /// This host's share of the pieces to bring into its fabric, `RANK/OF` among the
    /// fabric's hosts in this job (the dispatcher knows them all: [`crate::fabric_shares`]);
    /// without it the host takes the rank an instream tracker answers (or, with none, ranks
    /// itself among the same-fabric peers it meets).
    #[arg(long, value_name = "RANK/OF")]
    pub fabric_share: Option<FabricShare>,
    /// This host's data root (versions, `current` links, downloads).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Product.
    #[arg(long)]
    pub product: String,
    /// Version to end up running (for a rollback: the old one, usually still on disk).
    #[arg(long)]
    pub version: String,
    /// Variant of the build.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Publisher public key file (hex); manifests not signed by it are refused (repeatable).
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
    /// Versions of the product kept on disk (rollbacks to them need no download).
    #[arg(long, default_value_t = DEFAULT_KEEP, value_name = "K")]
    pub keep: usize,
    /// Seconds to keep seeding after a successful download, for the hosts after us.
    #[arg(long, default_value_t = DEFAULT_SEED_FOR, value_name = "SECS")]
    pub seed_for: u64,
    /// Peer listener address. A specific IP is also the source of tracker announces and
    /// peer dials, so the tracker lists the address peers must dial.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address trackers should list this host under (behind NAT): sent as `ip=` (HTTP) and
    /// in the BEP 15 IP field (UDP), and never dialled by this host.
    #[arg(long, value_name = "ADDR")]
    pub announce_ip: Option<IpAddr>,
    /// Give up a download after this many seconds.
    #[arg(long, default_value_t = DEFAULT_DOWNLOAD_TIMEOUT, value_name = "SECS")]
    pub download_timeout: u64,
    /// Seconds between `downloading` progress events.
    #[arg(long, default_value_t = DEFAULT_PROGRESS_EVERY, value_name = "SECS")]
    pub progress_every: f64,
    /// Seconds a hook may run before it is killed.
    #[arg(long, default_value_t = DEFAULT_HOOK_TIMEOUT, value_name = "SECS")]
    pub hook_timeout: u64,
    /// Times the health hook is tried.
    #[arg(long, default_value_t = DEFAULT_HEALTH_ATTEMPTS, value_name = "N")]
    pub health_attempts: u32,
    /// Seconds undelivered status events are retried at the end (the control server may
    /// be restarting).
    #[arg(long, default_value_t = DEFAULT_REPORT_FOR, value_name = "SECS")]
    pub report_for: u64,
    /// Send status events to these Kafka brokers (`host:port,...`) instead of posting them
    /// to the control server (which then consumes them with `--reporter kafka`).
    #[arg(long, value_name = "BROKERS")]
    pub report_kafka: Option<String>,
    /// Kafka topic for status events [default: instream-status].
    #[arg(long, value_name = "TOPIC", requires = "report_kafka")]
    pub report_topic: Option<String>,
    /// Wait up to SECS before starting, by a delay fixed per host and deployment, so that
    /// a fabric's hosts start spread over the window (the dispatcher's `deploy --splay`).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub splay: u64,
    /// Instead of deploying, run a service command on the product's active version
    /// (`start`, `stop`, `restart`, `status`, `check`) and report it with the hook's last
    /// output line; `--version` is the version the server believes is active.
    #[arg(long, value_name = "ACTION")]
    pub service: Option<ServiceAction>,
    /// A librdkafka setting for the producer (repeatable), e.g.
    /// `security.protocol=sasl_plaintext`. Dispatchers use `--report-kafka-options-env`
    /// instead: a password must not be a command-line word.
    #[arg(long, value_name = "KEY=VALUE", requires = "report_kafka")]
    pub report_kafka_option: Vec<String>,
    /// Environment variable with more producer settings, one `KEY=VALUE` a line (how the
    /// dispatchers hand over the server's `--kafka-option`s: `sasl.password` must not be a
    /// command-line word).
    #[arg(long, value_name = "VAR", requires = "report_kafka")]
    pub report_kafka_options_env: Option<String>,
    /// Print the outcome as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// MSE/PE: `plaintext` dials plain and accepts both; `prefer` dials encrypted
    /// (retrying plain once); `require` is encrypted (RC4) only, both ways.
    #[arg(
        long,
        default_value = "plaintext",
        value_name = "plaintext|prefer|require"
    )]
    pub encryption: Policy,
}

/// Where the agent finds its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A 0600 file (`--token-file`).
    File(PathBuf),
    /// An environment variable of the agent's process (`--token-env`).
    Env(String),
}

impl AgentArgs {
    /// The arguments of one deployment on one host, every optional setting at its default.
    #[allow(clippy::too_many_arguments)] // one per required flag, all strings: named below
    pub fn new(
        server: &str,
        token: Token,
        deployment: &str,
        host: &str,
        fabric: &str,
        root: PathBuf,
        product: &str,
        version: &str,
    ) -> Self {
        let (token_file, token_env) = match token {
            Token::File(f) => (Some(f), None),
            Token::Env(v) => (None, Some(v)),
        };
        Self {
            server: server.to_string(),
            ca: None,
            token_file,
            token_env,
            deployment: deployment.to_string(),
            host: host.to_string(),
            fabric: fabric.to_string(),
            fabric_share: None,
            root,
            product: product.to_string(),
            version: version.to_string(),
            variant: None,
            trusted_keys: Vec::new(),
            keep: DEFAULT_KEEP,
            seed_for: DEFAULT_SEED_FOR,
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            announce_ip: None,
            download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            progress_every: DEFAULT_PROGRESS_EVERY,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            health_attempts: DEFAULT_HEALTH_ATTEMPTS,
            report_for: DEFAULT_REPORT_FOR,
            report_kafka: None,
            report_topic: None,
            splay: 0,
            service: None,
            report_kafka_option: Vec::new(),
            report_kafka_options_env: None,
            json: false,
            encryption: Policy::default(),
        }
    }

    /// The command line after the program: [`SUBCOMMAND`], then one `--flag value` pair per
    /// setting that differs from its default (the required ones always), in a fixed order.
    /// Values are separate words, never `--flag=value`, as the agent's stand-ins in tests
    /// read them.
    pub fn argv(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![SUBCOMMAND.into()];
        let mut push = |k: &str, v: &dyn AsRef<std::ffi::OsStr>| {
            a.push(k.into());
            a.push(v.as_ref().to_owned());
        };
        push("--server", &self.server);
        if let Some(ca) = &self.ca {
            push("--ca", ca);
        }
        if let Some(f) = &self.token_file {
            push("--token-file", f);
        }
        if let Some(v) = &self.token_env {
            push("--token-env", v);
        }
        push("--deployment", &self.deployment);
        push("--host", &self.host);
        push("--fabric", &self.fabric);
        push("--root", &self.root);
        push("--product", &self.product);
        push("--version", &self.version);
        if let Some(v) = &self.variant {
            push("--variant", v);
        }
        if let Some(s) = &self.fabric_share {
            push("--fabric-share", &s.to_string());
        }
        for k in &self.trusted_keys {
            push("--trusted-key", k);
        }
        if self.keep != DEFAULT_KEEP {
            push("--keep", &self.keep.to_string());
        }
        if self.seed_for != DEFAULT_SEED_FOR {
            push("--seed-for", &self.seed_for.to_string());
        }
        if self.listen.to_string() != DEFAULT_LISTEN {
            push("--listen", &self.listen.to_string());
        }
        if let Some(ip) = &self.announce_ip {
            push("--announce-ip", &ip.to_string());
        }
        if self.download_timeout != DEFAULT_DOWNLOAD_TIMEOUT {
            push("--download-timeout", &self.download_timeout.to_string());
        }
        if self.progress_every != DEFAULT_PROGRESS_EVERY {
            // `{}` of an f64 parses back to the same value.
            push("--progress-every", &self.progress_every.to_string());
        }
        if self.hook_timeout != DEFAULT_HOOK_TIMEOUT {
            push("--hook-timeout", &self.hook_timeout.to_string());
        }
        if self.health_attempts != DEFAULT_HEALTH_ATTEMPTS {
            push("--health-attempts", &self.health_attempts.to_string());
        }
        if self.report_for != DEFAULT_REPORT_FOR {
            push("--report-for", &self.report_for.to_string());
        }
        if let Some(k) = &self.report_kafka {
            push("--report-kafka", k);
        }
        if let Some(t) = &self.report_topic {
            push("--report-topic", t);
        }
        for o in &self.report_kafka_option {
            push("--report-kafka-option", o);
        }
        if let Some(v) = &self.report_kafka_options_env {
            push("--report-kafka-options-env", v);
        }
        if self.splay != 0 {
            push("--splay", &self.splay.to_string());
        }
        if let Some(s) = self.service {
            push("--service", &s.as_str());
        }
        if self.encryption != Policy::default() {
            push("--encryption", &self.encryption.to_string());
        }
        if self.json {
            a.push("--json".into());
        }
        a
    }
}

/// `--fabric`'s parser: the one fabric-name rule, the value kept as text.
fn fabric_name(s: &str) -> Result<String, proto::fabric::InvalidFabricName> {
    proto::fabric::FabricName::new(s).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    /// `instream-peer` as far as this contract goes.
    #[derive(Parser, Debug)]
    #[command(name = "instream-peer")]
    enum Peer {
        Deploy(AgentArgs),
    }

    fn parse(argv: &[OsString]) -> Result<AgentArgs, clap::Error> {
        let words = std::iter::once(OsString::from("instream-peer")).chain(argv.iter().cloned());
        Peer::try_parse_from(words).map(|Peer::Deploy(a)| a)
    }

    #[test]
    fn a_fabric_outside_the_rule_is_refused_at_parse() {
        let mut args = AgentArgs::new(
            "http://c",
            Token::Env("T".into()),
            "d",
            "h",
            "f1",
            "/r".into(),
            "p",
            "1",
        );
        let ok = parse(&args.argv());
        assert_eq!(ok.map(|a| a.fabric).ok(), Some("f1".to_string()));
        args.fabric = "dc+1".into();
        let err = parse(&args.argv()).unwrap_err().to_string();
        assert!(err.contains("not a valid fabric name"), "{err}");
    }

    fn words(a: &AgentArgs) -> String {
        a.argv()
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn minimal() -> AgentArgs {
        AgentArgs::new(
            "http://127.0.0.1:7070",
            Token::File("/t".into()),
            "dep-1",
            "h1",
            "f1",
            "/hosts/h1".into(),
            "app",
            "2",
        )
    }

    #[test]
    fn defaults_are_left_out_and_the_required_flags_come_first() {
        assert_eq!(
            words(&minimal()),
            "deploy --server http://127.0.0.1:7070 --token-file /t --deployment dep-1 --host h1 \
--fabric f1 --root /hosts/h1 --product app --version 2"
        );
        assert_eq!(parse(&minimal().argv()).unwrap(), minimal());
    }

    #[test]
    fn a_command_line_without_a_token_or_with_two_is_refused() {
        let mut none = minimal();
        none.token_file = None;
        assert!(parse(&none.argv()).is_err());
        let mut both = minimal();
        both.token_env = Some("VAR".into());
        assert!(parse(&both.argv()).is_err());
    }

    /// A command-line word the dispatchers could pass: no leading `-` (names are validated,
    /// paths and URLs never start with one).
    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9{][a-zA-Z0-9._+:/{} -]{0,15}"
    }

    fn share() -> impl Strategy<Value = Option<FabricShare>> {
        proptest::option::of((1u32..50).prop_flat_map(|of| (0..of, Just(of))))
            .prop_map(|o| o.map(|(rank, of)| FabricShare { rank, of }))
    }

    fn policy() -> impl Strategy<Value = Policy> {
        prop_oneof![
            Just(Policy::Plaintext),
            Just(Policy::Prefer),
            Just(Policy::Require)
        ]
    }

    fn service() -> impl Strategy<Value = Option<ServiceAction>> {
        proptest::option::of(proptest::sample::select(ServiceAction::ALL.to_vec()))
    }

    prop_compose! {
        fn identity()(
            server in word(), ca in proptest::option::of(word()),
            token in prop_oneof![word().prop_map(|f| Token::File(f.into())), word().prop_map(Token::Env)],
            deployment in word(), host in word(), fabric in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}", root in word(),
            product in word(), version in word(), variant in proptest::option::of(word()),
        ) -> AgentArgs {
            AgentArgs {
                ca: ca.map(PathBuf::from),
                variant,
                ..AgentArgs::new(&server, token, &deployment, &host, &fabric, root.into(), &product, &version)
            }
        }
    }

    prop_compose! {
        fn agent_args()(
            base in identity(),
            fabric_share in share(),
            trusted_keys in proptest::collection::vec(word().prop_map(PathBuf::from), 0..3),
            numbers in (0usize..10, any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()),
            progress_every in prop_oneof![Just(DEFAULT_PROGRESS_EVERY), 0.05f64..3600.0],
            listen in (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
            announce_ip in proptest::option::of(any::<IpAddr>()),
            kafka in proptest::option::of((word(), proptest::option::of(word()),
                proptest::collection::vec(word(), 0..3), proptest::option::of(word()))),
            service in service(),
            encryption in policy(),
            json in any::<bool>(),
        ) -> AgentArgs {
            let (keep, seed_for, download_timeout, hook_timeout, health_attempts, report_for, splay) = numbers;
            let (report_kafka, report_topic, report_kafka_option, report_kafka_options_env) = match kafka {
                Some((b, t, o, e)) => (Some(b), t, o, e),
                None => (None, None, Vec::new(), None),
            };
            AgentArgs {
                fabric_share, trusted_keys, keep, seed_for, listen, announce_ip, download_timeout,
                progress_every, hook_timeout, health_attempts, report_for, report_kafka,
                report_topic, splay, service, report_kafka_option, report_kafka_options_env,
                json, encryption,
                ..base
            }
        }
    }

    proptest! {
        /// What a dispatcher renders, the agent parses back to the same arguments.
        #[test]
        fn rendered_arguments_parse_back_to_the_same_struct(args in agent_args()) {
            let argv = args.argv();
            let parsed = parse(&argv).map_err(|e| TestCaseError::fail(format!("{argv:?}: {e}")))?;
            prop_assert_eq!(parsed, args);
        }
    }
}
