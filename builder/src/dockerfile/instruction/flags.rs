//! `--flag[=value]` words before an instruction's arguments (BuildKit's `BFlags`).

use super::InstructionErrorKind;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    String,
    /// `--mount=...`, any number of times.
    Multi,
}

/// The flags an instruction accepts, and what was given.
pub(super) struct Flags {
    given: Vec<(String, Option<String>)>,
}

impl Flags {
    /// Splits raw flag words and checks them against `known`.
    pub(super) fn parse(
        instruction: &str,
        words: &[String],
        known: &[(&str, FlagKind)],
    ) -> Result<Self, InstructionErrorKind> {
        let mut given: Vec<(String, Option<String>)> = Vec::new();
        for word in words {
            let body = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let kind = known.iter().find(|(k, _)| *k == name).map(|(_, kind)| *kind).ok_or_else(|| {
                InstructionErrorKind::UnknownFlag { instruction: instruction.to_string(), flag: name.clone() }
            })?;
            match (kind, &value) {
                (FlagKind::Bool, Some(v)) if !matches!(v.to_ascii_lowercase().as_str(), "true" | "false") => {
                    return Err(InstructionErrorKind::BadFlagValue {
                        flag: name,
                        value: v.clone(),
                        expected: "true or false",
                    })
                }
                (FlagKind::String | FlagKind::Multi, None) => {
                    return Err(InstructionErrorKind::MissingFlagValue { flag: name })
                }
                (FlagKind::String | FlagKind::Bool, _) if given.iter().any(|(n, _)| *n == name) => {
                    return Err(InstructionErrorKind::DuplicateFlag { flag: name })
                }
                _ => {}
            }
            given.push((name, value));
        }
        Ok(Self { given })
    }

    /// The value of a string flag, if given.
    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.given.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub(super) fn multi(&self, name: &str) -> Vec<String> {
        self.given.iter().filter(|(n, _)| n == name).filter_map(|(_, v)| v.clone()).collect()
    }

    /// A boolean flag: absent is false, bare is true.
    pub(super) fn bool(&self, name: &str) -> bool {
        self.given
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().is_none_or(|v| v.eq_ignore_ascii_case("true")))
            .unwrap_or(false)
    }
}
