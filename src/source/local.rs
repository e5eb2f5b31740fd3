//! A local file or directory: published in place (the origin hard-links it).

use super::{DataSource, Fetched, SourceError};
use std::path::{Path, PathBuf};

pub struct LocalSource {
    path: PathBuf,
}

impl LocalSource {
    pub fn new(path: PathBuf) -> Self {
        LocalSource { path }
    }
}

impl DataSource for LocalSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn needs_scratch(&self) -> bool {
        false
    }

    fn fetch(&self, _into: &Path) -> Result<Fetched, SourceError> {
        std::fs::metadata(&self.path).map_err(|err| SourceError::Io {
            what: "read",
            path: self.path.clone(),
            err,
        })?;
        Ok(Fetched {
            path: self.path.clone(),
            provenance: None,
        })
    }
}
