//! Where the CLI finds things: the config directory (token, server URL, publisher key,
//! inventory) and the data directory (database, host roots), plus how an operator command
//! picks its server and token.
//!
//! Config dir: `$INSTREAM_CONFIG_DIR`, else `$XDG_CONFIG_HOME/instream`, else
//! `~/.config/instream`. Data dir: `$INSTREAM_DATA_DIR`, else `$XDG_DATA_HOME/instream`, else
//! `~/.local/share/instream`. `instream up` writes `server` and `token` into the config dir,
//! (and `ca.pem`, the CA of its TLS certificate) so operator commands need no flags while it
//! runs.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("INSTREAM_CONFIG_DIR") {
        return d.into();
    }
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("instream"),
        _ => home().join(".config/instream"),
    }
}

pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("INSTREAM_DATA_DIR") {
        return d.into();
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("instream"),
        _ => home().join(".local/share/instream"),
    }
}

pub fn default_token_file() -> PathBuf {
    config_dir().join("token")
}

pub fn default_server_file() -> PathBuf {
    config_dir().join("server")
}

/// Where `instream up --keep` leaves the CA of its server's certificate for the CLI.
pub fn default_ca_file() -> PathBuf {
    config_dir().join("ca.pem")
}

/// The CA an operator command checks `server` with: `--ca` / `INSTREAM_CA`, else for an
/// https server the config dir's `ca.pem` if there (an https server without either is an
/// error when the client is built).
pub fn client_ca(server: &str, ca: Option<&Path>) -> Result<Option<engine::https::Ca>> {
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => {
            let f = default_ca_file();
            if !engine::https::is_https(server) || !f.exists() {
                return Ok(None);
            }
            f
        }
    };
    Ok(Some(engine::https::Ca::load(&path)?))
}

/// Writes a secret file readable by its owner only (created, or truncated).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    // `mode` applies only to a new file: an existing one may have been looser.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("make {} private", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Reads a token file: its first non-empty line, trimmed. A file that its group or others
/// may read is refused: the token is a credential (`chmod 600 FILE`).
pub fn read_token(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("read token file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "token file {} is readable by group or others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read token file {}", path.display()))?;
    let tok = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if tok.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    Ok(tok.to_string())
}

/// The control server and token an operator command uses.
pub fn client_settings(
    server: Option<&str>,
    token_file: Option<&Path>,
) -> Result<(String, String)> {
    let server = match server.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => {
            let f = default_server_file();
            match std::fs::read_to_string(&f) {
                Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
                _ => bail!(
                    "no control server: pass --server URL, set INSTREAM_SERVER, or run `instream up --keep` (it writes {})",
                    f.display()
                ),
            }
        }
    };
    let token = match std::env::var("INSTREAM_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let f = token_file
                .map(Path::to_path_buf)
                .unwrap_or_else(default_token_file);
            if !f.exists() {
                bail!(
                    "no API token: set INSTREAM_TOKEN, pass --token-file FILE, or create {}",
                    f.display()
                );
            }
            read_token(&f)?
        }
    };
    Ok((server.trim_end_matches('/').to_string(), token))
}
