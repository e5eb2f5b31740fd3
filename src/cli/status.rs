//! `instream status -t ID [-f FABRIC] -m progress|success|failure|pending [--json] [--watch]`.
//!
//! `progress` prints the contract line; the others one line per host (`state timestamp
//! host`, oldest first). `--json` prints what the API answered (the deployment object, or the
//! array of hosts). `--watch` waits until the deployment is done or halted — with a live
//! progress bar when stdout is a terminal, else one progress line per change on stderr — and then
//! prints the requested view. A note about a halted or waiting deployment goes to stderr so
//! stdout stays parseable.

use super::ClientArgs;
use super::client::{Client, enc};
use super::output::{host_line, println_or_exit, progress_line};
use crate::api::views::{DeploymentView, HostsView};
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Progress,
    Success,
    Failure,
    Pending,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Deployment id.
    #[arg(short = 't', long = "id")]
    pub id: String,
    /// Only this fabric.
    #[arg(short = 'f', long)]
    pub fabric: Option<String>,
    /// What to show.
    #[arg(short = 'm', long, value_enum, default_value = "progress")]
    pub mode: Mode,
    /// Print JSON (the API's answer) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Follow the deployment until it is done or halted, then print.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between polls with --watch.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
}

fn deployment_path(a: &StatusArgs) -> String {
    let mut p = format!("/api/v1/deployments/{}", enc(&a.id));
    if let Some(f) = &a.fabric {
        p.push_str(&format!("?fabric={}", enc(f)));
    }
    p
}

pub async fn run(a: StatusArgs) -> Result<()> {
    let client = a.client.client()?;
    if a.watch {
        watch(&client, &a).await?;
    }
    let view: DeploymentView = client.get(&deployment_path(&a)).await?;
    match a.mode {
        Mode::Progress => {
            if a.json {
                println_or_exit(&serde_json::to_string(&view)?);
            } else {
                println_or_exit(&progress_line(&view.progress));
            }
        }
        mode => {
            let state = match mode {
                Mode::Success => "success",
                Mode::Failure => "failure",
                _ => "pending",
            };
            let mut path = format!("/api/v1/deployments/{}/hosts?state={state}", enc(&a.id));
            if let Some(f) = &a.fabric {
                path.push_str(&format!("&fabric={}", enc(f)));
            }
            let hosts: HostsView = client.get(&path).await?;
            if a.json {
                println_or_exit(&serde_json::to_string(&hosts.hosts)?);
            } else {
                for h in &hosts.hosts {
                    println_or_exit(&host_line(h));
                }
            }
        }
    }
    note(&view);
    Ok(())
}

fn note(view: &DeploymentView) {
    match view.state.as_str() {
        "halted" => eprintln!(
            "note: deployment {} is halted: {}",
            view.id,
            view.halted_reason.as_deref().unwrap_or("")
        ),
        "awaiting_promotion" => eprintln!(
            "note: deployment {} passed its canary and waits for `instream promote -t {}`",
            view.id, view.id
        ),
        _ => {}
    }
}

async fn watch(client: &Client, a: &StatusArgs) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let interval = Duration::from_secs_f64(a.interval.clamp(0.05, 3600.0));
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40.green/red} {pos}/{len} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let mut last = String::new();
    loop {
        let view: DeploymentView = client.get(&deployment_path(a)).await?;
        let line = progress_line(&view.progress);
        if let Some(b) = &bar {
            b.set_length(view.progress.total);
            b.set_position(view.progress.success + view.progress.failure);
            let state = match view.state.as_str() {
                "awaiting_promotion" => format!("awaiting `instream promote -t {}`", view.id),
                s => s.to_string(),
            };
            b.set_message(format!("{line} [{state}]"));
        } else if line != last {
            // Not a terminal: live lines go to stderr, so stdout holds only the final view.
            eprintln!("{line}");
        }
        last = line;
        if view.is_finished() {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}
