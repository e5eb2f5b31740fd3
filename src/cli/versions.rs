//! `instream versions -p P [-f FABRIC] [--json]`: what runs where. One line per host, sorted by
//! fabric then host: `host fabric version since deployment kind`, or `host fabric unknown` for
//! a host a deployment targeted that never reported a success. `--json` prints the API's array.

use super::ClientArgs;
use super::client::enc;
use super::output::println_or_exit;
use crate::store::RunningLine;
use crate::timefmt::rfc3339;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct VersionsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Product name.
    #[arg(short = 'p', long)]
    pub product: String,
    /// Only this fabric.
    #[arg(short = 'f', long)]
    pub fabric: Option<String>,
    /// Print JSON (the API's answer) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The text form of one host.
pub fn running_line(l: &RunningLine) -> String {
    match (&l.version, l.since, &l.deployment) {
        (Some(v), Some(since), Some(d)) => format!(
            "{} {} {v} {} {d} {}",
            l.host,
            l.fabric,
            rfc3339(since),
            l.kind.as_deref().unwrap_or("deploy")
        ),
        (Some(v), since, _) => format!(
            "{} {} {v} {} - -",
            l.host,
            l.fabric,
            since.map(rfc3339).unwrap_or_else(|| "-".into())
        ),
        (None, ..) => format!("{} {} unknown", l.host, l.fabric),
    }
}

pub async fn run(a: VersionsArgs) -> Result<()> {
    let client = a.client.client()?;
    let mut path = format!("/api/v1/products/{}/running", enc(&a.product));
    if let Some(f) = &a.fabric {
        path.push_str(&format!("?fabric={}", enc(f)));
    }
    let lines: Vec<RunningLine> = client.get(&path).await?;
    if a.json {
        println_or_exit(&serde_json::to_string(&lines)?);
    } else {
        for l in &lines {
            println_or_exit(&running_line(l));
        }
    }
    Ok(())
}
