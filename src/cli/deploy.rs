//! `instream deploy`: submit a deployment; prints exactly `{"status":"submitted","id":"<id>"}`.

use super::ClientArgs;
use super::output::println_or_exit;
use crate::api::views::Submitted;
use crate::deploy::model::{Canary, Gate};
use crate::deploy::submit::DeployRequest;
use anyhow::{Result, anyhow};
use clap::Args;

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Product name.
    #[arg(short = 'p', long)]
    pub product: String,
    /// Version to deploy.
    #[arg(short = 'v', long)]
    pub version: String,
    /// Fabric(s), in rollout order: repeat or comma-separate; `*` for all.
    #[arg(short = 'f', long = "fabric", required = true, value_delimiter = ',')]
    pub fabrics: Vec<String>,
    /// Glob over host names ('*', 'web-1*').
    #[arg(short = 'H', long)]
    pub hosts: String,
    /// Variant: picks the variant's build and only hosts whose variant grain matches.
    #[arg(long)]
    pub variant: Option<String>,
    /// Canary step: N hosts or P% of each fabric first, then a gate.
    #[arg(long, value_parser = parse_canary)]
    pub canary: Option<Canary>,
    /// Continue after a passed canary gate without waiting for `instream promote`.
    #[arg(long)]
    pub auto_promote: bool,
    /// Roll out the remaining hosts of all fabrics at once instead of fabric by fabric.
    #[arg(long)]
    pub parallel_fabrics: bool,
    /// Failures a step may have and still pass its gate.
    #[arg(long, default_value_t = 0)]
    pub max_failures: u32,
    /// Share of a step's hosts that must succeed, in percent.
    #[arg(long, default_value_t = 100.0, value_name = "PERCENT")]
    pub min_success: f64,
    /// Seconds after which a step's unfinished hosts count as failures (0: no limit).
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    pub gate_timeout: u64,
    /// Seconds a host may stay silent before it fails [default: the server's].
    #[arg(long, value_name = "SECS")]
    pub report_deadline: Option<u64>,
    /// Spread each step's agent starts over SECS seconds (under Salt: Salt's splay
    /// executor), so a fabric's hosts do not all start in the same second.
    #[arg(long, value_name = "SECS")]
    pub splay: Option<u64>,
    /// Start at most N hosts of a step at once: the step runs in batches of N, each once
    /// the one before it is complete (a failed batch halts the deployment).
    #[arg(long, value_name = "N")]
    pub batch: Option<u32>,
    /// Answer as the system instream descends from did too (`torrentid` beside `id`); set
    /// by its spelling, `instream -p P -v V -f F -ho HOSTS` (see `cli::legacy`).
    #[arg(long = "legacy-answer", hide = true)]
    pub legacy_answer: bool,
}

fn parse_canary(s: &str) -> Result<Canary, String> {
    Canary::parse(s)
}

pub async fn run(a: DeployArgs) -> Result<()> {
    if !(0.0..=100.0).contains(&a.min_success) {
        return Err(anyhow!(
            "--min-success {} is not within 0..=100",
            a.min_success
        ));
    }
    let client = a.client.client()?;
    let req = DeployRequest {
        product: a.product,
        version: a.version,
        fabrics: a
            .fabrics
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        hosts: a.hosts,
        variant: a.variant,
        canary: a.canary.map(|c| c.to_string()),
        auto_promote: a.auto_promote,
        parallel_fabrics: a.parallel_fabrics,
        gate: Some(Gate {
            min_success_ratio: a.min_success / 100.0,
            max_failures: a.max_failures,
            timeout_ms: a.gate_timeout.saturating_mul(1000),
        }),
        report_deadline_ms: a.report_deadline.map(|s| s.saturating_mul(1000)),
        splay_secs: a.splay,
        batch: a.batch,
    };
    let s: Submitted = client.post("/api/v1/deployments", &req).await?;
    if a.legacy_answer {
        // The contract's line, plus the key the old system's scripts read.
        let mut v = serde_json::to_value(&s)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("torrentid".into(), serde_json::Value::String(s.id.clone()));
        }
        println_or_exit(&serde_json::to_string(&v)?);
        return Ok(());
    }
    println_or_exit(&serde_json::to_string(&s)?);
    Ok(())
}
