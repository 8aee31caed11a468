//! The build context: a directory and its `.dockerignore`; COPY/ADD select sources from it.

use std::path::{Component, Path, PathBuf};

use crate::dockerignore::{ignore_file_for, DockerIgnore, DockerIgnoreError};

/// Errors opening or reading the context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read the build context {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid ignore file {path}")]
    Ignore {
        path: PathBuf,
        #[source]
        source: DockerIgnoreError,
    },
    #[error("invalid source pattern {pattern:?}")]
    Pattern {
        pattern: String,
        #[source]
        source: DockerIgnoreError,
    },
    #[error("cannot walk the build context {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

/// A context directory and the ignore rules that apply to it.
#[derive(Debug)]
pub struct BuildContext {
    dir: PathBuf,
    ignore: Option<DockerIgnore>,
}

impl BuildContext {
    /// Opens `dir`, reading the ignore file BuildKit would pick for `dockerfile`.
    pub fn open(dir: &Path, dockerfile: &Path) -> Result<Self, ContextError> {
        let dir = dir.canonicalize().map_err(|source| ContextError::Read { path: dir.to_path_buf(), source })?;
        let ignore = match ignore_file_for(&dir, dockerfile) {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ContextError::Read { path: path.clone(), source })?;
                Some(DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore { path, source })?)
            }
        };
        Ok(Self { dir, ignore })
    }

    /// The context directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `rel` (slash-separated, relative to the context) is left out by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.is_excluded(rel))
    }

    /// Whether excluded directory `rel` must still be walked for a `!` exception below it
    /// (BuildKit's rule, [`DockerIgnore::exception_under`]).
    pub fn walk_excluded_dir(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.exception_under(rel))
    }

    /// The context paths a COPY source names, relative to the context, sorted. A source with
    /// wildcards matches like Go's `filepath.Match` per component; `..` cannot leave the context.
    pub fn select(&self, source: &str) -> Result<Vec<String>, ContextError> {
        let clean = clean_rel(source);
        if !has_wildcard(&clean) {
            if clean.is_empty() || !self.is_excluded(&clean) {
                return Ok(vec![clean]);
            }
            return Ok(Vec::new());
        }
        let matcher = DockerIgnore::from_patterns([clean.as_str()])
            .map_err(|e| ContextError::Pattern { pattern: source.to_string(), source: e })?;
        let depth = clean.split('/').count();
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir).min_depth(depth).max_depth(depth).sort_by_file_name() {
            let entry = entry.map_err(|source| ContextError::Walk { path: self.dir.clone(), source })?;
            let Ok(rel) = entry.path().strip_prefix(&self.dir) else { continue };
            let rel = rel.to_string_lossy().into_owned();
            if matcher.is_excluded(&rel) && !self.is_excluded(&rel) {
                found.push(rel);
            }
        }
        Ok(found)
    }
}

/// Whether a source uses `*`, `?` or `[`.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A context-relative path with `.`, leading `/` and `..` removed (`..` cannot climb above
/// the context, like BuildKit); empty for the context root.
pub fn clean_rel(source: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(source).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::clean_rel;

    #[rstest::rstest]
    #[case(".", "")]
    #[case("./src/", "src")]
    #[case("/a/b", "a/b")]
    #[case("../../etc/passwd", "etc/passwd")]
    #[case("a/../b", "b")]
    fn cleans(#[case] input: &str, #[case] want: &str) {
        assert_eq!(clean_rel(input), want);
    }
}
