//! The async edge of the store: a writer connection and a reader connection, each behind a
//! mutex, used from tokio through `spawn_blocking` so SQLite never blocks a runtime worker.
//! Reads (status, the page, /metrics) go to the reader so a large ingest batch does not stall
//! them; WAL lets the two connections work side by side.

use super::{Result, Store};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Store>>,
    reader: Arc<Mutex<Store>>,
}

impl Db {
    /// Opens the file twice (writer first, so it applies migrations alone).
    pub fn open(path: &Path, durable: bool) -> Result<Self> {
        let writer = Store::open(path, durable)?;
        let reader = Store::open(path, durable)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `f` on the writer connection on the blocking pool.
    pub async fn write<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let w = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the data is still a valid SQLite
            // connection (the transaction rolled back), so keep going.
            let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
        .expect("store task panicked")
    }

    /// Runs `f` on the reader connection on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let r = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let g = r.lock().unwrap_or_else(|p| p.into_inner());
            f(&g)
        })
        .await
        .expect("store task panicked")
    }
}
