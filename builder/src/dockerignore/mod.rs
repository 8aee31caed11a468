//! `.dockerignore` matching with Docker's semantics (`**`, `!` exceptions).
//!
//! This module owns the answer to "is this context path left out of the build?": reading an
//! ignore file like `ignorefile.ReadAll`, compiling its patterns like moby/patternmatcher, and
//! matching with `MatchesOrParentMatches` (a pattern that matches a directory matches
//! everything below it; the last matching pattern decides). It also tells a directory walker
//! when a whole excluded directory can be skipped.

mod glob;

use std::fmt;
use std::path::{Path, PathBuf};

use glob::{GlobError, Matcher};

/// A `.dockerignore` file that cannot be used.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DockerIgnoreError {
    /// A line that is just `!`.
    #[error("line {line}: illegal exclusion pattern \"!\"")]
    LoneExclusion { line: usize },
    /// A malformed pattern (unclosed or empty `[...]`, bad range, trailing `\`).
    #[error("line {line}: syntax error in pattern {pattern:?}")]
    Syntax { line: usize, pattern: String },
    /// A pattern whose regular expression exceeds the size limit.
    #[error("line {line}: pattern {pattern:?} is too large")]
    TooLarge { line: usize, pattern: String },
}

/// What a directory walker should do with a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkDecision {
    /// The directory is part of the context: walk it and check each entry.
    Walk,
    /// The directory is excluded, but an exception (`!…`) may re-include something below it:
    /// walk it and check each entry, and emit the directory only if something below it is
    /// kept (as BuildKit's fsutil does).
    WalkExcluded,
    /// The directory and everything below it are excluded: skip it.
    SkipSubtree,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exclusion: bool,
    line: usize,
    matcher: Matcher,
}

impl Pattern {
    /// The cleaned pattern, without its leading `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for `!pattern`, which re-includes what it matches.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// The line of the ignore file it came from (1-based).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    fn matches_or_parent(&self, path: &str, parent: &str) -> bool {
        if self.matcher.matches(path) {
            return true;
        }
        if parent == "." {
            return false;
        }
        let prefixes = parent.match_indices('/').map(|(i, _)| &parent[..i]);
        prefixes.chain(std::iter::once(parent)).any(|prefix| self.matcher.matches(prefix))
    }
}

/// As written in a normalised ignore file (`!` first for exceptions); stable for cache keys.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.exclusion { "!" } else { "" };
        write!(f, "{bang}{}", self.text)
    }
}

