//! The Dockerfile frontend: text → syntax tree → typed instructions.
//!
//! Three layers, as in BuildKit's `frontend/dockerfile`:
//! - [`parser`] turns text into a [`Dockerfile`] of [`Node`]s (directives, continuations,
//!   comments, heredocs, per-instruction argument splitting; no expansion, no validation);
//! - [`shell`] expands words (`$V`, `${V:-w}`, quotes, escapes) the way BuildKit's shell lexer does;
//! - [`instruction`] turns nodes into typed [`instruction::Instruction`]s with their flags.

pub mod dump;
mod heredoc;
pub mod instruction;
mod lexer;
pub mod parser;
pub mod shell;

pub use parser::{parse, ParseError, ParseErrorKind};

/// A parsed Dockerfile: parser directives plus one node per instruction, in file order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// The escape character in force (`\` unless `# escape=` changed it).
    pub escape: char,
    /// Parser directives found at the top of the file.
    pub directives: Directives,
    /// The instructions, in file order.
    pub instructions: Vec<Node>,
    /// Non-fatal findings (empty continuation lines, ignored directives, ...).
    pub warnings: Vec<Warning>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// `# syntax=`: accepted and ignored (rbuild has one built-in frontend).
    pub syntax: Option<String>,
    /// `# escape=`: the escape character it set.
    pub escape: Option<char>,
    /// `# check=`: BuildKit's build-check configuration, kept verbatim.
    pub check: Option<String>,
}

/// Where an instruction sits in the source: 1-based physical lines, 1-based column of its keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub start_line: usize,
    pub end_line: usize,
    pub column: usize,
}

/// One instruction as the low-level parser sees it (BuildKit's `parser.Node`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The keyword exactly as written (`From`, `RUN`, ...).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments, verbatim.
    pub flags: Vec<String>,
    /// Argument nodes, split the way BuildKit splits each instruction.
    pub args: Vec<Arg>,
    /// True when the arguments came from a JSON array (exec form).
    pub json_form: bool,
    /// Heredocs opened on the instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The joined logical line (continuations removed, heredoc bodies excluded).
    pub original: String,
    /// Where the instruction is in the file.
    pub location: Location,
}

impl Node {
    /// The keyword in lower case, which is how instructions are matched.
    pub fn command(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }
}

/// An argument node: a word, or (for ONBUILD) a nested instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Arg {
    Word(String),
    Nested(Box<Node>),
}

/// A heredoc body (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter word, without quotes.
    pub name: String,
    /// The file descriptor it feeds (`3<<EOF` → 3; 0 by default).
    pub fd: u32,
    /// False when the delimiter was quoted, which turns expansion off.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
    /// The raw body, each line ending in `\n`.
    pub content: String,
}

/// A non-fatal finding of the parser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}
