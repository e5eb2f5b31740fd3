//! `instream`: parse → run → on error print one line `error: ...` and exit non-zero.
//! Logs (tracing) go to stderr; `RUST_LOG` overrides the default level (info for `serve`,
//! warn for the operator commands, whose stdout is their answer).
//!
//! It is also a multi-call binary: started under the name `instream-tracker`,
//! `instream-seed` or `instream-peer` (a link to it), it is that program. `instream up`
//! runs its fleet that way, so `cargo run --release -- up` compiles and links once.

use clap::Parser;
use instream::cli::legacy::{Rewrite, rewrite};
use instream::cli::{Cli, Command, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
    {
        Some("instream-tracker") => return tracker::program::main(),
        Some("instream-seed") => return engine::programs::seed::main(),
        Some("instream-peer") => return engine::programs::peer::main(),
        _ => {}
    }
    let args = match rewrite(std::env::args_os().collect()) {
        Rewrite::Args(a) => a,
        Rewrite::Refuse(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // clap's message is several lines (usage, tips); the contract is one line.
            // Keep the message (which may continue on indented lines), drop usage and tips.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            let line = msg.join(" ");
            eprintln!(
                "{}",
                if line.is_empty() {
                    "error: bad arguments"
                } else {
                    &line
                }
            );
            return ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
