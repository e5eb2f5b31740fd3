//! Tests that need root (network namespaces, tmpfs mounts, tc): skipped with one line on a
//! developer's machine, but never under CI, which runs as root, so a skip there would hide
//! a regression (a lost `sudo`, a changed runner) behind a green run.

/// True when the caller runs as root. Otherwise prints one line naming `what` needs root and
/// returns false, so the test returns early; under CI (`CI` set and non-empty, as `CI=true`)
/// it panics instead.
pub fn needs_root(what: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match decide(root, std::env::var("CI").ok().as_deref()) {
        Decision::Run => true,
        Decision::Skip => {
            eprintln!("skipped: {what} needs root (CI runs as root)");
            false
        }
        Decision::Fail(ci) => panic!(
            "{what} needs root, and CI={ci}: CI runs the tests as root, so a skip here would \
             hide a failure (run as root, or unset CI to skip)"
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Run,
    Skip,
    Fail(String),
}

/// The rule, apart from the process's identity and environment.
fn decide(root: bool, ci: Option<&str>) -> Decision {
    match (root, ci) {
        (true, _) => Decision::Run,
        (false, Some(ci)) if !ci.is_empty() => Decision::Fail(ci.to_string()),
        (false, _) => Decision::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_a_non_root_skip_is_allowed_only_outside_ci() {
        assert_eq!(decide(true, None), Decision::Run);
        assert_eq!(decide(true, Some("true")), Decision::Run);
        assert_eq!(decide(false, None), Decision::Skip);
        // An empty CI is unset, as the status-page browser test reads it.
        assert_eq!(decide(false, Some("")), Decision::Skip);
        assert_eq!(decide(false, Some("true")), Decision::Fail("true".into()));
        assert_eq!(decide(false, Some("1")), Decision::Fail("1".into()));
    }
}
