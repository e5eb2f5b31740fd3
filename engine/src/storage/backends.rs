//! Which disk back ends a storage test runs each case against.
//!
//! The storage suite (the unit tests of this module tree, `engine/tests/storage_faults.rs`,
//! the seed -> peer runs of `engine/tests/io_backends.rs`) loops over
//! [`available_backends`], so every case runs once with pread/pwrite and once with
//! io_uring. Where io_uring cannot work the io_uring half is skipped with the probe's
//! reason, except under `CI=true`: there a machine without io_uring would silently test half
//! of the code, so it is an error unless `INSTREAM_ALLOW_NO_URING=1` says it is expected.

use super::{IoBackend, uring_status};

/// The back ends to test here: `Portable` always, then `Uring` where it works (see the
/// module header for what happens where it does not).
///
/// # Panics
/// Under `CI=true` when io_uring is unavailable and `INSTREAM_ALLOW_NO_URING` is not `1`.
pub fn available_backends() -> Vec<IoBackend> {
    let env = |k: &str| std::env::var(k).ok();
    backends_for(
        uring_status(),
        env("CI").as_deref() == Some("true"),
        env("INSTREAM_ALLOW_NO_URING").as_deref() == Some("1"),
    )
}

fn backends_for(
    uring: std::result::Result<(), String>,
    ci: bool,
    allow_no_uring: bool,
) -> Vec<IoBackend> {
    match uring {
        Ok(()) => vec![IoBackend::Portable, IoBackend::Uring],
        Err(why) => {
            assert!(
                !ci || allow_no_uring,
                "io_uring is unavailable on this CI machine ({why}); the storage suite must \
                 run against both back ends (set INSTREAM_ALLOW_NO_URING=1 if this is expected)"
            );
            eprintln!("io_uring half of the storage tests skipped: {why}");
            vec![IoBackend::Portable]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_back_ends_where_io_uring_works() {
        assert_eq!(
            backends_for(Ok(()), true, false),
            [IoBackend::Portable, IoBackend::Uring]
        );
    }

    #[test]
    fn without_io_uring_only_portable_outside_ci_or_when_allowed() {
        let no = || Err("disabled".to_string());
        assert_eq!(backends_for(no(), false, false), [IoBackend::Portable]);
        assert_eq!(backends_for(no(), true, true), [IoBackend::Portable]);
        let ci = std::panic::catch_unwind(|| backends_for(no(), true, false));
        assert!(ci.is_err(), "CI without io_uring must fail");
    }

    #[test]
    fn io_uring_works_on_this_machine_or_says_why() {
        // Fails under CI=true without io_uring (unless allowed), passes elsewhere.
        let b = available_backends();
        assert_eq!(b[0], IoBackend::Portable);
        assert_eq!(b.contains(&IoBackend::Uring), uring_status().is_ok());
    }
}
