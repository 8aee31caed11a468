//! `ENV` and `LABEL`: key/value pairs in the `k=v ...` form or the legacy `k v` form.

use super::{Expander, InstructionErrorKind, RawArgs};
use serde::Serialize;

/// One `key=value` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

pub(super) fn parse(raw: &RawArgs<'_>, instruction: &'static str) -> Result<Vec<KeyValue>, InstructionErrorKind> {
    raw.no_flags(instruction)?;
    // The parser emits triples: key, value, separator.
    let pairs: Vec<KeyValue> = raw
        .words
        .chunks(3)
        .filter(|c| c.len() >= 2)
        .map(|c| KeyValue { key: c[0].clone(), value: c[1].clone() })
        .collect();
    if pairs.is_empty() || !raw.words.len().is_multiple_of(3) {
        return Err(InstructionErrorKind::Arity { instruction, expected: "at least one argument" });
    }
    Ok(pairs)
}

/// Expands both key and value, as BuildKit does.
pub(super) fn expand(pairs: &[KeyValue], ex: &mut Expander<'_>) -> Result<Vec<KeyValue>, InstructionErrorKind> {
    pairs
        .iter()
        .map(|kv| {
            let key = ex.word(&kv.key, "key")?;
            if key.is_empty() {
                return Err(InstructionErrorKind::Empty { what: "key" });
            }
            Ok(KeyValue { key, value: ex.word(&kv.value, "value")? })
        })
        .collect()
}
