//! Instructions with plain word arguments: `USER`, `WORKDIR`, `STOPSIGNAL`, `MAINTAINER`,
//! `EXPOSE`, `VOLUME`.

use super::{Expander, InstructionErrorKind, RawArgs};

/// One exposed port (`80`, `53/udp`, `8000-8010/tcp`), normalised by the image config writer.
pub type Expose = String;

/// Exactly one argument (the parser already joined the rest of the line).
pub(super) fn one(raw: &RawArgs<'_>, instruction: &'static str) -> Result<String, InstructionErrorKind> {
    raw.no_flags(instruction)?;
    match raw.words.as_slice() {
        [word] if !word.is_empty() => Ok(word.clone()),
        _ => Err(InstructionErrorKind::Arity { instruction, expected: "exactly one argument" }),
    }
}

pub(super) fn expose(raw: &RawArgs<'_>) -> Result<Vec<String>, InstructionErrorKind> {
    raw.no_flags("EXPOSE")?;
    if raw.words.is_empty() {
        return Err(InstructionErrorKind::Arity { instruction: "EXPOSE", expected: "at least one argument" });
    }
    Ok(raw.words.clone())
}

/// Each EXPOSE word may expand into several ports.
pub(super) fn expand_expose(ports: &[String], ex: &mut Expander<'_>) -> Result<Vec<String>, InstructionErrorKind> {
    let mut out = Vec::new();
    for port in ports {
        out.extend(ex.split(port, "EXPOSE")?);
    }
    Ok(out)
}

pub(super) fn volume(raw: &RawArgs<'_>) -> Result<Vec<String>, InstructionErrorKind> {
    raw.no_flags("VOLUME")?;
    if raw.words.is_empty() {
        return Err(InstructionErrorKind::Arity { instruction: "VOLUME", expected: "at least one argument" });
    }
    if raw.words.iter().any(|w| w.trim().is_empty()) {
        return Err(InstructionErrorKind::Empty { what: "VOLUME specified" });
    }
    Ok(raw.words.clone())
}
