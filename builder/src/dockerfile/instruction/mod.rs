//! Typed Dockerfile instructions, one file per instruction family.
//!
//! [`Instruction::from_node`] checks a parsed [`Node`] (arity, flags, forms) and builds the typed
//! instruction with its words still unexpanded; [`Instruction::expand`] then applies word
//! expansion exactly where Docker expands (see each instruction's `expand`).

mod arg;
mod command;
mod copy;
mod flags;
mod from;
mod healthcheck;
mod keyvalue;
mod mount;
mod run;
mod single;

pub use arg::ArgDecl;
pub use command::CommandLine;
pub use copy::{Copy, CopyKind};
pub use from::From;
pub use healthcheck::{Healthcheck, HealthcheckTest};
pub use keyvalue::KeyValue;
pub use mount::{Mount, MountKind, Sharing};
pub use run::{NetworkMode, Run, Security};
pub use single::Expose;

use super::shell::{EnvLookup, LexOptions, ShellError, ShellLexer};
use super::{Arg, Heredoc, Location, Node};
use serde::Serialize;
use std::collections::BTreeSet;

/// One Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell { shell: Vec<String> },
    Label { labels: Vec<KeyValue> },
    Maintainer { maintainer: String },
    Expose { ports: Vec<String> },
    Env { vars: Vec<KeyValue> },
    Add(Copy),
    Copy(Copy),
    User { user: String },
    Workdir { path: String },
    Volume { paths: Vec<String> },
    Arg { args: Vec<ArgDecl> },
    Onbuild { trigger: Box<Instruction>, source: String },
    Stopsignal { signal: String },
    Healthcheck(Healthcheck),
}

/// A typed instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located {
    pub instruction: Instruction,
    pub location: Location,
    /// The logical source line, for history entries and messages.
    pub original: String,
}

