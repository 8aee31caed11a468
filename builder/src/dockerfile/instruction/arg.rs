//! `ARG NAME[=DEFAULT] ...`: declares build arguments.

use super::{Expander, InstructionErrorKind, RawArgs};
use serde::Serialize;

/// One declared build argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    /// The default after `=`, unexpanded until the plan expands it.
    pub default: Option<String>,
}

pub(super) fn parse(raw: &RawArgs<'_>) -> Result<Vec<ArgDecl>, InstructionErrorKind> {
    raw.no_flags("ARG")?;
    if raw.words.is_empty() {
        return Err(InstructionErrorKind::Arity { instruction: "ARG", expected: "at least one argument" });
    }
    raw.words
        .iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (w.clone(), None),
            };
            if name.is_empty() {
                return Err(InstructionErrorKind::Empty { what: "ARG name" });
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

/// Expands the defaults (names are literal).
pub(super) fn expand(args: &[ArgDecl], ex: &mut Expander<'_>) -> Result<Vec<ArgDecl>, InstructionErrorKind> {
    args.iter().map(|a| Ok(ArgDecl { name: a.name.clone(), default: ex.opt(&a.default, "ARG default")? })).collect()
}
