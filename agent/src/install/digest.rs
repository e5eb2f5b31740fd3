//! The payload as recorded: safe resolution of a recorded path under a version directory,
//! and the whole-payload BLAKE3 digest checked before any version is activated.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{InstallError, RecordFile, Result, io_err};

/// Resolves a recorded `/`-separated path under `dir`, refusing escapes.
pub fn payload_path(dir: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = dir.to_path_buf();
    let mut any = false;
    for c in rel.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return Err(InstallError::UnsafePath(rel.to_string()));
        }
        p.push(c);
        any = true;
    }
    if !any {
        return Err(InstallError::UnsafePath(rel.to_string()));
    }
    Ok(p)
}

/// BLAKE3 of `files` under `dir`, concatenated in order, checking each file's size first.
pub fn payload_digest(dir: &Path, files: &[RecordFile]) -> Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let path = payload_path(dir, &f.path)?;
        let mut file = File::open(&path).map_err(io_err("open", &path))?;
        let actual = file.metadata().map_err(io_err("stat", &path))?.len();
        if actual != f.size {
            return Err(InstallError::Size {
                path,
                actual,
                expected: f.size,
            });
        }
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(*h.finalize().as_bytes())
}
