//! The disk pool: a few named threads that run blocking work (storage reads and writes,
//! piece hashing, resume checks) so none of it runs on the tokio reactor.
//!
//! Jobs are boxed closures on a crossbeam channel; each job sends its own answer (usually to
//! a torrent task's channel). Callers batch work per job (all the block reads one torrent
//! loop iteration produced, or one whole piece), so the per-job allocation and the thread
//! wake-up are paid per batch, not per 16 KiB block. Dropping the pool closes the channel and
//! joins the threads after the queued jobs ran.

use std::thread::JoinHandle;

use crossbeam_channel::{Sender, unbounded};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads for blocking I/O and hashing.
#[derive(Debug)]
pub struct DiskPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl DiskPool {
    /// Starts `threads` workers (at least one), named `disk-00`, `disk-01`, ...
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = unbounded::<Job>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("disk-{i:02}"))
                    .spawn(move || {
                        for job in rx {
                            job();
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
        let pool = DiskPool::new(2).unwrap();
        for _ in 0..100 {
            let n = n.clone();
            pool.spawn(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        drop(pool);
        assert_eq!(n.load(Ordering::Relaxed), 100);
    }
}
