//! `instream revoke -H HOST [--deployment ID]`: from now on the control server refuses (403)
//! the agent credentials it issued to HOST until this instant, for every deployment or for
//! one. A later dispatch to HOST issues a fresh credential. Prints the server's answer as
//! JSON (`{"status":"revoked","host":..,"deployment":..,"revoked_before_ms":..}`).

use super::ClientArgs;
use super::output::println_or_exit;
use crate::api::views::RevokeReply;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Host whose agent credentials are revoked.
    #[arg(short = 'H', long)]
    pub host: String,
    /// Only its credential for this deployment [default: every deployment].
    #[arg(long, value_name = "ID")]
    pub deployment: Option<String>,
}

pub async fn run(a: RevokeArgs) -> Result<()> {
    let client = a.client.client()?;
    let body = serde_json::json!({"host": a.host, "deployment": a.deployment});
    let r: RevokeReply = client.post("/api/v1/revocations", &body).await?;
    println_or_exit(&serde_json::to_string(&r)?);
    Ok(())
}
