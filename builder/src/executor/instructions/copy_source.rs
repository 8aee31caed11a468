//! Which files a COPY/ADD reads: source paths and wildcards resolved inside their root (the
//! build context, an earlier stage or an image), `--parents` (with the `/./` pivot),
//! `--exclude` and `.dockerignore`. Execution and cache keys both use this module, so they
//! agree on the selection.

use std::fs;
use std::path::{Path, PathBuf};

use super::InstructionError;
use crate::dockerfile::instruction::Copy;
use crate::dockerignore::DockerIgnore;
use crate::executor::context::{clean_rel, has_wildcard, BuildContext};
use std::os::unix::ffi::OsStrExt as _;

use crate::layer::root_path::{Escape, MissingDirs, RootDir, RootPathError};

/// Where sources are read from.
#[derive(Clone, Copy)]
pub enum SourceRoot<'a> {
    /// The build context (`.dockerignore` applies).
    Context(&'a BuildContext),
    /// A stage's or image's root directory; `name` is for messages.
    Root { dir: &'a Path, name: &'a str },
}

impl SourceRoot<'_> {
    fn dir(&self) -> &Path {
        match self {
            Self::Context(c) => c.dir(),
            Self::Root { dir, .. } => dir,
        }
    }

    fn place(&self) -> String {
        match self {
            Self::Context(_) => "the build context".into(),
            Self::Root { name, .. } => name.to_string(),
        }
    }

    fn ignored(&self, rel: &str) -> bool {
        match self {
            Self::Context(c) => !rel.is_empty() && c.is_excluded(rel),
            Self::Root { .. } => false,
        }
    }

    /// An ignored directory an exception may re-include something below.
    fn walk_ignored_dir(&self, rel: &str) -> bool {
        match self {
            Self::Context(c) => c.walk_excluded_dir(rel),
            Self::Root { .. } => false,
        }
    }
}

/// One top-level source after wildcard expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Host path; a symlink at the top level is followed inside the root (as Docker does).
    pub host: PathBuf,
    /// Path relative to the root, slash-separated (empty for the root itself).
    pub rel: String,
    /// The file name the source gives a file copied into a directory.
    pub name: String,
    /// `--parents`: the path kept below the destination (relative to the pivot).
    pub keep: Option<String>,
}

/// One file, directory or symlink read by a COPY/ADD from its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedFile {
    /// Host path (not followed: a symlink is a symlink).
    pub host: PathBuf,
    /// Path relative to the root, slash-separated.
    pub rel: String,
}

/// `--exclude` patterns: matched against paths relative to each source directory, and against
/// the path of a wildcard match that is a file (so `--exclude=*.txt hom*` leaves `hom.txt` out,
/// as documented).
pub struct Excludes(Option<DockerIgnore>);

impl Excludes {
    /// Compiles the patterns of a COPY/ADD.
    pub fn new(patterns: &[String]) -> Result<Self, InstructionError> {
        if patterns.is_empty() {
            return Ok(Self(None));
        }
        DockerIgnore::from_patterns(patterns)
            .map(|m| Self(Some(m)))
            .map_err(|source| InstructionError::Exclude { patterns: patterns.to_vec(), source: Box::new(source) })
    }

    fn excludes(&self, rel: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.is_excluded(rel))
    }
}

