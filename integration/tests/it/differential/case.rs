//! One differential case: `testdata/build/diff-<name>/` holds the Dockerfile and context,
//! and optionally `CASE` (options) and `EXPECTED` (the result BuildKit documents, for
//! features Docker 20.10's built-in frontend lacks). Both files are removed from the
//! context copy before any builder sees it.
//!
//! `CASE`, one `key: value` a line (`#` comments):
//! - `oracle: docker` (default) compares with Docker's BuildKit builder; `oracle: documented`
//!   checks `EXPECTED` instead and needs `why:`, naming the BuildKit test or doc it encodes.
//! - `build-arg: K=V` (repeatable; `${SERVER}` is the loopback HTTP server's URL),
//!   `target: STAGE`, `buildah: yes` (buildah as a second opinion), `output: TEXT` (what the
//!   image's entrypoint + cmd print, `\n` escaped).
//!
//! `EXPECTED`, one entry a line: `PATH file MODE UID:GID CONTENT` (`\n` escaped),
//! `PATH dir MODE UID:GID`, `PATH symlink TARGET`, `PATH absent`, or `config.FIELD JSON`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::compare::{unset_if_empty, Difference, Node};

/// Which result a case is compared with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Oracle {
    /// The image Docker's BuildKit builder makes of the same context.
    Docker,
    /// The `EXPECTED` entries (Docker 20.10 lacks the feature); the reason is kept.
    Documented(String),
}

/// A parsed case.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) oracle: Oracle,
    pub(crate) build_args: Vec<String>,
    pub(crate) target: Option<String>,
    pub(crate) buildah: bool,
    pub(crate) output: Option<String>,
    pub(crate) expected: Vec<Expectation>,
}

/// One `EXPECTED` line.
#[derive(Debug)]
pub(crate) enum Expectation {
    Path(String, Option<Node>),
    Config(String, Value),
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

impl Case {
    /// Reads `dir` (a `diff-*` directory); panics on a malformed manifest.
    pub(crate) fn load(dir: &Path) -> Self {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let manifest = std::fs::read_to_string(dir.join("CASE")).unwrap_or_default();
        let mut case = Case {
            name,
            oracle: Oracle::Docker,
            build_args: vec![],
            target: None,
            buildah: false,
            output: None,
            expected: vec![],
        };
        let (mut documented, mut why) = (false, None);
        for line in manifest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (key, value) =
                line.split_once(':').unwrap_or_else(|| panic!("{}/CASE: {line:?} is not `key: value`", case.name));
            let value = value.trim();
            match key.trim() {
                "oracle" => documented = value == "documented",
                "why" => why = Some(value.to_string()),
                "build-arg" => case.build_args.push(value.to_string()),
                "target" => case.target = Some(value.to_string()),
                "buildah" => case.buildah = value == "yes",
                "output" => case.output = Some(unescape(value)),
                other => panic!("{}/CASE: unknown key {other:?}", case.name),
            }
        }
        if documented {
            let why = why.unwrap_or_else(|| panic!("{}/CASE: `oracle: documented` needs `why:`", case.name));
            case.oracle = Oracle::Documented(why);
            let text = std::fs::read_to_string(dir.join("EXPECTED"))
                .unwrap_or_else(|_| panic!("{}: EXPECTED missing", case.name));
            case.expected = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| parse_expectation(&case.name, l))
                .collect();
        }
        case
    }
}

fn owner(name: &str, s: &str) -> (u32, u32) {
    let (u, g) = s.split_once(':').unwrap_or_else(|| panic!("{name}/EXPECTED: owner {s:?} is not UID:GID"));
    (u.parse().unwrap(), g.parse().unwrap())
}

fn parse_expectation(name: &str, line: &str) -> Expectation {
    if let Some(rest) = line.strip_prefix("config.") {
        let (field, json) = rest.split_once(' ').unwrap_or((rest, "null"));
        let value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}/EXPECTED: {line:?}: {e}"));
        return Expectation::Config(field.to_string(), value);
    }
    let mut f = line.splitn(5, ' ');
    let (path, kind) = (f.next().unwrap().to_string(), f.next().unwrap_or(""));
    let mode = |m: Option<&str>| {
        u32::from_str_radix(m.unwrap_or_else(|| panic!("{name}/EXPECTED: {line:?} needs a mode")), 8).unwrap()
    };
    let node = match kind {
        "absent" => None,
        "symlink" => Some(Node::Symlink { owner: (0, 0), target: f.next().unwrap().to_string() }),
        "dir" => {
            Some(Node::Dir { mode: mode(f.next()), owner: owner(name, f.next().unwrap()), xattrs: Default::default() })
        }
        "file" => {
            let (m, o) = (mode(f.next()), owner(name, f.next().unwrap()));
            let content = unescape(f.next().unwrap_or(""));
            let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
            Some(Node::File { mode: m, owner: o, size: content.len() as u64, sha256, xattrs: Default::default() })
        }
        other => panic!("{name}/EXPECTED: unknown kind {other:?} in {line:?}"),
    };
    Expectation::Path(path, node)
}

/// Differences between rbuild's image and the case's `EXPECTED` entries.
pub(crate) fn check_expected(
    expected: &[Expectation],
    tree: &BTreeMap<String, Node>,
    config: &Value,
) -> Vec<Difference> {
    let mut out = Vec::new();
    for e in expected {
        match e {
            Expectation::Path(path, want) => {
                if tree.get(path) != want.as_ref() {
                    out.push(Difference::new(path.as_str(), tree.get(path), want));
                }
            }
            Expectation::Config(field, want) => {
                let got = &config["config"][field];
                if unset_if_empty(got) != unset_if_empty(want) {
                    out.push(Difference::new(format!("config.{field}"), got, want));
                }
            }
        }
    }
    out
}
