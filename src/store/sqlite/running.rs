//! "What runs where": each host's active version of a product, since when and through which
//! deployment or rollback, read from `installed` (one row per product and host that ever
//! reported a success) plus every host a deployment of the product targeted that never did
//! (listed as unknown).

use super::super::{Result, RunningLine, VersionChange};
use super::Store;
use crate::deploy::model::Millis;
use rusqlite::params;

impl Store {
    /// Hosts of `product` (in `fabric`, if given), sorted by fabric then host.
    pub fn running(&self, product: &str, fabric: Option<&str>) -> Result<Vec<RunningLine>> {
        let mut st = self.conn.prepare_cached(
            "SELECT i.host, i.fabric, i.current, i.previous, i.since, i.deployment, d.kind
               FROM installed i LEFT JOIN deployments d ON d.id = i.deployment
              WHERE i.product = ?1 AND (?2 IS NULL OR i.fabric = ?2)
             UNION ALL
             SELECT DISTINCT h.host, h.fabric, NULL, NULL, NULL, NULL, NULL
               FROM hosts h JOIN deployments d ON d.id = h.deployment
              WHERE d.product = ?1 AND (?2 IS NULL OR h.fabric = ?2)
                AND NOT EXISTS (SELECT 1 FROM installed i
                                 WHERE i.product = ?1 AND i.host = h.host)
             ORDER BY 2, 1",
        )?;
        let rows = st.query_map(params![product, fabric], |r| {
            Ok(RunningLine {
                host: r.get(0)?,
                fabric: r.get(1)?,
                version: r.get(2)?,
                previous: r.get(3)?,
                since: r.get::<_, Option<i64>>(4)?.map(|v| v as Millis),
                deployment: r.get(5)?,
                kind: r.get(6)?,
            })
        })?;
        let mut out: Vec<RunningLine> = rows.collect::<rusqlite::Result<_>>()?;
        // An unknown host that deployments listed under two fabrics shows once.
        let mut unknown = std::collections::HashSet::new();
        out.retain(|l| l.version.is_some() || unknown.insert(l.host.clone()));
        Ok(out)
    }

    /// Every change of `host`'s active version of `product`, oldest first.
    pub fn version_history(&self, product: &str, host: &str) -> Result<Vec<VersionChange>> {
        let mut st = self.conn.prepare_cached(
            "SELECT h.version, h.at, h.deployment, d.kind, h.fabric
               FROM install_history h LEFT JOIN deployments d ON d.id = h.deployment
              WHERE h.product = ?1 AND h.host = ?2 ORDER BY h.at, h.rowid",
        )?;
        let rows = st.query_map(params![product, host], |r| {
            Ok(VersionChange {
                version: r.get(0)?,
                at: r.get::<_, i64>(1)? as Millis,
                deployment: r.get(2)?,
                kind: r.get(3)?,
                fabric: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
