//! Shell-word expansion with the semantics of BuildKit's shell lexer.
//! (Interface stub; the implementation lands on its own branch.)

use std::collections::{BTreeMap, BTreeSet};

/// Where variable values come from (build args and ENV in scope).
pub trait EnvLookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl EnvLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Expands words.
pub struct ShellLexer {
    escape: char,
}

/// An expansion result plus the variables it referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<T> {
    pub value: T,
    pub used: BTreeSet<String>,
    pub unset: BTreeSet<String>,
}

/// An expansion failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ShellError {
    pub offset: usize,
    pub kind: ShellErrorKind,
}

/// What went wrong in an expansion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    #[error("bad substitution")]
    BadSubstitution,
}

impl ShellLexer {
    pub fn new(escape: char) -> Self {
        Self { escape }
    }
    pub fn expand_word(&self, word: &str, _env: &dyn EnvLookup) -> Result<Expanded<String>, ShellError> {
        let _ = self.escape;
        Ok(Expanded { value: word.to_string(), used: BTreeSet::new(), unset: BTreeSet::new() })
    }
    pub fn expand_words(&self, word: &str, _env: &dyn EnvLookup) -> Result<Expanded<Vec<String>>, ShellError> {
        Ok(Expanded { value: word.split_whitespace().map(String::from).collect(), used: BTreeSet::new(), unset: BTreeSet::new() })
    }
}
