//! The `instream` command line: clap structs here (the "low" args), one file per subcommand
//! that validates them and runs it. `main` maps any error to one `error: ...` line.

pub mod client;
pub mod config;
pub mod deploy;
pub mod legacy;
pub mod output;
pub mod promote;
pub mod publish;
pub mod revoke;
pub mod rollback;
pub mod serve;
pub mod service;
pub mod size;
pub mod status;
pub mod versions;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "instream",
    version,
    about = "Ship product versions to server fleets over BitTorrent, with canaries, rollbacks and per-host status"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control server (HTTP API, SQLite store, deployment driver, dispatcher).
    Serve(Box<serve::ServeArgs>),
    /// Build a torrent and a signed manifest for a product version, register them, and have
    /// the origin seed it.
    ///
    /// The torrent's tracker URLs and the origin's directory come from the control server
    /// (`instream serve --tracker URL --origin-dir DIR`, which also allows each registered
    /// info-hash on the tracker through its admin API with `--tracker-token-file`);
    /// `--tracker` and `--origin-dir` override them. The payload is hard-linked (or copied)
    /// into DIR/<info-hash>/, the torrent renamed to DIR/<info-hash>.torrent, and publish
    /// waits until the origin (`instream-seed serve --watch DIR`) answers
    /// DIR/<info-hash>.seeding. The manifest is signed with the publisher key (publisher.key
    /// in the config dir, made on first use; hosts trust its publisher.pub).
    Publish(publish::PublishArgs),
    /// Deploy a product version to hosts of one or more fabrics.
    Deploy(deploy::DeployArgs),
    /// Show a deployment's progress or its hosts.
    Status(status::StatusArgs),
    /// What runs where: each host's active version of a product, since when and through
    /// which deployment or rollback; hosts that never reported are listed as unknown.
    Versions(versions::VersionsArgs),
    /// Continue a deployment past its canary step.
    Promote(promote::PromoteArgs),
    /// Switch a fabric's hosts back to their previous (or a named) version.
    Rollback(rollback::RollbackArgs),
    /// Run a service command (start, stop, restart, status, check) through the product's
    /// hooks on the hosts that run it, tracked like a deployment (`instream status -t ID`).
    Service(service::ServiceArgs),
    /// Revoke a host's agent credentials (all, or for one deployment): the control server
    /// refuses them with 403 from now on.
    Revoke(revoke::RevokeArgs),
    /// Everything on one machine: tracker, control server, origin and N local hosts in K
    /// fabrics; publish a generated product, deploy it with a canary, show progress, print
    /// the final status and the fanout time against its lower bound.
    ///
    /// The tracker, origin and host agent are this binary started as instream-tracker,
    /// instream-seed and instream-peer (links to it in the work directory). Each
    /// process runs in its own process group and is stopped at exit or Ctrl-C. The lower
    /// bound is payload x hosts divided by the slower of loopback TCP and buffered disk
    /// writes, both measured just before the deployment. With --keep, the control server's
    /// URL goes to `server` in the config dir (the operator's `token` there is reused or
    /// made), so another shell can publish, deploy, status, promote and roll back with no
    /// flags until Ctrl-C.
    Up(crate::up::UpArgs),
}

/// How operator commands reach the control server.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Control server URL [default: the `server` file in the config dir, written by `instream up`].
    #[arg(long, env = "INSTREAM_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// File holding the API token (INSTREAM_TOKEN wins over it) [default: the `token` file in the config dir].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA file (PEM) an https server's certificate must be signed by, the only root trusted
    /// [default: the `ca.pem` file in the config dir, written by `instream up --keep`].
    #[arg(long, env = "INSTREAM_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<client::Client> {
        let (server, token) =
            config::client_settings(self.server.as_deref(), self.token_file.as_deref())?;
        let ca = config::client_ca(&server, self.ca.as_deref())?;
        client::Client::new(&server, &token, ca.as_ref())
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve::run(*a),
        Command::Publish(a) => block_on(publish::run(a)),
        Command::Deploy(a) => block_on(deploy::run(a)),
        Command::Status(a) => block_on(status::run(a)),
        Command::Versions(a) => block_on(versions::run(a)),
        Command::Promote(a) => block_on(promote::run(a)),
        Command::Rollback(a) => block_on(rollback::run(a)),
        Command::Revoke(a) => block_on(revoke::run(a)),
        Command::Service(a) => block_on(service::run(a)),
        Command::Up(a) => crate::up::run(a),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?
        .block_on(f)
}
