//! The disk pool: a few named threads that run blocking work (storage reads and writes,
//! piece hashing, resume checks) so none of it runs on the tokio reactor.
//!
//! Jobs are boxed closures on a crossbeam channel; each job sends its own answer (usually to
//! a torrent task's channel). Callers batch work per job (all the block reads one torrent
//! loop iteration produced, or one whole piece), so the per-job allocation and the thread
//! wake-up are paid per batch, not per 16 KiB block. Dropping the pool closes the channel and
//! joins the threads after the queued jobs ran.
//!
//! A job that panics is caught: the thread logs it under its name and trips the session's
//! [`Failure`] (the job's answer is lost, so whoever waits for it would wait forever; the
//! program exits instead), then goes on with the next job.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, unbounded};

use crate::supervise::{Failure, panic_message, test_panic_point};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads for blocking I/O and hashing.
#[derive(Debug)]
pub struct DiskPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl DiskPool {
    /// Starts `threads` workers (at least one), named `disk-00`, `disk-01`, ...; a job
    /// that panics trips `failure`.
    pub fn new(threads: usize, failure: Arc<Failure>) -> std::io::Result<Self> {
        let (tx, rx) = unbounded::<Job>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let failure = failure.clone();
                let name = format!("disk-{i:02}");
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || {
                        for job in rx {
                            let run = AssertUnwindSafe(|| {
                                test_panic_point("disk");
                                job();
                            });
                            if let Err(p) = std::panic::catch_unwind(run) {
                                failure.trip(&name, &panic_message(&*p));
                            }
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            tx: Some(tx),
            threads,
        })
    }

    /// Queues `job`. Jobs start in order, on whichever worker is free.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            // Send fails only once every worker is gone, i.e. during drop: nothing to do then.
            let _ = tx.send(Box::new(job));
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            // A worker that panicked already printed its panic; do not panic again in drop.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_before_drop_returns() {
        let n = Arc::new(AtomicUsize::new(0));
        let pool = DiskPool::new(2, Arc::default()).unwrap();
        for _ in 0..100 {
            let n = n.clone();
            pool.spawn(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        drop(pool);
        assert_eq!(n.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn a_panicking_job_trips_the_failure_and_the_thread_goes_on() {
        let failure = Arc::new(Failure::default());
        let pool = DiskPool::new(1, failure.clone()).unwrap();
        pool.spawn(|| panic!("bad job"));
        let (tx, rx) = std::sync::mpsc::channel();
        pool.spawn(move || tx.send(()).unwrap());
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the next job still runs");
        assert_eq!(failure.get().as_deref(), Some("disk-00 panicked: bad job"));
    }
}
