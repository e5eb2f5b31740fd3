//! The command-line spelling of the system instream descends from, beside the contract:
//! `instream -p PRODUCT -v VERSION -f FABRIC -ho HOSTS [-m torrent] [--variant NAME]` is a
//! deploy. This module rewrites such an argument list into the contract's spelling before
//! clap sees it, and refuses `-h` mixed with other arguments: clap would read `-ho` as `-h
//! -o`, print help and exit 0, and a script would believe it had deployed.
//!
//! Pure: argument lists in, argument lists (or a one-line error) out.

use std::ffi::{OsStr, OsString};

/// The hidden deploy flag that asks for the old system's answer (`torrentid` beside `id`).
pub const LEGACY_ANSWER_FLAG: &str = "--legacy-answer";

/// What to do with a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Hand these arguments (program name first) to clap.
    Args(Vec<OsString>),
    /// A usage error: print `error: {0}` and exit 2.
    Refuse(String),
}

/// Options of the old spelling that mark a bare deploy (no subcommand).
const LEGACY_DEPLOY_OPTS: [&str; 5] = ["-p", "-v", "-f", "-ho", "-m"];

/// Rewrites `args` (program name first) into the contract's spelling; see the module doc.
pub fn rewrite(args: Vec<OsString>) -> Rewrite {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len() + 2);
    let mut it = args.into_iter();
    if let Some(prog) = it.next() {
        out.push(prog);
    }
    let rest: Vec<OsString> = it.collect();
    let first = rest.first().and_then(|a| a.to_str()).unwrap_or("");
    let bare_deploy = LEGACY_DEPLOY_OPTS.contains(&first) || first.starts_with("--variant");
    let is_deploy = bare_deploy || first == "deploy";
    if bare_deploy {
        out.push("deploy".into());
        out.push(LEGACY_ANSWER_FLAG.into());
    }
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if is_deploy && a == OsStr::new("-ho") {
            out.push("-H".into());
        } else if is_deploy && a == OsStr::new("-m") {
            // `-m torrent` chose the old system's transfer method; torrent is the only one.
            match rest.get(i + 1).and_then(|m| m.to_str()) {
                Some("torrent") => i += 1,
                Some(other) => {
                    return Rewrite::Refuse(format!(
                        "-m {other}: the only transfer method is `torrent`"
                    ));
                }
                None => return Rewrite::Refuse("-m needs a value (`torrent`)".into()),
            }
        } else {
            out.push(a.clone());
        }
        i += 1;
    }
    if let Some(e) = help_mixed_with_arguments(&out[1.min(out.len())..]) {
        return Rewrite::Refuse(e);
    }
    Rewrite::Args(out)
}

/// `-h`/`--help` (alone or inside a cluster of short flags such as `-ho`) next to anything
/// but subcommand names is a mistake, never a request for help.
fn help_mixed_with_arguments(args: &[OsString]) -> Option<String> {
    let strs: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("\u{0}")).collect();
    let help_at = strs.iter().position(|a| is_help_flag(a))?;
    let others = strs
        .iter()
        .enumerate()
        .filter(|(i, a)| *i != help_at && a.starts_with('-'))
        .count();
    let cluster = strs[help_at] != "-h" && strs[help_at] != "--help";
    if others == 0 && !cluster {
        return None;
    }
    Some(format!(
        "`{}` asks for help, but other arguments were given; use -H HOSTS for hosts, or --help alone",
        strs[help_at]
    ))
}

fn is_help_flag(a: &str) -> bool {
    if a == "--help" {
        return true;
    }
    // A cluster of short flags: `-h`, `-ho`, `-vh`; never `--x` or `-` alone.
    a.len() >= 2 && a.starts_with('-') && !a.starts_with("--") && a[1..].contains('h')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        std::iter::once("instream")
            .chain(s.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn old_spelling_becomes_a_deploy_with_the_old_answer() {
        let got = rewrite(args(&[
            "-p",
            "obhc-agent",
            "-v",
            "0.1.34",
            "-f",
            "fabric_name",
            "-ho",
            "*",
            "-m",
            "torrent",
            "--variant",
            "rhel6",
        ]));
        assert_eq!(
            got,
            Rewrite::Args(args(&[
                "deploy",
                LEGACY_ANSWER_FLAG,
                "-p",
                "obhc-agent",
                "-v",
                "0.1.34",
                "-f",
                "fabric_name",
                "-H",
                "*",
                "--variant",
                "rhel6"
            ]))
        );
    }

    #[test]
    fn ho_inside_deploy_means_hosts() {
        let got = rewrite(args(&[
            "deploy", "-p", "a", "-v", "1", "-f", "f1", "-ho", "*",
        ]));
        assert_eq!(
            got,
            Rewrite::Args(args(&[
                "deploy", "-p", "a", "-v", "1", "-f", "f1", "-H", "*"
            ]))
        );
    }

    #[test]
    fn help_mixed_with_other_arguments_is_refused() {
        for bad in [
            &["status", "-t", "x", "-h"][..],
            &["rollback", "-ho", "*"],
            &["deploy", "-p", "a", "--help"],
        ] {
            assert!(
                matches!(rewrite(args(bad)), Rewrite::Refuse(_)),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn help_alone_is_help() {
        for ok in [
            &["-h"][..],
            &["--help"],
            &["deploy", "--help"],
            &["status", "-h"],
        ] {
            assert_eq!(rewrite(args(ok)), Rewrite::Args(args(ok)), "{ok:?}");
        }
    }

    #[test]
    fn other_methods_than_torrent_are_refused() {
        assert!(matches!(
            rewrite(args(&[
                "-p", "a", "-v", "1", "-f", "f", "-ho", "*", "-m", "rsync"
            ])),
            Rewrite::Refuse(_)
        ));
    }

    #[test]
    fn contract_spellings_pass_through() {
        let a = args(&["status", "-t", "abc", "-m", "progress"]);
        assert_eq!(rewrite(a.clone()), Rewrite::Args(a));
    }
}
