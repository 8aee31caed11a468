//! `CMD`, `ENTRYPOINT` and `SHELL`: a command in shell form or exec (JSON) form.

use super::{InstructionErrorKind, RawArgs};
use serde::Serialize;

/// A command line as written: the shell form runs through the stage's SHELL, the exec form directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

impl CommandLine {
    /// The argv the command runs with, given the stage's SHELL (`["/bin/sh", "-c"]` by default).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Self::Exec(argv) => argv.clone(),
            Self::Shell(line) => shell.iter().cloned().chain(std::iter::once(line.clone())).collect(),
        }
    }
}

pub(super) fn parse(raw: &RawArgs<'_>, instruction: &str) -> Result<CommandLine, InstructionErrorKind> {
    raw.no_flags(instruction)?;
    Ok(from_words(raw))
}

/// The words of a CMD-like node as a command line.
pub(super) fn from_words(raw: &RawArgs<'_>) -> CommandLine {
    if raw.json {
        CommandLine::Exec(raw.words.clone())
    } else {
        CommandLine::Shell(raw.words.join(" "))
    }
}

pub(super) fn parse_shell(raw: &RawArgs<'_>) -> Result<Vec<String>, InstructionErrorKind> {
    raw.no_flags("SHELL")?;
    if !raw.json {
        return Err(InstructionErrorKind::NotJson { instruction: "SHELL" });
    }
    if raw.words.is_empty() {
        return Err(InstructionErrorKind::Arity { instruction: "SHELL", expected: "at least one argument" });
    }
    Ok(raw.words.clone())
}
