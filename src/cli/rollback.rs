//! `instream rollback -p P -f F [--to V]`: a rollback is a deployment of its own (own id,
//! own status); prints `{"status":"submitted","id":"<id>"}` like deploy.

use super::ClientArgs;
use super::output::println_or_exit;
use crate::api::views::Submitted;
use crate::deploy::submit::RollbackRequest;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Product name.
    #[arg(short = 'p', long)]
    pub product: String,
    /// Fabric whose hosts switch back.
    #[arg(short = 'f', long)]
    pub fabric: String,
    /// Version to switch to [default: each host's previous version].
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Seconds a host may stay silent before it fails [default: the server's].
    #[arg(long, value_name = "SECS")]
    pub report_deadline: Option<u64>,
}

pub async fn run(a: RollbackArgs) -> Result<()> {
    let client = a.client.client()?;
    let req = RollbackRequest {
        product: a.product,
        fabric: a.fabric,
        to: a.to,
        report_deadline_ms: a.report_deadline.map(|s| s.saturating_mul(1000)),
    };
    let s: Submitted = client.post("/api/v1/rollbacks", &req).await?;
    println_or_exit(&serde_json::to_string(&s)?);
    Ok(())
}
