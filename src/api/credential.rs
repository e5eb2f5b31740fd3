//! Per-host agent credentials: stateless, verified without a lookup.
//!
//! A credential is `agent:<host>:<deployment>:<issued_ms>:<mac>` where `mac` is the hex
//! keyed BLAKE3 of the three fields under the server's secret ([`AgentKey`], kept in a 0600
//! file next to the database). `:` cannot occur in a host name or deployment id (both are
//! validated names: `A-Z a-z 0-9 . _ + -`), so a credential parses one way only; the MAC
//! input is length-prefixed for the same reason.
//!
//! The control server issues one per (host, deployment) when it dispatches; it lets that
//! host post its own events for that deployment and read manifests and torrents, nothing
//! else. Revocation is a small table (host, deployment or every deployment,
//! `revoked_before_ms`): a credential issued before that instant is refused ([`Revocations`],
//! cached in memory, written through to the store).

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

/// Prefix of every agent credential (the operator token is 64 hex digits, never this).
pub const PREFIX: &str = "agent:";

/// What a valid credential says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentClaim {
    pub host: String,
    pub deployment: String,
    pub issued_ms: u64,
}

/// The server's secret for agent credentials.
#[derive(Clone)]
pub struct AgentKey {
    key: [u8; 32],
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("agent key file {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent key file {path} is readable by group or others (mode {mode:o}): chmod 600 it")]
    Loose { path: String, mode: u32 },
    #[error("agent key file {path} does not hold 64 hex digits")]
    Malformed { path: String },
}

impl AgentKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::new(rand::random())
    }

    /// Reads the key at `path`, or makes one there (0600) if the file does not exist.
    /// A key file its group or others may read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let p = || path.display().to_string();
        let io = |source| KeyFileError::Io { path: p(), source };
        match std::fs::metadata(path) {
            Ok(m) => {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyFileError::Loose { path: p(), mode });
                }
                let text = std::fs::read_to_string(path).map_err(io)?;
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| KeyFileError::Malformed { path: p() })?;
                Ok(Self::new(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                let key = Self::generate();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(format!("{}\n", hex::encode(key.key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn mac(&self, host: &str, deployment: &str, issued_ms: u64) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"instream agent credential v1\0");
        for field in [host.as_bytes(), deployment.as_bytes()] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update(&issued_ms.to_le_bytes());
        h.finalize()
    }

    /// The credential of `host` for `deployment`, issued at `now_ms`.
    pub fn issue(&self, host: &str, deployment: &str, now_ms: u64) -> String {
        let mac = self.mac(host, deployment, now_ms);
        format!("{PREFIX}{host}:{deployment}:{now_ms}:{}", mac.to_hex())
    }

    /// What a presented credential says, if this key made it (constant-time MAC check).
    pub fn verify(&self, presented: &str) -> Option<AgentClaim> {
        let rest = presented.strip_prefix(PREFIX)?;
        let mut it = rest.split(':');
        let (host, deployment, issued, mac) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || host.is_empty() || deployment.is_empty() {
            return None;
        }
        let issued_ms: u64 = issued.parse().ok()?;
        let mac = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash's == is constant-time.
        (self.mac(host, deployment, issued_ms) == mac).then(|| AgentClaim {
            host: host.to_string(),
            deployment: deployment.to_string(),
            issued_ms,
        })
    }
}

/// Revoked credentials, by (host, deployment); deployment `""` means every deployment.
/// The store holds the same rows; this is the cache every request checks.
#[derive(Default)]
pub struct Revocations {
    before: RwLock<HashMap<(String, String), u64>>,
}

impl Revocations {
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, u64)>) -> Self {
        let r = Self::default();
        for (h, d, t) in rows {
            r.add(&h, &d, t);
        }
        r
    }

    /// Credentials of `host` (for `deployment`, or all if `""`) issued before `before_ms`
    /// are refused from now on.
    pub fn add(&self, host: &str, deployment: &str, before_ms: u64) {
        let mut m = self.before.write().expect("revocations lock");
        let e = m
            .entry((host.to_string(), deployment.to_string()))
            .or_insert(0);
        *e = (*e).max(before_ms);
    }

    pub fn is_revoked(&self, c: &AgentClaim) -> bool {
        let m = self.before.read().expect("revocations lock");
        [c.deployment.as_str(), ""].iter().any(|d| {
            m.get(&(c.host.clone(), (*d).to_string()))
                .is_some_and(|&t| c.issued_ms < t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_verifies_only_under_its_key_and_unchanged() {
        let k = AgentKey::generate();
        let c = k.issue("host-1", "d-1", 1234);
        assert!(c.starts_with("agent:host-1:d-1:1234:"), "{c}");
        assert_eq!(
            k.verify(&c),
            Some(AgentClaim {
                host: "host-1".into(),
                deployment: "d-1".into(),
                issued_ms: 1234
            })
        );
        assert_eq!(AgentKey::generate().verify(&c), None, "another key");
        for forged in [
            c.replace("host-1", "host-2"),
            c.replace("d-1", "d-2"),
            c.replace(":1234:", ":9999:"),
            format!("{c}:x"),
            c[..c.len() - 1].to_string(),
            "agent:host-1:d-1:1234".into(),
            String::new(),
        ] {
            assert_eq!(k.verify(&forged), None, "{forged}");
        }
    }

    #[test]
    fn revocation_refuses_older_credentials_of_that_host_only() {
        let claim = |h: &str, d: &str, t| AgentClaim {
            host: h.into(),
            deployment: d.into(),
            issued_ms: t,
        };
        let r = Revocations::default();
        assert!(!r.is_revoked(&claim("h1", "d1", 5)));
        r.add("h1", "d1", 10);
        assert!(r.is_revoked(&claim("h1", "d1", 5)));
        assert!(!r.is_revoked(&claim("h1", "d1", 10)), "issued after");
        assert!(!r.is_revoked(&claim("h1", "d2", 5)), "other deployment");
        assert!(!r.is_revoked(&claim("h2", "d1", 5)), "other host");
        r.add("h2", "", 10);
        assert!(r.is_revoked(&claim("h2", "d7", 5)), "every deployment");
        r.add("h1", "d1", 3);
        assert!(r.is_revoked(&claim("h1", "d1", 5)), "never moves back");
    }

    #[test]
    fn key_file_is_made_private_and_loose_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.key");
        let k = AgentKey::load_or_create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AgentKey::load_or_create(&p).unwrap();
        let c = k.issue("h", "d", 1);
        assert!(again.verify(&c).is_some(), "same key after reload");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AgentKey::load_or_create(&p),
            Err(KeyFileError::Loose { .. })
        ));
    }
}
