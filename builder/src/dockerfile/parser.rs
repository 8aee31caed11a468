//! Low-level Dockerfile parser (BuildKit's `parser.Parse`).

use super::Dockerfile;

/// A parse failure with its position (1-based line and column) and the offending line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    /// The physical source line, for quoting in messages.
    pub line_text: String,
    pub kind: ParseErrorKind,
}

/// What went wrong while parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("file with no instructions")]
    Empty,
}

/// Parses Dockerfile text into nodes. Not yet implemented.
pub fn parse(_source: &str) -> Result<Dockerfile, ParseError> {
    Err(ParseError { line: 1, column: 1, line_text: String::new(), kind: ParseErrorKind::Empty })
}
