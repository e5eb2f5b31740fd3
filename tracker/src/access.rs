//! Which info-hashes this tracker serves: those listed in the whitelist file, plus those
//! registered at run time through the admin API, unless the tracker runs `--open`.
//!
//! The sets live inside each state shard (see `state.rs`) next to the swarms they guard,
//! so a check costs no lock beyond the shard lock the announce takes anyway. This module
//! holds the parsing and the per-shard set.

use std::collections::HashSet;
use std::path::Path;

use proto::InfoHash;

use crate::Error;

/// Reads a whitelist: one 40-digit hex info-hash per line; blank lines and `#` comments
/// are skipped. Any other line is an error naming its number, so a typo is not silently
/// "not registered".
pub fn read_whitelist(path: &Path) -> Result<Vec<InfoHash>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_whitelist(&text).map_err(|line| Error::Whitelist {
        path: path.to_owned(),
        line,
    })
}

/// Parses whitelist text; the error is the 1-based number of the first bad line.
pub fn parse_whitelist(text: &str) -> Result<Vec<InfoHash>, usize> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(
            InfoHash::from_hex(line)
                .filter(|_| line.len() == 40)
                .ok_or(i + 1)?,
        );
    }
    Ok(out)
}

/// The registered info-hashes of one shard.
#[derive(Debug, Default)]
pub struct AccessSet {
    /// From the whitelist file (replaced on reload).
    listed: HashSet<InfoHash>,
    /// Registered through the admin API (kept across reloads).
    registered: HashSet<InfoHash>,
}

impl AccessSet {
    /// Whether `h` may be served.
    pub fn allows(&self, h: &InfoHash) -> bool {
        self.listed.contains(h) || self.registered.contains(h)
    }

    /// Replaces the file part.
    pub fn set_listed(&mut self, hashes: impl IntoIterator<Item = InfoHash>) {
        self.listed = hashes.into_iter().collect();
    }

    /// Adds a run-time registration; returns whether it was new.
    pub fn register(&mut self, h: InfoHash) -> bool {
        self.registered.insert(h)
    }

    /// Removes a run-time registration; returns whether it was there.
    pub fn unregister(&mut self, h: &InfoHash) -> bool {
        self.registered.remove(h)
    }

    /// Number of distinct hashes allowed.
    pub fn len(&self) -> usize {
        self.listed.union(&self.registered).count()
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.registered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_lines_are_hashes_comments_or_blank() {
        let text = "# fleet torrents\n\
                    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
                    \n   BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB  # upper case ok\n";
        let list = parse_whitelist(text).unwrap();
        assert_eq!(list, vec![InfoHash([0xaa; 20]), InfoHash([0xbb; 20])]);
        assert_eq!(parse_whitelist("aaaa\n"), Err(1));
        assert_eq!(
            parse_whitelist("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nnot hex\n"),
            Err(2)
        );
    }

    #[test]
    fn registrations_survive_a_reload_of_the_file_part() {
        let mut s = AccessSet::default();
        let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
        s.set_listed([a]);
        assert!(s.register(b));
        assert!(s.allows(&a) && s.allows(&b));
        s.set_listed([]);
        assert!(!s.allows(&a), "dropped from the file");
        assert!(s.allows(&b), "registered at run time");
        assert!(s.unregister(&b));
        assert!(!s.allows(&b));
        assert!(s.is_empty());
    }
}