/// For one directory: which patterns match it or one of its parents (see
/// [`DockerIgnore::check_entry`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches(Vec<bool>);

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Reads and compiles the text of an ignore file.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        Self::compile(read_patterns(text))
    }

    /// Compiles already-normalised patterns (one per line, e.g. from [`read_patterns`]).
    pub fn from_patterns<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, DockerIgnoreError> {
        Self::compile(patterns.into_iter().enumerate().map(|(i, p)| (i + 1, p.as_ref().to_owned())))
    }

    fn compile(lines: impl IntoIterator<Item = (usize, String)>) -> Result<Self, DockerIgnoreError> {
        let mut patterns = Vec::new();
        for (line, raw) in lines {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let (exclusion, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err(DockerIgnoreError::LoneExclusion { line }),
                Some(rest) => (true, rest.to_owned()),
                None => (false, cleaned),
            };
            let compiled = glob::validate(&text).and_then(|()| glob::compile(&text));
            let matcher = compiled.map_err(|err| match err {
                GlobError::Syntax => DockerIgnoreError::Syntax { line, pattern: text.clone() },
                GlobError::TooLarge => DockerIgnoreError::TooLarge { line, pattern: text.clone() },
            })?;
            patterns.push(Pattern { text, exclusion, line, matcher });
        }
        Ok(Self { patterns })
    }

    /// The compiled patterns, in file order (hash their `Display` form for cache keys).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True when some pattern is an exception (`!…`).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(Pattern::is_exclusion)
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is left out of the
    /// build context. The context root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        self.last_match(rel_path).is_some_and(|i| !self.patterns[i].exclusion)
    }

    /// The index of the pattern that decides `rel_path`: the last one matching it or a parent.
    fn last_match(&self, rel_path: &str) -> Option<usize> {
        let path = clean(rel_path);
        if path == "." {
            return None;
        }
        let parent = dir(&path);
        self.patterns.iter().rposition(|p| p.matches_or_parent(&path, &parent))
    }

    /// [`DockerIgnore::is_excluded`] for a walker: `parent` is what this call returned for the
    /// entry's parent directory (`ParentMatches::default()` for entries of the context root,
    /// or when unknown). Each pattern is then tested against `rel_path` alone, not against
    /// every parent again. Keep the returned value for the entries of a directory.
    pub fn check_entry(&self, rel_path: &str, parent: &ParentMatches) -> (bool, ParentMatches) {
        let path = clean(rel_path);
        if path == "." {
            return (false, ParentMatches(vec![false; self.patterns.len()]));
        }
        let matched: Vec<bool> = if parent.0.len() == self.patterns.len() {
            self.patterns.iter().zip(&parent.0).map(|(p, &above)| above || p.matcher.matches(&path)).collect()
        } else {
            let parent_dir = dir(&path);
            self.patterns.iter().map(|p| p.matches_or_parent(&path, &parent_dir)).collect()
        };
        let excluded = matched.iter().rposition(|&m| m).is_some_and(|i| !self.patterns[i].exclusion);
        (excluded, ParentMatches(matched))
    }

    /// BuildKit's (fsutil's walker) rule for entering an excluded directory: some `!`
    /// pattern, as written plus `/`, starts with the directory's path plus `/`. So
    /// `!dir/keep.txt` re-includes below an excluded `dir`, but `!docs/**/*.md` does not
    /// reach into an excluded `docs/x`.
    pub fn exception_under(&self, rel_dir: &str) -> bool {
        let dir_slash = format!("{}/", clean(rel_dir));
        self.patterns.iter().any(|p| p.exclusion && format!("{}/", p.text).starts_with(&dir_slash))
    }

    /// Tells a walker whether directory `rel_dir` must be walked or can be skipped whole.
    pub fn walk_decision(&self, rel_dir: &str) -> WalkDecision {
        let Some(decider) = self.last_match(rel_dir) else {
            return WalkDecision::Walk;
        };
        if self.patterns[decider].exclusion {
            return WalkDecision::Walk;
        }
        // Every later match below the directory must come after `decider`, which matches all
        // of the directory's contents; only a later exception can re-include something.
        let dir_slash = format!("{}/", clean(rel_dir));
        let reincluded =
            self.patterns[decider + 1..].iter().any(|p| p.exclusion && p.matcher.may_match_below(&dir_slash));
        if reincluded {
            WalkDecision::WalkExcluded
        } else {
            WalkDecision::SkipSubtree
        }
    }
}

/// Turns ignore-file text into patterns with their 1-based line numbers, like
/// `ignorefile.ReadAll`: drops a first-line BOM, `#` comments (column 0 only) and blank lines;
/// trims; cleans the path lexically and removes one leading `/`; keeps `!` in front.
pub fn read_patterns(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(pattern) = normalize_line(line) {
            out.push((index + 1, pattern));
        }
    }
    out
}

/// One line of an ignore file as `ignorefile.ReadAll` normalises it; `None` when skipped.
pub fn normalize_line(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (exclusion, pattern) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut cleaned = String::new();
    if !pattern.is_empty() {
        cleaned = clean(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    Some(if exclusion { format!("!{cleaned}") } else { cleaned })
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir` for a cleaned `/`-separated path.
fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_owned(),
    }
}

/// The ignore file for a build, by BuildKit's rule: `<Dockerfile name>.dockerignore` next to
/// the Dockerfile wins over `<context>/.dockerignore`; `None` when neither exists.
pub fn ignore_file_for(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let specific = dockerfile.file_name().map(|name| {
        let mut name = name.to_os_string();
        name.push(".dockerignore");
        dockerfile.with_file_name(name)
    });
    let chosen = specific
        .filter(|path| path.is_file())
        .or_else(|| Some(context.join(".dockerignore")).filter(|path| path.is_file()));
    tracing::debug!(?context, ?dockerfile, ?chosen, "ignore file lookup");
    chosen
}
