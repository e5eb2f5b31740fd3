//! How every instream program fails: one line, `error: a: b: c`, on stderr.
//!
//! The docs/ARCHITECTURE.md contract: a failing program prints exactly one `error: ...`
//! line and exits non-zero; a usage error (clap's, too) is one such line with status 2; a
//! closed stdout (`| head`) is not a failure. Every binary (`instream`, `instream-seed`,
//! `instream-peer`, `instream-tracker`) ends through [`parse_args`] / [`exit_usage`] and
//! [`exit`], and every library that turns an error into text (logs, failure reasons, API
//! answers) uses [`error_chain`], the one walker of an error's sources.

use std::io::Write;
use std::process::ExitCode;

/// An error and its sources on one line, `a: b: c`, outermost first (what anyhow's `{:#}`
/// prints). Each layer should say only its own context (house rule: `#[source]` or
/// interpolation, not both); a layer whose text an earlier one already holds is skipped
/// all the same, because third-party errors (reqwest, hyper) do interpolate their cause.
/// Newlines become spaces, so the result is always one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Parses the command line, or exits as [`exit_usage`] does.
pub fn parse_args<P: clap::Parser>() -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => exit_usage(e),
    }
}

/// Ends the process for a clap error: `--help`/`--version` print clap's text and exit 0
/// (a bare command that needs a subcommand prints help and exits 2); any other problem
/// prints one `error: ...` line (clap's message without its usage block) and exits 2, the
/// status clap uses for usage errors.
pub fn exit_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(
                if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                },
            )
        }
        _ => {
            // Not eprintln!: a full or closed stderr must not turn the exit into a panic (101).
            let _ = writeln!(std::io::stderr(), "error: {}", usage_error_line(&e));
            std::process::exit(2)
        }
    }
}

/// clap's message without its `error: ` prefix, usage block and tips: one line.
pub fn usage_error_line(e: &clap::Error) -> String {
    // The message may continue on indented lines; usage and tips follow a blank line.
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
        .collect::<Vec<_>>()
        .join(" ");
    match line.strip_prefix("error: ").unwrap_or(&line) {
        "" => "invalid arguments".to_string(),
        l => l.to_string(),
    }
}

/// True if the error chain holds a broken pipe (stdout closed by `head` and friends).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The line [`exit`] prints for `e`, without the `error: ` prefix.
pub fn failure_line(e: &anyhow::Error) -> String {
    error_chain(e.as_ref())
}

/// Turns `main`'s result into the process exit: 0, or one `error: ...` line and 1.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", failure_line(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use clap::Parser;

    /// A layer that says only its own context, as house rule 3.2 asks.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn std::error::Error + 'static>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref()
        }
    }

    #[test]
    fn the_chain_is_one_line_each_cause_once() {
        let io = std::io::Error::other("disk full\nsecond line");
        let inner = Layer("write piece 3", Some(Box::new(io)));
        let outer = Layer("download", Some(Box::new(inner)));
        assert_eq!(
            error_chain(&outer),
            "download: write piece 3: disk full second line"
        );
        // A layer that interpolates its source (reqwest does) is not said twice.
        let cause = Layer("certificate refused", None);
        let noisy = Layer("send request: certificate refused", Some(Box::new(cause)));
        assert_eq!(error_chain(&noisy), "send request: certificate refused");
    }

    #[test]
    fn anyhow_context_reads_like_its_alternate_display() {
        let e = Err::<(), _>(std::io::Error::other("refused"))
            .context("bind UDP socket 127.0.0.1:6969")
            .unwrap_err();
        assert_eq!(failure_line(&e), format!("{e:#}"));
        assert_eq!(failure_line(&e), "bind UDP socket 127.0.0.1:6969: refused");
    }

    #[test]
    fn broken_pipe_is_not_a_failure() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("write the listing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[derive(Parser, Debug)]
    struct Cli {
        /// Required.
        #[arg(long)]
        port: u16,
    }

    #[test]
    fn a_usage_error_is_one_line() {
        for argv in [
            &["p", "--port", "x"][..],
            &["p"][..],
            &["p", "--port", "1", "--nope"][..],
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err();
            let line = usage_error_line(&e);
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "{argv:?}: {line:?}"
            );
            assert!(!line.starts_with("error:"), "{line}");
            assert!(!line.contains("Usage"), "{line}");
        }
    }
}
