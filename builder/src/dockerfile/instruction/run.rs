//! `RUN [--mount=...] [--network=...] [--security=...] COMMAND`.

use super::command::{from_words, CommandLine};
use super::flags::{FlagKind, Flags};
use super::mount::Mount;
use super::{Expander, InstructionErrorKind, RawArgs};
use crate::dockerfile::Heredoc;
use serde::Serialize;

/// Which network a RUN sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The builder's default (the host's network).
    Default,
    None,
    Host,
}

/// `--security`: `insecure` asks for extra privileges (refused at build time unless allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// A RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    pub security: Security,
    /// Heredocs of the line; with a shell-form `<<EOF` command the first one is the script.
    pub heredocs: Vec<Heredoc>,
}

pub(super) fn parse(raw: &RawArgs<'_>) -> Result<Run, InstructionErrorKind> {
    let flags = Flags::parse(
        "RUN",
        raw.flags,
        &[("mount", FlagKind::Multi), ("network", FlagKind::String), ("security", FlagKind::String)],
    )?;
    if raw.words.is_empty() && raw.heredocs.is_empty() {
        return Err(InstructionErrorKind::Arity { instruction: "RUN", expected: "at least one argument" });
    }
    let mounts = flags.multi("mount").iter().map(|m| Mount::parse(m)).collect::<Result<_, _>>()?;
    let network = match flags.string("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(InstructionErrorKind::BadFlagValue {
                flag: "network".into(),
                value: other.into(),
                expected: "default, none or host",
            })
        }
    };
    let security = match flags.string("security").as_deref() {
        None | Some("sandbox") => Security::Sandbox,
        Some("insecure") => Security::Insecure,
        Some(other) => {
            return Err(InstructionErrorKind::BadFlagValue {
                flag: "security".into(),
                value: other.into(),
                expected: "sandbox or insecure",
            })
        }
    };
    Ok(Run { command: from_words(raw), mounts, network, security, heredocs: raw.heredocs.to_vec() })
}

impl Run {
    /// The command is left to the shell; only mount options expand.
    pub(super) fn expand(&self, ex: &mut Expander<'_>) -> Result<Self, InstructionErrorKind> {
        let mounts = self.mounts.iter().map(|m| m.expand(ex)).collect::<Result<_, _>>()?;
        Ok(Self { mounts, ..self.clone() })
    }
}
