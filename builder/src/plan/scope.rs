//! Variables in scope while a stage is planned. BuildKit adds both ENV and ARG values to
//! the build state's environment in instruction order, so of an ENV and an ARG of the same
//! name the later one wins (for expansion and RUN); the image config keeps only ENV. Docker
//! documents the usual case, `ARG V` then `ENV V`: the ENV wins.

use crate::dockerfile::shell::EnvLookup;
use std::collections::{BTreeMap, BTreeSet};

/// ENV and ARG values of one stage at one point of the Dockerfile.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// ENV in order of definition (the image config keeps this order).
    pub(crate) env: Vec<(String, String)>,
    /// Declared ARGs that have a value.
    pub(crate) args: BTreeMap<String, String>,
    /// ARGs declared after the last ENV of the same name: their value wins over that ENV.
    pub(crate) arg_over_env: BTreeSet<String>,
}

impl Scope {
    pub(crate) fn with_env(env: Vec<(String, String)>) -> Self {
        Self { env, ..Self::default() }
    }

    /// Gives an ARG its value; it wins over an ENV of the same name set before.
    pub(crate) fn set_arg(&mut self, key: String, value: String) {
        if self.env.iter().any(|(k, _)| *k == key) {
            self.arg_over_env.insert(key.clone());
        }
        self.args.insert(key, value);
    }

    /// The ARGs a RUN gets in its environment: those no later ENV hides (an ARG that wins
    /// over an ENV replaces that variable's value).
    pub(crate) fn run_args(&self) -> BTreeMap<String, String> {
        let in_env = |k: &String| self.env.iter().any(|(e, _)| e == k);
        self.args
            .iter()
            .filter(|(k, _)| !in_env(k) || self.arg_over_env.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets an ENV variable, keeping its first position when redefined.
    pub(crate) fn set_env(&mut self, key: String, value: String) {
        self.arg_over_env.remove(&key);
        match self.env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.env.push((key, value)),
        }
    }
}

impl EnvLookup for Scope {
    fn lookup(&self, name: &str) -> Option<&str> {
        if self.arg_over_env.contains(name) {
            return self.args.get(name).map(String::as_str);
        }
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}