/// Every instruction keyword, lower case.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Why a node is not a valid instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionErrorKind {
    #[error("unknown instruction: {keyword}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown { keyword: String, suggestion: Option<String> },
    #[error("{instruction} requires {expected}")]
    Arity { instruction: &'static str, expected: &'static str },
    #[error("unknown flag: --{flag} for {instruction}")]
    UnknownFlag { instruction: String, flag: String },
    #[error("missing a value on flag: --{flag}")]
    MissingFlagValue { flag: String },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { flag: String },
    #[error("invalid value {value:?} for flag --{flag}: expected {expected}")]
    BadFlagValue { flag: String, value: String, expected: &'static str },
    #[error("invalid name for build stage: {name:?}, name can't start with a number or contain symbols")]
    StageName { name: String },
    #[error("{instruction} requires the arguments to be in JSON form")]
    NotJson { instruction: &'static str },
    #[error("{keyword} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger { keyword: String },
    #[error("{0}")]
    Healthcheck(#[from] healthcheck::HealthcheckError),
    #[error("{0}")]
    Mount(#[from] mount::MountError),
    #[error("{what} can not be an empty string")]
    Empty { what: &'static str },
    #[error("failed to expand {what}: {source}")]
    Expand {
        what: &'static str,
        #[source]
        source: ShellError,
    },
}

impl Instruction {
    /// Checks and types one parsed node.
    pub fn from_node(node: &Node) -> Result<Self, InstructionErrorKind> {
        let keyword = node.command();
        let raw = RawArgs::new(node);
        match keyword.as_str() {
            "from" => from::parse(&raw).map(Self::From),
            "run" => run::parse(&raw).map(Self::Run),
            "cmd" => Ok(Self::Cmd(command::parse(&raw, "CMD")?)),
            "entrypoint" => Ok(Self::Entrypoint(command::parse(&raw, "ENTRYPOINT")?)),
            "shell" => command::parse_shell(&raw).map(|shell| Self::Shell { shell }),
            "label" => keyvalue::parse(&raw, "LABEL").map(|labels| Self::Label { labels }),
            "env" => keyvalue::parse(&raw, "ENV").map(|vars| Self::Env { vars }),
            "maintainer" => single::one(&raw, "MAINTAINER").map(|maintainer| Self::Maintainer { maintainer }),
            "expose" => single::expose(&raw).map(|ports| Self::Expose { ports }),
            "add" => copy::parse(&raw, CopyKind::Add).map(Self::Add),
            "copy" => copy::parse(&raw, CopyKind::Copy).map(Self::Copy),
            "user" => single::one(&raw, "USER").map(|user| Self::User { user }),
            "workdir" => single::one(&raw, "WORKDIR").map(|path| Self::Workdir { path }),
            "volume" => single::volume(&raw).map(|paths| Self::Volume { paths }),
            "arg" => arg::parse(&raw).map(|args| Self::Arg { args }),
            "onbuild" => parse_onbuild(node, &raw),
            "stopsignal" => single::one(&raw, "STOPSIGNAL").map(|signal| Self::Stopsignal { signal }),
            "healthcheck" => healthcheck::parse(&raw).map(Self::Healthcheck),
            _ => Err(InstructionErrorKind::Unknown { suggestion: suggest(&keyword), keyword: node.keyword.clone() }),
        }
    }

    /// Applies word expansion where Docker applies it; RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK
    /// and ONBUILD keep their words (the shell, or the image using them, expands later).
    pub fn expand(&self, ex: &mut Expander<'_>) -> Result<Self, InstructionErrorKind> {
        Ok(match self {
            Self::From(f) => Self::From(f.expand(ex)?),
            Self::Run(r) => Self::Run(r.expand(ex)?),
            Self::Label { labels } => Self::Label { labels: keyvalue::expand(labels, ex)? },
            Self::Env { vars } => Self::Env { vars: keyvalue::expand(vars, ex)? },
            Self::Expose { ports } => Self::Expose { ports: single::expand_expose(ports, ex)? },
            Self::Add(c) => Self::Add(c.expand(ex)?),
            Self::Copy(c) => Self::Copy(c.expand(ex)?),
            Self::User { user } => Self::User { user: ex.word(user, "USER")? },
            Self::Workdir { path } => Self::Workdir { path: ex.word(path, "WORKDIR")? },
            Self::Volume { paths } => Self::Volume { paths: ex.each(paths, "VOLUME")? },
            Self::Stopsignal { signal } => Self::Stopsignal { signal: ex.word(signal, "STOPSIGNAL")? },
            Self::Arg { args } => Self::Arg { args: arg::expand(args, ex)? },
            other => other.clone(),
        })
    }

    /// The keyword in upper case, as history and progress show it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::From(_) => "FROM",
            Self::Run(_) => "RUN",
            Self::Cmd(_) => "CMD",
            Self::Entrypoint(_) => "ENTRYPOINT",
            Self::Shell { .. } => "SHELL",
            Self::Label { .. } => "LABEL",
            Self::Maintainer { .. } => "MAINTAINER",
            Self::Expose { .. } => "EXPOSE",
            Self::Env { .. } => "ENV",
            Self::Add(_) => "ADD",
            Self::Copy(_) => "COPY",
            Self::User { .. } => "USER",
            Self::Workdir { .. } => "WORKDIR",
            Self::Volume { .. } => "VOLUME",
            Self::Arg { .. } => "ARG",
            Self::Onbuild { .. } => "ONBUILD",
            Self::Stopsignal { .. } => "STOPSIGNAL",
            Self::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

fn parse_onbuild(node: &Node, raw: &RawArgs<'_>) -> Result<Instruction, InstructionErrorKind> {
    let nested = node.args.iter().find_map(|a| match a {
        Arg::Nested(n) => Some(n),
        Arg::Word(_) => None,
    });
    let Some(nested) = nested else {
        return Err(InstructionErrorKind::Arity { instruction: "ONBUILD", expected: "at least one argument" });
    };
    raw.no_flags("ONBUILD")?;
    let keyword = nested.command();
    if matches!(keyword.as_str(), "onbuild" | "from" | "maintainer") {
        return Err(InstructionErrorKind::OnbuildTrigger { keyword: keyword.to_ascii_uppercase() });
    }
    let trigger = Instruction::from_node(nested)?;
    let source = nested.original.trim().to_string();
    Ok(Instruction::Onbuild { trigger: Box::new(trigger), source })
}

/// The closest keyword to a misspelt one, if any is close.
fn suggest(keyword: &str) -> Option<String> {
    KEYWORDS
        .iter()
        .map(|k| (edit_distance(k, keyword), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.to_ascii_uppercase())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A node's words, flags and heredocs, as the instruction parsers read them.
pub(crate) struct RawArgs<'a> {
    pub(crate) words: Vec<String>,
    pub(crate) flags: &'a [String],
    pub(crate) json: bool,
    pub(crate) heredocs: &'a [Heredoc],
}

impl<'a> RawArgs<'a> {
    fn new(node: &'a Node) -> Self {
        let words = node
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Word(w) => Some(w.clone()),
                Arg::Nested(_) => None,
            })
            .collect();
        Self { words, flags: &node.flags, json: node.json_form, heredocs: &node.heredocs }
    }

    pub(crate) fn no_flags(&self, instruction: &str) -> Result<(), InstructionErrorKind> {
        flags::Flags::parse(instruction, self.flags, &[]).map(|_| ())
    }
}

/// Expands words against the variables in scope, remembering which variables were used
/// (a step's cache key includes only the build args it actually sees and uses).
pub struct Expander<'a> {
    lexer: &'a ShellLexer,
    env: &'a dyn EnvLookup,
    /// Variables referenced by the expanded words that were set.
    pub used: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    pub fn new(lexer: &'a ShellLexer, env: &'a dyn EnvLookup) -> Self {
        Self { lexer, env, used: BTreeSet::new() }
    }

    /// One word, no splitting.
    pub fn word(&mut self, word: &str, what: &'static str) -> Result<String, InstructionErrorKind> {
        let expanded =
            self.lexer.expand_word(word, self.env).map_err(|source| InstructionErrorKind::Expand { what, source })?;
        self.used.extend(expanded.used);
        Ok(expanded.value)
    }

    /// Text expanded with quotes kept as written and `\` as escape (BuildKit's `ExpandRaw`
    /// lexer with `SkipProcessQuotes`, used for COPY/ADD heredoc bodies).
    pub fn raw(&mut self, text: &str, what: &'static str) -> Result<String, InstructionErrorKind> {
        let lexer = ShellLexer::with_options('\\', LexOptions { skip_process_quotes: true, ..LexOptions::default() });
        let expanded =
            lexer.expand_word(text, self.env).map_err(|source| InstructionErrorKind::Expand { what, source })?;
        self.used.extend(expanded.used);
        Ok(expanded.value)
    }

    /// Several words, each expanded on its own.
    pub fn each(&mut self, words: &[String], what: &'static str) -> Result<Vec<String>, InstructionErrorKind> {
        words.iter().map(|w| self.word(w, what)).collect()
    }

    /// One word split the way a shell splits after expansion.
    pub fn split(&mut self, word: &str, what: &'static str) -> Result<Vec<String>, InstructionErrorKind> {
        let expanded =
            self.lexer.expand_words(word, self.env).map_err(|source| InstructionErrorKind::Expand { what, source })?;
        self.used.extend(expanded.used);
        Ok(expanded.value)
    }

    /// An optional word.
    pub fn opt(&mut self, word: &Option<String>, what: &'static str) -> Result<Option<String>, InstructionErrorKind> {
        word.as_deref().map(|w| self.word(w, what)).transpose()
    }
}
