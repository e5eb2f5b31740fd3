//! Bounded waits: poll a condition until it holds or a deadline passes, then fail naming
//! what was awaited. One argument order everywhere: `(timeout, what, condition)`.

use std::thread;
use std::time::{Duration, Instant};

/// What a polled condition returns: `bool` (done or not) or `Option<T>` (done with a value).
pub trait Ready {
    /// What [`wait_for`] returns once the condition holds.
    type Output;
    /// `Some` once the condition holds.
    fn ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `cond` until it holds (`true` or `Some`); panics after `timeout` naming `what` was
/// awaited.
pub fn wait_for<R: Ready>(timeout: Duration, what: &str, cond: impl FnMut() -> R) -> R::Output {
    // Back off to 100 ms: a poll interval, not a synchronisation point.
    poll_for(timeout, Duration::from_millis(100), cond)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`wait_for`] that returns `None` at the deadline instead of panicking, for a caller that
/// words the timeout with what it last saw; `max_pause` as in [`poll_until`].
pub fn poll_for<R: Ready>(
    timeout: Duration,
    max_pause: Duration,
    mut cond: impl FnMut() -> R,
) -> Option<R::Output> {
    let got = poll_until(timeout, max_pause, || {
        Ok::<_, std::convert::Infallible>(cond().ready())
    });
    match got {
        Ok(v) => v,
    }
}

/// The non-panicking core of [`wait_for`], for callers that report a timeout as a value (the
/// interop matrix's failed cell, the benchmark harness's error): polls `cond` until it gives
/// `Ok(Some(v))` (returned), fails with `Err` (returned at once), or `timeout` has passed
/// (`Ok(None)`: the caller words the timeout, with what it last saw). `cond` runs at least
/// once, and once more after the deadline only if the deadline passed during a pause. Pauses
/// start at 5 ms and double up to `max_pause`, which bounds how late a change is seen.
pub fn poll_until<T, E>(
    timeout: Duration,
    max_pause: Duration,
    mut cond: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5).min(max_pause);
    loop {
        if let Some(v) = cond()? {
            return Ok(Some(v));
        }
        if start.elapsed() > timeout {
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(max_pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_holds_returns_its_value() {
        let mut n = 0;
        let got = wait_for(Duration::from_secs(5), "the third poll", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, 3);
        wait_for(Duration::from_secs(5), "true", || true);
    }

    #[test]
    fn poll_until_returns_the_value_the_error_or_none_at_the_deadline() {
        let cap = Duration::from_millis(10);
        let mut n = 0;
        let got: Result<_, ()> = poll_until(Duration::from_secs(5), cap, || {
            n += 1;
            Ok((n == 3).then_some(n))
        });
        assert_eq!(got, Ok(Some(3)));
        let err: Result<Option<()>, _> = poll_until(Duration::from_secs(5), cap, || Err("broken"));
        assert_eq!(err, Err("broken"));
        let start = Instant::now();
        let none: Result<Option<()>, ()> = poll_until(Duration::from_millis(30), cap, || Ok(None));
        assert_eq!(none, Ok(None));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(poll_for(Duration::from_millis(30), cap, || false), None);
        assert_eq!(poll_for(Duration::from_secs(5), cap, || Some(7)), Some(7));
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn a_condition_that_never_holds_names_what_was_awaited() {
        wait_for(Duration::from_millis(20), "the impossible", || false);
    }
}
