//! Variables in scope while a stage is planned: ENV (from the base and ENV instructions)
//! shadows ARG, as Docker documents ("ENV always overrides an ARG of the same name").

use crate::dockerfile::shell::EnvLookup;
use std::collections::BTreeMap;

/// ENV and ARG values of one stage at one point of the Dockerfile.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// ENV in order of definition (the image config keeps this order).
    pub(crate) env: Vec<(String, String)>,
    /// Declared ARGs that have a value.
    pub(crate) args: BTreeMap<String, String>,
}

impl Scope {
    pub(crate) fn with_env(env: Vec<(String, String)>) -> Self {
        Self { env, args: BTreeMap::new() }
    }

    /// Sets an ENV variable, keeping its first position when redefined.
    pub(crate) fn set_env(&mut self, key: String, value: String) {
        match self.env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.env.push((key, value)),
        }
    }
}

impl EnvLookup for Scope {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}
