//! Archive formats a fetched stream may be, named by the URL's suffix, and unpacking one from
//! a reader as it streams (tar refuses absolute paths and `..`, so an archive cannot write
//! outside the directory it is unpacked into).

use std::io::Read;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarZst,
}

impl ArchiveKind {
    /// The kind a file name says, if it names an archive.
    pub fn of_name(name: &str) -> Option<ArchiveKind> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else if n.ends_with(".tar.zst") || n.ends_with(".tzst") {
            Some(ArchiveKind::TarZst)
        } else if n.ends_with(".tar") {
            Some(ArchiveKind::Tar)
        } else {
            None
        }
    }
}

/// Unpacks an archive of `kind` read from `r` into `into`, then reads `r` to its end (so a
/// digest taken over `r` covers every byte, padding included).
pub fn unpack(kind: ArchiveKind, r: &mut dyn Read, into: &Path) -> std::io::Result<()> {
    match kind {
        ArchiveKind::Tar => unpack_tar(&mut *r, into)?,
        ArchiveKind::TarGz => {
            let mut dec = flate2::read::GzDecoder::new(&mut *r);
            unpack_tar(&mut dec, into)?;
            std::io::copy(&mut dec, &mut std::io::sink())?;
        }
        ArchiveKind::TarZst => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut *r)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            unpack_tar(&mut dec, into)?;
            std::io::copy(&mut dec, &mut std::io::sink())?;
        }
    }
    std::io::copy(r, &mut std::io::sink())?;
    Ok(())
}

fn unpack_tar(r: &mut dyn Read, into: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(r);
    // Hooks must stay executable.
    ar.set_preserve_permissions(true);
    ar.set_overwrite(false);
    ar.unpack(into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_name_kinds() {
        assert_eq!(ArchiveKind::of_name("a.TAR.GZ"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::of_name("a.tgz"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::of_name("a.tar.zst"), Some(ArchiveKind::TarZst));
        assert_eq!(ArchiveKind::of_name("a.tar"), Some(ArchiveKind::Tar));
        assert_eq!(ArchiveKind::of_name("a.bin"), None);
    }

    #[test]
    fn a_tar_stream_unpacks_and_a_traversal_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "bin/app", &b"hello"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(ArchiveKind::Tar, &mut &bytes[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("bin/app")).unwrap(), b"hello");

        // A hand-made header naming ../evil (the builder refuses to write one).
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_size(1);
        h.set_cksum();
        let mut evil = h.as_bytes().to_vec();
        evil.extend_from_slice(b"x");
        // The one data block, then the two zero blocks that end an archive.
        evil.resize(512 * 4, 0);
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let _ = unpack(ArchiveKind::Tar, &mut &evil[..], &inner);
        assert!(!dir.path().join("evil").exists(), "nothing written outside");
    }
}
