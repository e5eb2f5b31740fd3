//! instream-tracker: a BEP 15 UDP and BEP 3 HTTP tracker with fabric-aware peer lists,
//! serving only registered info-hashes unless open.
//!
//! Threads and tasks (all named, so `top -H` and panics say who is who):
//! - `udp-NN`: one per worker, a mio loop over its own SO_REUSEPORT sockets;
//! - `cleaning`: sweeps expired peers every `cleaning_interval_secs`;
//! - HTTP: one tokio task per listener, one per connection, on the caller's runtime.
//!
//! [`Tracker::run`] is the supervisor: it returns `Ok` when the shutdown future resolves,
//! and an error as soon as any worker ends on its own (panic or I/O error; a panic is
//! logged with the worker's name), so a tracker never keeps running with a dead worker
//! whose share of the port would go unanswered; the program then exits non-zero. One HTTP
//! connection's task that panics is logged and ends alone.
//! State is sharded by info-hash (`state.rs`); no lock is held across I/O.
//!
//! Sockets are bound by [`bind`] before `run`, so tests bind `127.0.0.1:0` and read the
//! ports back from [`Listeners`].

pub mod access;
pub mod config;
pub mod connection_id;
pub mod fabric_map;
mod http_worker;
pub mod program;
mod state;
pub mod stats;
pub mod swarm;
#[cfg(target_os = "linux")]
mod udp_batch;
mod udp_worker;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};

pub use config::Config;
pub use state::Handle;
pub use stats::StatsSnapshot;
pub use udp_worker::Processor;

use crate::fabric_map::FabricMap;
use crate::state::Shared;