/// Resolves one (expanded, non-heredoc, non-URL) source to its top-level matches.
/// A missing plain path is an error; a wildcard that matches nothing selects nothing
/// (BuildKit's `AllowEmptyWildcard`).
pub fn select(
    root: SourceRoot<'_>,
    src: &str,
    parents: bool,
    excludes: &Excludes,
) -> Result<Vec<Selected>, InstructionError> {
    let (pivot, pattern) = match (parents, src.split_once("/./")) {
        (true, Some((pivot, rest))) => (clean_rel(pivot), clean_rel(rest)),
        _ => (String::new(), clean_rel(src)),
    };
    let missing = || InstructionError::SourceMissing { source_path: src.into(), place: root.place() };
    let under_pivot = |rel: &str| join(&pivot, rel);
    let found: Vec<(String, String)> = if has_wildcard(&pattern) {
        let base = join(&pivot, literal_prefix(&pattern));
        let matches = wildcard_matches(root, src, &base, pattern_rest(&pattern), parents)?;
        matches
            .into_iter()
            .filter(|(rel, below_base)| !excludes.excludes(below_base) || is_dir_in(root, rel))
            .map(|(rel, _)| {
                let keep = rel.strip_prefix(&pivot).unwrap_or(&rel).trim_start_matches('/').to_string();
                (rel, keep)
            })
            .collect()
    } else {
        let rel = under_pivot(&pattern);
        if root.ignored(&rel) {
            return Err(missing());
        }
        vec![(rel, pattern.clone())]
    };
    let dir = RootDir::open(root.dir()).map_err(|e| resolve_err(src, e))?;
    found
        .into_iter()
        .map(|(rel, keep)| {
            let host = match follow_in_root(&dir, &rel, MissingDirs::Fail) {
                Ok(h) if fs::metadata(&h).is_ok() => h,
                Ok(_) | Err(RootPathError::NotFound { .. }) | Err(RootPathError::NotADirectory { .. }) => {
                    return Err(missing())
                }
                Err(e) => return Err(resolve_err(src, e)),
            };
            let name = rel.rsplit('/').next().unwrap_or_default().to_string();
            Ok(Selected { host, rel, name, keep: parents.then_some(keep) })
        })
        .collect()
}

/// Host path of `rel` under `root`, every symlink (the last one too) resolved inside the
/// root, `..` clamped at the root. A missing final component is allowed; missing parents
/// follow `missing`.
pub fn follow_in_root(root: &RootDir, rel: &str, missing: MissingDirs) -> Result<PathBuf, RootPathError> {
    let mut path = PathBuf::from(rel);
    for _ in 0..40 {
        let r = match root.resolve_parent(&path, Escape::Clamp, missing) {
            Ok(r) => r,
            Err(RootPathError::NoName { .. }) => return Ok(root.open_dir(&path, Escape::Clamp, missing)?.1),
            Err(e) => return Err(e),
        };
        let Ok(target) = rustix::fs::readlinkat(&r.dir, r.name.as_os_str(), Vec::new()) else {
            return Ok(r.dir_path.join(&r.name));
        };
        let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
        let parent = r.dir_path.strip_prefix(root.path()).map(Path::to_path_buf).unwrap_or_default();
        path = if target.is_absolute() { target } else { parent.join(target) };
    }
    Err(RootPathError::TooManyLinks { path: PathBuf::from(rel) })
}

/// A wildcard match that is a directory is kept even when `--exclude` matches its name:
/// its contents are filtered instead (BuildKit's `ADD --exclude=* dir* /d` gives an empty `/d`).
fn is_dir_in(root: SourceRoot<'_>, rel: &str) -> bool {
    RootDir::open(root.dir()).and_then(|d| follow_in_root(&d, rel, MissingDirs::Fail)).is_ok_and(|h| h.is_dir())
}

/// Everything below a selected directory, in walk order (parents before children), with
/// `.dockerignore` and `--exclude` applied. A file source yields nothing.
pub fn walk(
    root: SourceRoot<'_>,
    source: &Selected,
    excludes: &Excludes,
) -> Result<Vec<SelectedFile>, InstructionError> {
    if !source.host.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    // Ignored directories walked for a `!` exception below them, emitted (before the entry)
    // only when something below them is kept, as BuildKit's fsutil does.
    let mut pending: Vec<(usize, SelectedFile)> = Vec::new();
    let mut it = walkdir::WalkDir::new(&source.host).min_depth(1).sort_by_file_name().into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| InstructionError::io("walk", &source.host)(e.into()))?;
        let Ok(below) = entry.path().strip_prefix(&source.host) else { continue };
        let below = below.to_string_lossy().into_owned();
        let rel = join(&source.rel, &below);
        pending.retain(|(depth, _)| *depth < entry.depth());
        let file = SelectedFile { host: entry.path().to_path_buf(), rel };
        if excludes.excludes(&below) || root.ignored(&file.rel) {
            if entry.file_type().is_dir() {
                if root.walk_ignored_dir(&file.rel) && !excludes.excludes(&below) {
                    pending.push((entry.depth(), file));
                } else {
                    it.skip_current_dir();
                }
            }
            continue;
        }
        out.extend(pending.drain(..).map(|(_, dir)| dir));
        out.push(file);
    }
    Ok(out)
}

