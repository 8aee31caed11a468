//! `FROM [--platform=P] IMAGE [AS NAME]`: starts a build stage.

use super::flags::{FlagKind, Flags};
use super::{Expander, InstructionErrorKind, RawArgs};
use serde::Serialize;

/// A stage's base and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// An image reference, an earlier stage's name, or `scratch`.
    pub image: String,
    /// The stage name after `AS`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    pub platform: Option<String>,
}

pub(super) fn parse(raw: &RawArgs<'_>) -> Result<From, InstructionErrorKind> {
    let flags = Flags::parse("FROM", raw.flags, &[("platform", FlagKind::String)])?;
    let (image, name) = match raw.words.as_slice() {
        [image] => (image.clone(), None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            if !valid_stage_name(&name) {
                return Err(InstructionErrorKind::StageName { name });
            }
            (image.clone(), Some(name))
        }
        _ => {
            return Err(InstructionErrorKind::Arity {
                instruction: "FROM",
                expected: "either one argument, or three: FROM <source> [AS <name>]",
            })
        }
    };
    Ok(From { image, name, platform: flags.string("platform") })
}

/// BuildKit's rule: `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl From {
    /// FROM expands with the global (pre-FROM) ARGs only; the caller passes that scope.
    pub fn expand(&self, ex: &mut Expander<'_>) -> Result<Self, InstructionErrorKind> {
        let image = ex.word(&self.image, "base name")?;
        if image.is_empty() {
            return Err(InstructionErrorKind::Empty { what: "base name" });
        }
        Ok(Self { image, name: self.name.clone(), platform: ex.opt(&self.platform, "platform")? })
    }
}
