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
        Some("instream-peer") => return agent::program::main(),
        _ => {}
    }
    let args = match rewrite(std::env::args_os().collect()) {
        Rewrite::Args(a) => a,
        Rewrite::Refuse(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Help and usage errors exit the way every instream program does (one `error:` line).
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| exit::exit_usage(e));
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
    exit::exit(run(cli))
}
