//! `instream service start|stop|restart|status|check -p P -f F -H HOSTS`: a service command
//! on the hosts that run the product, tracked like a deployment (own id, per-host results,
//! `instream status -t ID`; each host's result line is its status reason, in `--json`).
//! Prints `{"status":"submitted","id":"<id>"}` like deploy.

use super::ClientArgs;
use super::output::println_or_exit;
use crate::api::views::Submitted;
use crate::deploy::submit::ServiceRequest;
use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Status,
    Check,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Status => "status",
            Action::Check => "check",
        }
    }
}

#[derive(Args, Debug)]
pub struct ServiceArgs {
    /// What the product's hooks do on each host's active version (`check` is its health
    /// hook; `restart` without a restart hook is stop, then start).
    #[arg(value_enum)]
    pub action: Action,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Product name.
    #[arg(short = 'p', long)]
    pub product: String,
    /// Fabric(s), in order: repeat or comma-separate; `*` for all.
    #[arg(short = 'f', long = "fabric", required = true, value_delimiter = ',')]
    pub fabrics: Vec<String>,
    /// Glob over host names ('*', 'web-1*').
    #[arg(short = 'H', long)]
    pub hosts: String,
    /// At most N hosts at once (a rolling restart).
    #[arg(long, value_name = "N")]
    pub batch: Option<u32>,
    /// Spread the hosts' starts over SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub splay: Option<u64>,
    /// Seconds a host may stay silent before it fails [default: the server's].
    #[arg(long, value_name = "SECS")]
    pub report_deadline: Option<u64>,
}

pub async fn run(a: ServiceArgs) -> Result<()> {
    let client = a.client.client()?;
    let req = ServiceRequest {
        product: a.product,
        action: a.action.as_str().into(),
        fabrics: a
            .fabrics
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        hosts: a.hosts,
        batch: a.batch,
        splay_secs: a.splay,
        report_deadline_ms: a.report_deadline.map(|s| s.saturating_mul(1000)),
    };
    let s: Submitted = client.post("/api/v1/services", &req).await?;
    println_or_exit(&serde_json::to_string(&s)?);
    Ok(())
}
