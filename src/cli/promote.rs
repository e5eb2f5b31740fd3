//! `instream promote -t ID`: continue past the canary gate (or pre-approve during the
//! canary). Prints `{"status":"promoted","id":"<id>"}`.

use super::ClientArgs;
use super::client::enc;
use super::output::println_or_exit;
use crate::api::views::Submitted;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Deployment id.
    #[arg(short = 't', long = "id")]
    pub id: String,
}

pub async fn run(a: PromoteArgs) -> Result<()> {
    let client = a.client.client()?;
    let s: Submitted = client
        .post(
            &format!("/api/v1/deployments/{}/promote", enc(&a.id)),
            &serde_json::json!({}),
        )
        .await?;
    println_or_exit(&serde_json::to_string(&s)?);
    Ok(())
}