/// Every context path a COPY/ADD reads (top-level sources, then what is below each), after
/// `.dockerignore`, `--exclude`, `--parents` and wildcards — what a cache key must hash.
/// Heredocs, URLs and `--from` sources are not context files and are left out.
pub fn selected_context_files(copy: &Copy, context: &BuildContext) -> Result<Vec<SelectedFile>, InstructionError> {
    if copy.from.is_some() {
        return Ok(Vec::new());
    }
    let root = SourceRoot::Context(context);
    let excludes = Excludes::new(&copy.exclude)?;
    let mut out = Vec::new();
    for src in copy.sources.iter().filter(|s| !s.starts_with("<<") && !super::add::is_remote(s)) {
        for selected in select(root, src, copy.parents, &excludes)? {
            out.push(SelectedFile { host: selected.host.clone(), rel: selected.rel.clone() });
            out.extend(walk(root, &selected, &excludes)?);
        }
    }
    Ok(out)
}

/// `(path relative to the root, path relative to base)` of every match of `pattern` below
/// `base`; a matching directory is not searched further (like fsutil).
fn wildcard_matches(
    root: SourceRoot<'_>,
    src: &str,
    base: &str,
    pattern: &str,
    parents: bool,
) -> Result<Vec<(String, String)>, InstructionError> {
    let dir = RootDir::open(root.dir()).map_err(|e| resolve_err(src, e))?;
    let base_host = match dir.open_dir(Path::new(base), Escape::Clamp, MissingDirs::Fail) {
        Ok((_, host)) => host,
        Err(RootPathError::NotFound { .. }) | Err(RootPathError::NotADirectory { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(resolve_err(src, e)),
    };
    // Plain sources match like Go's filepath.Match (BuildKit's copyWithWildcard): `*` never
    // crosses a `/` and `**` is just two `*`s. `--parents` sources are include patterns
    // (patternmatcher), where `**` spans directories.
    let mut pattern = pattern.to_string();
    while !parents && pattern.contains("**") {
        pattern = pattern.replace("**", "*");
    }
    let matcher = DockerIgnore::from_patterns([pattern.as_str()]).map_err(|e| {
        InstructionError::Context(crate::executor::context::ContextError::Pattern { pattern: src.into(), source: e })
    })?;
    let depth = if pattern.contains("**") { usize::MAX } else { pattern.split('/').count() };
    let mut found = Vec::new();
    let mut it = walkdir::WalkDir::new(&base_host).min_depth(1).max_depth(depth).sort_by_file_name().into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| InstructionError::io("walk", &base_host)(e.into()))?;
        let Ok(below) = entry.path().strip_prefix(&base_host) else { continue };
        let below = below.to_string_lossy().into_owned();
        let rel = join(base, &below);
        if root.ignored(&rel) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if matcher.is_excluded(&below) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            found.push((rel, below));
        }
    }
    Ok(found)
}

/// The components of `pattern` before the first one with a wildcard.
fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.split('/').take_while(|c| !has_wildcard(c)).map(|c| c.len() + 1).sum::<usize>();
    pattern.get(..end.saturating_sub(1)).unwrap_or_default()
}

/// The components of `pattern` from the first one with a wildcard on.
fn pattern_rest(pattern: &str) -> &str {
    let prefix = literal_prefix(pattern);
    pattern.get(prefix.len()..).unwrap_or_default().trim_start_matches('/')
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn resolve_err(src: &str, source: RootPathError) -> InstructionError {
    InstructionError::Resolve { path: src.into(), source }
}

#[cfg(test)]
mod tests {
    use super::{literal_prefix, pattern_rest};

    #[rstest::rstest]
    #[case("a/b/*.txt", "a/b", "*.txt")]
    #[case("*.txt", "", "*.txt")]
    #[case("a/*/c", "a", "*/c")]
    #[case("**/x", "", "**/x")]
    fn splits_wildcards(#[case] pattern: &str, #[case] prefix: &str, #[case] rest: &str) {
        assert_eq!(literal_prefix(pattern), prefix);
        assert_eq!(pattern_rest(pattern), rest);
    }
}
