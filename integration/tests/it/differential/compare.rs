//! What the differential test compares of two images: the config fields of
//! [`CONFIG_FIELDS`] and every rootfs entry ([`Node`]: type, mode, owner, size and content,
//! link target, xattrs). Mtimes are not compared: each builder stamps the time it wrote a file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Config fields compared between images.
pub(crate) const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// Config fields that are maps, compared key by key (so an exception can name one key).
const MAP_FIELDS: &[&str] = &["Labels", "ExposedPorts", "Volumes"];

/// One difference: what differs (a config field such as `config.Labels.<key>`, or a rootfs
/// path) and the two values.
#[derive(Debug)]
pub(crate) struct Difference {
    pub(crate) what: String,
    pub(crate) ours: String,
    pub(crate) theirs: String,
}

impl Difference {
    pub(crate) fn new(what: impl Into<String>, ours: impl std::fmt::Debug, theirs: impl std::fmt::Debug) -> Self {
        Self { what: what.into(), ours: format!("{ours:?}"), theirs: format!("{theirs:?}") }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: rbuild {} | reference {}", self.what, self.ours, self.theirs)
    }
}

/// Differences between the compared config fields (`config.<Field>[.<key>]`).
pub(crate) fn compare_configs(ours: &Value, theirs: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    for top in ["architecture", "os"] {
        if ours[top] != theirs[top] {
            out.push(Difference::new(top, &ours[top], &theirs[top]));
        }
    }
    let empty = serde_json::Map::new();
    for field in CONFIG_FIELDS {
        let (a, b) = (&ours["config"][field], &theirs["config"][field]);
        if MAP_FIELDS.contains(field) {
            let (x, y) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if x.get(k) != y.get(k) {
                    out.push(Difference::new(format!("config.{field}.{k}"), x.get(k), y.get(k)));
                }
            }
        } else if *field == "Env" {
            out.extend(compare_env(a, b));
        } else if unset_if_empty(a) != unset_if_empty(b) {
            out.push(Difference::new(format!("config.{field}"), a, b));
        }
    }
    out
}

/// Env compared as a set of variables (`config.Env.<NAME>`), and its order on its own.
fn compare_env(a: &Value, b: &Value) -> Vec<Difference> {
    let vars = |v: &Value| -> Vec<(String, String)> {
        let list = v.as_array().cloned().unwrap_or_default();
        list.iter()
            .filter_map(Value::as_str)
            .map(|kv| {
                kv.split_once('=').map_or((kv.to_string(), String::new()), |(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    };
    let (x, y) = (vars(a), vars(b));
    let (xm, ym): (BTreeMap<_, _>, BTreeMap<_, _>) = (x.iter().cloned().collect(), y.iter().cloned().collect());
    let names: BTreeSet<&String> = xm.keys().chain(ym.keys()).collect();
    let mut out: Vec<Difference> = names
        .into_iter()
        .filter(|n| xm.get(*n) != ym.get(*n))
        .map(|n| Difference::new(format!("config.Env.{n}"), xm.get(n), ym.get(n)))
        .collect();
    if out.is_empty() && x != y {
        out.push(Difference::new("config.Env (order)", a, b));
    }
    out
}

/// `null`, a missing field, `""`, `[]` and `{}` all mean "not set" in an image config.
pub(crate) fn unset_if_empty(v: &Value) -> &Value {
    match v {
        Value::String(s) if s.is_empty() => &Value::Null,
        Value::Array(a) if a.is_empty() => &Value::Null,
        Value::Object(o) if o.is_empty() => &Value::Null,
        other => other,
    }
}

/// What is compared of one rootfs entry.
#[derive(Debug, PartialEq, Eq, Clone)]
pub(crate) enum Node {
    Dir { mode: u32, owner: (u32, u32), xattrs: Xattrs },
    File { mode: u32, owner: (u32, u32), size: u64, sha256: String, xattrs: Xattrs },
    Symlink { owner: (u32, u32), target: String },
    Other { kind: &'static str, mode: u32, owner: (u32, u32) },
}

/// Extended attributes of an entry, name → hex value.
pub(crate) type Xattrs = BTreeMap<String, String>;

/// Every path under `root` (relative, `/`-prefixed) with its node.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (mode, owner, ft) = (meta.mode() & 0o7777, (meta.uid(), meta.gid()), meta.file_type());
            let node = if ft.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode, owner, xattrs: xattrs(&path) }
            } else if ft.is_file() {
                let sha256 = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                Node::File { mode, owner, size: meta.len(), sha256, xattrs: xattrs(&path) }
            } else if ft.is_symlink() {
                Node::Symlink { owner, target: std::fs::read_link(&path).unwrap().display().to_string() }
            } else {
                let kind = if ft.is_fifo() {
                    "fifo"
                } else if ft.is_socket() {
                    "socket"
                } else {
                    "device"
                };
                Node::Other { kind, mode, owner }
            };
            out.insert(format!("/{}", path.strip_prefix(root).unwrap().display()), node);
        }
    }
    out
}

/// The extended attributes of `path` (not following a symlink).
fn xattrs(path: &Path) -> Xattrs {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let name = std::ffi::OsStr::from_bytes(name);
            let mut value = vec![0u8; 65536];
            let len = rustix::fs::lgetxattr(path, name, &mut value).unwrap_or(0);
            (name.to_string_lossy().into_owned(), hex::encode(&value[..len]))
        })
        .collect()
}

/// Differences between two snapshots, one per path.
pub(crate) fn compare_trees(ours: &BTreeMap<String, Node>, theirs: &BTreeMap<String, Node>) -> Vec<Difference> {
    let paths: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (a, b) = (ours.get(p), theirs.get(p));
            (a != b).then(|| Difference::new(p.as_str(), a, b))
        })
        .collect()
}
