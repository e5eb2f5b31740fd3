//! SQLite status store (rusqlite, WAL). One writer connection does all writes; a second
//! connection on the same file serves reads (WAL lets them run beside the writer).
//!
//! Durability: every write is one transaction, committed before the caller answers anyone
//! (write-ahead before ack). With WAL and `synchronous=NORMAL` a commit survives the
//! process being killed (SIGKILL), which is what the control server promises; pass
//! `durable: true` to `open` for `synchronous=FULL` (survives power loss, one fsync per
//! commit).
//!
//! Ingest speed comes from batching: a whole batch of events is one transaction with cached
//! prepared statements (3 short statements per event). Status speed comes from the
//! `hosts_state(deployment, state, fabric)` index: progress is a GROUP BY over an index
//! range, never a table scan.

use super::{
    Blob, Counts, HostFilter, HostLine, IngestOutcome, NewVersion, Progress, Result, StoreError,
    StoredDeployment, VersionInfo, migrations,
};
use crate::deploy::machine::HostRecord;
use crate::deploy::model::{
    DeploymentKind, DeploymentSpec, HostEvent, HostState, HostStatus, Millis, PhaseRecord,
    StepKind, Target,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;

mod running;

pub struct Store {
    conn: Connection,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

fn unjson<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn state_of(what: &'static str, s: &str) -> Result<HostState> {
    HostState::parse(s).ok_or_else(|| StoreError::Corrupt {
        what,
        detail: format!("unknown host state {s:?}"),
    })
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies migrations.
    pub fn open(path: &Path, durable: bool) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn, durable)
    }

    /// A private in-memory store (tests, benchmarks).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, false)
    }

    fn init(mut conn: Connection, durable: bool) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // journal_mode answers with a row, so it cannot go through execute_batch's
        // "no rows" path on every SQLite version; query it.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch(if durable {
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
        } else {
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        })?;
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&mut conn, crate::deploy::model::now_millis())?;
        Ok(Self { conn })
    }

    // ---- agent credentials ----

    /// Refuses `host`'s agent credentials (for `deployment`, or every one if `""`) issued
    /// before `before_ms`. An earlier instant than one already recorded changes nothing.
    pub fn revoke(&mut self, host: &str, deployment: &str, before_ms: Millis) -> Result<()> {
        self.conn.execute(
            "INSERT INTO revocations(host, deployment, revoked_before) VALUES (?1, ?2, ?3)
             ON CONFLICT(host, deployment)
             DO UPDATE SET revoked_before = MAX(revoked_before, excluded.revoked_before)",
            params![host, deployment, before_ms as i64],
        )?;
        Ok(())
    }

    /// Every revocation: (host, deployment or `""`, revoked_before ms).
    pub fn revocations(&self) -> Result<Vec<(String, String, Millis)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT host, deployment, revoked_before FROM revocations")?;
        let rows = st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as Millis))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- product registry ----

    /// Registers a version. Registering the same (product, version, variant) again with the
    /// same info-hash is a no-op (publish may be retried); with another one it is a conflict.
    pub fn register_version(&mut self, v: &NewVersion, now: Millis) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT info_hash FROM versions WHERE product=?1 AND version=?2 AND variant=?3",
                params![v.product, v.version, v.variant],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(existing) = existing {
            if existing.eq_ignore_ascii_case(&v.info_hash) {
                return Ok(false);
            }
            return Err(StoreError::Conflict {
                product: v.product.clone(),
                version: v.version.clone(),
                variant: v.variant.clone(),
                existing,
            });
        }
        tx.execute(
            "INSERT OR IGNORE INTO products(name, created_at) VALUES (?1, ?2)",
            params![v.product, now as i64],
        )?;
        tx.execute(
            "INSERT INTO versions(product, version, variant, info_hash, size, manifest, torrent, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                v.product,
                v.version,
                v.variant,
                v.info_hash.to_ascii_lowercase(),
                v.size as i64,
                v.manifest,
                v.torrent,
                now as i64
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    pub fn products(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM products ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn product_exists(&self, product: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM products WHERE name=?1",
                [product],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn versions(&self, product: &str) -> Result<Vec<VersionInfo>> {
        let mut st = self.conn.prepare_cached(
            "SELECT product, version, variant, info_hash, size, created_at FROM versions
             WHERE product=?1 ORDER BY created_at, version, variant",
        )?;
        let rows = st.query_map([product], version_info)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The build of `version` for `variant`: the variant's own build if registered, else the
    /// variant-less one.
    pub fn version(
        &self,
        product: &str,
        version: &str,
        variant: Option<&str>,
    ) -> Result<Option<VersionInfo>> {
        let mut st = self.conn.prepare_cached(
            "SELECT product, version, variant, info_hash, size, created_at FROM versions
             WHERE product=?1 AND version=?2 AND variant IN (?3, '')
             ORDER BY variant DESC LIMIT 1",
        )?;
        Ok(st
            .query_row(
                params![product, version, variant.unwrap_or("")],
                version_info,
            )
            .optional()?)
    }

    /// Every registered info-hash (hex), for re-registering them with a restarted tracker.
    pub fn all_info_hashes(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT info_hash FROM versions ORDER BY info_hash")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn version_blob(
        &self,
        product: &str,
        version: &str,
        variant: Option<&str>,
        which: Blob,
    ) -> Result<Option<Vec<u8>>> {
        let col = match which {
            Blob::Manifest => "manifest",
            Blob::Torrent => "torrent",
        };
        let sql = format!(
            "SELECT {col} FROM versions WHERE product=?1 AND version=?2 AND variant IN (?3, '')
             ORDER BY variant DESC LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(
                &sql,
                params![product, version, variant.unwrap_or("")],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ---- deployments ----

    /// What each of `hosts` runs of `product` now: host -> (current, previous).
    pub fn installed(
        &self,
        product: &str,
        hosts: &[String],
    ) -> Result<HashMap<String, (String, Option<String>)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT current, previous FROM installed WHERE product=?1 AND host=?2",
        )?;
        let mut out = HashMap::new();
        for h in hosts {
            if let Some(row) = st
                .query_row(params![product, h], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            {
                out.insert(h.clone(), row);
            }
        }
        Ok(out)
    }

    /// Hosts of `fabric` that run `product`: (host, current, previous).
    pub fn installed_in_fabric(
        &self,
        product: &str,
        fabric: &str,
    ) -> Result<Vec<(String, String, Option<String>)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT host, current, previous FROM installed WHERE product=?1 AND fabric=?2
             ORDER BY host",
        )?;
        let rows = st.query_map(params![product, fabric], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores a new deployment and its host rows (all pending) in one transaction.
    pub fn create_deployment(
        &mut self,
        id: &str,
        spec: &DeploymentSpec,
        steps: &[StepKind],
        hosts: &[(Target, usize)],
        now: Millis,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let kind = match spec.kind {
            DeploymentKind::Deploy => "deploy",
            DeploymentKind::Rollback { .. } => "rollback",
            DeploymentKind::Service { .. } => "service",
        };
        let phase = PhaseRecord::default();
        let n = tx.execute(
            "INSERT OR IGNORE INTO deployments(id, kind, product, version, spec, steps, phase, state, active, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9)",
            params![
                id,
                kind,
                spec.product,
                spec.version,
                json(spec),
                json(&steps),
                json(&phase),
                phase.state().as_str(),
                now as i64
            ],
        )?;
        if n == 0 {
            return Err(StoreError::DuplicateDeployment { id: id.into() });
        }
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO hosts(deployment, host, fabric, version, previous, step, state, rank, seq, ts, bytes, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, 0, ?7, 0, NULL)",
            )?;
            for (t, step) in hosts {
                st.execute(params![
                    id,
                    t.host,
                    t.fabric,
                    t.version,
                    t.previous,
                    *step as i64,
                    now as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Persists a phase change. `active` says whether the driver still has work for it.
    pub fn save_phase(
        &mut self,
        id: &str,
        phase: &PhaseRecord,
        active: bool,
        now: Millis,
    ) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE deployments SET phase=?2, state=?3, active=?4, updated_at=?5 WHERE id=?1",
            params![id, json(phase), phase.state().as_str(), active, now as i64],
        )?;
        if n == 0 {
            return Err(StoreError::NoDeployment { id: id.into() });
        }
        Ok(())
    }

    pub fn record_job(
        &mut self,
        id: &str,
        step: usize,
        job: &str,
        hosts: usize,
        now: Millis,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO jobs(deployment, step, job, hosts, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, step as i64, job, hosts as i64, now as i64],
        )?;
        Ok(())
    }

    pub fn deployment(&self, id: &str) -> Result<Option<StoredDeployment>> {
        let row = self
            .conn
            .query_row(
                "SELECT id, spec, steps, phase, created_at, updated_at FROM deployments WHERE id=?1",
                [id],
                deployment_row,
            )
            .optional()?;
        row.map(decode_deployment).transpose()
    }

    /// Most recent first.
    pub fn deployments(&self, limit: usize) -> Result<Vec<StoredDeployment>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, spec, steps, phase, created_at, updated_at FROM deployments
             ORDER BY created_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], deployment_row)?;
        rows.map(|r| decode_deployment(r?)).collect()
    }

    /// Deployments the driver must resume after a restart.
    pub fn active_deployments(&self) -> Result<Vec<StoredDeployment>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, spec, steps, phase, created_at, updated_at FROM deployments
             WHERE active = 1 ORDER BY created_at",
        )?;
        let rows = st.query_map([], deployment_row)?;
        rows.map(|r| decode_deployment(r?)).collect()
    }

    /// A deployment's host rows, for restoring its machine.
    pub fn host_records(&self, id: &str) -> Result<Vec<HostRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT host, fabric, version, previous, step, state, seq, ts, bytes, reason
             FROM hosts WHERE deployment=?1 ORDER BY host",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                Target {
                    host: r.get(0)?,
                    fabric: r.get(1)?,
                    version: r.get(2)?,
                    previous: r.get(3)?,
                },
                r.get::<_, i64>(4)? as usize,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)? as u64,
                r.get::<_, i64>(7)? as u64,
                r.get::<_, i64>(8)? as u64,
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (target, step, state, seq, ts, bytes, reason) = row?;
            out.push(HostRecord {
                target,
                step,
                status: HostStatus {
                    state: state_of("host state", &state)?,
                    seq,
                    timestamp: ts,
                    bytes,
                    reason,
                },
            });
        }
        Ok(out)
    }

    // ---- events ----

    /// Stores a batch of host events in one transaction (write-ahead: call before acking)
    /// and folds each new one into its host's current state under the maximum rule. A
    /// success also records what the host now runs (`installed`).
    pub fn ingest(&mut self, events: &[HostEvent], received_at: Millis) -> Result<IngestOutcome> {
        let tx = self.conn.transaction()?;
        let mut out = IngestOutcome::default();
        let mut products: HashMap<String, Option<String>> = HashMap::new();
        {
            let mut host_q = tx.prepare_cached(
                "SELECT rank, seq, fabric, version FROM hosts WHERE deployment=?1 AND host=?2",
            )?;
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO events(deployment, host, seq, fabric, state, bytes, ts, reason, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut win = tx.prepare_cached(
                "UPDATE hosts SET state=?3, rank=?4, seq=?5, ts=?6, reason=?7, bytes=max(bytes, ?8)
                 WHERE deployment=?1 AND host=?2",
            )?;
            let mut bytes_only = tx.prepare_cached(
                "UPDATE hosts SET bytes=max(bytes, ?3) WHERE deployment=?1 AND host=?2",
            )?;
            // A service command's success changes nothing about what a host runs.
            let mut product_q = tx.prepare_cached(
                "SELECT product FROM deployments WHERE id=?1 AND kind != 'service'",
            )?;
            // History first: it is written only when `current` changes (or is new).
            let mut history = tx.prepare_cached(
                "INSERT INTO install_history(product, host, fabric, version, deployment, at)
                 SELECT ?1, ?2, ?3, ?4, ?6, ?5
                 WHERE NOT EXISTS (SELECT 1 FROM installed
                                   WHERE product=?1 AND host=?2 AND current=?4)",
            )?;
            let mut installed = tx.prepare_cached(
                "INSERT INTO installed(product, host, fabric, current, previous, updated_at,
                                       since, deployment)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?5, ?6)
                 ON CONFLICT(product, host) DO UPDATE SET
                   previous = CASE WHEN installed.current = excluded.current
                                   THEN installed.previous ELSE installed.current END,
                   since = CASE WHEN installed.current = excluded.current
                                THEN installed.since ELSE excluded.since END,
                   deployment = CASE WHEN installed.current = excluded.current
                                     THEN installed.deployment ELSE excluded.deployment END,
                   current = excluded.current,
                   fabric = excluded.fabric,
                   updated_at = excluded.updated_at",
            )?;
            for (i, ev) in events.iter().enumerate() {
                let Some((rank, seq, fabric, version)) = host_q
                    .query_row(params![ev.deployment, ev.host], |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u8,
                            r.get::<_, i64>(1)? as u64,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })
                    .optional()?
                else {
                    out.rejected.push((
                        i,
                        format!(
                            "host {} is not a target of deployment {}",
                            ev.host, ev.deployment
                        ),
                    ));
                    continue;
                };
                let inserted = ins.execute(params![
                    ev.deployment,
                    ev.host,
                    ev.seq as i64,
                    fabric,
                    ev.state.as_str(),
                    ev.bytes as i64,
                    ev.timestamp as i64,
                    ev.reason,
                    received_at as i64
                ])?;
                if inserted == 0 {
                    out.duplicates += 1;
                    continue;
                }
                out.new.push(i);
                if HostStatus::order_key(ev.state, ev.seq) > (rank, seq) {
                    win.execute(params![
                        ev.deployment,
                        ev.host,
                        ev.state.as_str(),
                        ev.state.rank() as i64,
                        ev.seq as i64,
                        ev.timestamp as i64,
                        ev.reason,
                        ev.bytes as i64
                    ])?;
                    if ev.state == HostState::Success {
                        let product = match products.get(&ev.deployment) {
                            Some(p) => p.clone(),
                            None => {
                                let p: Option<String> = product_q
                                    .query_row([&ev.deployment], |r| r.get(0))
                                    .optional()?;
                                products.insert(ev.deployment.clone(), p.clone());
                                p
                            }
                        };
                        if let Some(product) = product {
                            let row = params![
                                product,
                                ev.host,
                                fabric,
                                version,
                                received_at as i64,
                                ev.deployment
                            ];
                            history.execute(row)?;
                            installed.execute(row)?;
                        }
                    }
                } else if ev.bytes > 0 {
                    bytes_only.execute(params![ev.deployment, ev.host, ev.bytes as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Every stored event of a host, in sequence order (for audits and tests).
    pub fn events_of(&self, id: &str, host: &str) -> Result<Vec<HostEvent>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, fabric, state, bytes, ts, reason FROM events
             WHERE deployment=?1 AND host=?2 ORDER BY seq",
        )?;
        let rows = st.query_map(params![id, host], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)? as u64,
                r.get::<_, i64>(4)? as u64,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, fabric, state, bytes, timestamp, reason) = row?;
            out.push(HostEvent {
                deployment: id.into(),
                host: host.into(),
                fabric,
                seq,
                state: state_of("event state", &state)?,
                bytes,
                timestamp,
                reason,
            });
        }
        Ok(out)
    }

    pub fn event_count(&self, id: &str) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM events WHERE deployment=?1",
            [id],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    // ---- status ----

    /// Host counts by state, overall and per fabric: one aggregate over the `hosts_state`
    /// index.
    pub fn progress(&self, id: &str) -> Result<Progress> {
        let mut st = self.conn.prepare_cached(
            "SELECT state, fabric, count(*) FROM hosts WHERE deployment=?1 GROUP BY state, fabric",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        let mut p = Progress::default();
        for row in rows {
            let (state, fabric, n) = row?;
            let state = state_of("host state", &state)?;
            p.all.add(state, n);
            p.fabrics
                .entry(fabric)
                .or_insert_with(Counts::default)
                .add(state, n);
        }
        Ok(p)
    }

    /// Per-host lines in timestamp order, optionally of one fabric.
    pub fn host_lines(
        &self,
        id: &str,
        filter: HostFilter,
        fabric: Option<&str>,
    ) -> Result<Vec<HostLine>> {
        let states = filter.states();
        let placeholders: Vec<String> = (0..states.len()).map(|i| format!("?{}", i + 3)).collect();
        let sql = format!(
            "SELECT state, ts, host, fabric, version, bytes, reason, step
             FROM hosts
             WHERE deployment=?1 AND state IN ({}) AND (?2 IS NULL OR fabric=?2)
             ORDER BY ts, host",
            placeholders.join(",")
        );
        let first_is_canary = match self.deployment(id)? {
            Some(d) => d.steps.first() == Some(&StepKind::Canary),
            None => return Ok(Vec::new()),
        };
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![
            Box::new(id.to_string()),
            Box::new(fabric.map(str::to_string)),
        ];
        for s in states {
            args.push(Box::new(s.as_str()));
        }
        let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)? as u64,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)? == 0,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (state, timestamp, host, fabric, version, bytes, reason, step0) = row?;
            let canary = step0 && first_is_canary;
            out.push(HostLine {
                state: state_of("host state", &state)?,
                timestamp,
                host,
                fabric,
                version,
                bytes,
                reason,
                canary,
            });
        }
        Ok(out)
    }

    /// Counts of deployments by state (for /metrics).
    pub fn deployment_state_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM deployments GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

type DeploymentRow = (String, String, String, String, i64, i64);

fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode_deployment(row: DeploymentRow) -> Result<StoredDeployment> {
    let (id, spec, steps, phase, created_at, updated_at) = row;
    Ok(StoredDeployment {
        id,
        spec: unjson("deployment spec", &spec)?,
        steps: unjson("deployment steps", &steps)?,
        phase: unjson("deployment phase", &phase)?,
        created_at: created_at as u64,
        updated_at: updated_at as u64,
    })
}

fn version_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        product: r.get(0)?,
        version: r.get(1)?,
        variant: r.get(2)?,
        info_hash: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        created_at: r.get::<_, i64>(5)? as u64,
    })
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
