//! File-path sanitizing: every path that comes out of a torrent or a manifest is a list of
//! plain components that, joined under an output directory, stays inside it.
//!
//! A safe component is non-empty, is not `.` or `..`, and holds no `/`, `\` or NUL. Those
//! rules alone rule out absolute paths (an empty first component, or a `/` inside one) and
//! every escape through `..`, on Unix and on Windows alike.

use thiserror::Error;

/// Why a path or one of its components is unsafe.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// The path has no component at all.
    #[error("it is empty")]
    NoComponents,
    /// A component is empty (e.g. a leading `/` or `a//b`).
    #[error("it has an empty component (absolute path or doubled separator)")]
    EmptyComponent,
    /// A component is `.`.
    #[error("it has a `.` component")]
    CurrentDir,
    /// A component is `..`.
    #[error("it has a `..` component")]
    ParentDir,
    /// A component holds a `/` or `\`, so it is several components in disguise.
    #[error("a component contains a path separator")]
    Separator,
    /// A component holds a NUL byte, which truncates paths in C APIs.
    #[error("a component contains a NUL byte")]
    Nul,
}

/// Checks one path component.
pub fn check_component(component: &str) -> Result<(), PathProblem> {
    match component {
        "" => Err(PathProblem::EmptyComponent),
        "." => Err(PathProblem::CurrentDir),
        ".." => Err(PathProblem::ParentDir),
        c if c.contains(['/', '\\']) => Err(PathProblem::Separator),
        c if c.contains('\0') => Err(PathProblem::Nul),
        _ => Ok(()),
    }
}

/// Checks a path given as components.
pub fn check_components<S: AsRef<str>>(components: &[S]) -> Result<(), PathProblem> {
    if components.is_empty() {
        return Err(PathProblem::NoComponents);
    }
    components
        .iter()
        .try_for_each(|c| check_component(c.as_ref()))
}

/// Splits a `/`-separated relative path (as manifests write them) into checked components.
pub fn split_relative(path: &str) -> Result<Vec<String>, PathProblem> {
    let components: Vec<&str> = path.split('/').collect();
    check_components(&components)?;
    Ok(components.into_iter().map(str::to_owned).collect())
}

/// The components joined with `/`, for messages and for the file order (see `build`).
pub fn join(components: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(c.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_components_are_named() {
        let table: &[(&str, Result<(), PathProblem>)] = &[
            ("file.txt", Ok(())),
            ("..hidden", Ok(())),
            ("a b", Ok(())),
            ("", Err(PathProblem::EmptyComponent)),
            (".", Err(PathProblem::CurrentDir)),
            ("..", Err(PathProblem::ParentDir)),
            ("a/b", Err(PathProblem::Separator)),
            ("/etc", Err(PathProblem::Separator)),
            ("..\\x", Err(PathProblem::Separator)),
            ("a\0b", Err(PathProblem::Nul)),
        ];
        for (c, want) in table {
            assert_eq!(check_component(c), *want, "{c:?}");
        }
    }

    #[test]
    fn relative_paths_are_split_and_checked() {
        assert_eq!(split_relative("a/b").unwrap(), vec!["a", "b"]);
        assert_eq!(
            split_relative("/etc/passwd"),
            Err(PathProblem::EmptyComponent)
        );
        assert_eq!(split_relative("a/../../x"), Err(PathProblem::ParentDir));
        assert_eq!(split_relative("a//b"), Err(PathProblem::EmptyComponent));
        assert_eq!(
            check_components::<&str>(&[]),
            Err(PathProblem::NoComponents)
        );
        assert_eq!(join(&["a", "b c"]), "a/b c");
    }
}
