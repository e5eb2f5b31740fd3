//! Panic supervision of the engine's long-running parts (torrent tasks, disk threads). A
//! panic is caught where the part runs, logged with the part's name, and trips the
//! session's [`Failure`]; the programs wait on it next to their signals and exit non-zero,
//! so a process never serves on with a torrent or a disk thread gone (whose answers other
//! parts would wait for forever).
//!
//! [`test_panic_point`] is how tests inject a panic into a real binary: in debug builds only,
//! `INSTREAM_TEST_PANIC=<component>` makes that component panic where it calls the point.

use std::any::Any;
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

/// Set once any supervised part has panicked; says which one first.
#[derive(Debug, Default)]
pub struct Failure {
    tripped: CancellationToken,
    first: Mutex<Option<String>>,
}

impl Failure {
    /// Records that `component` panicked (`message`), logs it, and wakes [`Failure::wait`].
    pub fn trip(&self, component: &str, message: &str) {
        tracing::error!(component, panic = message, "component panicked");
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(format!("{component} panicked: {message}"));
        }
        drop(first);
        self.tripped.cancel();
    }

    /// What failed first, if anything has.
    pub fn get(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves with "`component` panicked: `message`" once a part has panicked.
    pub async fn wait(&self) -> String {
        self.tripped.cancelled().await;
        self.get().unwrap_or_default()
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Panics when `INSTREAM_TEST_PANIC` names `component` (debug builds only; the variable is
/// read once). Release builds compile it to nothing.
pub fn test_panic_point(component: &str) {
    if cfg!(debug_assertions) {
        static WANTED: OnceLock<Option<String>> = OnceLock::new();
        let wanted = WANTED.get_or_init(|| std::env::var("INSTREAM_TEST_PANIC").ok());
        if wanted.as_deref() == Some(component) {
            panic!("INSTREAM_TEST_PANIC={component}: injected panic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_kept_and_wakes_waiters() {
        let f = std::sync::Arc::new(Failure::default());
        assert_eq!(f.get(), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let waiter = {
            let f = f.clone();
            rt.spawn(async move { f.wait().await })
        };
        f.trip("disk-00", "boom");
        f.trip("torrent", "later");
        assert_eq!(rt.block_on(waiter).unwrap(), "disk-00 panicked: boom");
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let e = std::panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(&*e), "literal");
        let n = 7;
        let e = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*e), "formatted 7");
    }
}
