//! A Git repository at a ref: the tree of that commit, without `.git`, through the `git`
//! program (a bare clone in scratch space, then `git archive` streamed into the unpacker).
//! The commit id goes into the manifest, so a host's version names the exact tree.

use super::archive::{self, ArchiveKind};
use super::{DataSource, Fetched, Provenance, SourceError};
use std::path::Path;
use std::process::{Command, Stdio};

pub struct GitSource {
    /// As the operator wrote it (with `git+`).
    arg: String,
    /// What `git clone` takes.
    url: String,
    /// Branch, tag or commit.
    rev: String,
}

impl GitSource {
    /// `arg` is the whole argument, `rest` the part after `git+`.
    pub fn parse(arg: &str, rest: &str) -> Result<Self, SourceError> {
        let (url, rev) = match rest.split_once('#') {
            Some((u, r)) => (u, r),
            None => (rest, "HEAD"),
        };
        let invalid = |detail: &str| SourceError::Invalid {
            source_arg: arg.to_string(),
            detail: detail.to_string(),
        };
        if !(url.starts_with("file://")
            || url.starts_with("https://")
            || url.starts_with("http://"))
        {
            return Err(invalid("git sources are git+file:// or git+http(s)://"));
        }
        // A ref is never an option to git.
        if rev.is_empty() || rev.starts_with('-') || rev.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("the #REF must be a branch, tag or commit"));
        }
        Ok(GitSource {
            arg: arg.to_string(),
            url: url.to_string(),
            rev: rev.to_string(),
        })
    }

    fn git(&self) -> Command {
        let mut c = Command::new("git");
        // Never prompt for credentials: a fetch that needs them fails at once.
        c.env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
        c
    }

    fn err(&self, detail: String) -> SourceError {
        SourceError::Git {
            url: self.url.clone(),
            detail,
        }
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<String, SourceError> {
        let out = cmd
            .output()
            .map_err(|e| self.err(format!("run git {what}: {e} (is git installed?)")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(self.err(format!("git {what} failed: {}", last.trim())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl DataSource for GitSource {
    fn describe(&self) -> String {
        self.arg.clone()
    }

    fn fetch(&self, into: &Path) -> Result<Fetched, SourceError> {
        let repo = into.with_extension("git-clone");
        let result = (|| {
            self.run(
                "clone",
                self.git()
                    .args(["clone", "--bare", "--quiet", "--"])
                    .arg(&self.url)
                    .arg(&repo),
            )?;
            let commit = self
                .run(
                    "rev-parse",
                    self.git()
                        .arg("-C")
                        .arg(&repo)
                        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
                        .arg(format!("{}^{{commit}}", self.rev)),
                )
                .map_err(|_| self.err(format!("no commit {:?} in the repository", self.rev)))?;
            let mut child = self
                .git()
                .arg("-C")
                .arg(&repo)
                .args(["archive", "--format=tar", &commit])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| self.err(format!("run git archive: {e}")))?;
            let mut stdout = child.stdout.take().expect("piped");
            let unpacked = archive::unpack(ArchiveKind::Tar, &mut stdout, into);
            let out = child
                .wait_with_output()
                .map_err(|e| self.err(format!("git archive: {e}")))?;
            if !out.status.success() {
                return Err(self.err(format!(
                    "git archive failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            unpacked.map_err(|e| SourceError::Archive {
                url: self.url.clone(),
                detail: e.to_string(),
            })?;
            Ok(commit)
        })();
        let _ = std::fs::remove_dir_all(&repo);
        let commit = result?;
        tracing::info!(url = %self.url, %commit, "fetched the tree");
        Ok(Fetched {
            path: into.to_path_buf(),
            provenance: Some(Provenance {
                url: self.arg.clone(),
                sha256: None,
                commit: Some(commit),
            }),
        })
    }
}
