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
pub fn wait_for<R: Ready>(timeout: Duration, what: &str, mut cond: impl FnMut() -> R) -> R::Output {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond().ready() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        // Back off to 100 ms: a poll interval, not a synchronisation point.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
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
    #[should_panic(expected = "waiting for the impossible")]
    fn a_condition_that_never_holds_names_what_was_awaited() {
        wait_for(Duration::from_millis(20), "the impossible", || false);
    }
}
