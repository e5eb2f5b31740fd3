//! Schema migrations of the status store: an append-only list, applied in order, each in its
//! own transaction, recorded in `schema_migrations`. Never edit a shipped migration; add one.
//!
//! Invariants the queries rely on:
//! - `hosts` has one row per (deployment, target host), created with the deployment; its
//!   state columns hold the winning event under the maximum rule (rank, seq);
//! - `events` keeps every distinct event, keyed (deployment, host, seq) — the idempotency key;
//! - `installed` holds, per (product, host), the version a success last activated and the one
//!   before it (what "rollback to previous" means);
//! - `revocations` has one row per (host, deployment or ''), its instant only moving forward;
//! - `installed.since`/`installed.deployment` say when and through which deployment (or
//!   rollback) `current` became current; `install_history` has one row per such change.

use rusqlite::{Connection, params};

/// (version, SQL). Versions are consecutive from 1.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE products (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE versions (
    product     TEXT NOT NULL REFERENCES products(name),
    version     TEXT NOT NULL,
    variant     TEXT NOT NULL DEFAULT '',   -- '' = built for every variant
    info_hash   TEXT NOT NULL,              -- 40 hex digits
    size        INTEGER NOT NULL,           -- payload bytes
    manifest    BLOB NOT NULL,              -- signed manifest, as published
    torrent     BLOB NOT NULL,              -- .torrent bytes, as published
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (product, version, variant)
) WITHOUT ROWID;
CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,              -- deploy | rollback
    product     TEXT NOT NULL,
    version     TEXT NOT NULL,
    spec        TEXT NOT NULL,              -- JSON DeploymentSpec
    steps       TEXT NOT NULL,              -- JSON [StepKind]
    phase       TEXT NOT NULL,              -- JSON PhaseRecord
    state       TEXT NOT NULL,              -- running | awaiting_promotion | done | halted
    active      INTEGER NOT NULL,           -- 1 while the driver has work for it
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX deployments_active ON deployments(active) WHERE active = 1;
CREATE INDEX deployments_created ON deployments(created_at);
CREATE TABLE hosts (
    deployment  TEXT NOT NULL,
    host        TEXT NOT NULL,
    fabric      TEXT NOT NULL,
    version     TEXT NOT NULL,              -- what this host is to run
    previous    TEXT,                       -- what it ran before, if known
    step        INTEGER NOT NULL,
    state       TEXT NOT NULL,
    rank        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,           -- ms, the winning event's timestamp
    bytes       INTEGER NOT NULL,
    reason      TEXT,
    PRIMARY KEY (deployment, host)
) WITHOUT ROWID;
-- Serves both the per-fabric progress aggregate and the per-state host lists.
CREATE INDEX hosts_state ON hosts(deployment, state, fabric);
CREATE TABLE events (
    deployment  TEXT NOT NULL,
    host        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    fabric      TEXT NOT NULL,
    state       TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    reason      TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (deployment, host, seq)
) WITHOUT ROWID;
CREATE TABLE installed (
    product     TEXT NOT NULL,
    host        TEXT NOT NULL,
    fabric      TEXT NOT NULL,
    current     TEXT NOT NULL,
    previous    TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (product, host)
) WITHOUT ROWID;
CREATE INDEX installed_fabric ON installed(product, fabric);
CREATE TABLE jobs (
    deployment  TEXT NOT NULL,
    step        INTEGER NOT NULL,
    job         TEXT NOT NULL,
    hosts       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (deployment, job)
) WITHOUT ROWID;
"#,
    ),
    (
        2,
        r#"
-- Revoked agent credentials: those of `host` for `deployment` ('' = every deployment)
-- issued before `revoked_before` (ms) are refused.
CREATE TABLE revocations (
    host            TEXT NOT NULL,
    deployment      TEXT NOT NULL DEFAULT '',
    revoked_before  INTEGER NOT NULL,
    PRIMARY KEY (host, deployment)
) WITHOUT ROWID;
"#,
    ),
    (
        3,
        r#"
-- "What runs where": since when a host runs its current version, which deployment put it
-- there, and every change before (rows written before this migration count from their last
-- update and name no deployment).
ALTER TABLE installed ADD COLUMN since INTEGER;
ALTER TABLE installed ADD COLUMN deployment TEXT;
UPDATE installed SET since = updated_at;
CREATE TABLE install_history (
    product     TEXT NOT NULL,
    host        TEXT NOT NULL,
    fabric      TEXT NOT NULL,
    version     TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX install_history_host ON install_history(product, host, at);
"#,
    ),
];

/// Applies every migration newer than the database; returns the schema version.
pub fn migrate(conn: &mut Connection, now: u64) -> rusqlite::Result<u32> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: u32 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut v = current;
    for &(version, sql) in MIGRATIONS.iter().filter(|(ver, _)| *ver > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)",
            params![version, now as i64],
        )?;
        tx.commit()?;
        v = version;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_consecutive_and_idempotent() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        let mut c = Connection::open_in_memory().unwrap();
        let v = migrate(&mut c, 1).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        assert_eq!(migrate(&mut c, 2).unwrap(), v, "second run applies nothing");
        let n: i64 = c
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
    }
}