/// Errors of the tracker library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configured file could not be read.
    #[error("reading {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A whitelist line is not a hex info-hash.
    #[error("whitelist {path}: line {line} is not a 40-digit hex info-hash")]
    Whitelist {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A fabric-map file does not parse.
    #[error("reading fabric map {path}")]
    FabricMap {
        /// The file.
        path: PathBuf,
        /// Which line and why.
        #[source]
        source: proto::fabric::FabricMapError,
    },
    /// Reload asked for, but no whitelist file is configured.
    #[error("no whitelist file is configured")]
    NoWhitelist,
    /// A socket could not be set up.
    #[error("binding {proto} socket {addr}")]
    Bind {
        /// "UDP" or "TCP".
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Some other I/O step failed.
    #[error("{what}")]
    Io {
        /// The step, as a verb phrase.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A worker thread or task ended while the tracker was meant to run.
    #[error("worker {name} stopped unexpectedly")]
    WorkerDied {
        /// Thread or task name.
        name: String,
    },
}

/// Panics when `INSTREAM_TEST_PANIC` names `component` (debug builds only; read once):
/// how tests inject a panic into the real binary to check the supervisor.
pub(crate) fn test_panic_point(component: &str) {
    if cfg!(debug_assertions) {
        static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let wanted = WANTED.get_or_init(|| std::env::var("INSTREAM_TEST_PANIC").ok());
        if wanted.as_deref() == Some(component) {
            panic!("INSTREAM_TEST_PANIC={component}: injected panic");
        }
    }
}

/// The text of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Sockets bound ahead of [`Tracker::run`].
#[derive(Debug)]
pub struct Listeners {
    /// `udp[w]` holds worker `w`'s socket on every UDP address (same ports for all `w`).
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    /// One listener per HTTP address.
    pub http: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// The bound UDP addresses (ports resolved).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .first()
            .map(|socks| socks.iter().filter_map(|s| s.local_addr().ok()).collect())
            .unwrap_or_default()
    }

    /// The bound HTTP addresses (ports resolved).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack sockets would make IPv4 clients look like IPv6 ones, and BEP 15 peer
        // lists differ by family: keep families on separate sockets.
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    if recv_buffer != 0 {
        s.set_recv_buffer_size(recv_buffer)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds every configured address: `workers` UDP sockets per UDP address sharing its port
/// (the first one resolves port 0), and one TCP listener per HTTP address.
pub fn bind(config: &Config) -> Result<Listeners, Error> {
    let workers = config.udp_workers();
    let mut udp: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    for &addr in &config.udp.listen {
        let bind_err = |source| Error::Bind {
            proto: "UDP",
            addr,
            source,
        };
        let first = udp_socket(addr, config.udp.recv_buffer_bytes).map_err(bind_err)?;
        let resolved = first.local_addr().map_err(bind_err)?;
        udp[0].push(first);
        for socks in udp.iter_mut().skip(1) {
            socks.push(udp_socket(resolved, config.udp.recv_buffer_bytes).map_err(bind_err)?);
        }
    }
    if config.udp.listen.is_empty() {
        udp.clear();
    }
    let mut http = Vec::new();
    for &addr in &config.http.listen {
        let bind_err = |source| Error::Bind {
            proto: "TCP",
            addr,
            source,
        };
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_err)?;
        if addr.is_ipv6() {
            s.set_only_v6(true).map_err(bind_err)?;
        }
        s.set_reuse_address(true).map_err(bind_err)?;
        s.set_nonblocking(true).map_err(bind_err)?;
        s.bind(&addr.into()).map_err(bind_err)?;
        s.listen(1024).map_err(bind_err)?;
        http.push(s.into());
    }
    Ok(Listeners { udp, http })
}

/// A configured tracker, ready to [`run`](Tracker::run).
pub struct Tracker {
    shared: Arc<Shared>,
}

impl Tracker {
    /// Loads the fabric map, the whitelist and the admin token file named in `config`.
    /// `admin_token`, when given, wins over the token file (the binary passes the
    /// environment's here, so the library never reads the environment itself).
    pub fn new(config: Config, admin_token: Option<String>) -> Result<Self, Error> {
        let fabric_map = match &config.fabric.map {
            Some(p) => FabricMap::read(p)?,
            None => FabricMap::default(),
        };
        let whitelist = match &config.access.whitelist {
            Some(p) => access::read_whitelist(p)?,
            None => Vec::new(),
        };
        let token = match (admin_token, &config.access.admin_token_file) {
            (Some(t), _) => Some(t),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| Error::ReadFile {
                        path: p.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let key: [u8; 32] = rand::thread_rng().r#gen();
        Ok(Self {
            shared: Arc::new(Shared::new(config, fabric_map, whitelist, token, key)),
        })
    }

    /// The control surface (reload, register, stats); usable while `run` runs.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// A request processor for benchmarks and tests (what a UDP worker runs per packet).
    pub fn processor(&self, seed: u64) -> Processor {
        Processor::new(self.shared.clone(), 0, seed)
    }

    /// Serves until `shutdown` resolves (then `Ok`) or a worker dies (then
    /// [`Error::WorkerDied`]). Must be called inside a tokio runtime, which carries the
    /// HTTP side; the UDP workers are plain threads.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let shared = self.shared;
        let (death_tx, mut death_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Sends the worker's name when dropped: on return, on error and on panic alike.
        // Panics are logged under the worker's name when it is joined, below.
        struct DeathNotice(String, tokio::sync::mpsc::UnboundedSender<String>);
        impl Drop for DeathNotice {
            fn drop(&mut self) {
                let _ = self.1.send(std::mem::take(&mut self.0));
            }
        }
        let panicked = |name: &str, message: String| {
            tracing::error!(component = %name, panic = %message, "worker panicked");
        };
        let io_err = |what| move |source| Error::Io { what, source };

        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut wakers = Vec::new();
        let seed: u64 = rand::thread_rng().r#gen();
        for (i, sockets) in listeners.udp.into_iter().enumerate() {
            let name = format!("udp-{:02}", i + 1);
            let poll = mio::Poll::new().map_err(io_err("create a mio poll"))?;
            let waker = mio::Waker::new(poll.registry(), udp_worker::WAKE_TOKEN)
                .map_err(io_err("create a mio waker"))?;
            wakers.push(waker);
            let processor = Processor::new(shared.clone(), i, seed.wrapping_add(i as u64));
            let notice = DeathNotice(name.clone(), death_tx.clone());
            let t = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let _notice = notice;
                    if let Err(e) = udp_worker::run(processor, poll, sockets) {
                        tracing::error!(error = %e, "UDP worker failed");
                    }
                })
                .map_err(io_err("spawn a UDP worker thread"))?;
            threads.push(t);
        }

        let cleaner = {
            let shared = shared.clone();
            let notice = DeathNotice("cleaning".into(), death_tx.clone());
            let every =
                Duration::from_secs(shared.config.swarm.cleaning_interval_secs.max(1).into());
            std::thread::Builder::new()
                .name("cleaning".into())
                .spawn(move || {
                    let _notice = notice;
                    while !shared.is_shutting_down() {
                        std::thread::park_timeout(every);
                        if shared.is_shutting_down() {
                            break;
                        }
                        shared.clean();
                    }
                })
                .map_err(io_err("spawn the cleaning thread"))?
        };

        let mut http_tasks = Vec::new();
        for (i, l) in listeners.http.into_iter().enumerate() {
            let listener = tokio::net::TcpListener::from_std(l)
                .map_err(io_err("register an HTTP listener"))?;
            let name = format!("http-{:02}", i + 1);
            let notice = DeathNotice(name.clone(), death_tx.clone());
            let shared = shared.clone();
            let task = tokio::spawn(async move {
                let _notice = notice;
                if let Err(e) = http_worker::serve(listener, shared).await {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            });
            http_tasks.push((name, task));
        }
        drop(death_tx);
        tracing::info!(
            udp_workers = threads.len(),
            http_listeners = http_tasks.len(),
            open = shared.config.access.open,
            "tracker running"
        );

        let result = tokio::select! {
            () = shutdown => Ok(()),
            Some(name) = death_rx.recv() => Err(Error::WorkerDied { name }),
        };

        shared.shutdown.store(true, Ordering::Relaxed);
        for w in &wakers {
            let _ = w.wake();
        }
        cleaner.thread().unpark();
        for (_, t) in &http_tasks {
            t.abort();
        }
        for (name, t) in http_tasks {
            if let Err(e) = t.await
                && e.is_panic()
            {
                panicked(&name, panic_text(&*e.into_panic()));
            }
        }
        threads.push(cleaner);
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .filter_map(|t| {
                    let name = t.thread().name().unwrap_or("?").to_owned();
                    t.join().err().map(|p| (name, panic_text(&*p)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (name, message) in joined {
            panicked(&name, message);
        }
        result
    }
}
