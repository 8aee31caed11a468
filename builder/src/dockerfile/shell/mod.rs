//! Shell-word expansion with the semantics of BuildKit's shell lexer
//! (`frontend/dockerfile/shell/lex.go`).
//!
//! The module owns what happens to one Dockerfile word before an instruction uses it: quote
//! removal, escape processing, `$VAR` / `${VAR…}` expansion and, for [`ShellLexer::expand_words`],
//! splitting into words the way a shell does after expansion. It supports exactly the forms
//! BuildKit supports: `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v?m}`, `${v:?m}`, `${v#p}`,
//! `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}` and `${v//p/r}` (no substring `${v:o:l}`, no
//! bracket expressions in patterns). Positional and special parameters (`$1`, `$@`, …) are never
//! set. Variable names are case-sensitive (Unix semantics).

mod lexer;
mod pattern;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

pub use pattern::PatternError;

/// Where variable values come from (build args + ENV in scope).
pub trait EnvLookup {
    /// The value of `name`, or `None` when it is unset (an empty value is set).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl EnvLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Ordered `(name, value)` pairs; when a name occurs twice the last one wins.
impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Ordered `(name, value)` pairs; when a name occurs twice the last one wins.
impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// Modes of BuildKit's lexer that some instructions need (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LexOptions {
    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (BuildKit `RawEscapes`, used for heredoc bodies).
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub skip_unset_env: bool,
}

/// Expands Dockerfile words; configured with the escape character in force
/// (`\`, or `` ` `` after `# escape=` `` ` ``).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellLexer {
    escape: char,
    options: LexOptions,
}

/// The result of an expansion plus the variables it looked at (for linting and cache keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded<T> {
    /// The expanded word (or words).
    pub value: T,
    /// Variable names referenced that were set.
    pub used: BTreeSet<String>,
    /// Variable names referenced but unset (positional and special parameters are not listed).
    pub unset: BTreeSet<String>,
}

/// A word that cannot be expanded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("at character {offset}: {kind}")]
pub struct ShellError {
    /// Character offset (0-based) in the word of the construct that failed.
    pub offset: usize,
    /// What went wrong.
    pub kind: ShellErrorKind,
}

/// The ways expansion fails.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ShellErrorKind {
    #[error("unexpected end of word while looking for the closing single quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of word while looking for the closing double quote")]
    UnterminatedDoubleQuote,
    #[error("missing '}}' in variable substitution")]
    MissingBrace,
    #[error("missing '/' in pattern substitution")]
    MissingSlash,
    /// `${}`, `${{…}`, `${:…}`.
    #[error("bad substitution")]
    BadSubstitution,
    /// `${v:=w}`, `${v:o:l}`, `${.}`, …
    #[error("unsupported modifier {modifier:?} in substitution")]
    UnsupportedModifier { modifier: String },
    /// `${v?msg}` with `v` unset, or `${v:?msg}` with `v` unset or empty.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern {pattern:?} in substitution")]
    InvalidPattern {
        pattern: String,
        #[source]
        reason: PatternError,
    },
}

impl ShellLexer {
    /// A lexer with the given escape character and BuildKit's default mode.
    pub fn new(escape: char) -> Self {
        Self::with_options(escape, LexOptions::default())
    }

    /// A lexer with the given escape character and modes.
    pub fn with_options(escape: char, options: LexOptions) -> Self {
        Self { escape, options }
    }

    /// The escape character this lexer uses.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// One word: quotes removed, escapes processed, variables expanded, no splitting
    /// (BuildKit `ProcessWord`).
    pub fn expand_word(&self, word: &str, env: &dyn EnvLookup) -> Result<Expanded<String>, ShellError> {
        lexer::run(self, word, env).map(|out| Expanded { value: out.value.0, used: out.used, unset: out.unset })
    }

    /// Words split as a shell does after expansion (BuildKit `ProcessWords`): unquoted
    /// whitespace, including whitespace from an unquoted variable's value, separates words.
    pub fn expand_words(&self, word: &str, env: &dyn EnvLookup) -> Result<Expanded<Vec<String>>, ShellError> {
        lexer::run(self, word, env).map(|out| Expanded { value: out.value.1, used: out.used, unset: out.unset })
    }
}

impl Default for ShellLexer {
    /// The default escape character `\`.
    fn default() -> Self {
        Self::new('\\')
    }
}
